#!/usr/bin/env python3
"""Jobs: N short jobs at concurrency C, herd vs `xargs -P` and GNU `parallel` on the same
commands. Run through `bash bench/run.sh jobs` (BENCH_QUICK=1: N=1,000), or directly:
`python3 bench/jobs.py --herd build/herd [--n 10000] [--conc 2,8] [--cmds true,sleep]`.

herd: a fresh daemon (tests/e2e/harness.py) with a queue of max_running C; N jobs are
submitted one after the other over one kept-alive connection (POST /v1/jobs, each committed
before its answer), then GET /v1/jobs/wait streams until all are finished. The time is from
the first submission to the wait's end: every attempt of every job recorded in the store
(instance rows, events). Daemon CPU per job from /proc/PID/stat (utime+stime) over the same
span. xargs: `seq N | xargs -P C -I{} CMD`; parallel: `seq N | parallel -j C -N0 CMD`.
Commands: `true`, and `sleep 0.01`. Prints one table; then the work queue: W workers (1
and 8), each on its own connection, deposit, withdraw and report items for 10 s: items/s
and the daemon's CPU per item. Standard library only."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CMDS = {"true": ["true"], "sleep": ["sleep", "0.01"]}


def run_herd(harness, n, conc, cmd):
    d = harness.Daemon(args=["--log-level", "warn"])
    try:
        d.write_config(json.dumps({"queues": [{"name": "bench", "max_running": conc}]}), "queues.json")
        d.start()
        pid = d.proc.pid
        c = harness.UnixHTTPConnection(d.sock, timeout=60)
        body0 = {"queue": "bench", "command": cmd}
        cpu0, t0 = harness.cpu_seconds(pid), time.monotonic()
        for i in range(n):
            body0["name"] = "b-%06d" % i
            c.request("POST", "/v1/jobs", body=json.dumps(body0), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 201:
                raise AssertionError("POST /v1/jobs: %d" % r.status)
        t_sub = time.monotonic() - t0
        c.request("GET", "/v1/jobs/wait?match=b-*")
        r = c.getresponse()
        last = None
        for line in r.read().decode().splitlines():
            if line.strip():
                last = json.loads(line)
        elapsed = time.monotonic() - t0
        cpu = harness.cpu_seconds(pid) - cpu0
        c.close()
        if not last or not last.get("finished") or last["done"] != n:
            raise AssertionError("not all done: %s" % last)
        return {"s": elapsed, "submit_s": t_sub, "cpu_per_job_ms": cpu / n * 1000}
    finally:
        d.cleanup()


def run_work(harness, workers, seconds):
    """Work items through the work queue API: each worker, on its own kept-alive connection,
    deposits one item, withdraws one (with its lease) and reports it done, for `seconds`;
    every step committed to the store before its answer. Items completed per second."""
    import threading
    d = harness.Daemon(args=["--log-level", "warn"])
    try:
        d.write_config([])
        d.start()
        pid = d.proc.pid
        done = [0] * workers
        errors = []
        stop = time.monotonic() + seconds

        def call(c, method, path, body):
            c.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            if r.status >= 300:
                raise AssertionError("%s %s: %d %s" % (method, path, r.status, data[:200]))
            return json.loads(data)

        def worker(k):
            c = harness.UnixHTTPConnection(d.sock, timeout=60)
            try:
                while time.monotonic() < stop:
                    call(c, "POST", "/v1/queues/bench/work", {"payload": {"w": k}})
                    w = call(c, "POST", "/v1/queues/bench/withdraw", {})["work"]
                    if w is None:
                        continue
                    call(c, "POST", "/v1/work/%d/done" % w["id"], {"lease": w["lease"], "status": "success"})
                    done[k] += 1
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
            finally:
                c.close()
        cpu0, t0 = harness.cpu_seconds(pid), time.monotonic()
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.monotonic() - t0
        cpu = harness.cpu_seconds(pid) - cpu0
        if errors:
            raise errors[0]
        st, b = d.request("GET", "/v1/queues/bench/work?limit=1")
        n = sum(done)
        if b["counts"].get("success", 0) != n:
            raise AssertionError("the store says %s, the workers %d" % (b["counts"], n))
        return {"items_s": n / elapsed, "n": n, "cpu_per_item_ms": cpu / max(n, 1) * 1000}
    finally:
        d.cleanup()


def run_tool(tool, n, conc, cmd):
    if tool == "xargs":
        argv = ["xargs", "-P", str(conc), "-I{}"] + cmd
    else:
        argv = ["parallel", "--will-cite", "-j", str(conc), "-N0"] + cmd
    seq = "".join("%d\n" % i for i in range(n)).encode()
    t0 = time.monotonic()
    subprocess.run(argv, input=seq, stdout=subprocess.DEVNULL, check=True)
    return {"s": time.monotonic() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--herd", default=os.environ.get("HERD_BIN") or os.path.join(HERE, "..", "build", "herd"))
    ap.add_argument("--herd-info", default="")
    ap.add_argument("--quick", action="store_true", help="1,000 jobs")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--conc", default="2,8")
    ap.add_argument("--cmds", default="true,sleep")
    ap.add_argument("--tools", default="xargs,parallel", help="the other systems (parallel is slow: ~30 jobs/s)")
    ap.add_argument("--work-seconds", type=float, default=10, help="the work queue part (0: skip it)")
    ap.add_argument("--workers", default="1,8")
    a = ap.parse_args()
    if a.quick:
        a.n = min(a.n, 1000)
    os.environ["HERD_BIN"] = os.path.abspath(a.herd)
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
    import harness  # noqa: E402 (reads HERD_BIN when imported)

    tools = [t for t in a.tools.split(",") if t == "xargs" or (t == "parallel" and shutil.which("parallel"))]
    if "xargs" not in tools:
        tools.insert(0, "xargs")  # (the base of the last column)
    print("# jobs: %d jobs per run; herd %s; %s" % (a.n, a.herd_info or a.herd, os.uname().release))
    print("%-10s %4s  %-8s %9s %9s %13s %12s" % ("cmd", "C", "system", "seconds", "jobs/s", "daemon ms/job",
                                               "vs xargs"))
    for cname in a.cmds.split(","):
        cmd = CMDS[cname]
        for conc in [int(x) for x in a.conc.split(",")]:
            res = {}
            for tool in tools:
                res[tool] = run_tool(tool, a.n, conc, cmd)
            res["herd"] = run_herd(harness, a.n, conc, cmd)
            base = a.n / res["xargs"]["s"]
            for name in tools + ["herd"]:
                r = res[name]
                rate = a.n / r["s"]
                cpu = "%.3f" % r["cpu_per_job_ms"] if "cpu_per_job_ms" in r else "-"
                print("%-10s %4d  %-8s %9.2f %9.0f %13s %11.0f%%" % (" ".join(cmd), conc, name, r["s"], rate, cpu,
                                                                    100 * rate / base))
            sys.stdout.flush()
    if a.work_seconds > 0:
        print()
        print("# work queue: deposit + withdraw + done per item, each committed before its answer, %.0f s" %
              a.work_seconds)
        print("%8s %10s %10s %15s" % ("workers", "items", "items/s", "daemon ms/item"))
        for workers in [int(x) for x in a.workers.split(",")]:
            r = run_work(harness, workers, a.work_seconds)
            print("%8d %10d %10.0f %15.3f" % (workers, r["n"], r["items_s"], r["cpu_per_item_ms"]))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
