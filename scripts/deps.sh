#!/usr/bin/env bash
# Install what herd needs from Debian 12's packages. `deps.sh` for building and running;
# `deps.sh --test` adds what the test suite and benchmarks use.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config ca-certificates python3
      libuv1-dev libcurl4-openssl-dev libjansson-dev libssh2-1-dev libsqlite3-dev libssl-dev node-llhttp
      openssh-client)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(procps iproute2 sqlite3 supervisor runit monit clang-format openssl)
  # the man pages rendered and the zsh completion parsed (tests/e2e/test_docs.py)
  pkgs+=(groff-base man-db zsh)
  # a real browser for the status page (tests/e2e/test_web.py: headless, over the DevTools pipe)
  pkgs+=(chromium)
  pkgs+=(parallel) # GNU parallel, against herd's jobs in bench/jobs.py (bash bench/run.sh jobs)
  # libFuzzer for tests/fuzz (bench/fuzz.sh): clang's -fsanitize=fuzzer runtime is in
  # libclang-rt-14-dev, only recommended by clang-14 (libfuzzer-14-dev is the standalone library)
  pkgs+=(clang libclang-rt-14-dev)
  # a real single-node Slurm 22.05 for tests/e2e/slurm.py; the JWT plugin (auth_jwt.so for
  # slurmctld) is not pulled in by slurmrestd and must be named
  pkgs+=(munge slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Packages that would start a system service as they install: openssh-server (a private sshd
# on loopback for tests/e2e/test_tunnel.py, started by the test itself: no system sshd on port
# 22 of this machine), prometheus (for promtool in tests/e2e/test_metrics.py; no Prometheus
# server) and systemd (for systemd-analyze verify of config/herd.service; nothing is booted). Starts are denied while they install, unless a policy is in place already (Debian's
# container images have one).
if [ "${1:-}" = "--test" ]; then
  svc_missing=()
  for p in openssh-server prometheus systemd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || svc_missing+=("$p")
  done
  if [ "${#svc_missing[@]}" -gt 0 ]; then
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
      $SUDO chmod 755 "$policy"
    fi
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${svc_missing[@]}" >/dev/null || {
      [ -z "$policy" ] || $SUDO rm -f "$policy"
      exit 1
    }
    [ -z "$policy" ] || $SUDO rm -f "$policy"
  fi
fi
