#!/usr/bin/env python3
"""Config loading at scale: how long herd takes to load and validate N services whose
`depends_on` form chains, at start-up and on a reload, and how long a reload holds the loop.
Run as `python3 bench/cfgload.py --herd build/herd` (--quick for a smoke run).

The config is one file (or --files K files) of N `sleep` services; service i depends on
service i-1 within chains of --chain services (default: one chain through all N, the deepest
dependency walk). The last service also depends on a service that does not exist, so the
config is loaded and validated completely and then refused: nothing is spawned and only the
config path is timed.
  - start-up: `herd daemon --config DIR` on a fresh state dir, from exec until it exits with
    status 100 (config error) having printed the one error (R runs);
  - reload: a daemon started on an empty config dir, the N-service config written, then
    `POST /v1/reload` (422) timed while `GET /v1/daemon/lag` measures the loop's own 1 ms
    timer's lateness on a second connection over the same window (R runs);
  - file size and herd's peak RSS (VmHWM) after the reloads.
Standard library only."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procutil import host_line, log, status_fields  # noqa: E402
from systems import SLEEP_ARG, BenchError, UnixHTTPConnection  # noqa: E402

MISSING = "no-such-service"


def svc_name(i):
    return "s%05d" % i


def write_config(confdir, n, chain, files):
    """N services in `files` files; returns the total size in bytes."""
    specs = []
    for i in range(n):
        s = {"name": svc_name(i), "command": ["sleep", SLEEP_ARG], "ready_after": 0}
        deps = []
        if chain > 1 and i % chain:
            deps.append(svc_name(i - 1))
        if i == n - 1:
            deps.append(MISSING)  # one error, found only after everything has been loaded
        if deps:
            s["depends_on"] = deps
        specs.append(s)
    per = (n + files - 1) // files
    total = 0
    for k in range(files):
        path = os.path.join(confdir, "services-%03d.json" % k)
        with open(path, "w") as f:
            json.dump({"services": specs[k * per:(k + 1) * per]}, f, indent=2)
        total += os.path.getsize(path)
    return total


def request(sock, method, path, timeout=300):
    c = UnixHTTPConnection(sock, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        return r.status, json.loads(body) if body else None
    finally:
        c.close()


def startup_once(herd, confdir, root, timeout):
    state = tempfile.mkdtemp(prefix="state-", dir=root)
    t0 = time.perf_counter()
    r = subprocess.run([herd, "daemon", "--config", confdir, "--state-dir", state],
                       capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    shutil.rmtree(state, ignore_errors=True)
    if r.returncode != 100 or MISSING not in r.stderr:
        raise BenchError("start-up: exit %d, stderr: %s" % (r.returncode, r.stderr[-2000:]))
    return dt


def reload_runs(herd, confdir, root, runs, window):
    """Start a daemon on an empty config dir, then point it at the big config."""
    live = os.path.join(root, "live")
    state = os.path.join(root, "state-reload")
    os.makedirs(live)
    logf = open(os.path.join(root, "daemon.log"), "ab")
    p = subprocess.Popen([herd, "daemon", "--config", live, "--state-dir", state, "--log-level", "warn"],
                         stdout=logf, stderr=subprocess.STDOUT)
    sock = os.path.join(state, "herd.sock")
    out = []
    try:
        deadline = time.time() + 30
        while True:
            if p.poll() is not None:
                raise BenchError("daemon exited with %s" % p.returncode)
            try:
                if request(sock, "GET", "/v1/daemon", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise BenchError("daemon socket did not come up")
            time.sleep(0.02)
        for name in os.listdir(confdir):
            shutil.copy(os.path.join(confdir, name), live)
        for _ in range(runs):
            lag = {}

            def probe():
                st, body = request(sock, "GET", "/v1/daemon/lag?seconds=%d" % window, timeout=window + 300)
                lag.update(body["lag"] if st == 200 else {})
            th = threading.Thread(target=probe)
            th.start()
            time.sleep(0.2)  # the probe's timer is running before the reload starts
            t0 = time.perf_counter()
            st, body = request(sock, "POST", "/v1/reload")
            dt = time.perf_counter() - t0
            th.join()
            if st != 422 or MISSING not in json.dumps(body):
                raise BenchError("reload: %d %s" % (st, json.dumps(body)[:2000]))
            out.append((dt, lag.get("max_ms")))
        hwm = status_fields(p.pid).get("VmHWM")
        return out, hwm
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=60)
        logf.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--herd", required=True)
    ap.add_argument("--n", type=int, default=10000, help="services")
    ap.add_argument("--chain", type=int, default=0, help="services per depends_on chain (0: one chain of all N)")
    ap.add_argument("--files", type=int, default=1, help="config files the services are spread over")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600, help="per start-up run (s)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.n, a.runs = min(a.n, 1000), 1
    chain = a.chain or a.n
    root = tempfile.mkdtemp(prefix="herd-bench-cfgload-")
    try:
        confdir = os.path.join(root, "conf")
        os.makedirs(confdir)
        size = write_config(confdir, a.n, chain, a.files)
        print(host_line())
        print("herd: %s" % a.herd)
        print("config: %d services in %d file(s), %.1f MB, depends_on chains of %d; the last service also "
              "depends on a missing one (the config is refused after a full load)" % (
                  a.n, a.files, size / 1e6, chain, ))
        log("start-up runs")
        st = [startup_once(a.herd, confdir, root, a.timeout) for _ in range(a.runs)]
        window = int(min(60, max(2, 2 * max(st) + 1)))
        log("reload runs (lag window %d s)" % window)
        rl, hwm = reload_runs(a.herd, confdir, root, a.runs, window)
        print("%-52s %10s %10s" % ("", "median", "max"))
        print("%-52s %10.3f %10.3f" % ("start-up: exec to exit 100 (s)", statistics.median(st), max(st)))
        rt = [r[0] for r in rl]
        print("%-52s %10.3f %10.3f" % ("reload: POST /v1/reload to 422 (s)", statistics.median(rt), max(rt)))
        lg = [r[1] for r in rl if r[1] is not None]
        if lg:
            print("%-52s %10.1f %10.1f" % ("loop lag max during the reload (ms)", statistics.median(lg), max(lg)))
        print("%-52s %10s" % ("herd peak RSS after the reloads (MiB)", "%.1f" % (hwm / 1024) if hwm else "-"))
        return 0
    except BenchError as e:
        print("cfgload: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
