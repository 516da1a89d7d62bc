#!/usr/bin/env python3
"""Re-adoption: N running services survive the daemon's exit, and the next daemon on the same
state dir takes them over without restarting any. Run through `bash bench/run.sh adopt`
(BENCH_QUICK=1 for a smoke run).

For each variant (services without checks, `ready_after: 0`; services with an HTTP check
every 1 s against local servers) and each way the first daemon goes (`POST
/v1/shutdown?leave_running=1`, and `kill -9`), in a fresh state dir:
  start daemon 1, wait until all N are HEALTHY (and, with checks, each has passed one);
  record every service's pid (with its start time from /proc), instance and `restarts`;
  end daemon 1 and check that every service process is still alive;
  start daemon 2 on the same state dir and poll (`GET /v1/daemon` every 2 ms, then
  `GET /v1/services`) until all N are HEALTHY with the same pid, instance and restarts as
  before; with checks, until every service's check.runs > 0 (daemon 2 counts from 0);
  count restarts: pids changed, the `restarts` field's increase, STARTING events after
  the last event of daemon 1, `sleep` processes spawned by daemon 2;
  stop daemon 2 (SIGTERM) and time until every service process is gone.
Standard library only."""
import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procutil  # noqa: E402
from procutil import Stop, fmt_value, host_line, loadavg, log, on_signal, tool_version  # noqa: E402,F401
from checks import Servers, check_specs  # noqa: E402
from systems import SLEEP_ARG, BenchError, Herd, KeepAliveClient, svc_name  # noqa: E402

LIVE = []



def specs_for(variant, names, servers):
    if variant == "plain":
        return [{"name": nm, "command": ["sleep", SLEEP_ARG], "ready_after": 0, "backoff": {"initial": 0}}
                for nm in names]
    if variant == "http":
        return check_specs(names, servers.ports, 1000)
    if variant == "exec":
        return [{"name": nm, "command": ["sleep", SLEEP_ARG],
                 "check": {"type": "exec", "command": ["true"], "interval": "5s", "timeout": "2s"}}
                for nm in names]
    raise ValueError(variant)


def snapshot(h):
    """{name: dict(pid, state, restarts, instance, attempt, runs)} from one GET /v1/services."""
    out = {}
    for s in h.request("/v1/services?view=full", timeout=60)["services"]:
        c = s.get("check") or {}
        out[s["name"]] = {"pid": s.get("pid"), "state": s.get("state"), "restarts": s.get("restarts"),
                          "instance": s.get("instance"), "attempt": s.get("attempt"), "runs": c.get("runs"),
                          "last": c.get("last")}
    return out


def wait_all_checked(h, n, timeout):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        snap = snapshot(h)
        if sum(1 for v in snap.values() if (v["runs"] or 0) > 0) == n:
            return
        time.sleep(0.05)
    raise BenchError("not every service ran a check within %ss" % timeout)


def last_event_id(h):
    ev = h.request("/v1/events?limit=1", raw=True).decode().splitlines()
    return json.loads(ev[-1])["id"] if ev else 0


def run_one(a, variant, how, servers):
    n = a.n
    names = [svc_name(i) for i in range(1, n + 1)]
    root = tempfile.mkdtemp(prefix="herd-bench-adopt-%s-%s-" % (variant, how))
    h = Herd(root, n, a.herd, specs=specs_for(variant, names, servers))
    LIVE.append(h)
    r = {"variant": variant, "how": how}
    svc_pids = []  # (pid, starttime) of every service process of daemon 1
    try:
        # ---- daemon 1 ----
        h.start()
        r["up1_s"] = h.wait_up(timeout=60 + n * 0.05)
        if variant != "plain":
            wait_all_checked(h, n, 30)
        time.sleep(a.settle)
        before = snapshot(h)
        h.remember_tree()
        for nm in names:
            pid = before[nm]["pid"]
            st = procutil.stat(pid) if pid else None
            if not st or st["comm"] != "sleep" or before[nm]["state"] != "HEALTHY":
                raise BenchError("%s before: pid %s state %s (%s)" % (nm, pid, before[nm]["state"], st))
            svc_pids.append((pid, st["starttime"]))
        ev_before = last_event_id(h)
        pid1 = h.pid
        # ---- end daemon 1 ----
        t = time.perf_counter()
        if how == "leave":
            h.request("/v1/shutdown?leave_running=1", method="POST", ok=(200, 202))
        else:
            os.kill(pid1, signal.SIGKILL)
        try:
            rc = h.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise BenchError("daemon 1 did not exit within 30 s after %s" % how)
        r["exit1_s"] = time.perf_counter() - t
        r["exit1_rc"] = rc
        gone = [p for p, st in svc_pids if not (procutil.stat(p) and procutil.stat(p)["starttime"] == st and
                                                 procutil.alive(p))]
        r["died_with_daemon"] = len(gone)
        time.sleep(a.gap)
        # ---- daemon 2 ----
        h.logf.close()
        log_offset = os.path.getsize(h.log_path)
        h.start()
        t0, t0_wall = h.t0, h.t0_wall
        cl = KeepAliveClient(h.sock, timeout=30)
        t_sock = t_healthy = t_same = t_checks = None
        last = None
        deadline = t0 + a.timeout
        while time.perf_counter() < deadline:
            h.check_alive()
            try:
                if t_sock is None or t_healthy is None:
                    st, body = cl.get("/v1/daemon")
                    if st != 200:
                        raise BenchError("GET /v1/daemon -> %d" % st)
                    if t_sock is None:
                        t_sock = time.perf_counter() - t0
                    last = json.loads(body).get("states")
                    if (last or {}).get("HEALTHY", 0) == n:
                        t_healthy = time.perf_counter() - t0
                    else:
                        time.sleep(0.002)
                    continue
                st, body = cl.get("/v1/services?view=full")
                now = time.perf_counter() - t0
                snap = {s["name"]: s for s in json.loads(body)["services"]}
                same = all(snap[nm]["pid"] == before[nm]["pid"] and snap[nm]["state"] == "HEALTHY" and
                           snap[nm]["instance"] == before[nm]["instance"] for nm in names)
                if same and t_same is None:
                    t_same = now
                if variant != "plain" and t_checks is None and \
                        all(((snap[nm].get("check") or {}).get("runs") or 0) > 0 for nm in names):
                    t_checks = now
                if t_same is not None and (variant == "plain" or t_checks is not None):
                    break
                time.sleep(0.005)
            except (OSError, EOFError, ValueError):
                cl.close()
                time.sleep(0.001)
        cl.close()
        r.update(sock_s=t_sock, healthy_s=t_healthy, same_s=t_same, checks_s=t_checks)
        if t_same is None:
            raise BenchError("not all %d re-adopted within %ss (last states %s)" % (n, a.timeout, last))
        # ---- verify: zero restarts ----
        after = snapshot(h)
        r["pid_changed"] = sum(1 for nm in names if after[nm]["pid"] != before[nm]["pid"])
        r["restarts_delta"] = sum((after[nm]["restarts"] or 0) - (before[nm]["restarts"] or 0) for nm in names)
        r["instance_changed"] = sum(1 for nm in names if after[nm]["instance"] != before[nm]["instance"])
        evs = [json.loads(l) for l in h.request("/v1/events?since=%d&limit=100000" % ev_before, raw=True)
               .decode().splitlines() if l.strip()]
        r["events_after"] = len(evs)
        r["starting_events"] = sum(1 for e in evs if e.get("to") == "STARTING")
        r["event_kinds"] = sorted({"%s->%s" % (e.get("from"), e.get("to")) for e in evs})
        kids = [p for p, _ in procutil.descendants(h.pid) if (procutil.stat(p) or {}).get("comm") == "sleep"]
        r["new_children"] = len(kids)
        with open(h.log_path, "rb") as fh:
            fh.seek(log_offset)
            text = fh.read().decode(errors="replace")
        adopted = re.findall(r"^(\S+) info\s+(\S+) .*re-adopted pid (\d+)", text, re.M)
        r["adopted_lines"] = len(adopted)
        r["adopted_pids_ok"] = sum(1 for ts, nm, pid in adopted if nm in before and int(pid) == before[nm]["pid"])
        if adopted:
            ts = adopted[-1][0]
            try:
                tw = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                r["own_last_adopt_s"] = tw - t0_wall
            except ValueError:
                pass
        if variant != "plain":
            r["runs_min"] = min((after[nm]["runs"] or 0) for nm in names)
            # the first check of each service after re-adoption (all resume at once)
            first = sorted(after[nm]["last"]["duration"] * 1e3 for nm in names
                           if after[nm]["runs"] == 1 and after[nm]["last"])
            fails = sum(1 for nm in names if after[nm]["last"] and not after[nm]["last"]["ok"])
            if first:
                r["first_p50"] = first[len(first) // 2]
                r["first_p99"] = first[min(len(first) - 1, int(len(first) * 0.99))]
                r["first_max"] = first[-1]
            r["first_failed"] = fails
        r["zero_restarts"] = (r["pid_changed"] == 0 and r["restarts_delta"] == 0 and r["instance_changed"] == 0 and
                              r["starting_events"] == 0 and r["new_children"] == 0 and r["died_with_daemon"] == 0)
        # ---- stop daemon 2: it must stop the adopted services too ----
        watch = procutil.ExitWatch([(h.pid, procutil.stat(h.pid)["starttime"])] + svc_pids)
        t = time.perf_counter()
        os.kill(h.pid, signal.SIGTERM)
        left = watch.wait(t, 60)
        r["stop_s"] = None if left else time.perf_counter() - t
        r["stop_left"] = len(left)
        watch.close()
        try:
            r["stop_rc"] = h.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            r["stop_rc"] = None
        log("%s/%s: socket %.3fs, all HEALTHY %.3fs, same pids %.3fs%s; restarts: %s" % (
            variant, how, t_sock or -1, t_healthy or -1, t_same,
            ", checks resumed %.3fs" % t_checks if t_checks else "", "none" if r["zero_restarts"] else "SOME"))
    except Stop:
        raise
    except Exception as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
        log("ERROR %s/%s: %s\n%s" % (variant, how, e, traceback.format_exc()))
        log("daemon log tail:\n%s" % h.log_tail())
    finally:
        h.known.update(svc_pids)
        h.cleanup()
        LIVE.remove(h)
        h.remove_dir()
    return r


f = fmt_value


ROWS = [
    ("up1_s", "daemon 1: start -> all HEALTHY (s)", "%.3f"),
    ("exit1_s", "daemon 1: shutdown/kill -> process exited (s)", "%.3f"),
    ("died_with_daemon", "service processes that died with daemon 1", "%d"),
    ("sock_s", "daemon 2: start -> first API answer (s)", "%.3f"),
    ("healthy_s", "daemon 2: start -> all HEALTHY, GET /v1/daemon (s)", "%.3f"),
    ("same_s", "daemon 2: start -> all HEALTHY with the same pids (s) [1]", "%.3f"),
    ("own_last_adopt_s", "daemon 2: start -> last 're-adopted' log line (s) [2]", "%.3f"),
    ("checks_s", "daemon 2: start -> every service's check.runs > 0 (s)", "%.3f"),
    ("adopted_lines", "'re-adopted pid N' log lines", "%d"),
    ("adopted_pids_ok", "  of which name the service's old pid", "%d"),
    ("pid_changed", "services with a different pid", "%d"),
    ("instance_changed", "services with a different instance", "%d"),
    ("restarts_delta", "increase of the `restarts` fields, summed", "%d"),
    ("starting_events", "STARTING events after daemon 1's last event", "%d"),
    ("events_after", "  all events after daemon 1's last event", "%d"),
    ("new_children", "sleep processes spawned by daemon 2", "%d"),
    ("runs_min", "fewest check.runs of a service at the end", "%d"),
    ("first_p50", "first check after re-adoption: duration p50 (ms) [3]", "%.2f"),
    ("first_p99", "first check after re-adoption: duration p99 (ms) [3]", "%.2f"),
    ("first_max", "first check after re-adoption: duration max (ms) [3]", "%.2f"),
    ("first_failed", "services whose latest check failed", "%d"),
    ("zero_restarts", "zero restarts", "%s"),
    ("stop_s", "daemon 2 SIGTERM -> every adopted service gone (s)", "%.3f"),
]


def table(res, n):
    w = max(len(r[1]) for r in ROWS)
    cols = ["%s/%s" % (r["variant"], r["how"]) for r in res]
    cw = max(14, max(len(c) for c in cols) + 2)
    hdr = "%-*s" % (w, "N = %d" % n) + "".join("%*s" % (cw, c) for c in cols)
    out = [hdr, "-" * len(hdr)]
    for key, label, fmt in ROWS:
        out.append("%-*s" % (w, label) + "".join("%*s" % (cw, f(r.get(key), fmt)) for r in res))
    out.append("[1] polled: GET /v1/daemon every 2 ms until HEALTHY == N, then GET /v1/services every 5 ms until "
               "every service is HEALTHY with its old pid and instance.")
    out.append("[2] the daemon's own log timestamp (1 ms resolution) minus the wall time at spawn.")
    out.append("[3] check.last.duration of the services whose check.runs is 1 when all have resumed.")
    for r in res:
        tag = "%s/%s" % (r["variant"], r["how"])
        if "error" in r:
            out.append("ERROR %s: %s" % (tag, r["error"]))
        if r.get("event_kinds"):
            out.append("%s: events after daemon 1: %s" % (tag, ", ".join(r["event_kinds"])))
        if r.get("stop_left"):
            out.append("%s: %d processes still alive 60 s after SIGTERM to daemon 2 (killed)" % (tag, r["stop_left"]))
        if r.get("exit1_rc") not in (None, 0) and r["how"] == "leave":
            out.append("%s: daemon 1 exited with %s after POST /v1/shutdown?leave_running=1" % (tag, r["exit1_rc"]))
    return "\n".join(out)


def targets(res, n):
    out = ["Targets from the issue (N=%d): re-adoption under 1 s, zero restarts" % n]
    for r in res:
        tag = "%s/%s" % (r["variant"], r["how"])
        if "error" in r:
            out.append("  %-14s ERROR" % tag)
            continue
        t = r["same_s"] if r["variant"] == "plain" else max(r["same_s"], r["checks_s"] or 1e9)
        what = "all re-adopted" + ("" if r["variant"] == "plain" else " and checks resumed")
        out.append("  %-14s %-40s %8.3f s  %s    zero restarts: %s" % (
            tag, what, t, "PASS" if t < 1 else "MISS", "PASS" if r["zero_restarts"] else "MISS"))
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--herd", required=True)
    p.add_argument("--herd-info", default="")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int)
    p.add_argument("--variants", default="plain,http", help="plain,http,exec")
    p.add_argument("--how", default="leave,kill9")
    p.add_argument("--servers", type=int)
    p.add_argument("--settle", type=float)
    p.add_argument("--gap", type=float, default=0.5, help="seconds between daemon 1's exit and daemon 2's start")
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()
    a.herd = os.path.abspath(a.herd)
    a.n = a.n or (50 if a.quick else 1000)
    a.servers = a.servers or (2 if a.quick else 4)
    a.settle = a.settle if a.settle is not None else (0.5 if a.quick else 2.0)
    variants = a.variants.split(",")
    hows = a.how.split(",")
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    print("\n".join([
        "herd re-adoption benchmark  %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        host_line(),
        "herd: %s (%s)" % (a.herd, a.herd_info),
        "N = %d `sleep` services; variants: plain = ready_after 0, no check; http = an HTTP check every 1 s "
        "(timeout 1 s) on %d local servers; exec = `true` every 5 s. Daemon 1 ends by leave = POST "
        "/v1/shutdown?leave_running=1, kill9 = SIGKILL; daemon 2 starts %.1f s after daemon 1 exited%s" % (
            a.n, a.servers, a.gap, "; QUICK smoke run" if a.quick else ""),
    ]), flush=True)
    t_start = time.time()
    servers = None
    res = []
    try:
        if any(v != "plain" for v in variants):
            servers = Servers(a.servers)
            LIVE.append(servers)
        for v in variants:
            for how in hows:
                log("%s/%s: N=%d" % (v, how, a.n))
                res.append(run_one(a, v, how, servers))
        print("\n" + table(res, a.n), flush=True)
        print("\n" + targets(res, a.n), flush=True)
        print("\ntotal bench time %.0f s" % (time.time() - t_start), flush=True)
        return 1 if any("error" in r for r in res) else 0
    except Stop as e:
        log("interrupted (%s); cleaning up" % e)
        return 130
    finally:
        for o in reversed(list(LIVE)):
            try:
                (o.cleanup if hasattr(o, "cleanup") else o.close)()
            except Exception as e:
                log("cleanup: %s" % e)


if __name__ == "__main__":
    sys.exit(main())
