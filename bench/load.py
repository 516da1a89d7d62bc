#!/usr/bin/env python3
"""herd under CPU load: does the supervisor stay on time when its own services saturate
every CPU? Run through `bash bench/run.sh load` (BENCH_QUICK=1 for a smoke run).

For herd with `--priority realtime` (opt-in, root) and with `--priority normal` (the default), in a
fresh state dir each: N `sleep` services plus B busy services (`sh -c 'while :; do :; done'`,
default 2 per CPU), each in its own session as herd starts every service. Once all are up:
  - loop lag: herd's own 1 ms timer's lateness over a window (`GET /v1/daemon/lag`);
  - API round trip: `GET /v1/services/NAME` on a kept-alive connection, R times;
  - restart: `kill -9` a `sleep` service's process, time until herd reports a new pid HEALTHY
    (K times; backoff 0);
  - start: time from `POST .../start` of a stopped `sleep` service to HEALTHY (K times).
The bench itself (the observer) runs SCHED_FIFO 1 while it measures, as in bench.py, so it is
not the one waiting for a CPU. Standard library only."""
import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import observer_priority  # noqa: E402
from procutil import host_line, log, loadavg  # noqa: E402
from systems import SLEEP_ARG, BenchError, Herd, KeepAliveClient, svc_name  # noqa: E402


def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else None


def run(mode, a, herd_bin):
    root = tempfile.mkdtemp(prefix="herd-bench-load-%s-" % mode)
    names = [svc_name(i) for i in range(1, a.n + 1)]
    specs = [{"name": nm, "command": ["sleep", SLEEP_ARG], "ready_after": 0, "backoff": {"initial": 0}}
             for nm in names]
    specs += [{"name": "busy%02d" % i, "command": ["sh", "-c", "while :; do :; done"], "ready_after": 0}
              for i in range(a.busy)]
    h = Herd(root, a.n + a.busy, herd_bin, specs=specs, extra_args=["--priority", mode])
    r = {}
    try:
        h.start()
        with observer_priority():
            h.wait_up(timeout=60)
            info = h.request("/v1/daemon")
            r["priority"] = info.get("priority")
            time.sleep(a.settle)
            lag = h.request("/v1/daemon/lag?seconds=%d" % a.window, timeout=a.window + 30)["lag"]
            r.update({"lag_p50": lag["p50_ms"], "lag_p99": lag["p99_ms"], "lag_max": lag["max_ms"]})
            c = KeepAliveClient(h.sock)
            rt = []
            for i in range(a.requests):
                t0 = time.perf_counter()
                st, _ = c.get("/v1/services/" + names[i % len(names)])
                rt.append((time.perf_counter() - t0) * 1e3)
                if st != 200:
                    raise BenchError("GET -> %d" % st)
            c.close()
            r.update({"api_p50": q(rt, 0.5), "api_p99": q(rt, 0.99), "api_max": max(rt)})
            rs = []
            for i in range(a.kills):
                nm = names[i % len(names)]
                pid = h.child_pid(nm)
                t0 = time.perf_counter()
                os.kill(pid, 9)
                while True:
                    s = h.request("/v1/services/" + nm)["service"]
                    if s["pid"] not in (None, pid) and s["state"] == "HEALTHY":
                        break
                    if time.perf_counter() - t0 > 10:
                        raise BenchError("%s not restarted within 10 s" % nm)
                    time.sleep(0.0005)
                rs.append((time.perf_counter() - t0) * 1e3)
            r.update({"restart_med": statistics.median(rs), "restart_max": max(rs)})
            ss = []
            for i in range(a.kills):
                nm = names[-1 - (i % len(names))]
                h.request("/v1/services/%s/stop?wait=stopped&timeout=10" % nm, method="POST")
                t0 = time.perf_counter()
                h.request("/v1/services/%s/start?wait=healthy&timeout=10" % nm, method="POST")
                ss.append((time.perf_counter() - t0) * 1e3)
            r.update({"start_med": statistics.median(ss), "start_max": max(ss)})
        r["load"] = loadavg()
        h.stop_all()
        return r
    finally:
        h.cleanup()
        h.remove_dir()


ROWS = [
    ("herd's scheduling (GET /v1/daemon)", "priority", "%s"),
    ("loop lag p50 (ms, herd's 1 ms timer)", "lag_p50", "%.3f"),
    ("loop lag p99 (ms)", "lag_p99", "%.3f"),
    ("loop lag max (ms)", "lag_max", "%.2f"),
    ("API GET /v1/services/NAME p50 (ms)", "api_p50", "%.3f"),
    ("API GET p99 (ms)", "api_p99", "%.3f"),
    ("API GET max (ms)", "api_max", "%.2f"),
    ("restart after kill -9, median (ms)", "restart_med", "%.2f"),
    ("restart after kill -9, max (ms)", "restart_max", "%.2f"),
    ("start of a stopped service, median (ms)", "start_med", "%.2f"),
    ("start of a stopped service, max (ms)", "start_max", "%.2f"),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--herd", required=True)
    p.add_argument("--herd-info", default="")
    p.add_argument("--n", type=int, default=100, help="sleep services")
    p.add_argument("--busy", type=int, default=2 * (os.cpu_count() or 1), help="busy-loop services")
    p.add_argument("--window", type=int, default=10, help="loop lag window (s)")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.window, a.requests, a.kills = 2, 200, 5
    print(host_line())
    print("herd: %s (%s)" % (a.herd, a.herd_info))
    print("load: %d `sleep` services + %d busy-loop services (`sh -c 'while :; do :; done'`) on %d cpus; "
          "the bench observes at SCHED_FIFO 1 when permitted" % (a.n, a.busy, os.cpu_count()))
    res = {}
    for mode in ("realtime", "normal"):
        log("herd --priority %s" % mode)
        try:
            res[mode] = run(mode, a, a.herd)
        except Exception:
            traceback.print_exc()
            res[mode] = {}
    print("%-44s %14s %14s" % ("herd under load", "realtime", "normal"))
    for label, key, fmt in ROWS:
        cells = [(fmt % res[m][key]) if res[m].get(key) is not None else "-" for m in ("realtime", "normal")]
        print("%-44s %14s %14s" % (label, cells[0], cells[1]))
    return 0 if all(res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
