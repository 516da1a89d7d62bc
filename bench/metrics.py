#!/usr/bin/env python3
"""GET /metrics at scale: the daemon's CPU time per scrape with N services (default 1,000).
Run through `bash bench/run.sh metrics` (BENCH_QUICK=1 for a smoke run), or directly:
`python3 bench/metrics.py --herd build/herd`.

A fresh daemon (tests/e2e/harness.py) runs N `sleep` services, each with a TCP check on a
socket this script listens on, that runs once (interval 1 h): every per-service family is on
the page, the check histogram too, and no check runs while the scrapes are measured.
Once all are HEALTHY and the daemon is idle, S scrapes one after the other on one kept-alive
connection; the daemon's CPU time (utime+stime from /proc/PID/stat, and schedstat's ns
counter) before and after, less what the idle daemon spends in as long, divided by S.
Standard library only."""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procutil  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--herd", default=os.environ.get("HERD_BIN") or os.path.join(HERE, "..", "build", "herd"))
    ap.add_argument("--herd-info", default="")
    ap.add_argument("--quick", action="store_true", help="100 services, 50 scrapes")
    ap.add_argument("--n", type=int, default=1000, help="services")
    ap.add_argument("--scrapes", type=int, default=200)
    a = ap.parse_args()
    if a.quick:
        a.n, a.scrapes = min(a.n, 100), min(a.scrapes, 50)
    os.environ["HERD_BIN"] = os.path.abspath(a.herd)
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
    import harness  # noqa: E402 (reads HERD_BIN when imported)

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    port = lsock.getsockname()[1]

    def accept():
        while True:
            try:
                lsock.accept()[0].close()
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    d = harness.Daemon(args=["--log-level", "warn"])
    try:
        d.write_config([{"name": "m%04d" % i, "command": ["sleep", "100000"],
                         "check": {"type": "tcp", "host": "127.0.0.1", "port": port, "interval": "1h"}}
                        for i in range(a.n)])
        t0 = time.monotonic()
        d.start()
        pid = d.proc.pid

        def all_checked():
            st, body = d.request("GET", "/v1/services?view=summary")
            svcs = body["services"]
            return len(svcs) == a.n and all(s["state"] == "HEALTHY" for s in svcs)  # (a check passed)
        harness.wait_until(all_checked, timeout=300, interval=0.5, what="%d services HEALTHY and checked" % a.n)
        procutil.log("%d services HEALTHY and checked in %.1fs" % (a.n, time.monotonic() - t0))

        # The idle daemon's own CPU (heartbeat, nothing else), over as long as the scrapes take.
        conn = harness.UnixHTTPConnection(d.sock, timeout=60)

        def scrape():
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body[:300])
            return body

        page = scrape()  # warm: the buffer's size hint, the page in the client's cache
        walls = []
        s0, t0_ = procutil.cpu_ns(pid)
        w0 = time.monotonic()
        for _ in range(a.scrapes):
            t = time.monotonic()
            page = scrape()
            walls.append(time.monotonic() - t)
        w1 = time.monotonic()
        s1, t1_ = procutil.cpu_ns(pid)
        time.sleep(w1 - w0)  # the same length of idle, for the baseline
        s2, t2_ = procutil.cpu_ns(pid)
        conn.close()

        busy_sched, idle_sched = s1 - s0, s2 - s1
        busy_ticks, idle_ticks = t1_ - t0_, t2_ - t1_
        per_sched = (busy_sched - idle_sched) / a.scrapes / 1e6
        per_ticks = (busy_ticks - idle_ticks) / a.scrapes / 1e6
        lines = page.count(b"\n")
        print("herd GET /metrics: %d services, %d scrapes (%s)" % (a.n, a.scrapes, a.herd_info or a.herd))
        print("  response: %d bytes, %d lines" % (len(page), lines))
        print("  daemon CPU per scrape: %.2f ms (schedstat), %.2f ms (utime+stime, %d Hz ticks)"
              % (per_sched, per_ticks, procutil.CLK_TCK))
        print("  idle daemon over the same %.2fs: %.2f ms" % (w1 - w0, idle_sched / 1e6))
        print("  round trip per scrape: median %.2f ms, max %.2f ms"
              % (statistics.median(walls) * 1e3, max(walls) * 1e3))
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, timeout=120)
            print("  promtool check metrics: %s" % ("ok" if r.returncode == 0 and not r.stdout + r.stderr
                                                    else (r.stdout + r.stderr).decode()[:500]))
        return 0
    finally:
        d.stop(timeout=120)
        d.cleanup()
        lsock.close()


if __name__ == "__main__":
    sys.exit(main())
