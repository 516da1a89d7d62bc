#!/usr/bin/env python3
"""Slurm over ssh at scale ("api": "ssh"): herd driving N batch jobs through one libssh2
session to a login node (a private OpenSSH sshd on loopback whose sessions see the real
single-node Slurm 22.05 of tests/e2e/slurm.py), side by side with Blackfish's way: one
`ssh login <command>` process per job submitted and per service per tick.
Run through `bash bench/run.sh slurm-ssh` (BENCH_QUICK=1: N=50).

  submit N: herd with N services `sleep 3600` starts; time until every one has a job id
            (sbatch over the session, at most 8 channels at once) -> jobs/s;
            then the same N sbatch as one `ssh login sbatch` process each, 8 at once -> jobs/s;
  steady:   W seconds in which nothing talks to herd: commands per tick (squeue + others) / polls,
            bytes received per tick, herd's CPU per tick (/proc), ticks;
  delay:    K times, `scancel` a RUNNING job of herd's (here, not through herd) and time herd's
            event for that service leaving HEALTHY;
  naive:    (on --naive-n of the jobs, scaled to N) one round of Blackfish's per-service refresh: `ssh login squeue -h -j ID -o %T` for
            each of the N jobs (sacct, Blackfish's command, needs accounting, which the test
            cluster has not), 8 processes at once: the round's wall time (a 1 s tick cannot hold
            it when it is longer) and the CPU those ssh processes used.
Standard library only."""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(HERE, "..", "tests", "e2e")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--herd", default=os.path.join(HERE, "..", "build", "herd"))
    ap.add_argument("--herd-info", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--window", type=float, default=20)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--naive-n", type=int, default=100,
                    help="jobs for the one-ssh-per-command side (its rate is per command: it does not need all N)")
    a = ap.parse_args()
    n = a.n or (50 if a.quick else 500)
    os.environ["HERD_BIN"] = os.path.abspath(a.herd)
    sys.path.insert(0, E2E)
    import harness
    import slurm
    import sshd

    cluster = slurm.SlurmCluster()
    sh = None
    d = None
    res = {}
    try:
        cluster.start()
        sh = sshd.PrivateSshd(extra=["SetEnv SLURM_CONF=%s" % cluster.conf, "MaxSessions 64"])
        sh.start()
        host = {"name": "login", "destination": "root@127.0.0.1", "port": sh.port, "identity_file": sh.client_key,
                "known_hosts": sh.known_hosts}
        cl = {"name": "hpc", "api": "ssh", "ssh": "login", "cwd": cluster.jobs_dir, "poll_interval": "1s",
              "steady_interval": "10s", "rate_limit": 1000}
        svcs = [{"name": "s%04d" % i, "backend": "slurm", "cluster": "hpc", "restart": "never",
                 "command": ["sleep", "3600"], "time_limit": "2h", "output": "/dev/null"} for i in range(n)]
        d = harness.Daemon()
        d.write_config(json.dumps({"hosts": [host], "clusters": [cl], "services": svcs}))

        def services():
            return d.request("GET", "/v1/services")[1]["services"]

        def clusterj():
            return d.request("GET", "/v1/clusters")[1]["clusters"][0]

        # ---- submit N through herd ----
        t0 = time.monotonic()
        d.start()
        wait_until(lambda: all((s.get("slurm") or {}).get("job_id") for s in services()), 600,
                   "every service has a job id")
        res["herd_submit_s"] = time.monotonic() - t0
        res["herd_submit_rate"] = n / res["herd_submit_s"]

        # ---- steady window ----
        wait_until(lambda: sum(1 for s in services() if s["state"] in ("HEALTHY", "PENDING")) == n, 120,
                   "settled (HEALTHY or PENDING)")
        time.sleep(2)
        c0, cpu0, t0 = clusterj(), cpu_s(d.proc.pid), time.monotonic()
        time.sleep(a.window)
        c1, cpu1, t1 = clusterj(), cpu_s(d.proc.pid), time.monotonic()
        ticks = c1["polls"] - c0["polls"]
        res["ticks"] = ticks
        res["window_s"] = t1 - t0
        res["cmds_per_tick"] = (c1["requests"]["total"] - c0["requests"]["total"]) / max(ticks, 1)
        res["bytes_per_tick"] = (c1["bytes_in"] - c0["bytes_in"]) / max(ticks, 1)
        res["cpu_ms_per_tick"] = (cpu1 - cpu0) * 1000 / max(ticks, 1)
        res["cpu_pct"] = (cpu1 - cpu0) / (t1 - t0) * 100

        # ---- delay: a job cancelled behind herd's back ----
        delays = []
        for _ in range(a.samples):
            running = [s for s in services() if s["state"] == "HEALTHY" and (s.get("slurm") or {}).get("job_id")]
            if not running:
                break
            s = running[0]
            evs = d.events(service=s["name"])
            since = evs[-1]["id"] if evs else 0
            subprocess.run(["scancel", str(s["slurm"]["job_id"])], env=cluster.env, check=True)
            t_ret = time.time()
            wait_until(lambda: any(e["from"] == "HEALTHY" for e in d.events(since=since, service=s["name"])), 60,
                       "herd's event")
            e = [e for e in d.events(since=since, service=s["name"]) if e["from"] == "HEALTHY"][0]
            delays.append(e["time"] - t_ret)
            # the next job gets the freed CPU
            wait_until(lambda: sum(1 for x in services() if x["state"] == "HEALTHY") >= 1, 60, "another running")
        res["delays"] = delays
        d.stop(timeout=300)
        d.cleanup()
        d = None
        cluster.cancel_all(timeout=120)

        # ---- Blackfish's way: one ssh process per sbatch ----
        base = ["ssh", "-p", str(sh.port), "-i", sh.client_key, "-o", "UserKnownHostsFile=" + sh.known_hosts,
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "root@127.0.0.1"]
        script = "#!/bin/sh\nsleep 3600\n"
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)

        def submit(i):
            r = subprocess.run(base + ["sbatch --parsable --job-name=naive%d --time=120 --output=/dev/null "
                                       "--chdir=%s" % (i, cluster.jobs_dir)],
                               input=script, capture_output=True, text=True)
            return int(r.stdout.strip().split(";")[0]) if r.returncode == 0 else None

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as ex:
            ids = list(ex.map(submit, range(min(n, a.naive_n))))
        res["naive_submit_s"] = time.monotonic() - t0
        res["naive_submit_rate"] = sum(1 for x in ids if x) / res["naive_submit_s"]
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res["naive_submit_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)

        # ---- Blackfish's refresh: one ssh process per service per tick ----
        def state(jid):
            r = subprocess.run(base + ["squeue -h -j %d -o %%T" % jid], capture_output=True, text=True)
            return r.stdout.strip()

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as ex:
            states = list(ex.map(state, [x for x in ids if x]))
        res["naive_round_s"] = time.monotonic() - t0
        ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res["naive_round_cpu_s"] = (ru2.ru_utime + ru2.ru_stime) - (ru1.ru_utime + ru1.ru_stime)
        res["naive_round_cmds"] = len(states)
        # one round for all N services, at the rate measured on naive_n of them
        res["naive_round_s"] *= n / max(len(states), 1)
        res["naive_round_cpu_s"] *= n / max(len(states), 1)
    finally:
        if d:
            try:
                d.stop(timeout=120)
            finally:
                d.cleanup()
        if sh:
            sh.stop()
        cluster.stop()

    def med(v):
        v = sorted(v)
        return v[len(v) // 2] if v else float("nan")

    print()
    print("Slurm over ssh: %d services, one libssh2 session vs one ssh process per command (%s)" % (n, a.herd_info))
    print("%-44s %14s %14s" % ("", "herd (session)", "ssh per cmd"))
    print("%-44s %14.1f %14.1f" % ("submit %d: jobs/s" % n, res["herd_submit_rate"], res["naive_submit_rate"]))
    print("%-44s %14.1f %14.1f" % ("submit %d: wall s (ssh per cmd: from %d)" % (n, min(n, a.naive_n)),
                                   res["herd_submit_s"], res["naive_submit_s"] * n / min(n, a.naive_n)))
    print("%-44s %14.2f %14d" % ("commands per tick (all %d services)" % n, res["cmds_per_tick"], n))
    print("%-44s %14.2f %14.1f" % ("one tick's refresh: wall s", res["window_s"] / max(res["ticks"], 1),
                                   res["naive_round_s"]))
    print("%-44s %14.2f %14.1f" % ("CPU per tick: ms (herd / the ssh processes)", res["cpu_ms_per_tick"],
                                   res["naive_round_cpu_s"] * 1000))
    print("%-44s %14.0f %14s" % ("bytes received per tick", res["bytes_per_tick"], "-"))
    print("%-44s %14.2f %14s" % ("herd CPU %% over the %.0f s window" % res["window_s"], res["cpu_pct"], "-"))
    ds = res["delays"]
    print("%-44s %14s %14s" % ("scancel -> herd's event: median / max s (%d)" % len(ds),
                               "%.2f / %.2f" % (med(ds), max(ds)) if ds else "-", "(a round)"))
    print("bench: slurm-ssh n=%d ok" % n)


if __name__ == "__main__":
    main()
