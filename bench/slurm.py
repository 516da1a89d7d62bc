#!/usr/bin/env python3
"""The Slurm backend at scale: herd watching N batch jobs on a real single-node Slurm 22.05
(tests/e2e/slurm.py: munged, slurmctld, slurmd, slurmrestd with JWT, REST on 127.0.0.1), against
the naive way of tools that poll one `GET job/{id}` per service per tick. Run through
`bash bench/run.sh slurm` (BENCH_QUICK=1 for a smoke run; BENCH_SLURM_N=500 by default).

  start the cluster; start herd with N services `sleep 3600` (restart never, time limit 2 h) on
  one cluster (poll_interval 1 s, steady_interval 10 s, rate_limit 500);
  submit: start -> every service has a job id (polled), and herd's own SUBMITTED events;
  settle: wait until herd's states match the queue (as many HEALTHY as Slurm runs, the rest
  PENDING) and stay put for a few seconds;
  herd window: /v1/clusters counters and herd's CPU (/proc) before and after W seconds in which
  nothing talks to herd; per tick = per completed poll;
  herd delay: K times, cancel a RUNNING job of herd's through REST (not through herd) and read
  herd's event for that service leaving HEALTHY; delay = event time - DELETE reply;
  naive window: a Python poller (http.client, one kept-alive connection, token minted once)
  asks GET job/{id} for all N job ids herd submitted, one round per 1 s tick (the next round
  starts at once when a round overruns its tick), for W seconds; meanwhile a second thread
  cancels RUNNING jobs through REST and the poller notes when it first sees each one no
  longer RUNNING. herd keeps running meanwhile (its one poll per second is counted apart);
  stop: SIGTERM to herd (it cancels its jobs), cancel whatever is left, stop the cluster.
Standard library only."""
import argparse
import datetime
import http.client
import importlib.util
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procutil  # noqa: E402
from procutil import Stop, fmt_value, host_line, loadavg, log, on_signal, tool_version  # noqa: E402,F401
from systems import BenchError, Herd, UnixHTTPConnection  # noqa: E402


def _load_cluster_module():
    """tests/e2e/slurm.py under another module name: this file is slurm.py as well, so a plain
    `import slurm` would find this script again."""
    path = os.path.join(HERE, "..", "tests", "e2e", "slurm.py")
    spec = importlib.util.spec_from_file_location("herd_e2e_slurm", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


slurmtest = _load_cluster_module()
API = slurmtest.API
LIVE = []



def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


# ---- herd ----------------------------------------------------------------------------

class SlurmHerd(Herd):
    """herd with one cluster and N Slurm services (systems.Herd writes services only)."""

    def __init__(self, root, n, binary, cluster, specs):
        super().__init__(root, n, binary, specs=specs)
        with open(os.path.join(self.conf, "services.json"), "w") as f:
            json.dump({"clusters": [cluster], "services": specs}, f)

    def services(self):
        return {s["name"]: s for s in self.request("/v1/services", timeout=60)["services"]}

    def cluster(self):
        return self.request("/v1/clusters")["clusters"][0]

    def events_since(self, since, service=None):
        q = "/v1/events?since=%d&limit=100000" % since + ("&service=" + service if service else "")
        body = self.request(q, raw=True, timeout=60)
        return [json.loads(l) for l in body.decode().splitlines() if l.strip()]

    def last_event_id(self):
        lines = self.request("/v1/events?limit=1", raw=True).decode().splitlines()
        return json.loads(lines[-1])["id"] if lines else 0


def counts(svcs):
    out = {}
    for s in svcs.values():
        out[s["state"]] = out.get(s["state"], 0) + 1
    return out


def fmt_counts(c):
    return ", ".join("%s %d" % (k, v) for k, v in sorted(c.items())) or "none"


def herd_jobs_in_queue(cluster):
    """{job_id: state} of the jobs in squeue that carry herd's tag."""
    return {jid: st for jid, _, st, comment in cluster.squeue() if comment.startswith("herd:")}


def ctl_cpu_ns(cluster):
    """utime+stime (ns) of slurmctld + slurmrestd, by the pids the cluster module recorded."""
    total = 0
    for name in ("slurmctld", "slurmrestd"):
        p = cluster._procs.get(name)
        if p is None or not p.alive():
            return None
        _, ticks = procutil.cpu_ns(p.pid)
        if ticks is None:
            return None
        total += ticks
    return total


def wait_submitted(h, n, timeout):
    """Poll /v1/services until every service has a job id; seconds since herd's start."""
    deadline = h.t0 + timeout
    last = None
    while time.perf_counter() < deadline:
        h.check_alive()
        try:
            svcs = h.services()
            have = sum(1 for s in svcs.values() if (s.get("slurm") or {}).get("job_id"))
            last = (have, counts(svcs))
            if have == n:
                return time.perf_counter() - h.t0
        except (OSError, ValueError, http.client.HTTPException, BenchError):
            pass
        time.sleep(0.05)
    raise BenchError("not every service got a job id within %ss (last: %s)" % (timeout, last))


def wait_settled(h, cluster, n, quiet, timeout):
    """Until herd's states match the queue (HEALTHY = jobs RUNNING, PENDING = jobs PENDING, nothing
    else) and stay the same for `quiet` seconds. Returns (seconds waited, state counts)."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    stable_since, last_key, last = None, None, None
    while time.perf_counter() < deadline:
        h.check_alive()
        svcs = h.services()
        c = counts(svcs)
        q = herd_jobs_in_queue(cluster)
        qrun = sum(1 for st in q.values() if st == "RUNNING")
        qpend = sum(1 for st in q.values() if st == "PENDING")
        ok = c.get("HEALTHY", 0) == qrun and c.get("PENDING", 0) == qpend and qrun + qpend == n \
            and c.get("HEALTHY", 0) + c.get("PENDING", 0) == n
        key = (tuple(sorted(c.items())), qrun, qpend)
        last = "herd: %s; queue: %d RUNNING, %d PENDING, %d herd jobs" % (fmt_counts(c), qrun, qpend, len(q))
        if ok and key == last_key:
            if time.perf_counter() - stable_since >= quiet:
                return time.perf_counter() - t0, c
        else:
            stable_since = time.perf_counter()
        last_key = key if ok else None
        time.sleep(0.5)
    raise BenchError("states did not settle within %ss; last: %s" % (timeout, last))


def herd_window(h, cluster, seconds):
    """Counters and CPU over `seconds` in which nothing talks to herd."""
    c0 = h.cluster()
    cpu0 = procutil.cpu_ns_threads(h.pid)
    ctl0 = ctl_cpu_ns(cluster)
    t0 = time.perf_counter()
    time.sleep(seconds)
    cpu1 = procutil.cpu_ns_threads(h.pid)
    ctl1 = ctl_cpu_ns(cluster)
    wall = time.perf_counter() - t0
    h.check_alive()
    c1 = h.cluster()
    r = {"wall": wall, "c0": c0, "c1": c1}
    ticks = c1["polls"] - c0["polls"]
    r["ticks"] = ticks
    req = {k: c1["requests"][k] - c0["requests"][k] for k in c1["requests"]}
    r["req"] = req
    if ticks > 0:
        r["tick_s"] = wall / ticks
        r["req_per_tick"] = req["total"] / ticks
        r["jobs_per_tick"] = req["jobs"] / ticks
        r["bytes_per_tick"] = (c1["bytes_in"] - c0["bytes_in"]) / ticks
        r["cpu_ms_per_tick"] = (cpu1[0] - cpu0[0]) / 1e6 / ticks
        r["cpu_ms_per_tick_ticks"] = (cpu1[1] - cpu0[1]) / 1e6 / ticks
        r["unchanged"] = c1["polls_unchanged"] - c0["polls_unchanged"]
        r["poll_ms"] = (c1["poll_seconds"] - c0["poll_seconds"]) / ticks * 1e3
        if ctl0 is not None and ctl1 is not None:
            r["ctl_ms_per_tick"] = (ctl1 - ctl0) / 1e6 / ticks
    r["cpu_pct"] = (cpu1[0] - cpu0[0]) / (wall * 1e9) * 100
    r["errors"] = c1["errors"] - c0["errors"]
    return r


class ChangeWatcher(threading.Thread):
    """When did the job's state really change in Slurm? A DELETE's reply comes before the job
    leaves RUNNING (slurmctld cancels it asynchronously: ~130 ms on this cluster). This thread
    asks for the one job every 20 ms; t_change is the moment of the last reply that still said
    RUNNING (the change happened after it), so a delay measured from it is an upper bound."""

    def __init__(self, cluster, jid, t_ret):
        super().__init__(daemon=True)
        self.cluster, self.jid, self.t_last_running, self.t_change = cluster, jid, t_ret, None

    def run(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                rec = self.cluster.job(self.jid)
            except Exception:
                rec = None
            now = time.time()
            if rec is not None and rec.get("job_state") == "RUNNING":
                self.t_last_running = now
            elif rec is not None:
                self.t_change = self.t_last_running
                return
            time.sleep(0.02)


def herd_delays(h, cluster, samples, timeout=30):
    """Cancel RUNNING jobs of herd's through REST, one at a time; herd's event time - t0. The event
    is read from a follow stream opened before the cancel (no polling of herd meanwhile), so the
    /v1/clusters counters and herd's CPU taken just before the DELETE and just after the event
    cover exactly the polls and the work that led to it."""
    out = []
    used = set()
    for i in range(samples):
        h.check_alive()
        deadline = time.perf_counter() + 60
        cand = []
        while time.perf_counter() < deadline:
            svcs = h.services()
            cand = [s for s in svcs.values() if s["state"] == "HEALTHY" and
                    (s.get("slurm") or {}).get("job_state") == "RUNNING" and s["name"] not in used]
            if cand:
                break
            time.sleep(0.2)
        if not cand:
            out.append({"error": "no HEALTHY service with a RUNNING job within 60 s"})
            continue
        s = random.choice(cand)
        name, jid = s["name"], s["slurm"]["job_id"]
        used.add(name)
        since = h.last_event_id()
        stream = UnixHTTPConnection(h.sock, timeout=timeout)
        r = {"service": name, "job": jid}
        try:
            stream.request("GET", "/v1/events?follow=1&since=%d&service=%s" % (since, name))
            resp = stream.getresponse()
            if resp.status != 200:
                raise BenchError("GET /v1/events?follow=1 -> %d" % resp.status)
            time.sleep(random.uniform(0.0, 1.0))  # any phase of herd's tick
            c0 = h.cluster()
            cpu0 = procutil.cpu_ns_threads(h.pid)[0]
            t_send = time.time()
            cluster.cancel(jid)
            t_ret = time.time()
            r["delete_ms"] = (t_ret - t_send) * 1e3
            watch = ChangeWatcher(cluster, jid, t_ret)
            watch.start()
            ev = None
            while ev is None:
                line = resp.readline()
                if not line:
                    raise BenchError("the event stream ended")
                if line.strip():
                    e = json.loads(line)
                    if e.get("from") == "HEALTHY":
                        ev = e
            cpu1 = procutil.cpu_ns_threads(h.pid)[0]
            c1 = h.cluster()
            watch.join(15)
            if watch.t_change is not None:
                r["delay_change_ms"] = (ev["time"] - watch.t_change) * 1e3
                r["change_after_delete_ms"] = (watch.t_change - t_ret) * 1e3
            r.update(delay_ms=(ev["time"] - t_ret) * 1e3, delay_send_ms=(ev["time"] - t_send) * 1e3,
                     to=ev.get("to"), reason=ev.get("reason"), cpu_ms=(cpu1 - cpu0) / 1e6,
                     polls=c1["polls"] - c0["polls"], full=(c1["polls"] - c1["polls_unchanged"]) -
                     (c0["polls"] - c0["polls_unchanged"]), poll_ms=(c1["poll_seconds"] - c0["poll_seconds"]) * 1e3,
                     bytes=c1["bytes_in"] - c0["bytes_in"],
                     other=c1["requests"]["total"] - c0["requests"]["total"] - (c1["polls"] - c0["polls"]))
        except (OSError, ValueError, http.client.HTTPException, BenchError, slurmtest.SlurmError) as e:
            r["error"] = "%s (job %s): %s: %s" % (name, jid, type(e).__name__, e)
        finally:
            stream.close()
        log("herd delay %d/%d: %s job %s -> %s" % (
            i + 1, samples, name, jid, r.get("error") or
            "%s after %.0f ms (%s); %d poll(s) in between, %d full, %.0f ms in GET jobs, herd CPU %.1f ms" % (
                r["to"], r["delay_ms"], r["reason"], r["polls"], r["full"], r["poll_ms"], r["cpu_ms"])))
        out.append(r)
        time.sleep(0.3)
    return out


# ---- the naive way ---------------------------------------------------------------------

class NaivePoller:
    """One GET job/{id} per job per tick over one kept-alive http.client connection."""

    def __init__(self, cluster, job_ids, tick=1.0):
        self.cluster = cluster
        self.ids = list(job_ids)
        self.tick = tick
        self.token = cluster.token("root", lifespan=3600)
        self.headers = {"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": self.token}
        self.conn = None
        self.states = {}          # job id -> last job_state seen
        self.lock = threading.Lock()
        self.watch = {}           # job id -> time.time() it was first seen not RUNNING (None: not yet)
        self.requests = self.bytes = self.errors = self.connects = 0
        self.rounds = []          # seconds per complete round

    def get(self, jid):
        if self.conn is None or self.conn.sock is None:
            if self.conn is not None:
                self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.cluster.rest_port, timeout=30)
            self.conn.connect()
            self.connects += 1
        try:
            self.conn.request("GET", "/slurm/%s/job/%d" % (API, jid), headers=self.headers)
            r = self.conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            self.errors += 1
            return None
        self.requests += 1
        self.bytes += len(body)
        try:
            doc = json.loads(body)
            return doc["jobs"][0]["job_state"] if r.status == 200 and doc.get("jobs") else None
        except (ValueError, KeyError, IndexError, TypeError):
            self.errors += 1
            return None

    def run(self, seconds):
        """Poll rounds for `seconds` (the round under way at the end is finished and counted).
        Returns the poller thread's CPU seconds."""
        cpu0 = time.thread_time()
        start = time.perf_counter()
        nxt = start
        while True:
            rs = time.perf_counter()
            if rs - start >= seconds:
                break
            for jid in self.ids:
                st = self.get(jid)
                now = time.time()
                if st is None:
                    continue
                with self.lock:
                    self.states[jid] = st
                    if jid in self.watch and self.watch[jid] is None and st != "RUNNING":
                        self.watch[jid] = now
            self.rounds.append(time.perf_counter() - rs)
            nxt += self.tick
            left = nxt - time.perf_counter()
            if left > 0:
                time.sleep(left)
            else:
                nxt = time.perf_counter()  # overran the tick: next round at once
        self.wall = time.perf_counter() - start
        cpu = time.thread_time() - cpu0
        if self.conn is not None:
            self.conn.close()
        return cpu


def naive_canceller(poller, samples, seconds, out, stop):
    """Cancel `samples` RUNNING jobs spread over the window (from poller.states)."""
    start = time.perf_counter()
    gap = seconds / (samples + 1)
    used = set()
    for i in range(samples):
        at = start + gap * (i + 0.5) + random.uniform(0, gap * 0.5)
        while time.perf_counter() < at and not stop.is_set():
            time.sleep(0.05)
        if stop.is_set():
            return
        with poller.lock:
            cand = [j for j, st in poller.states.items() if st == "RUNNING" and j not in used]
        if not cand:
            out.append({"error": "no RUNNING job known to the poller at %.1f s" % (time.perf_counter() - start)})
            continue
        jid = random.choice(cand)
        used.add(jid)
        with poller.lock:
            poller.watch[jid] = None
        t_send = time.time()
        try:
            poller.cluster.cancel(jid)
        except Exception as e:
            out.append({"job": jid, "error": "cancel: %s" % e})
            continue
        out.append({"job": jid, "t_send": t_send, "t_ret": time.time()})


def naive_run(h, cluster, seconds, samples):
    svcs = h.services()
    ids = sorted(int(s["slurm"]["job_id"]) for s in svcs.values() if (s.get("slurm") or {}).get("job_id"))
    poller = NaivePoller(cluster, ids)
    # one untimed round first: connection set up, every job's state known to the canceller
    for jid in ids:
        st = poller.get(jid)
        if st is not None:
            poller.states[jid] = st
    poller.requests = poller.bytes = poller.errors = 0
    c0 = h.cluster()
    ctl0 = ctl_cpu_ns(cluster)
    cancels, stop = [], threading.Event()
    th = threading.Thread(target=naive_canceller, args=(poller, samples, seconds, cancels, stop), daemon=True)
    th.start()
    try:
        cpu = poller.run(seconds)
    finally:
        stop.set()
        th.join(timeout=30)
    ctl1 = ctl_cpu_ns(cluster)
    c1 = h.cluster()
    # the last cancels may not have been seen yet: keep polling just those jobs
    end = time.perf_counter() + 10
    while time.perf_counter() < end and any(c.get("t_ret") and poller.watch.get(c["job"]) is None for c in cancels):
        for c in cancels:
            if c.get("t_ret") and poller.watch.get(c["job"]) is None:
                st = poller.get(c["job"])
                if st is not None and st != "RUNNING":
                    poller.watch[c["job"]] = time.time()
        time.sleep(0.05)
    nr = len(poller.rounds)
    r = {"ids": len(ids), "rounds": nr, "wall": poller.wall, "requests": poller.requests, "errors": poller.errors,
         "connects": poller.connects}
    if nr:
        r["tick_s"] = poller.wall / nr
        r["req_per_tick"] = poller.requests / nr
        r["bytes_per_tick"] = poller.bytes / nr
        r["cpu_ms_per_tick"] = cpu * 1e3 / nr
        r["round_ms_med"] = median(poller.rounds) * 1e3
        r["round_ms_max"] = max(poller.rounds) * 1e3
        if ctl0 is not None and ctl1 is not None:
            r["ctl_ms_per_tick"] = (ctl1 - ctl0) / 1e6 / nr
    r["cpu_pct"] = cpu / poller.wall * 100
    r["herd_polls_meanwhile"] = c1["polls"] - c0["polls"]
    r["herd_requests_meanwhile"] = c1["requests"]["total"] - c0["requests"]["total"]
    delays = []
    for c in cancels:
        d = dict(c)
        seen = poller.watch.get(c.get("job"))
        if c.get("t_ret"):
            if seen is None:
                d["error"] = "job %s: the poller never saw it leave RUNNING" % c["job"]
            else:
                d["delay_ms"] = (seen - c["t_ret"]) * 1e3
                d["delay_send_ms"] = (seen - c["t_send"]) * 1e3
                d["delete_ms"] = (c["t_ret"] - c["t_send"]) * 1e3
        delays.append(d)
        log("naive delay: job %s -> %s" % (c.get("job"), d.get("error") or "%.0f ms" % d["delay_ms"]))
    r["delays"] = delays
    return r


# ---- output ------------------------------------------------------------------------------

def f(v, fm="%.2f"):
    if v is None:
        return "-"
    return fm % v


def delay_stats(ds):
    v = [d["delay_ms"] for d in ds if "delay_ms" in d]
    return (median(v), max(v) if v else None, len(v), sum(1 for d in ds if "error" in d),
            median([d["delay_send_ms"] for d in ds if "delay_send_ms" in d]),
            median([d["delete_ms"] for d in ds if "delete_ms" in d]))


def medmax(ds, key):
    v = [d[key] for d in ds if d.get(key) is not None]
    return "%.0f / %.0f" % (median(v), max(v)) if v else "-"


def verdict(v, ok):
    return "-" if v is None else ("PASS" if ok(v) else "MISS")


def table(a, res):
    hw = res.get("herd_win") or {}
    nv = res.get("naive") or {}
    hd = delay_stats(res.get("herd_delays") or [])
    nd = delay_stats(nv.get("delays") or [])
    tick = hw.get("tick_s")
    hds = [d for d in res.get("herd_delays") or [] if "delay_ms" in d]
    hcv = [d["delay_change_ms"] for d in hds if "delay_change_ms" in d]
    hc = (median(hcv), max(hcv) if hcv else None)
    lim_ms = (tick or a.poll_interval) * 1e3 + 50
    rows = [
        # label, herd, naive, target, verdict
        ("REST requests per tick (all kinds) [1]", f(hw.get("req_per_tick"), "%.3f"),
         f(nv.get("req_per_tick"), "%.1f"), "1 per cluster",
         verdict(hw.get("req_per_tick"), lambda v: abs(v - 1.0) < 1e-9)),
        ("  GET jobs per tick / GET job/{id} per tick", f(hw.get("jobs_per_tick"), "%.3f"),
         f(nv.get("req_per_tick"), "%.1f"), "", ""),
        ("ticks in the window", f(hw.get("ticks"), "%d"), f(nv.get("rounds"), "%d"), "", ""),
        ("tick length (s) [2]", f(tick, "%.3f"), f(nv.get("tick_s"), "%.3f"),
         "%g" % a.poll_interval, ""),
        ("daemon CPU per tick (ms) [3]", f(hw.get("cpu_ms_per_tick"), "%.3f"),
         f(nv.get("cpu_ms_per_tick"), "%.1f"), "", ""),
        ("daemon CPU (% of a core)", f(hw.get("cpu_pct"), "%.3f"), f(nv.get("cpu_pct"), "%.1f"), "", ""),
        ("bytes in per tick (KiB) [4]", f(hw.get("bytes_per_tick") and hw["bytes_per_tick"] / 1024, "%.1f"),
         f(nv.get("bytes_per_tick") and nv["bytes_per_tick"] / 1024, "%.1f"), "", ""),
        ("slurmctld+slurmrestd CPU per tick (ms) [5]", f(hw.get("ctl_ms_per_tick"), "%.1f"),
         f(nv.get("ctl_ms_per_tick"), "%.1f"), "", ""),
        ("one tick's requests take (ms) [6]", f(hw.get("poll_ms"), "%.1f"),
         f(nv.get("round_ms_med"), "%.0f"), "", ""),
        ("  worst tick (ms)", "-", f(nv.get("round_ms_max"), "%.0f"), "", ""),
        ("DELETE reply -> state seen, median (ms) [7]", f(hd[0], "%.0f"), f(nd[0], "%.0f"), "", ""),
        ("DELETE reply -> state seen, max (ms) [7]", f(hd[1], "%.0f"), f(nd[1], "%.0f"), "", ""),
        ("Slurm state change -> herd state, median (ms) [9]", f(hc[0], "%.0f"), "-", "", ""),
        ("Slurm state change -> herd state, max (ms) [9]", f(hc[1], "%.0f"), "-",
         "<= 1 tick + 50 = %.0f" % lim_ms, verdict(hc[1], lambda v: v <= lim_ms)),
        ("  the change came after the DELETE reply by (ms)", medmax(hds, "change_after_delete_ms"), "-", "", ""),
        ("  samples (failed)", "%d (%d)" % (hd[2], hd[3]), "%d (%d)" % (nd[2], nd[3]), "", ""),
        ("  GET jobs time in it, median / max (ms) [8]", medmax(hds, "poll_ms"), "-", "", ""),
        ("  herd CPU in it, median / max (ms) [8]", medmax(hds, "cpu_ms"), "-", "", ""),
        ("errors in the window (herd /v1/clusters; naive)", f(hw.get("errors"), "%d"), f(nv.get("errors"), "%d"),
         "0", verdict(hw.get("errors"), lambda v: v == 0)),
    ]
    w = max(len(r[0]) for r in rows)
    hdr = "%-*s %12s %12s   %-26s %s" % (w, "N = %d" % a.n, "herd", "naive", "target", "herd")
    out = [hdr, "-" * len(hdr)]
    for label, hv, nvv, tgt, vd in rows:
        out.append("%-*s %12s %12s   %-26s %s" % (w, label, hv, nvv, tgt, vd))
    sub = res.get("submit") or {}
    out.append("")
    out.append("submit (herd only):")
    out.append("  start -> all %d have a job id, polled (s)          %s" % (a.n, f(sub.get("polled_s"), "%.3f")))
    out.append("  start -> first / last SUBMITTED event (s)         %s / %s" % (
        f(sub.get("first_s"), "%.3f"), f(sub.get("last_s"), "%.3f")))
    out.append("  submit throughput, first -> last event (jobs/s)   %s" % f(sub.get("rate"), "%.0f"))
    out.append("  POST job/submit requests / herd jobs in the queue %s / %s" % (
        f(sub.get("submits"), "%d"), f(sub.get("in_queue"), "%d")))
    out.append("  settled after (s) into                            %s  (%s)" % (
        f(res.get("settle_s"), "%.1f"), fmt_counts(res.get("settled") or {})))
    st = res.get("stop") or {}
    out.append("  SIGTERM -> herd exited (s); herd jobs left queued %s; %s" % (
        f(st.get("stop_s"), "%.3f"), f(st.get("left"), "%d")))
    out.append("")
    out.append("[1] herd: /v1/clusters requests.total (ping+jobs+job+submit+cancel+node+token) over the window / "
               "polls completed in it (a poll = a tick); naive: GET job/{id} requests / rounds.")
    if hw.get("req"):
        out.append("    herd's requests in the window: %s; polls answered 304 (unchanged): %s of %s" % (
            ", ".join("%s %d" % (k, v) for k, v in hw["req"].items() if v and k != "total") or "none",
            f(hw.get("unchanged"), "%d"), f(hw.get("ticks"), "%d")))
    out.append("[2] window / ticks. herd polls every poll_interval while any job is SUBMITTED/PENDING/STARTING "
               "(here: the PENDING ones); the naive poller starts a round every 1 s, or at once when the last "
               "one overran.")
    out.append("[3] herd: utime+stime of all its threads (schedstat, ns; /proc/PID/stat gives %s ms at 10 ms "
               "resolution) / ticks. naive: the Python poller thread's time.thread_time() / rounds -- "
               "Python (http.client + json) costs far more per request than C would, so compare its CPU with "
               "that caveat; the requests, bytes and control-plane load do not depend on the language." %
               f(hw.get("cpu_ms_per_tick_ticks"), "%.3f"))
    out.append("[4] response bodies only (herd's bytes_in; len(body) for the naive poller), headers excluded.")
    out.append("[5] utime+stime of slurmctld and slurmrestd over the window / ticks: the load each way puts on "
               "the control plane (includes slurmctld's own background work; during the naive window herd also "
               "made %s requests in %s polls)." % (f(nv.get("herd_requests_meanwhile"), "%d"),
                                                    f(nv.get("herd_polls_meanwhile"), "%d")))
    out.append("[6] herd: mean duration of one GET jobs (poll_seconds / polls); naive: median duration of a "
               "round of %s GET job/{id} on one kept-alive connection (%s connection(s) opened)." % (
                   f(nv.get("ids"), "%d"), f(nv.get("connects"), "%d")))
    out.append("[7] a RUNNING job cancelled through REST (DELETE job/{id}, not through herd) at a random phase "
               "of the tick; t0 = the DELETE's reply (median DELETE %s ms herd / %s ms naive). herd: its event "
               "time for the service leaving HEALTHY; naive: the reply in which the poller first saw the job "
               "not RUNNING. Measured from the DELETE's send instead: median %s ms herd, %s ms naive." % (
                   f(hd[5], "%.0f"), f(nd[5], "%.0f"), f(hd[4], "%.0f"), f(nd[4], "%.0f")))
    out.append("[8] herd, between the DELETE and its event (counters and /proc read just before the DELETE and "
               "as soon as the event arrives on a GET /v1/events?follow=1 stream): the summed duration of its "
               "GET jobs requests (poll_seconds) and its CPU. The delay is the wait for the next poll (up to "
               "one tick, counted from the previous poll's start) + the "
               "GET jobs that carries the change (a full listing of every job: %s KiB median here, where the "
               "unchanged polls before it were 304s) + herd parsing that listing." % (
                   f(median([d["bytes"] / 1024 for d in hds]), "%.0f")))
    out.append("[9] herd: from the job's real state change in Slurm to herd's event. slurmctld cancels a job "
               "after the DELETE has been answered; a watcher thread asks for that one job every 20 ms, and the "
               "change is dated at the last reply that still said RUNNING (so this is an upper bound). This is "
               "the figure the target speaks of: 'from a job's state change in Slurm'.")
    for d in res.get("herd_delays") or []:
        if "error" in d:
            out.append("herd delay sample: ERROR %s" % d["error"])
    for d in nv.get("delays") or []:
        if "error" in d:
            out.append("naive delay sample: ERROR %s" % d["error"])
    if hds:
        out.append("herd delays (ms): %s" % " ".join("%.0f" % d["delay_ms"] for d in hds))
        out.append("  per sample: polls between DELETE and event (full listings), GET jobs ms, herd CPU ms: %s" % (
            "; ".join("%d (%d), %.0f, %.1f" % (d["polls"], d["full"], d["poll_ms"], d["cpu_ms"]) for d in hds)))
        ends = sorted({"%s: %s" % (d["to"], d["reason"]) for d in hds})
        out.append("herd's events for the cancelled jobs: %s" % "; ".join(ends))
    nds = [d for d in nv.get("delays") or [] if "delay_ms" in d]
    if nds:
        out.append("naive delays (ms): %s" % " ".join("%.0f" % d["delay_ms"] for d in nds))
    return "\n".join(out)


def observations(res):
    """Things that look wrong in herd's behaviour, as found by the bench."""
    out = []
    hw = res.get("herd_win") or {}
    if hw.get("ticks") == 0:
        out.append("herd completed no poll in the %.0f s window" % hw.get("wall", 0))
    for k, v in (hw.get("req") or {}).items():
        if k not in ("jobs", "total") and v:
            out.append("herd sent %d `%s` request(s) in the steady window (only GET jobs expected)" % (v, k))
    if hw.get("errors"):
        out.append("herd counted %d error(s) in the window" % hw["errors"])
    c1 = hw.get("c1") or {}
    if c1 and not c1.get("reachable", True):
        out.append("cluster not reachable at the end of the window: %s" % c1.get("error"))
    sub = res.get("submit") or {}
    if sub.get("submits") is not None and sub["submits"] != res.get("n"):
        out.append("%d POST job/submit requests for %d services" % (sub["submits"], res.get("n")))
    if sub.get("in_queue") is not None and sub["in_queue"] != res.get("n"):
        out.append("%d herd jobs in the queue for %d services" % (sub["in_queue"], res.get("n")))
    for d in res.get("herd_delays") or []:
        if "to" in d and (d["to"] != "FAILED" or "not by herd" not in (d.get("reason") or "")):
            out.append("%s: job cancelled outside herd went %s (%s), expected FAILED '... (not by herd)'" % (
                d["service"], d["to"], d.get("reason")))
    for d in res.get("herd_delays") or []:
        if d.get("other"):
            out.append("%s: %d request(s) other than GET jobs between the DELETE and herd's event" % (
                d["service"], d["other"]))
        if d.get("full", 1) > 1:
            out.append("%s: %d full listings (not 304) between the DELETE and herd's event (a poll in flight "
                       "during the DELETE, or a listing that did not show the change)" % (d["service"], d["full"]))
    for m in res.get("notes") or []:
        out.append(m)
    return out


def header(a, cluster_ver):
    return "\n".join([
        "herd Slurm backend benchmark  %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        host_line(),
        "herd: %s (%s)" % (a.herd, a.herd_info),
        "Slurm: %s, single node (tests/e2e/slurm.py), slurmrestd JWT on 127.0.0.1, API %s" % (cluster_ver, API),
        "N = %d services `sleep 3600` (restart never, time_limit 2h) on one cluster: poll_interval %gs, "
        "steady_interval 10s, rate_limit 500; windows: herd %gs, naive %gs; delay samples %d herd, %d naive%s" % (
            a.n, a.poll_interval, a.window, a.naive_window, a.samples, a.naive_samples,
            "; QUICK smoke run" if a.quick else ""),
        "naive = what Blackfish-style tools do: one GET /slurm/%s/job/{id} per service per 1 s tick, written "
        "here in Python (http.client, one kept-alive connection, one token)" % API,
    ])


def slurm_version():
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "slurmctld"], capture_output=True, text=True,
                           timeout=10)
        return "slurmctld %s" % r.stdout.strip() if r.returncode == 0 else "?"
    except Exception as e:
        return "? (%s)" % e


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--herd", required=True)
    p.add_argument("--herd-info", default="")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, help="services (default: $BENCH_SLURM_N, else 500; quick 50)")
    p.add_argument("--window", type=float, help="herd's steady window in s (default 20; quick 6)")
    p.add_argument("--naive-window", type=float, help="the naive poller's window in s (default 20; quick 6)")
    p.add_argument("--samples", type=int, help="herd delay samples (default 7; quick 3)")
    p.add_argument("--naive-samples", type=int, help="naive delay samples (default 5; quick 2)")
    p.add_argument("--quiet", type=float, help="seconds the states must stay put before the window (default 5)")
    a = p.parse_args()
    a.herd = os.path.abspath(a.herd)
    env_n = os.environ.get("BENCH_SLURM_N")
    a.n = a.n or (int(env_n) if env_n else (50 if a.quick else 500))
    a.window = a.window or (6 if a.quick else 20)
    a.naive_window = a.naive_window or (6 if a.quick else 20)
    a.samples = a.samples or (3 if a.quick else 7)
    a.naive_samples = a.naive_samples or (2 if a.quick else 5)
    a.quiet = a.quiet if a.quiet is not None else (2 if a.quick else 5)
    a.poll_interval = 1.0
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    ok, why = slurmtest.cluster_available()
    if not ok:
        print("slurm bench: cannot run: %s" % why, flush=True)
        return 2
    print(header(a, slurm_version()), flush=True)
    t_start = time.time()
    res = {"n": a.n, "notes": []}
    cluster = h = None
    root = tempfile.mkdtemp(prefix="herd-bench-slurm-")
    rc = 0
    try:
        log("starting the Slurm cluster")
        cluster = slurmtest.SlurmCluster()
        LIVE.append(cluster)
        cluster.start()
        log("cluster up in %.1f s (%s)" % (cluster.timings.get("start", 0), cluster.run))
        cl_cfg = {"name": "b", "url": cluster.url, "user": "root", "auth": {"jwt_key": cluster.jwt_key},
                  "cwd": cluster.jobs_dir, "poll_interval": "%gs" % a.poll_interval, "steady_interval": "10s",
                  "rate_limit": 500}
        names = ["s%04d" % i for i in range(1, a.n + 1)]
        specs = [{"name": nm, "backend": "slurm", "cluster": "b", "command": ["sleep", "3600"],
                  "restart": "never", "time_limit": "2h"} for nm in names]
        h = SlurmHerd(root, a.n, a.herd, cl_cfg, specs)
        LIVE.append(h)
        # ---- submit ----
        log("herd: %d services" % a.n)
        h.start()
        sub = {"polled_s": wait_submitted(h, a.n, 60 + a.n * 0.2)}
        evs = h.events_since(0)
        subt = sorted(e["time"] for e in evs if e.get("to") == "SUBMITTED")
        if subt:
            sub["first_s"] = subt[0] - h.t0_wall
            sub["last_s"] = subt[-1] - h.t0_wall
            if len(subt) > 1 and subt[-1] > subt[0]:
                sub["rate"] = (len(subt) - 1) / (subt[-1] - subt[0])
        if len(subt) != a.n:
            res["notes"].append("%d SUBMITTED events for %d services" % (len(subt), a.n))
        res["submit"] = sub
        log("all %d have a job id after %.3f s" % (a.n, sub["polled_s"]))
        # ---- settle ----
        res["settle_s"], res["settled"] = wait_settled(h, cluster, a.n, a.quiet, 180)
        sub["submits"] = h.cluster()["requests"]["submit"]
        sub["in_queue"] = len(herd_jobs_in_queue(cluster))
        log("settled after %.1f s: %s" % (res["settle_s"], fmt_counts(res["settled"])))
        # ---- herd window ----
        log("herd: steady window %g s" % a.window)
        hw = herd_window(h, cluster, a.window)
        res["herd_win"] = hw
        log("herd: %d ticks, %s requests/tick, %.3f ms CPU/tick" % (
            hw["ticks"], f(hw.get("req_per_tick"), "%.3f"), hw.get("cpu_ms_per_tick") or -1))
        after = counts(h.services())
        if after != res["settled"]:
            res["notes"].append("herd's states moved during the steady window: %s -> %s" % (
                fmt_counts(res["settled"]), fmt_counts(after)))
        # ---- herd delay ----
        log("herd: %d state-change delay samples" % a.samples)
        res["herd_delays"] = herd_delays(h, cluster, a.samples)
        # ---- naive ----
        log("naive: %g s window, %d delay samples" % (a.naive_window, a.naive_samples))
        time.sleep(2)
        res["naive"] = naive_run(h, cluster, a.naive_window, a.naive_samples)
        nv = res["naive"]
        log("naive: %d rounds, %s requests/tick, median round %s ms" % (
            nv["rounds"], f(nv.get("req_per_tick"), "%.1f"), f(nv.get("round_ms_med"), "%.0f")))
        c = h.cluster()
        res["cluster_end"] = c
        if not c.get("reachable", True):
            res["notes"].append("cluster unreachable at the end: %s" % c.get("error"))
        # ---- stop ----
        log("herd: SIGTERM")
        h.check_alive()
        st = h.stop_all(timeout=120)
        st["left"] = len(herd_jobs_in_queue(cluster))
        res["stop"] = st
        if st.get("stop_rc") not in (0, None):
            res["notes"].append("herd exited with %s after SIGTERM" % st["stop_rc"])
        if st.get("stop_s") is None:
            res["notes"].append("herd did not exit within 120 s of SIGTERM")
    except Stop as e:
        log("interrupted (%s); cleaning up" % e)
        rc = 130
    except Exception as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
        log("ERROR: %s\n%s" % (e, traceback.format_exc()))
        if h is not None and h.proc is not None:
            log("herd log tail (%s):\n%s" % (h.log_path, h.log_tail()))
        rc = 1
    finally:
        if h is not None:
            if h.proc is not None and h.proc.poll() is None:
                try:
                    os.kill(h.pid, signal.SIGTERM)
                    h.proc.wait(timeout=60)
                except Exception as e:
                    log("stopping herd: %s" % e)
            h.cleanup()
        if cluster is not None:
            try:
                cluster.cancel_all(timeout=60)
            except Exception as e:
                log("cancel_all: %s" % e)
            try:
                cluster.stop()
            except Exception as e:
                log("cluster stop: %s" % e)
        shutil.rmtree(root, ignore_errors=True)
    if rc == 130:
        return rc
    print("\n" + table(a, res), flush=True)
    c = res.get("cluster_end")
    if c:
        print("\nherd's /v1/clusters at the end: polls %d (unchanged %d), requests %s, bytes_in %d, errors %d, "
              "poll_seconds %.3f, reachable %s%s" % (
                  c["polls"], c["polls_unchanged"], json.dumps(c["requests"], separators=(",", ":")), c["bytes_in"],
                  c["errors"], c["poll_seconds"], c.get("reachable"),
                  (", error %r" % c["error"]) if c.get("error") else ""), flush=True)
    obs = observations(res)
    if res.get("error"):
        obs.insert(0, "ERROR: %s" % res["error"])
    print("\nobservations: %s" % ("none" if not obs else ""), flush=True)
    for o in obs:
        print("  - " + o, flush=True)
    print("\ntotal bench time %.0f s" % (time.time() - t_start), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
