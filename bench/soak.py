#!/usr/bin/env python3
"""Soak: 100,000 restarts and 100,000 API requests against one daemon, and what it holds
meanwhile. Run through `bash bench/run.sh soak` (BENCH_QUICK=1: 5,000 of each), or directly:
`python3 bench/soak.py --herd build/herd [--restarts N] [--requests N] [--every N]`.

One fresh daemon (tests/e2e/harness.py, --log-level error) runs S services that each exit
after 1.1 s and are restarted at once by policy (`restart: always`, backoff 0; up longer than
`reset_after`, so each exit is a first failure and no crash-loop delay applies): about S
restarts a second, each a real exit, reap, store commit and spawn. Meanwhile C client
threads send API requests as fast as they are answered, each on a connection of its own
(accept, parse, route, reply, close): GET /v1/services?view=summary, GET /v1/services/NAME,
GET /v1/daemon, GET /v1/health, GET /v1/events?limit=10, POST /v1/services/NAME/restart, in
turn. Every `every` restarts and every `every` requests the daemon's descriptors
(/proc/PID/fd), resident memory (VmRSS) and loop handles (GET /v1/daemon: all and active)
are sampled; the two curves are printed as tables, with the growth from the first sample to
the last. At the end the daemon gets SIGTERM: it must exit 0 with its loop closed clean
(no "loop closed with open handles" in its log). Standard library only."""
import argparse
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procutil  # noqa: E402


class Conn(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("herd", timeout=timeout)
        self.path_ = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path_)
        self.sock = s


def call(sock, method, path):
    c = Conn(sock)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--herd", default=os.environ.get("HERD_BIN") or os.path.join(HERE, "..", "build", "herd"))
    ap.add_argument("--herd-info", default="")
    ap.add_argument("--quick", action="store_true", help="5,000 restarts and requests, a sample every 1,000")
    ap.add_argument("--restarts", type=int, default=100000)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--every", type=int, default=10000, help="sample every N restarts / requests")
    ap.add_argument("--services", type=int, default=200, help="services restarting (~1 restart/s each)")
    ap.add_argument("--clients", type=int, default=2, help="API client threads")
    ap.add_argument("--timeout", type=float, default=3000, help="give up after this many seconds")
    a = ap.parse_args()
    if a.quick:
        a.restarts, a.requests, a.every = min(a.restarts, 5000), min(a.requests, 5000), min(a.every, 1000)
    os.environ["HERD_BIN"] = os.path.abspath(a.herd)
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
    import harness  # noqa: E402 (reads HERD_BIN when imported)

    d = harness.Daemon(args=["--log-level", "error"])
    names = ["soak%03d" % i for i in range(a.services)]
    d.write_config([{"name": n, "command": ["sleep", "1.1"], "restart": "always", "ready_after": 0,
                     "backoff": {"initial": 0, "reset_after": "1s", "jitter": 0}, "stop": {"grace": "2s"},
                     "log": {"max_size": "64K", "keep": 1}} for n in names])
    ok = False
    try:
        d.start()
        pid = d.proc.pid
        sock = d.sock

        def sample():
            st, body = call(sock, "GET", "/v1/daemon")
            h = json.loads(body)["handles"] if st == 200 else {"all": -1, "active": -1}
            return {"fds": procutil.nfds(pid), "rss_kib": procutil.rss_kib(pid), "handles": h["all"],
                    "active": h["active"], "t": time.monotonic()}

        lock = threading.Lock()
        state = {"requests": 0, "errors": 0, "restarts": 0, "stop": False, "status": {}}
        req_curve, rst_curve = [], []
        t0 = time.monotonic()
        req_curve.append(dict(sample(), n=0))
        rst_curve.append(dict(req_curve[0]))
        routes = [("GET", "/v1/services?view=summary"), ("GET", "/v1/services/%s"), ("GET", "/v1/daemon"),
                  ("GET", "/v1/health"), ("GET", "/v1/events?limit=10"), ("POST", "/v1/services/%s/restart")]

        def client(k):
            i = k
            while True:
                with lock:
                    if state["stop"] or state["requests"] >= a.requests:
                        return
                m, p = routes[i % len(routes)]
                if "%s" in p:
                    p = p % names[(i // len(routes)) % len(names)]
                i += 1
                try:
                    st, _ = call(sock, m, p)
                except OSError:
                    st = None
                with lock:
                    state["requests"] += 1
                    n = state["requests"]
                    state["status"][st] = state["status"].get(st, 0) + 1
                    if st not in (200, 202):
                        state["errors"] += 1
                if n % a.every == 0:
                    s = sample()
                    with lock:
                        req_curve.append(dict(s, n=n))
                    procutil.log("requests %d (%.0f s)" % (n, s["t"] - t0))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in threads:
            t.start()
        # The restarts, as the daemon counts them, sampled as they pass each milestone.
        next_mark = a.every
        deadline = t0 + a.timeout
        while True:
            st, body = call(sock, "GET", "/v1/services?view=summary")
            total = sum(s["restarts"] for s in json.loads(body)["services"]) if st == 200 else 0
            with lock:
                state["restarts"] = total
                reqs = state["requests"]
            while total >= next_mark and next_mark <= a.restarts:
                s = sample()
                rst_curve.append(dict(s, n=total))
                procutil.log("restarts %d (%.0f s)" % (total, s["t"] - t0))
                next_mark += a.every
            if total >= a.restarts and reqs >= a.requests:
                break
            if time.monotonic() > deadline:
                procutil.log("timed out: %d restarts, %d requests" % (total, reqs))
                break
            time.sleep(0.5)
        with lock:
            state["stop"] = True
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        # The end: SIGTERM, every service stopped, exit 0, the loop closed clean.
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(120)
        log = d.log()
        clean = rc == 0 and "open handles" not in log
        ok = clean and state["errors"] == 0 and state["restarts"] >= a.restarts and state["requests"] >= a.requests

        def table(title, curve, unit):
            print("\n%s" % title)
            print("| %s | descriptors | RSS (KiB) | loop handles (active) | elapsed (s) |" % unit)
            print("|---:|---:|---:|---:|---:|")
            for s in curve:
                print("| {:,} | {} | {:,} | {} ({}) | {:.0f} |".format(s["n"], s["fds"], s["rss_kib"], s["handles"],
                                                                        s["active"], s["t"] - t0))
            if len(curve) > 2:
                f, l = curve[1], curve[-1]  # from the first milestone: start-up allocations excluded
                print("growth from {:,} to {:,}: descriptors {:+d}, RSS {:+,} KiB, handles {:+d}".format(
                    f["n"], l["n"], l["fds"] - f["fds"], l["rss_kib"] - f["rss_kib"], l["handles"] - f["handles"]))

        print("# herd soak: %d services restarting, %d API clients (%s)" % (a.services, a.clients, a.herd_info))
        print(procutil.host_line())
        table("Per %s restarts" % format(a.every, ","), rst_curve, "restarts")
        table("Per %s API requests" % format(a.every, ","), req_curve, "requests")
        print("\nrestarts %s, requests %s in %.0f s (%.0f restarts/s, %.0f requests/s); answers %s; errors %d" % (
            format(state["restarts"], ","), format(state["requests"], ","), elapsed, state["restarts"] / elapsed,
            state["requests"] / elapsed, dict(sorted(state["status"].items(), key=str)), state["errors"]))
        print("exit: SIGTERM -> exit code %s, loop closed %s" % (rc, "clean" if clean else "NOT clean"))
        if not clean:
            print(log[-3000:])
    finally:
        d.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
