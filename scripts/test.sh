#!/usr/bin/env bash
# Install dependencies, build herd twice (plain, and with AddressSanitizer +
# UndefinedBehaviorSanitizer) and run the whole test suite against each build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test

echo "== format check (clang-format)"
if command -v clang-format >/dev/null; then
  bad=$(clang-format --dry-run src/*.c include/herd/*.h tests/unit/*.c tests/fuzz/*.c 2>&1 | grep -c "warning:" || true)
  if [ "$bad" != "0" ]; then
    clang-format --dry-run src/*.c include/herd/*.h tests/unit/*.c tests/fuzz/*.c 2>&1 | head -20
    echo "clang-format: $bad place(s) differ from .clang-format"; exit 1
  fi
fi

run_suite() { # build-dir, cmake args...
  local dir=$1; shift
  echo "== build $dir ($*)"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
  echo "== test $dir"
  (cd "$dir" && ctest --output-on-failure --timeout 600)
}

echo "== compile check: Release (-O3 finds warnings -O2 does not)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc)" --target herd

run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# Every parser's libFuzzer harness: its regression files, then 10 s of fuzzing each (~2 min
# with the build); any crash fails the run. Its last line is the runner line.
echo "== fuzz (libFuzzer, 10 s a harness)"
bash bench/fuzz.sh 10

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DHERD_SANITIZE=ON
