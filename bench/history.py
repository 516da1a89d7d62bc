#!/usr/bin/env python3
"""History at scale: a daemon whose store holds N finished jobs (the job history) and N
finished work items, against the same daemon with none. Run through
`bash bench/run.sh history` (BENCH_QUICK=1: N=100,000), or directly:
`python3 bench/history.py --herd build/herd [--n 1000000]`.

First a fresh daemon runs 20 real jobs and 20 real work items (so the tables are the
daemon's own, and a few real rows are there), then stops. The N rows are then written
straight into the stopped daemon's store (job_history and work, one transaction: the
shape the daemon writes, names `hist-NNNNNNN`, 10 % FAILED), and the daemon starts again
on it. Measured, each the median of 7 (the baseline: the same store before the N rows):
daemon start until the socket answers; RSS; `herd jobs --limit 20` (the first page) through
the CLI; the last page (`GET /v1/jobs?limit=20&offset=N`); a pattern over the history
(`herd jobs 'hist-00012*'`); a history job's own view (GET /v1/services/NAME); `herd wait`
on a pattern; a new job from POST to COMPLETED; a work item deposited, withdrawn and
reported; the work listing's first page with its counts; a metrics scrape. Standard library only."""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed(fn, k=7):
    v = []
    for _ in range(k):
        t0 = time.monotonic()
        fn()
        v.append(time.monotonic() - t0)
    return statistics.median(v) * 1000


def fill(db_path, n):
    """N history rows and N finished work items, as the daemon writes them."""
    db = sqlite3.connect(db_path)
    now = time.time()
    spec = json.dumps({"command": ["true"], "job": {}, "name": "x"}, sort_keys=True, separators=(",", ":"))
    with db:
        db.executemany(
            "INSERT INTO job_history(name,queue,priority,retries,state,attempt,exit_code,signal,reason,ended_at,tags,"
            "spec) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (("hist-%07d" % i, "bulk", 3, 0, "FAILED" if i % 10 == 9 else "COMPLETED", 1, 1 if i % 10 == 9 else 0,
              None, "exited with code %d" % (1 if i % 10 == 9 else 0), now - n + i, "[]", spec) for i in range(n)))
        db.executemany(
            "INSERT INTO work(queue,payload,priority,retries,timeout,tags,state,attempt,created_at,started_at,"
            "ended_at,result) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (("bulk", '{"n":%d}' % i, 3, 2, 3600.0, "[]", "failure" if i % 10 == 9 else "success", 1, now - n + i,
              now - n + i, now - n + i, None) for i in range(n)))
    db.close()


def measure(harness, d, n):
    t0 = time.monotonic()
    d.start()
    start_ms = (time.monotonic() - t0) * 1000
    pid = d.proc.pid
    m = {"start until the socket answers": start_ms}

    def ok(st, what):
        if st >= 300:
            raise AssertionError("%s: %s" % (what, st))

    m["herd jobs --limit 20 (the first page), CLI"] = timed(lambda: d.cli("jobs", "--limit", "20", check=True))
    last = max(0, n)
    m["GET /v1/jobs?limit=20&offset=N (the last page)"] = timed(
        lambda: ok(d.request("GET", "/v1/jobs?limit=20&offset=%d" % last)[0], "last page"))
    near_end = "hist-%07d" % (n - 30) if n else "real-0"
    m["GET /v1/jobs?limit=20&after=NAME (near the end)"] = timed(
        lambda: ok(d.request("GET", "/v1/jobs?limit=20&after=" + near_end)[0], "after"))
    m["herd jobs 'hist-00012*' (a pattern), CLI"] = timed(lambda: d.cli("jobs", "hist-00012*", check=True))
    name = "hist-%07d" % (n // 2) if n else "real-5"
    m["GET /v1/services/NAME (a history job)"] = timed(lambda: ok(d.request("GET", "/v1/services/" + name)[0], "get"))
    m["herd wait 'real-*' (finished), CLI"] = timed(lambda: d.cli("wait", "real-*", check=True))
    k = [0]

    def one_job():
        k[0] += 1
        nm = "new-%d-%d" % (n, k[0])
        st, b = d.request("POST", "/v1/jobs", {"name": nm, "command": ["true"]})
        ok(st, "POST /v1/jobs")
        harness.wait_until(lambda: d.request("GET", "/v1/services/" + nm)[1]["service"]["state"] == "COMPLETED", 30,
                           what="the new job COMPLETED")
    m["a new job: POST to COMPLETED"] = timed(one_job)

    def one_item():
        st, b = d.request("POST", "/v1/queues/bulk/work", {"payload": 1})
        ok(st, "deposit")
        st, b = d.request("POST", "/v1/queues/bulk/withdraw")
        ok(st, "withdraw")
        w = b["work"]
        st, b = d.request("POST", "/v1/work/%d/done" % w["id"], {"lease": w["lease"], "status": "success"})
        ok(st, "done")
    m["a work item: deposit, withdraw, done"] = timed(one_item)
    m["GET /v1/queues/bulk/work?limit=20 (with counts)"] = timed(
        lambda: ok(d.request("GET", "/v1/queues/bulk/work?limit=20")[0], "work list"))
    m["GET /metrics"] = timed(lambda: ok(d.request("GET", "/metrics", raw=True)[0], "metrics"))
    st, b = d.request("GET", "/v1/jobs?limit=1")
    m["rss_kib"] = rss_kib(pid)
    m["matched"] = b["matched"]
    d.stop()
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--herd", default=os.environ.get("HERD_BIN") or os.path.join(HERE, "..", "build", "herd"))
    ap.add_argument("--herd-info", default="")
    ap.add_argument("--quick", action="store_true", help="100,000 rows")
    ap.add_argument("--n", type=int, default=1000000)
    a = ap.parse_args()
    if a.quick:
        a.n = min(a.n, 100000)
    os.environ["HERD_BIN"] = os.path.abspath(a.herd)
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
    import harness  # noqa: E402 (reads HERD_BIN when imported)

    d = harness.Daemon(args=["--log-level", "warn", "--finished-jobs", "10"])
    try:
        d.write_config([])
        d.start()
        for i in range(20):
            st, b = d.request("POST", "/v1/jobs", {"name": "real-%d" % i, "command": ["true"]})
            assert st == 201, b
        harness.wait_until(lambda: d.request("GET", "/v1/jobs?limit=1")[1]["counts"].get("COMPLETED") == 20, 60,
                           what="20 real jobs")
        for i in range(20):
            d.request("POST", "/v1/queues/bulk/work", {"payload": i})
            w = d.request("POST", "/v1/queues/bulk/withdraw")[1]["work"]
            d.request("POST", "/v1/work/%d/done" % w["id"], {"lease": w["lease"], "status": "success"})
        d.stop()
        base = measure(harness, d, 0)
        t0 = time.monotonic()
        fill(os.path.join(d.state, "herd.db"), a.n)
        fill_s = time.monotonic() - t0
        big = measure(harness, d, a.n)
        db_mb = sum(os.path.getsize(os.path.join(d.state, f)) for f in os.listdir(d.state)
                    if f.startswith("herd.db")) / 1e6
    finally:
        d.cleanup()
    print("# history: %d finished jobs and %d finished work items in the store (written in %.0f s, store %.0f MB); "
          "herd %s; %s" % (a.n, a.n, fill_s, db_mb, a.herd_info or a.herd, os.uname().release))
    print("%-44s %12s %12s %8s" % ("what (median of 7)", "empty ms", "N rows ms", "ratio"))
    for k, v in base.items():
        if k in ("rss_kib", "matched"):
            continue
        print("%-44s %12.1f %12.1f %7.1fx" % (k, v, big[k], big[k] / v if v else 0))
    print("%-44s %12d %12d" % ("jobs listed (matched)", base["matched"], big["matched"]))
    print("%-44s %12.1f %12.1f" % ("daemon RSS MiB", base["rss_kib"] / 1024, big["rss_kib"] / 1024))


if __name__ == "__main__":
    main()
