#!/usr/bin/env bash
# herd benchmarks.
#
#   bash bench/run.sh [N...]            herd vs supervisord vs runit (bench.py); default N: 100 500 1000
#   bash bench/run.sh checks [ARGS]     health checks at scale, herd vs monit (checks.py; ~7 min)
#   bash bench/run.sh adopt [ARGS]      re-adoption of 1,000 running services (adopt.py; ~30 s)
#   bash bench/run.sh slurm [ARGS]      Slurm backend, 500 jobs, herd vs naive per-job polling (slurm.py; ~3 min;
#                                       root, starts a real single-node Slurm: tests/e2e/slurm.py)
#   bash bench/run.sh load [ARGS]       herd under CPU load, --priority realtime vs normal (load.py; ~1 min)
#   bash bench/run.sh crash [ARGS]      kill -9 x200 during an API storm: unknown processes, duplicates (crash.py;
#                                       ~3 min)
#   bash bench/run.sh slurm-ssh [ARGS]  Slurm over ssh ("api": "ssh"): 500 jobs through one libssh2 session vs one ssh
#                                       process per sbatch / per service per tick (slurm_ssh.py; ~5 min; root)
#   bash bench/run.sh tunnels [ARGS]    ssh tunnels: 100 across 4 hosts vs one ssh -L each, throughput and latency,
#                                       partition -> UNKNOWN -> HEALTHY (tunnels.py; ~4 min; root: private sshds and a
#                                       network namespace)
#   bash bench/run.sh metrics [ARGS]    GET /metrics with 1,000 services: daemon CPU per scrape (metrics.py; ~1 min)
#   bash bench/run.sh soak [ARGS]       100,000 restarts and 100,000 API requests against one daemon: descriptors,
#                                       RSS and loop handles per 10,000 (soak.py; ~10 min; --restarts N --requests N)
#   bash bench/run.sh history [ARGS]    a million finished jobs and work items in the store vs none: listing, a
#                                       pattern, wait, a new job, a work item, RSS (history.py; ~5 min; --n N)
#   bash bench/run.sh jobs [ARGS]       10,000 jobs of true / sleep 0.01 at concurrency 2 and 8: herd vs xargs -P
#                                       and GNU parallel, jobs/s and daemon CPU per job (jobs.py; ~6 min)
#   bash bench/run.sh all [N...]        all five, one after the other (N... goes to bench.py)
#   BENCH_IDLE_SECONDS=60               idle-CPU window per system and N
#   BENCH_QUICK=1                       smoke run: N 10 50 (unless given), 3 s idle, 10 kills; slurm N=50
#   BENCH_SLURM_N=500                   services (Slurm jobs) for the slurm suite
#   BENCH_TIMEOUT=3600                  hard limit per suite (seconds; default 3600, checks 900, adopt 300,
#                                       slurm 900)
#   HERD_BIN=/path/to/herd              use this binary instead of building build-bench/
#   BENCH_KEEP_FAILED=1                 keep the temp dir of a failed system run
#
#   TMPDIR=/dev/shm                     where the per-system temp dirs go (default /tmp)
#   extra args go to bench.py, e.g. --systems herd,runit  --kills 40  --status-runs 15
#   checks: --n 1000 --servers 4 --intervals 1000,500,250,200,100 --window 20 --no-monit ...
#   adopt:  --n 1000 --variants plain,http,exec --how leave,kill9 ...
#   load:   --n 100 --busy 4 --window 10 --requests 2000 --kills 20
#   slurm:  --n 500 --window 20 --naive-window 20 --samples 7 --naive-samples 5 ...
#   (python3 bench/checks.py -h, python3 bench/adopt.py -h, python3 bench/slurm.py -h)
#
# Builds herd (Release) in build-bench/ (incrementally), raises the fd limit identically for
# all three daemons (soft = hard, hard raised to BENCH_NOFILE=65536 when permitted), and
# prints the results to stdout; progress and errors go to stderr.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
quick=${BENCH_QUICK:-0}
[ "$quick" = 0 ] && quick=
idle=${BENCH_IDLE_SECONDS:-}
[ -z "$idle" ] && { [ -n "$quick" ] && idle=3 || idle=60; }
nofile=${BENCH_NOFILE:-65536}

mode=main
case "${1:-}" in
  checks|adopt|slurm|slurm-ssh|load|crash|tunnels|metrics|soak|jobs|history|all) mode=$1; shift ;;
esac

need=(python3 cmake)
case $mode in
  main|all) need+=(supervisord supervisorctl runsvdir runsv sv) ;;
esac
case $mode in
  checks|all) need+=(monit) ;;
  jobs) need+=(xargs parallel) ;;
esac
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || {
    echo "run.sh: $tool not found (apt-get install -y supervisor runit monit)" >&2; exit 2; }
done

# ---- herd binary -------------------------------------------------------------------
build_dir() { # dir extra-cflags; output in DIR/bench-build.log
  local dir=$1 flags=$2
  mkdir -p "$dir"
  : >"$dir/bench-build.log"
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="$flags" \
    >>"$dir/bench-build.log" 2>&1 || return 1
  cmake --build "$dir" -j2 --target herd bench_repoint bench_floor >>"$dir/bench-build.log" 2>&1
}

herd_info=
if [ -n "${HERD_BIN:-}" ]; then
  herd=$HERD_BIN
  herd_info="given by HERD_BIN"
else
  if build_dir "$repo/build-bench" ""; then
    herd=$repo/build-bench/herd
    herd_info="Release build"
  else
    # GCC 12 at -O3 raises flow-based warnings -O2 does not (format-truncation,
    # maybe-uninitialized, use-after-free, ...) and the project builds with -Werror.
    # Retry with those warnings not fatal: the generated code is the same.
    echo "run.sh: the plain Release build failed; errors:" >&2
    grep -E 'error' "$repo/build-bench/bench-build.log" | sort -u | head -20 | sed 's/^/    /' >&2 || true
    relaxed=
    for w in maybe-uninitialized uninitialized format-truncation format-overflow use-after-free \
             stringop-truncation stringop-overflow stringop-overread array-bounds restrict \
             dangling-pointer free-nonheap-object; do
      relaxed="$relaxed -Wno-error=$w"
    done
    if build_dir "$repo/build-bench-relaxed" "$relaxed"; then
      herd=$repo/build-bench-relaxed/herd
      herd_info="Release build with -Wno-error for -O3-only warnings (plain Release build fails with -Werror)"
      echo "run.sh: using $herd ($herd_info)" >&2
    elif [ -x "$repo/build-bench/herd" ]; then
      herd=$repo/build-bench/herd
      herd_info="STALE Release build: the current tree does not build (see build-bench/bench-build.log)"
      echo "run.sh: build failed; using the stale $herd" >&2
    else
      echo "run.sh: cannot build herd; see $repo/build-bench/bench-build.log and" \
           "$repo/build-bench-relaxed/bench-build.log" >&2
      exit 2
    fi
  fi
fi
[ -x "$herd" ] || { echo "run.sh: $herd is not executable" >&2; exit 2; }
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$repo" status --porcelain -- src include CMakeLists.txt 2>/dev/null | wc -l)
herd_info="$herd_info; git $rev"
if [ "$dirty" != 0 ]; then herd_info="$herd_info, $dirty uncommitted file(s) in src/include/CMakeLists.txt"; fi

# ---- same fd limit for every daemon ------------------------------------------------
ulimit -Hn "$nofile" 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

# ---- run ---------------------------------------------------------------------------
minfds=$(ulimit -Sn)
[ "$minfds" = unlimited ] && minfds=$nofile
common=(--herd "$herd" --herd-info "$herd_info")
[ -n "$quick" ] && common+=(--quick)
args=("${common[@]}" --idle "$idle" --minfds "$minfds")
[ -n "${BENCH_KEEP_FAILED:-}" ] && args+=(--keep-failed)

pypid=
cleanup() {
  if [ -n "$pypid" ] && kill -0 "$pypid" 2>/dev/null; then
    kill -TERM "$pypid" 2>/dev/null || true   # the python scripts kill everything they started, by pid
    wait "$pypid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

run_py() { # default-timeout script args...
  local limit=${BENCH_TIMEOUT:-$1} rc
  shift
  timeout --foreground -s TERM -k 60 "$limit" python3 -u "$@" &
  pypid=$!
  set +e
  wait "$pypid"
  rc=$?
  set -e
  pypid=
  return $rc
}

rc=0
case $mode in
  main)   run_py 3600 "$here/bench.py" "${args[@]}" "$@" || rc=$? ;;
  checks) run_py 900 "$here/checks.py" "${common[@]}" "$@" || rc=$? ;;
  adopt)  run_py 300 "$here/adopt.py" "${common[@]}" "$@" || rc=$? ;;
  slurm)  run_py 900 "$here/slurm.py" "${common[@]}" "$@" || rc=$? ;;
  load)   run_py 300 "$here/load.py" "${common[@]}" "$@" || rc=$? ;;
  crash)  run_py 1200 "$here/crash.py" "${common[@]}" "$@" || rc=$? ;;
  tunnels) run_py 900 "$here/tunnels.py" "${common[@]}" "$@" || rc=$? ;;
  slurm-ssh) run_py 2400 "$here/slurm_ssh.py" "${common[@]}" "$@" || rc=$? ;;
  metrics) run_py 600 "$here/metrics.py" "${common[@]}" "$@" || rc=$? ;;
  soak)   run_py 3600 "$here/soak.py" "${common[@]}" "$@" || rc=$? ;;
  jobs)   run_py 3600 "$here/jobs.py" "${common[@]}" "$@" || rc=$? ;;
  history) run_py 1800 "$here/history.py" "${common[@]}" "$@" || rc=$? ;;
  all)
    for step in main checks adopt load slurm; do
      r=0
      case $step in
        main)   run_py 3600 "$here/bench.py" "${args[@]}" "$@" || r=$? ;;
        checks) echo; run_py 900 "$here/checks.py" "${common[@]}" || r=$? ;;
        adopt)  echo; run_py 300 "$here/adopt.py" "${common[@]}" || r=$? ;;
        load)   echo; run_py 300 "$here/load.py" "${common[@]}" || r=$? ;;
        slurm)  echo; run_py 900 "$here/slurm.py" "${common[@]}" || r=$? ;;
      esac
      [ "$r" = 130 ] && exit 130
      [ "$r" != 0 ] && { echo "run.sh: $step exited with $r" >&2; rc=$r; }
    done ;;
esac
exit $rc
