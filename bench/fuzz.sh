#!/usr/bin/env bash
# Fuzz every parser with libFuzzer (tests/fuzz; see README "Fuzzing").
#
#   bash bench/fuzz.sh [SECONDS] [NAME...]   build with clang into build-fuzz/, replay each
#                                            harness's regression files (tests/fuzz/regress/NAME/),
#                                            then fuzz it for SECONDS (default 60) from its seeds
#   FUZZ_JOBS=N                              build with -jN (default 2)
#   FUZZ_RUNS=N                              fuzz each harness for N executions instead of SECONDS
#                                            (e.g. 10000000: the issue's 10^7 per harness)
#   FUZZ_NO_BUILD=1                          use build-fuzz/ as it is (a second run beside a first)
#
# Each harness grows its own corpus in build-fuzz/corpus/NAME (the seeds in tests/fuzz/corpus
# are read, never written); a crash leaves its input in build-fuzz/artifacts/NAME/. Prints,
# per harness: executions, exec/s, corpus size (files) and crashes; exits 1 on any crash or
# on a regression file that fails. scripts/test.sh runs it for 10 s a harness.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: bench/fuzz.sh [SECONDS] [NAME...]" >&2; exit 2; }
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=($(cd tests/fuzz && ls fuzz_*.c | sed "s/^fuzz_//; s/\.c$//"))
command -v clang >/dev/null || { echo "fuzz: clang is needed (scripts/deps.sh --test)" >&2; exit 2; }

runs=${FUZZ_RUNS:-}
[ -z "$runs" ] || [[ "$runs" =~ ^[0-9]+$ ]] || { echo "fuzz: FUZZ_RUNS is a number of executions" >&2; exit 2; }

t0=$SECONDS
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  CC=clang cmake -S . -B build-fuzz -DHERD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"${FUZZ_JOBS:-2}" --target fuzzers >/dev/null
fi
bin=build-fuzz/tests/fuzz
# Leaks count as crashes; UBSan stops at the first report (the build has -fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

dict_of() { # the dictionary a harness reads
  case $1 in
  ctl | check) echo tests/fuzz/http.dict ;;
  cfg | jpos | slurm | jwt) echo tests/fuzz/json.dict ;;
  *) echo "" ;;
  esac
}

rows=()
failed=0
total_execs=0
for n in "${names[@]}"; do
  [ -x "$bin/fuzz_$n" ] || { echo "fuzz: no harness fuzz_$n" >&2; exit 2; }
  log=build-fuzz/fuzz-$n.log
  art=build-fuzz/artifacts/$n
  corpus=build-fuzz/corpus/$n
  mkdir -p "$art" "$corpus"
  # 1. The inputs that once crashed: each must now pass.
  regress=FAIL
  files=(tests/fuzz/regress/"$n"/*)
  if [ ! -e "${files[0]}" ]; then
    regress="-"
  elif "$bin/fuzz_$n" "${files[@]}" >"$log" 2>&1; then
    regress="${#files[@]} ok"
  else
    failed=1
    echo "fuzz: fuzz_$n fails on a regression file:" >&2
    grep -m3 -E "ERROR|runtime error|Running:" "$log" >&2 || tail -5 "$log" >&2
  fi
  # 2. Fuzz for $secs seconds from the seeds and what earlier runs found.
  dict=$(dict_of "$n")
  if [ -n "$runs" ]; then
    args=(-runs="$runs")
  else
    args=(-max_total_time="$secs")
  fi
  args+=(-timeout=10 -print_final_stats=1 -artifact_prefix="$art/")
  h0=$SECONDS
  [ -n "$dict" ] && args+=(-dict="$dict")
  crashes=0
  if ! "$bin/fuzz_$n" "${args[@]}" "$corpus" "tests/fuzz/corpus/$n" >"$log" 2>&1; then
    failed=1
    crashes=$(find "$art" -type f | wc -l)
    [ "$crashes" -gt 0 ] || crashes=1
    echo "fuzz: fuzz_$n crashed; input in $art/, log in $log:" >&2
    grep -m5 -E "ERROR|runtime error|SUMMARY|Test unit written" "$log" >&2 || tail -5 "$log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  size=$(find "$corpus" -type f | wc -l)
  total_execs=$((total_execs + ${execs:-0}))
  rows+=("$(printf '%-8s %14s %10s %8s %8s %12s %8s' "$n" "${execs:-?}" "${rate:-?}" "$size" "$crashes" "$regress" \
    "$((SECONDS - h0))")")
  echo "fuzz: fuzz_$n: ${execs:-?} executions, ${rate:-?} exec/s, corpus $size, crashes $crashes"
done

echo
printf '%-8s %14s %10s %8s %8s %12s %8s\n' harness executions exec/s corpus crashes regressions seconds
printf '%s\n' "${rows[@]}"
if [ -n "$runs" ]; then each="$runs executions"; else each="$secs s"; fi
echo "fuzz: ${#names[@]} harnesses x $each: $total_execs executions, $([ $failed = 0 ] && echo "no crash" || echo FAILED) ($((SECONDS - t0)) s with the build)"
exit $failed
