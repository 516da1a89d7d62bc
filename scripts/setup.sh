#!/usr/bin/env bash
# Install dependencies, build herd and install it as /usr/local/bin/herd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO cmake --install build >/dev/null
echo "herd installed: $(command -v herd) ($(herd --version))"
