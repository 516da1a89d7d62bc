#!/usr/bin/env python3
"""herd vs supervisord vs runit on N `sleep` services. Run through bench/run.sh.

For each N and each system, in its own temp dir and one system at a time:
  start -> all up (polled, and by the daemon's own timestamps), RSS/anon/fds after start,
  idle CPU over a window, restart latency after kill -9 (20 kills), status wall time,
  stop-all time. Plus one run with 0 services per system as the baseline for the
  per-service numbers. Prints one table per N, the issue's targets and the reference
  numbers. Standard library only."""
import argparse
import datetime
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procutil  # noqa: E402
from procutil import Stop, fmt_value, host_line, loadavg, log, on_signal, tool_version  # noqa: E402,F401
from systems import SLEEP_ARG, BenchError, Herd, Runit, Supervisord  # noqa: E402

SYSTEMS = ("herd", "supervisord", "runit")
LIVE = set()  # systems with processes that may still be running
TO_REMOVE = []  # temp dirs, removed at the very end: deleting thousands of files between runs
# makes ext4 skip the just-freed inodes (recently_deleted) in the next run's file creation,
# which slowed every spawn of the following system by ~1 ms on this machine.



def make(name, root, n, a):
    if name == "herd":
        return Herd(root, n, a.herd)
    if name == "supervisord":
        return Supervisord(root, n, a.minfds)
    return Runit(root, n)


def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def memory(sys_):
    pids = sys_.sup_pids()
    main = sys_.pid
    rss = {p: procutil.rss_kib(p) for p in pids}
    anon = {p: procutil.anon_kib(p) for p in pids}
    fds = {p: procutil.nfds(p) for p in pids}
    return {"rss_main": rss[main], "rss_total": sum(v for v in rss.values() if v),
            "anon_total": sum(v for v in anon.values() if v), "fds_main": fds[main],
            "fds_total": sum(v for v in fds.values() if v), "nsup": len(pids),
            "hwm_main": (procutil.status_fields(main) or {}).get("VmHWM")}


def idle_cpu(sys_, seconds):
    pids = sys_.sup_pids()
    c0 = {p: procutil.cpu_ns(p) for p in pids}
    x0 = {p: procutil.status_fields(p) for p in pids}
    m0 = procutil.cpu_busy()
    t0 = time.perf_counter()
    time.sleep(seconds)
    c1 = {p: procutil.cpu_ns(p) for p in pids}
    x1 = {p: procutil.status_fields(p) for p in pids}
    m1 = procutil.cpu_busy()
    wall = time.perf_counter() - t0
    sys_.check_alive()
    sched = ticks = ctx = 0
    have_sched = True
    for p in pids:
        if c0[p][0] is None or c1[p][0] is None:
            if c1[p][1] is None:
                raise BenchError("%s: process %d vanished during the idle window" % (sys_.name, p))
            have_sched = False
        else:
            sched += c1[p][0] - c0[p][0]
        ticks += c1[p][1] - c0[p][1]
        ctx += sum(x1[p][k] - x0[p][k] for k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
    return {"idle_cpu": sched / (wall * 1e9) * 100 if have_sched else None,
            "idle_cpu_ticks": ticks / (wall * 1e9) * 100, "idle_ctx": ctx / wall, "idle_wall": wall,
            "machine_busy": (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100}


def restarts(sys_, kills):
    n = sys_.n
    picks = [sys_.names[(i * n) // kills] if n >= kills else sys_.names[i % n] for i in range(kills)]
    fork, exe, own, errors = [], [], [], []
    for name in picks:
        sys_.check_alive()
        victim = sys_.child_pid(name)
        st = procutil.stat(victim) if victim else None
        if not st or st["comm"] != "sleep":
            errors.append("%s: child pid %s is not a live sleep (%s)" % (name, victim, st))
            continue
        r = procutil.kill_and_find_new_child(victim, st["ppid"])
        if "error" in r:
            errors.append("%s: %s" % (name, r["error"]))
            time.sleep(0.5)
            continue
        sys_.wait_service_up(name, r["pid"])
        fork.append(r["fork_ms"])
        exe.append(r["exec_ms"])
        own.append((name, r["wall"]))
        time.sleep(0.05)
    sys_.remember_tree()
    own_ms = [sys_.own_restart_ms(nm, w) for nm, w in own]
    return {"restart_med": median(fork), "restart_max": max(fork) if fork else None,
            "restart_exec_med": median(exe), "restart_own_med": median(own_ms),
            "restart_n": len(fork), "restart_errors": errors, "restart_all": fork}


def status_times(sys_, runs):
    out = {}
    for label, argv, min_lines, env in sys_.status_cmds():
        times = []
        for i in range(runs + 1):  # the first run warms caches and is not counted
            t0 = time.perf_counter()
            r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
            dt = time.perf_counter() - t0
            lines = len(r.stdout.splitlines())
            if lines < min_lines:
                raise BenchError("%s status %s: %d lines (want >= %d), rc %d: %s" % (
                    sys_.name, label, lines, min_lines, r.returncode, (r.stdout + r.stderr)[-500:]))
            if i:
                times.append(dt * 1e3)
        out["status_" + label] = median(times)
        out["status_%s_min" % label] = min(times)
    return out


class observer_priority:
    """While polling for 'all up', the bench (the observer) runs SCHED_FIFO 1 when it may (root),
    so that what it measures is the supervisor, not how long the observer itself waited for a CPU
    behind N services' start-up (each service is a session, an autogroup, of its own). It sleeps
    between polls; tools it runs (`sv status`) inherit the priority. Same for every system."""

    def __enter__(self):
        self.on = False
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            self.on = True
        except (OSError, AttributeError):
            pass
        return self

    def __exit__(self, *exc):
        if self.on:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def run_one(name, n, a, baseline=False):
    root = tempfile.mkdtemp(prefix="herd-bench-%s-%d-" % (name, n))
    s = make(name, root, n, a)
    LIVE.add(s)
    r = {}
    ok = False
    try:
        s.start()
        with observer_priority():
            r["start_polled"] = s.wait_up(timeout=30 + n * 0.06)
        r["start_own"] = s.own_up_time()
        time.sleep(a.settle)
        s.check_alive()
        r.update(memory(s))
        if not baseline:
            log("%s N=%d: up in %.3fs; idle window %ss" % (name, n, r["start_polled"], a.idle))
            r.update(idle_cpu(s, a.idle))
            log("%s N=%d: %d kill -9 restarts" % (name, n, a.kills))
            r.update(restarts(s, a.kills))
            log("%s N=%d: status timings" % (name, n))
            r.update(status_times(s, a.status_runs))
            s.check_alive()
            m2 = memory(s)
            r["rss_after"] = m2["rss_main"]
            r["fds_after"] = m2["fds_main"]
            # runsv sleeps 1 s before acting on a child that ran < 1 s (its restart guard),
            # which would add 1 s to runit's stop-all right after the kill test: let it pass.
            time.sleep(2.0)
        log("%s N=%d: stop-all" % (name, n))
        r.update(s.stop_all())
        ok = True
    except Stop:
        raise
    except Exception as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
        log("ERROR %s N=%d: %s\n%s" % (name, n, e, traceback.format_exc()))
        if s.proc is not None:
            log("daemon log tail (%s):\n%s" % (s.log_path, s.log_tail()))
    finally:
        s.cleanup()
        LIVE.discard(s)
        if ok or not a.keep_failed:
            TO_REMOVE.append(s)
        else:
            r["kept_dir"] = root
    return r


# ---- output ------------------------------------------------------------------------
MIB = 1024.0

ROWS = [
    # key, label, scale, format
    ("start_polled", "start -> all up, polled (s)", 1, "%.3f"),
    ("start_own", "start -> all up, daemon's own timestamps (s)", 1, "%.3f"),
    ("rss_main", "RSS of the daemon process after start (MiB) [1]", 1 / MIB, "%.2f"),
    ("rss_growth", "RSS growth per service vs 0 services (KiB) [1]", 1, "%.2f"),
    ("rss_total", "RSS incl. runsv processes (MiB) [2]", 1 / MIB, "%.2f"),
    ("anon_total", "anon memory incl. runsv (MiB) [2]", 1 / MIB, "%.2f"),
    ("anon_growth", "anon memory growth per service incl. runsv (KiB) [2]", 1, "%.2f"),
    ("rss_after", "RSS of the daemon after kills+status (MiB) [1]", 1 / MIB, "%.2f"),
    ("hwm_main", "peak RSS (VmHWM) of the daemon at start (MiB) [1]", 1 / MIB, "%.2f"),
    ("idle_cpu", "idle CPU, % of one core (schedstat ns) [2]", 1, "%.4f"),
    ("idle_cpu_ticks", "idle CPU, % of one core (utime+stime ticks) [2]", 1, "%.4f"),
    ("idle_ctx", "idle context switches per second [2]", 1, "%.2f"),
    ("machine_busy", "  (whole machine busy meanwhile, % of all cpus) [3]", 1, "%.1f"),
    ("restart_med", "restart after kill -9: new pid, median (ms)", 1, "%.2f"),
    ("restart_max", "restart after kill -9: new pid, max (ms)", 1, "%.2f"),
    ("restart_exec_med", "restart: new child exec'd sleep, median (ms)", 1, "%.2f"),
    ("restart_own_med", "restart: supervisor's own timestamp, median (ms)", 1, "%.2f"),
    ("status_all", "status, all services, median (ms)", 1, "%.1f"),
    ("status_one", "status, one service, median (ms)", 1, "%.1f"),
    ("status_floor", "  CLI start floor, no daemon contact, median (ms) [4]", 1, "%.1f"),
    ("stop_s", "stop-all: signal -> every process gone (s)", 1, "%.3f"),
    ("stop_daemon_s", "stop-all: signal -> daemon process exited (s)", 1, "%.3f"),
    ("fds_main", "fds held by the daemon process [1]", 1, "%d"),
    ("fds_per", "fds per service, daemon process [1]", 1, "%.2f"),
    ("fds_total", "fds incl. runsv processes [2]", 1, "%d"),
    ("fds_per_total", "fds per service incl. runsv [2]", 1, "%.2f"),
]


NO_RATIO = {"machine_busy"}


def derive(r, base, n):
    if "error" in r or not n:
        return
    for key, bkey, out in (("rss_main", "rss_main", "rss_growth"), ("anon_total", "anon_total", "anon_growth"),
                           ("fds_main", "fds_main", "fds_per"), ("fds_total", "fds_total", "fds_per_total")):
        if r.get(key) is not None and base and base.get(bkey) is not None:
            r[out] = (r[key] - base[bkey]) / n


def fmt(v, scale, f):
    if v is None:
        return "-"
    v = v * scale
    return f % v if "%d" not in f else "%d" % round(v)


def ratio(c, h):
    if c is None or h is None:
        return "-"
    if h == 0:
        return "n/a (herd 0)" if c else "1.0x"
    return "%.1fx" % (c / h)


def table(n, res, base):
    w = max(len(r[1]) for r in ROWS)
    hdr = "%-*s %12s %12s %12s %10s %10s" % (w, "N = %d" % n, "herd", "supervisord", "runit", "sup/herd",
                                             "runit/herd")
    lines = [hdr, "-" * len(hdr)]
    for key, label, scale, f in ROWS:
        v = [res[s].get(key) for s in SYSTEMS]
        if all(x is None for x in v):
            continue
        r1, r2 = (ratio(v[1], v[0]), ratio(v[2], v[0])) if key not in NO_RATIO else ("", "")
        lines.append("%-*s %12s %12s %12s %10s %10s" % (w, label, fmt(v[0], scale, f), fmt(v[1], scale, f),
                                                        fmt(v[2], scale, f), r1, r2))
    lines.append("[1] runit: runsvdir alone.  [2] runit: runsvdir plus all %d runsv processes (herd and "
                 "supervisord: the one daemon process)." % n)
    lines.append("[3] other work on the machine (e.g. concurrent test runs) during that system's idle window: "
                 "noise for every timing row.")
    lines.append("[4] `herd --version`, `supervisorctl -h`, `sv` (usage): the CLI's fixed start-up cost.")
    for s in SYSTEMS:
        r = res[s]
        if r.get("error") == "skipped":
            lines.append("%s: not run (--systems)" % s)
        elif "error" in r:
            lines.append("ERROR %s: %s%s" % (s, r["error"], (" (dir kept: %s)" % r["kept_dir"]) if
                                                      r.get("kept_dir") else ""))
        for e in r.get("restart_errors", []):
            lines.append("restart problem %s: %s" % (s, e))
        if r.get("stop_left"):
            lines.append("%s: %d of %d processes still alive 60 s after the stop signal (killed)" % (
                s, r["stop_left"], r["stop_nproc"]))
        if "restart_n" in r and r["restart_n"]:
            lines.append("%s restarts (ms, kill -> new pid): %s" % (
                s, " ".join("%.2f" % x for x in r["restart_all"])))
        if r.get("stop_rc") not in (None, 0) and s != "runit":
            lines.append("%s exited with status %s after the stop signal" % (s, r["stop_rc"]))
    return "\n".join(lines)


TARGETS = [
    # label, key, scale, limit, unit
    ("all HEALTHY within 0.5 s (polled)", "start_polled", 1, 0.5, "s"),
    ("RSS growth under 8 KiB per service", "rss_growth", 1, 8, "KiB"),
    ("idle CPU under 0.02 % of a core", "idle_cpu", 1, 0.02, "%"),
    ("restart median under 3 ms", "restart_med", 1, 3, "ms"),
    ("`herd status` (all) under 10 ms", "status_all", 1, 10, "ms"),
    ("stop-all under 0.5 s", "stop_s", 1, 0.5, "s"),
]

REFERENCE = [
    # label, key, scale, supervisord ref, runit ref, format
    ("start -> all up (s)", "start_polled", 1, 4.6, 1.8, "%.3f"),
    ("daemon RSS (MiB)", "rss_main", 1 / MIB, 48, None, "%.1f"),
    ("fds per program", "fds_per", 1, 5, None, "%.2f"),
    ("idle CPU (% of a core)", "idle_cpu", 1, 0.6, None, "%.4f"),
    ("restart median (ms)", "restart_med", 1, 14, 2.3, "%.2f"),
    ("status all (ms)", "status_all", 1, 990, 7, "%.1f"),
]


def cgroup2_mount():
    """Where a cgroup2 file system is mounted (the first in /proc/self/mountinfo), or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ")[0] == "cgroup2":
                    return left.split(" ")[4]
    except OSError:
        pass
    return None


def kernel_floor(herd_bin, n):
    """bench_floor (bench/floor.c, built beside herd): N `sleep` processes started with
    posix_spawn from one thread per core and stopped with SIGTERM, no supervisor; again
    with a cgroup each (made, joined, removed) where a cgroup2 file system is writable, as
    herd gives each service. Returns {"spawn_s", "stop_s", "cg_spawn_s", "cg_stop_s",
    "threads"} or None when it is not built."""
    exe = os.path.join(os.path.dirname(os.path.abspath(herd_bin)), "bench_floor")
    if not os.access(exe, os.X_OK):
        log("bench_floor is not built (cmake --build BUILD --target bench_floor): no kernel floor")
        return None
    threads = max(1, min(os.cpu_count() or 1, 4))
    out = {"threads": threads}
    mnt = cgroup2_mount()
    for prefix, cg in (("", None), ("cg_", os.path.join(mnt, "herd-bench-floor-%d" % os.getpid()) if mnt else None)):
        if prefix and (not cg or not os.access(os.path.dirname(cg), os.W_OK)):
            continue
        log("kernel floor N=%d: bench_floor, %d threads%s" % (n, threads, ", a cgroup each" if cg else ""))
        env = dict(os.environ)
        if cg:
            env["FLOOR_CGROUP"] = cg
        r = subprocess.run([exe, str(n), str(threads), "sleep", SLEEP_ARG], capture_output=True, text=True,
                           timeout=600 + n * 0.1, env=env)
        if r.returncode != 0:
            log("bench_floor failed: %s" % r.stderr.strip()[-300:])
            continue
        kv = dict(x.split("=") for x in r.stdout.split())
        out[prefix + "spawn_s"] = float(kv["spawn_s"])
        out[prefix + "stop_s"] = float(kv["stop_s"])
    return out if "spawn_s" in out else None


# herd's figure -> bench_floor's figure for the same work.
FLOOR_OF = {"start_polled": "spawn_s", "stop_s": "stop_s"}


def floor_lines(n, res, fl):
    if not fl:
        return ""
    h = res.get("herd", {})
    out = ["Kernel floor at N = %d (bench/floor.c: the same `sleep` started with posix_spawn from %d threads, "
           "one process group each, then SIGTERM to all and every one reaped; no supervisor; \"cgroup each\": "
           "also a cgroup per process, made, joined and removed, as herd does):" % (n, fl["threads"])]
    out.append("  %-34s %10s %14s %10s" % ("", "floor", "cgroup each", "herd"))
    for label, key in (("start -> all exec'd / up", "start_polled"), ("stop-all: signal -> all gone", "stop_s")):
        fkey = FLOOR_OF[key]
        hv = h.get(key)
        cg = fl.get("cg_" + fkey)
        out.append("  %-34s %10.3f %14s %10s  (s)" % (label, fl[fkey], "%.3f" % cg if cg is not None else "-",
                                                     "%.3f" % hv if hv is not None else "-"))
    return "\n".join(out)


# Issue 11's targets at N = 10,000 (under a 20,000-descriptor limit).
TARGETS_10K = [
    ("all up within 2 s (polled)", "start_polled", 1, 2.0, "s"),
    ("`herd status` (all) within 20 ms", "status_all", 1, 20.0, "ms"),
    ("stop-all within 1 s", "stop_s", 1, 1.0, "s"),
    ("descriptors per service at most 1.5", "fds_per", 1, 1.5, ""),
]


def target_lines(res, rows, inclusive=False, note=lambda key, lim: ""):
    """One line per target: the value, PASS or MISS (under the limit, or up to it when
    inclusive), and what note(key, limit) adds."""
    out = []
    for label, key, scale, lim, unit in rows:
        v = res.get(key)
        if v is None:
            out.append("  %-40s %14s  %s" % (label, "-", "NOT MEASURED"))
            continue
        ok = v * scale <= lim if inclusive else v * scale < lim
        out.append("  %-40s %10.4g %-3s  %s%s" % (label, v * scale, unit, "PASS" if ok else "MISS", note(key, lim)))
    return out


def targets(all_res):
    nt = 1000 if 1000 in all_res else max(all_res)
    res = all_res[nt]["herd"]
    out = ["Targets from the issue (herd at N=1000)%s:" % (
        "" if nt == 1000 else "  -- N=1000 was not run; shown for N=%d, for information only" % nt)]
    out += target_lines(res, TARGETS)
    if res.get("status_one") is not None:
        out.append("  (for information: `herd status %s` %.1f ms; `herd --version`, no daemon contact, %.1f ms)" % (
            "s0001", res["status_one"], res.get("status_floor") or float("nan")))
    out.append("")
    out.append("Reference numbers measured elsewhere at N=1000 vs. here (N=%d):" % nt)
    out.append("  %-28s %12s %12s %12s %12s" % ("", "sup. ref", "sup. here", "runit ref", "runit here"))
    for label, key, scale, sref, rref, f in REFERENCE:
        sh = all_res[nt]["supervisord"].get(key)
        rh = all_res[nt]["runit"].get(key)
        out.append("  %-28s %12s %12s %12s %12s" % (label, "-" if sref is None else f % sref, fmt(sh, scale, f),
                                                     "-" if rref is None else f % rref, fmt(rh, scale, f)))
    if 10000 in all_res:
        fl = all_res[10000].get("floor") or {}

        def beside_floor(key, lim):
            floor, cgf = fl.get(FLOOR_OF.get(key)), fl.get("cg_" + FLOOR_OF.get(key, ""))
            if floor is None:
                return ""
            return "   (kernel floor %.3g s%s: %s)" % (floor, "" if cgf is None else ", %.3g s with a cgroup each" % cgf,
                                                     "the target is below it" if floor > lim else "reachable")

        out.append("")
        out.append("Targets at N=10000 (issue 11), with the kernel floor of this machine beside them:")
        out += target_lines(all_res[10000]["herd"], TARGETS_10K, inclusive=True, note=beside_floor)
    return "\n".join(out)


def header(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def dpkg(p):
        return tool_version(["dpkg-query", "-W", "-f", "${Version}", p])
    lines = [
        "herd benchmark  %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        host_line(),
        "herd: %s (%s)" % (a.herd, a.herd_info),
        "temp dirs under %s (%s; set TMPDIR to move them; removed only at the end of the run)" % (
            tempfile.gettempdir(), tool_version(["stat", "-f", "-c", "%T", tempfile.gettempdir()])),
        "supervisord %s (Debian supervisor %s); runit %s" % (tool_version(["supervisord", "--version"]),
                                                            dpkg("supervisor"), dpkg("runit")),
        "N = %s; idle window %ss; %d kills; status median of %d runs (+1 warm-up)%s" % (
            " ".join(map(str, a.n)), a.idle, a.kills, a.status_runs, "; QUICK smoke run" if a.quick else ""),
        "fd limit for all three daemons: RLIMIT_NOFILE soft %d / hard %d (raised by run.sh; supervisord also "
        "gets minfds=%d, without which it fails past ~300 programs at the default soft limit 1024)" % (
            soft, hard, a.minfds),
        "services: `sleep 100000`; herd ready_after 0, backoff.initial 0; supervisord startsecs=0 autorestart=true; "
        "runit run script `#!/bin/sh exec sleep`",
        "all up, polled: herd %s; supervisord %s; runit %s" % (Herd.poll_note, Supervisord.poll_note,
                                                                Runit.poll_note),
        "all up, own timestamps: herd last HEALTHY event time; supervisord last 'entered RUNNING state' log "
        "line (1 ms resolution); runit newest supervise/status mtime (coarse clock, a few ms); all minus the wall "
        "time at spawn",
        "restart: SIGKILL a service's child, then probe the next free pids in /proc in a tight loop for a "
        "process whose parent is the supervisor (runit: that service's runsv); 'exec'd' = its comm became sleep; "
        "own timestamp: herd's BACKOFF->STARTING event, supervisord's 'spawned:' log line, runit none (coarse mtime)",
        "status: wall time of the CLI process: `herd status` / `herd status s0001`, `supervisorctl status` / "
        "`... status s0001`, `sv status DIR/*` (glob expanded by the bench) / `sv status DIR/s0001`",
        "stop-all: herd SIGTERM, supervisord SIGTERM, runit SIGHUP to runsvdir; time until the daemon and all "
        "its descendants have exited (pidfd); started 2 s after the last restart (runsv delays acting on a "
        "child younger than 1 s)",
        "memory: RSS = VmRSS; anon = Anonymous from smaps_rollup (unlike PSS/USS it does not move when other "
        "processes map the same libraries; it excludes kernel memory such as runsv's page tables and stacks); "
        "per-service growth = (value at N - value of a separate run with 0 services) / N",
        "CPU: schedstat sum_exec_runtime (ns), utime+stime (10 ms ticks) as a cross-check; nothing talks to the "
        "daemons during the idle window",
    ]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("n", nargs="*", type=int)
    p.add_argument("--herd", required=True)
    p.add_argument("--herd-info", default="")
    p.add_argument("--idle", type=float, default=60)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--kills", type=int)
    p.add_argument("--status-runs", type=int)
    p.add_argument("--minfds", type=int, default=65536)
    p.add_argument("--settle", type=float)
    p.add_argument("--keep-failed", action="store_true")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    a = p.parse_args()
    if not a.n:
        a.n = [10, 50] if a.quick else [100, 500, 1000]
    a.kills = a.kills or (10 if a.quick else 20)
    a.status_runs = a.status_runs or (3 if a.quick else 7)
    a.settle = a.settle if a.settle is not None else (0.5 if a.quick else 1.0)
    only = set(a.systems.split(","))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    print(header(a), flush=True)
    all_res = {}
    t_start = time.time()
    try:
        base = {}
        for s in SYSTEMS:
            if s in only:
                log("%s: baseline with 0 services" % s)
                base[s] = run_one(s, 0, a, baseline=True)
        print("\nBaseline, 0 services: " + "; ".join(
            "%s RSS %s MiB, anon %s MiB, %s fds" % (s, fmt(base[s].get("rss_main"), 1 / MIB, "%.2f"),
                                                  fmt(base[s].get("anon_total"), 1 / MIB, "%.2f"),
                                                  fmt(base[s].get("fds_main"), 1, "%d")) for s in base), flush=True)
        for n in a.n:
            res = {}
            for s in SYSTEMS:
                res[s] = run_one(s, n, a) if s in only else {"error": "skipped"}
                derive(res[s], base.get(s), n)
            all_res[n] = res
            print("\n" + table(n, res, base), flush=True)
            if "herd" in only:
                fl = kernel_floor(a.herd, n)
                res["floor"] = fl
                if fl:
                    print("\n" + floor_lines(n, res, fl), flush=True)
        print("\n" + targets(all_res), flush=True)
        load = loadavg()
        print("\ntotal bench time %.0f s; load average at the end %s" % (time.time() - t_start, load), flush=True)
    except Stop as e:
        log("interrupted (%s); cleaning up" % e)
        return 130
    finally:
        for s in list(LIVE):
            s.cleanup()
        for s in TO_REMOVE:
            s.remove_dir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
