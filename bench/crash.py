#!/usr/bin/env python3
"""kill -9 during a storm: herd is SIGKILLed again and again while clients start, stop and
restart its services, then restarted. Run through `bash bench/run.sh crash` (BENCH_QUICK=1:
20 rounds).

N `sleep` services (each with its own argument, so its processes are found by command
line whatever herd believes), 4 clients sending start/stop/restart over the socket as fast
as they are answered; after a random 20-400 ms, kill -9; restart the daemon; repeat K
times. After every restart, once every service is settled (HEALTHY with a pid, or STOPPED
without one), count:
  unknown:    processes running a service's command that are not its current instance;
  duplicates: services with more than one such process.
At the end, stop everything and shut down: count what is left. Prints one table.
Standard library only."""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procutil import log  # noqa: E402
from systems import UnixHTTPConnection  # noqa: E402


def post(sock, path, timeout=5):
    c = UnixHTTPConnection(sock, timeout=timeout)
    try:
        c.request("POST", path)
        return c.getresponse().status
    finally:
        c.close()


def get(sock, path, timeout=10):
    c = UnixHTTPConnection(sock, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def running(args):
    """{pid: service} of every live `sleep` process with one of the services' arguments."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        cl = cmdline(p)
        if cl and len(cl) >= 2 and cl[0] == b"sleep" and cl[1] in args:
            try:
                with open("/proc/%s/stat" % p) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
            except OSError:
                continue
            out[int(p)] = args[cl[1]]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--herd", required=True)
    ap.add_argument("--herd-info", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    a = ap.parse_args()
    if a.quick:
        a.rounds = min(a.rounds, 20)
    root = tempfile.mkdtemp(prefix="herd-crash-")
    conf, state = os.path.join(root, "conf"), os.path.join(root, "state")
    os.makedirs(conf)
    names = ["c%03d" % i for i in range(a.n)]
    arg = {n: "66%04d" % i for i, n in enumerate(names)}
    by_arg = {v.encode(): n for n, v in arg.items()}
    with open(os.path.join(conf, "services.json"), "w") as f:
        json.dump({"services": [{"name": n, "command": ["sleep", arg[n]], "ready_after": 0,
                                 "backoff": {"initial": 0}} for n in names]}, f)
    sock = os.path.join(state, "herd.sock")
    logf = open(os.path.join(root, "daemon.log"), "ab")
    rng = random.Random(7)
    totals = {"unknown": 0, "duplicates": 0, "calls": 0, "rounds": 0}
    worst = {"unknown": 0, "duplicates": 0}
    proc = None

    def start():
        p = subprocess.Popen([a.herd, "daemon", "--config", conf, "--state-dir", state], stdout=logf,
                             stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if get(sock, "/v1/daemon")[0] == 200:
                    return p
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit("crash.py: the daemon did not answer")

    def settle():
        deadline = time.time() + 60
        while time.time() < deadline:
            st, body = get(sock, "/v1/services")
            svcs = {s["name"]: s for s in body["services"]}
            if all((s["state"] == "HEALTHY" and s["pid"]) or (s["state"] == "STOPPED" and not s["pid"])
                   for s in svcs.values()):
                return svcs
            time.sleep(0.02)
        raise SystemExit("crash.py: services did not settle")

    def count(svcs):
        known = {s["pid"]: n for n, s in svcs.items() if s["pid"]}
        procs = running(by_arg)
        unknown = sum(1 for p, n in procs.items() if known.get(p) != n)
        per = {}
        for n in procs.values():
            per[n] = per.get(n, 0) + 1
        return unknown, sum(1 for v in per.values() if v > 1)

    try:
        for k in range(a.rounds):
            proc = start()
            stop = threading.Event()
            calls = [0]

            def client(seed):
                r = random.Random(seed)
                while not stop.is_set():
                    try:
                        post(sock, "/v1/services/%s/%s" % (r.choice(names), r.choice(["start", "stop", "restart"])))
                        calls[0] += 1
                    except Exception:
                        return

            ts = [threading.Thread(target=client, args=(k * 100 + i,)) for i in range(a.clients)]
            for t in ts:
                t.start()
            time.sleep(rng.uniform(0.02, 0.4))
            proc.kill()
            proc.wait()
            stop.set()
            for t in ts:
                t.join()
            totals["calls"] += calls[0]
            proc = start()
            u, dup = count(settle())
            totals["unknown"] += u
            totals["duplicates"] += dup
            worst["unknown"] = max(worst["unknown"], u)
            worst["duplicates"] = max(worst["duplicates"], dup)
            totals["rounds"] += 1
            proc.kill()  # the next round starts from a daemon that died, as this one did
            proc.wait()
            if (k + 1) % 20 == 0:
                log("round %d: unknown %d, duplicates %d so far" % (k + 1, totals["unknown"], totals["duplicates"]))
        proc = start()
        settle()
        for n in names:
            post(sock, "/v1/services/%s/stop" % n)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.time() + 10
        while time.time() < deadline and running(by_arg):
            time.sleep(0.05)
        left = len(running(by_arg))
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in running(by_arg):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        logf.close()
    print("kill -9 storm (herd: %s)" % a.herd_info)
    print("| services | clients | rounds | API calls | unknown processes (total / worst round) "
          "| duplicated services (total / worst) | left after stop + shutdown |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print("| %d | %d | %d | %d | %d / %d | %d / %d | %d |" % (
        a.n, a.clients, totals["rounds"], totals["calls"], totals["unknown"], worst["unknown"],
        totals["duplicates"], worst["duplicates"], left))
    return 0 if totals["unknown"] == 0 and totals["duplicates"] == 0 and left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
