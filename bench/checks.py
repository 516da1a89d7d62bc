#!/usr/bin/env python3
"""Health checks at scale: herd's HTTP checks on N services vs Debian's monit on the same
endpoints. Run through `bash bench/run.sh checks` (BENCH_QUICK=1 for a smoke run).

Setup: k fast HTTP servers on 127.0.0.1 (separate processes, asyncio Protocol, keep-alive),
N/k endpoints each (`/sNNNN`); herd runs N `sleep` services, each with an HTTP check on its
own endpoint. For each check interval (1 s, 500 ms, 250 ms, 200 ms, 100 ms with N=1000 →
1k ... 10k checks/s), a fresh daemon, then three windows one after the other so they do not
disturb each other:
  A  CPU: nothing talks to the daemon; daemon CPU, checks done (herd's check.runs, and the
     servers' request counters), per-endpoint arrival times (cycle), servers' CPU and lag.
  B  check latency: herd's own `check.last.duration`, sampled through the API (chunks of ten
     services, `GET /v1/services?match=s012*`, a full pass per second; each distinct
     (service, check.last.at) is one sample).
  C  loop responsiveness: `GET /v1/daemon` every 10 ms on a kept-alive connection, round trip.
Then monit (`set daemon 1`, one `check host` per endpoint) on the same servers: its cycle
and checks per minute from the servers' arrival times, and its CPU.

`python3 checks.py --serve` is one HTTP server (used by this file and adopt.py).
Standard library only."""
import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procutil  # noqa: E402
from procutil import Stop, fmt_value, host_line, loadavg, log, on_signal, tool_version  # noqa: E402,F401

# =====================================================================================
# HTTP server (one process each)
# =====================================================================================
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
LAG_PERIOD = 0.01


class _State:
    """Per request path: [count, first, last, largest gap] (CLOCK_MONOTONIC, which is the
    same clock in every process), plus the server's own loop lag (a 10 ms timer's overshoot)."""

    def __init__(self):
        self.reset()
        self.conns = 0
        self.conns_total = 0

    def reset(self):
        self.paths = {}
        self.requests = 0
        self.lags = []
        self.since = time.monotonic()


_ST = _State()


def _stats_body():
    lags = sorted(_ST.lags)

    def q(p):
        return lags[min(len(lags) - 1, int(p * len(lags)))] * 1e3 if lags else None
    return json.dumps({"requests": _ST.requests, "since": _ST.since, "now": time.monotonic(),
                       "conns": _ST.conns, "conns_total": _ST.conns_total,
                       "lag_ms": {"n": len(lags), "p50": q(0.5), "p99": q(0.99),
                                  "max": lags[-1] * 1e3 if lags else None},
                       "paths": _ST.paths}).encode()


class _Proto(asyncio.Protocol):
    """Answers every GET `200 ok` at once; keep-alive unless HTTP/1.0 or Connection: close.
    /__stats: JSON counters; /__reset: clear them."""
    __slots__ = ("t", "buf")

    def connection_made(self, t):
        self.t = t
        self.buf = b""
        _ST.conns += 1
        _ST.conns_total += 1

    def connection_lost(self, exc):
        _ST.conns -= 1

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        out = []
        close = False
        while True:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                break
            head = buf[:i]
            buf = buf[i + 4:]
            j = head.find(b" ")
            k = head.find(b" ", j + 1)
            path = head[j + 1:k].decode("latin-1")
            e = head.find(b"\r\n")
            proto = head[k + 1:e if e >= 0 else len(head)]
            low = head.lower()
            close = proto == b"HTTP/1.0" or b"connection: close" in low
            if path.startswith("/__"):
                if path == "/__stats":
                    body = _stats_body()
                    out.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                               % len(body) + body)
                elif path.startswith("/__last?"):  # /__last?/s0001,/s0002: their last arrivals
                    body = json.dumps({q: (_ST.paths.get(q) or [0, 0, None])[2]
                                       for q in path[8:].split(",")}).encode()
                    out.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                               % len(body) + body)
                elif path == "/__reset":
                    out.append(OK)
                    _ST.reset()
                else:
                    out.append(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                if close:
                    break
                continue
            now = time.monotonic()
            _ST.requests += 1
            p = _ST.paths.get(path)
            if p is None:
                _ST.paths[path] = [1, now, now, 0.0]
            else:
                g = now - p[2]
                if g > p[3]:
                    p[3] = g
                p[0] += 1
                p[2] = now
            out.append(OK_CLOSE if close else OK)
            if close:
                break
        self.buf = buf
        if out:
            self.t.write(b"".join(out) if len(out) > 1 else out[0])
        if close:
            self.t.close()


async def _lag_probe():
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(LAG_PERIOD)
        _ST.lags.append(max(0.0, loop.time() - t - LAG_PERIOD))
        if len(_ST.lags) > 200000:
            del _ST.lags[:100000]


async def _serve():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    srv = await loop.create_server(_Proto, "127.0.0.1", 0, backlog=4096, reuse_address=True)
    sys.stdout.write("PORT %d\n" % srv.sockets[0].getsockname()[1])
    sys.stdout.flush()

    def on_stdin():  # the parent closed our stdin (or died): exit
        try:
            d = os.read(0, 4096)
        except OSError:
            d = b""
        if not d and not stop.done():
            stop.set_result(None)
    loop.add_reader(0, on_stdin)
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    task = loop.create_task(_lag_probe())
    await stop
    task.cancel()
    srv.close()


class Servers:
    """k HTTP server processes: started, queried, and stopped by pid (stdin EOF, then SIGKILL)."""

    def __init__(self, k):
        self.procs = []
        self.ports = []
        try:
            for _ in range(k):
                self.procs.append(subprocess.Popen([sys.executable, "-u", os.path.abspath(__file__), "--serve"],
                                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE))
            for p in self.procs:
                line = _readline_timeout(p.stdout, 10)
                if not line.startswith("PORT "):
                    raise RuntimeError("http server %d did not start (%r)" % (p.pid, line))
                self.ports.append(int(line.split()[1]))
        except BaseException:
            self.close()
            raise

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def _get(self, port, path, timeout=20):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError("http server %d exited with %s" % (p.pid, p.returncode))

    def reset(self):
        for port in self.ports:
            self._get(port, "/__reset")

    def stats(self):
        return [json.loads(self._get(port, "/__stats")[1]) for port in self.ports]

    def cpu_ns(self):
        return [procutil.cpu_ns_threads(p.pid)[0] or 0 for p in self.procs]

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            for f in (p.stdin, p.stdout):
                try:
                    f and f.close()
                except OSError:
                    pass
        self.procs = []


def _readline_timeout(f, timeout):
    import select
    r, _, _ = select.select([f], [], [], timeout)
    return f.readline().decode() if r else ""


def merge_paths(stats):
    out = {}
    for s in stats:
        out.update(s["paths"])
    return out


# =====================================================================================
# benchmark
# =====================================================================================
from systems import SLEEP_ARG, BenchError, Herd, KeepAliveClient, svc_name  # noqa: E402

LIVE = []  # objects with cleanup()/close() still to call



def pct(v, p):
    """The p-quantile (0..1) of v, nearest rank; None if empty."""
    v = sorted(x for x in v if x is not None)
    if not v:
        return None
    return v[min(len(v) - 1, max(0, int(round(p * len(v) + 0.5)) - 1))]


def check_specs(names, ports, interval_ms, timeout="1s"):
    n, k = len(names), len(ports)
    return [{"name": nm, "command": ["sleep", SLEEP_ARG],
             "check": {"type": "http", "url": "http://127.0.0.1:%d/%s" % (ports[i * k // n], nm),
                       "interval": "%gms" % interval_ms, "timeout": timeout}}
            for i, nm in enumerate(names)]


def runs_by_service(h):
    out = {}
    for s in h.request("/v1/services?view=full", timeout=60)["services"]:
        c = s.get("check") or {}
        out[s["name"]] = (c.get("runs", 0), c.get("passes", 0), s.get("restarts"), s.get("state"), s.get("pid"))
    return out


class CpuWindow:
    def __init__(self, daemon_pids, servers):
        self.daemon_pids = daemon_pids
        self.servers = servers

    def __enter__(self):
        self.c0 = [procutil.cpu_ns_threads(p) for p in self.daemon_pids]
        self.s0 = self.servers.cpu_ns() if self.servers else []
        self.m0 = procutil.cpu_busy()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *a):
        self.t1 = time.perf_counter()
        self.c1 = [procutil.cpu_ns_threads(p) for p in self.daemon_pids]
        self.s1 = self.servers.cpu_ns() if self.servers else []
        self.m1 = procutil.cpu_busy()
        self.wall = self.t1 - self.t0
        if any(c[0] is None for c in self.c1):
            raise BenchError("the measured daemon exited during the window")
        self.daemon_ns = sum(b[0] - a[0] for a, b in zip(self.c0, self.c1))
        self.daemon_ticks_ns = sum(b[1] - a[1] for a, b in zip(self.c0, self.c1))
        self.server_ns = [b - a for a, b in zip(self.s0, self.s1)]
        self.machine_busy = (self.m1[0] - self.m0[0]) / max(1, self.m1[1] - self.m0[1]) * 100
        return False

    @property
    def daemon_pct(self):
        return self.daemon_ns / (self.wall * 1e9) * 100

    @property
    def daemon_ticks_pct(self):
        return self.daemon_ticks_ns / (self.wall * 1e9) * 100

    @property
    def servers_pct(self):
        return sum(self.server_ns) / (self.wall * 1e9) * 100

    @property
    def server_max_pct(self):
        return max(self.server_ns) / (self.wall * 1e9) * 100 if self.server_ns else None


def endpoint_cycles(paths, names):
    """Per endpoint: mean interval between its requests (s), request count, largest gap."""
    cyc, cnt, gaps = [], [], []
    for nm in names:
        p = paths.get("/" + nm)
        if not p:
            cnt.append(0)
            continue
        cnt.append(p[0])
        if p[0] >= 2:
            cyc.append((p[2] - p[1]) / (p[0] - 1))
            gaps.append(p[3])
    return cyc, cnt, gaps


def lag_probe(sock, seconds, period=0.01):
    """Round trips of `GET /v1/daemon` sent every `period` s on one kept-alive connection (ms)."""
    cl = KeepAliveClient(sock, timeout=10)
    cl.connect()
    rtts = []
    errors = 0
    try:
        cl.get("/v1/daemon")  # warm the connection
        t_end = time.perf_counter() + seconds
        nxt = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            if nxt > now:
                time.sleep(nxt - now)
            t = time.perf_counter()
            st, _ = cl.get("/v1/daemon")
            rtts.append((time.perf_counter() - t) * 1e3)
            if st != 200:
                errors += 1
            nxt += period
            if nxt < time.perf_counter():  # do not send a burst after a stall
                nxt = time.perf_counter()
    finally:
        cl.close()
    return rtts, errors


def builtin_lag(sock, seconds, out):
    """herd's own lag probe (GET /v1/daemon/lag: a 1 ms repeating timer's lateness, measured
    inside the daemon over `seconds`); fills out["lag"] (or out["error"])."""
    try:
        cl = KeepAliveClient(sock, timeout=seconds + 30)
        cl.connect()
        try:
            st, body = cl.get("/v1/daemon/lag?seconds=%g" % seconds)
        finally:
            cl.close()
        if st != 200:
            out["error"] = "HTTP %s: %s" % (st, body[:200])
        else:
            out["lag"] = json.loads(body)["lag"]
    except Exception as e:  # noqa: BLE001 - reported, never fatal to the bench
        out["error"] = repr(e)


def sample_durations(sock, names, seconds, servers):
    """herd's own check.last.duration, sampled: ten services per request, one full pass per
    second. Right after each request, the servers' last arrival time of those ten paths,
    which splits a check into (start -> request at the server) and (arrival -> result).
    Returns ([duration ms], [failed messages], [request round trips ms], [pre ms], [post ms])."""
    import http.client
    prefixes = sorted({nm[:4] for nm in names})
    port_of = {}
    k, n = len(servers.ports), len(names)
    for i, nm in enumerate(names):
        port_of[nm] = servers.ports[i * k // n]
    conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in servers.ports}
    cl = KeepAliveClient(sock, timeout=10)
    seen = {}
    split = {}
    rtts = []
    period = 1.0 / len(prefixes)
    off = time.time() - time.monotonic()  # wall clock (herd's check.last.at) minus monotonic (servers')
    try:
        t_end = time.perf_counter() + seconds
        nxt = time.perf_counter()
        i = 0
        while time.perf_counter() < t_end:
            now = time.perf_counter()
            if nxt > now:
                time.sleep(nxt - now)
            t = time.perf_counter()
            st, body = cl.get("/v1/services?view=full&match=%s*" % prefixes[i % len(prefixes)])
            rtts.append((time.perf_counter() - t) * 1e3)
            if st != 200:
                raise BenchError("sampling: HTTP %d %s" % (st, body[:200]))
            got = []
            for s in json.loads(body)["services"]:
                last = (s.get("check") or {}).get("last")
                if last:
                    key = (s["name"], last["at"])
                    seen[key] = (last["duration"] * 1e3, last["ok"], last.get("message"))
                    got.append((s["name"], last["at"], last["duration"]))
            by_port = {}
            for nm, at, dur in got:
                by_port.setdefault(port_of[nm], []).append("/" + nm)
            arrivals = {}
            for port, paths in by_port.items():
                c = conns[port]
                c.request("GET", "/__last?" + ",".join(paths))
                arrivals.update(json.loads(c.getresponse().read()))
            for nm, at, dur in got:
                arr = arrivals.get("/" + nm)
                if arr is None:
                    continue
                arr += off
                start = at - dur
                # the server's last request must be this check's (not a newer one)
                if start - 0.0005 <= arr <= at + 0.0005:
                    split[(nm, at)] = (max(0.0, arr - start) * 1e3, max(0.0, at - arr) * 1e3)
            i += 1
            nxt += period
            if nxt < time.perf_counter():
                nxt = time.perf_counter()
    finally:
        cl.close()
        for c in conns.values():
            c.close()
    durs = [d for d, ok, _ in seen.values()]
    bad = [m for d, ok, m in seen.values() if not ok]
    return durs, bad, rtts, [a for a, b in split.values()], [b for a, b in split.values()]


# ---- one herd run -------------------------------------------------------------------
def run_herd_step(a, servers, interval_ms, floor=False):
    """floor=True: the same N services without checks, only the responsiveness probe."""
    n = a.n
    names = [svc_name(i) for i in range(1, n + 1)]
    root = tempfile.mkdtemp(prefix="herd-bench-checks-%s-" % ("floor" if floor else "%gms" % interval_ms))
    specs = None if floor else check_specs(names, servers.ports, interval_ms)
    h = Herd(root, n, a.herd, specs=specs)
    LIVE.append(h)
    r = {"interval_ms": interval_ms, "nominal": n / (interval_ms / 1000.0) if not floor else 0}
    try:
        h.start()
        r["up_s"] = h.wait_up(timeout=60 + n * 0.05)
        h.check_alive()
        if floor:
            time.sleep(a.warmup / 2)
            with CpuWindow([h.pid], None) as w:
                rtts, errs = lag_probe(h.sock, a.lag_window)
            r.update(probe_p50=pct(rtts, 0.5), probe_p99=pct(rtts, 0.99), probe_max=max(rtts), probe_n=len(rtts),
                     probe_cpu=w.daemon_pct, probe_errors=errs)
            return r
        log("interval %gms: all %d HEALTHY in %.2fs; warm-up %ss" % (interval_ms, n, r["up_s"], a.warmup))
        time.sleep(a.warmup)
        h.check_alive()
        servers.check_alive()
        # ---- window A: CPU and schedule, nobody talks to the daemon ----
        log("interval %gms: window A (CPU, schedule) %ss" % (interval_ms, a.window))
        ta = time.perf_counter()
        r0 = runs_by_service(h)
        tb = time.perf_counter()
        servers.reset()
        with CpuWindow([h.pid], servers) as w:
            time.sleep(a.window)
        st = servers.stats()
        tc = time.perf_counter()
        r1 = runs_by_service(h)
        td = time.perf_counter()
        api_span = (tc + td) / 2 - (ta + tb) / 2  # between the two snapshots (each taken mid-request)
        h.check_alive()
        paths = merge_paths(st)
        runs = [r1[nm][0] - r0[nm][0] for nm in names]
        passes = [r1[nm][1] - r0[nm][1] for nm in names]
        total = sum(runs)
        srv_window = statistics.mean(s["now"] - s["since"] for s in st)
        srv_total = sum(s["requests"] for s in st)
        cyc, cnt, gaps = endpoint_cycles(paths, names)
        expected = api_span / (interval_ms / 1000.0)
        # How evenly the checks are spread over the interval: each endpoint's last arrival
        # modulo the interval, in 1 ms slots (a perfect spread puts N / interval_ms in each).
        iv = interval_ms / 1000.0
        slots = {}
        for nm in names:
            pth = paths.get("/" + nm)
            if pth:
                sl = int((pth[2] % iv) * 1000)
                slots[sl] = slots.get(sl, 0) + 1
        used = sorted(slots)
        r.update({
            "window": w.wall, "runs": total, "failed": total - sum(passes),
            "rate": total / api_span, "rate_srv": srv_total / srv_window,
            "cpu": w.daemon_pct, "cpu_ticks": w.daemon_ticks_pct,
            "us_per_check": w.daemon_ns / 1e3 / srv_total if srv_total else None,
            "srv_cpu": w.servers_pct, "srv_cpu_max": w.server_max_pct, "machine_busy": w.machine_busy,
            "srv_lag_p99": max((s["lag_ms"]["p99"] or 0) for s in st),
            "srv_lag_max": max((s["lag_ms"]["max"] or 0) for s in st),
            "expected_per_svc": expected, "min_per_svc": min(runs), "med_per_svc": statistics.median(runs),
            "eff_cycle": api_span / (total / n) if total else None,
            "cycle_med": pct(cyc, 0.5), "cycle_p99": pct(cyc, 0.99), "cycle_max": max(cyc) if cyc else None,
            "cycle_min": min(cyc) if cyc else None,
            "gap_p99": pct(gaps, 0.99), "gap_max": max(gaps) if gaps else None,
            "peak_slot": max(slots.values()) if slots else None, "slots_used": len(used),
            "uniform_slot": n / interval_ms,
            "endpoints_seen": sum(1 for c in cnt if c), "restarts": sum(r1[nm][2] or 0 for nm in names),
            "not_healthy": sum(1 for nm in names if r1[nm][3] != "HEALTHY"),
        })
        # ---- window B: check latency, herd's own view ----
        log("interval %gms: window B (check latency, sampled via the API) %ss" % (interval_ms, a.lat_window))
        durs, bad, srtts, pre, post = sample_durations(h.sock, names, a.lat_window, servers)
        r.update(lat_n=len(durs), lat_p50=pct(durs, 0.5), lat_p90=pct(durs, 0.9), lat_p99=pct(durs, 0.99),
                 lat_max=max(durs) if durs else None, lat_bad=len(bad), lat_bad_msgs=sorted(set(bad))[:5],
                 sample_rtt_p50=pct(srtts, 0.5), pre_p50=pct(pre, 0.5), pre_p99=pct(pre, 0.99),
                 post_p50=pct(post, 0.5), post_p99=pct(post, 0.99), split_n=len(pre))
        # ---- window C: responsiveness probe ----
        log("interval %gms: window C (herd's 1 ms lag probe + GET /v1/daemon every 10 ms) %ss" % (
            interval_ms, a.lag_window))
        lagres = {}
        lt = threading.Thread(target=builtin_lag, args=(h.sock, a.lag_window, lagres), daemon=True)
        lt.start()
        rtts, errs = lag_probe(h.sock, a.lag_window)
        lt.join(a.lag_window + 40)
        lag = lagres.get("lag") or {}
        if "error" in lagres:
            log("interval %gms: lag probe: %s" % (interval_ms, lagres["error"]))
        r.update(probe_p50=pct(rtts, 0.5), probe_p99=pct(rtts, 0.99), probe_max=max(rtts), probe_n=len(rtts),
                 probe_errors=errs, lag_p50=lag.get("p50_ms"), lag_p99=lag.get("p99_ms"), lag_max=lag.get("max_ms"),
                 lag_n=lag.get("samples"))
        h.check_alive()
        on = (r["rate"] >= 0.99 * r["nominal"] and r["cycle_max"] is not None and
              r["cycle_max"] <= 1.02 * interval_ms / 1000.0 and r["endpoints_seen"] == n)
        r["on_schedule"] = on
        log("interval %gms: %.0f checks/s (nominal %.0f), daemon %.1f%% CPU, %.1f us/check, latency p99 %.2f ms, "
            "probe p99 %.2f ms" % (interval_ms, r["rate"], r["nominal"], r["cpu"], r["us_per_check"] or 0,
                                   r["lat_p99"] or 0, r["probe_p99"]))
    except Stop:
        raise
    except Exception as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
        log("ERROR interval %gms: %s\n%s" % (interval_ms, e, traceback.format_exc()))
        if h.proc is not None:
            log("daemon log tail:\n%s" % h.log_tail())
    finally:
        try:
            if h.proc is not None and h.proc.poll() is None and "error" not in r:
                s = h.stop_all(timeout=30)
                if s.get("stop_left"):
                    log("herd stop: %d processes left after 30 s (killed)" % s["stop_left"])
        except Exception as e:
            log("herd stop failed: %s" % e)
        h.cleanup()
        LIVE.remove(h)
        h.remove_dir()
    return r


# ---- monit --------------------------------------------------------------------------
def run_monit(a, servers):
    n = a.n
    names = [svc_name(i) for i in range(1, n + 1)]
    root = tempfile.mkdtemp(prefix="herd-bench-monit-")
    ctl = os.path.join(root, "monitrc")
    k = len(servers.ports)
    lines = ["set daemon 1",
             "set logfile %s" % os.path.join(root, "monit.log"),
             "set pidfile %s" % os.path.join(root, "monit.pid"),
             "set idfile %s" % os.path.join(root, "monit.id"),
             "set statefile %s" % os.path.join(root, "monit.state"), ""]
    for i, nm in enumerate(names):
        lines += ["check host %s with address 127.0.0.1" % nm,
                  '    if failed port %d protocol http request "/%s" then alert' % (servers.ports[i * k // n], nm)]
    with open(ctl, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(ctl, 0o600)
    r = {}
    proc = None
    logf = None

    class M:  # for LIVE cleanup
        def cleanup(self_):
            if proc is not None and proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
    m = M()
    LIVE.append(m)
    try:
        t = subprocess.run(["monit", "-t", "-c", ctl], capture_output=True, text=True, timeout=60)
        if t.returncode != 0:
            raise BenchError("monit -t: %s" % (t.stdout + t.stderr)[-500:])
        logf = open(os.path.join(root, "monit.out"), "wb")
        servers.reset()
        t0 = time.perf_counter()
        proc = subprocess.Popen(["monit", "-I", "-c", ctl], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=root)
        # wait until every endpoint has been checked once (monit's first cycle), then warm up
        deadline = t0 + 60
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise BenchError("monit exited with %s: %s" % (proc.returncode, open(
                    os.path.join(root, "monit.out"), "rb").read()[-500:]))
            seen = merge_paths(servers.stats())
            if sum(1 for nm in names if "/" + nm in seen) == n:
                break
            time.sleep(0.05)
        r["first_cycle_s"] = time.perf_counter() - t0
        log("monit: first full cycle after %.2fs; warm-up %ss, then window %ss" % (
            r["first_cycle_s"], a.warmup, a.monit_window))
        time.sleep(a.warmup)
        servers.reset()
        with CpuWindow([proc.pid], servers) as w:
            time.sleep(a.monit_window)
        st = servers.stats()
        if proc.poll() is not None:
            raise BenchError("monit exited during the window (%s)" % proc.returncode)
        paths = merge_paths(st)
        cyc, cnt, gaps = endpoint_cycles(paths, names)
        srv_window = statistics.mean(s["now"] - s["since"] for s in st)
        total = sum(s["requests"] for s in st)
        r.update({"window": w.wall, "cpu": w.daemon_pct, "cpu_ticks": w.daemon_ticks_pct,
                  "us_per_check": w.daemon_ns / 1e3 / total if total else None, "rate": total / srv_window,
                  "cycle_mean": statistics.mean(cyc) if cyc else None, "cycle_med": pct(cyc, 0.5),
                  "cycle_max": max(cyc) if cyc else None,
                  "per_min": statistics.mean(cnt) * 60.0 / srv_window, "endpoints_seen": sum(1 for c in cnt if c),
                  "gap_max": max(gaps) if gaps else None, "srv_cpu": w.servers_pct,
                  "srv_lag_p99": max((s["lag_ms"]["p99"] or 0) for s in st), "machine_busy": w.machine_busy,
                  "threads": len(os.listdir("/proc/%d/task" % proc.pid))})
        log("monit: cycle %.3fs, %.1f checks/min per endpoint, %.2f%% CPU" % (
            r["cycle_mean"] or 0, r["per_min"], r["cpu"]))
    except Stop:
        raise
    except Exception as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
        log("ERROR monit: %s\n%s" % (e, traceback.format_exc()))
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if logf:
            logf.close()
        LIVE.remove(m)
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    return r


# ---- output -------------------------------------------------------------------------
f = fmt_value


ROWS = [
    ("nominal", "checks/s asked (N / interval)", "%.0f"),
    ("rate", "checks/s done, herd's check.runs [A]", "%.0f"),
    ("rate_srv", "requests/s received by the servers [A]", "%.0f"),
    ("failed", "failed checks in window A", "%d"),
    ("cpu", "daemon CPU, % of one core (schedstat, all threads) [A]", "%.2f"),
    ("cpu_ticks", "  same from utime+stime (10 ms ticks) [A]", "%.2f"),
    ("us_per_check", "daemon CPU per check (us) [A]", "%.1f"),
    ("lat_p50", "check latency p50 (ms), herd's check.last.duration [B]", "%.2f"),
    ("lat_p90", "check latency p90 (ms) [B]", "%.2f"),
    ("lat_p99", "check latency p99 (ms) [B]", "%.2f"),
    ("lat_max", "check latency max (ms) [B]", "%.2f"),
    ("lat_n", "  latency samples (distinct checks seen) [B]", "%d"),
    ("pre_p50", "  check start -> request at the server, p50 (ms) [B]", "%.2f"),
    ("pre_p99", "  check start -> request at the server, p99 (ms) [B]", "%.2f"),
    ("post_p50", "  request at the server -> herd's result, p50 (ms) [B]", "%.2f"),
    ("post_p99", "  request at the server -> herd's result, p99 (ms) [B]", "%.2f"),
    ("split_n", "  samples matched to a server arrival [B]", "%d"),
    ("lag_p50", "loop lag: 1 ms timer lateness p50, herd's probe (ms) [C]", "%.3f"),
    ("lag_p99", "loop lag: 1 ms timer lateness p99, herd's probe (ms) [C]", "%.3f"),
    ("lag_max", "loop lag: 1 ms timer lateness max, herd's probe (ms) [C]", "%.3f"),
    ("lag_n", "  lag probe samples [C]", "%d"),
    ("probe_p50", "GET /v1/daemon round trip p50 (ms) [C]", "%.3f"),
    ("probe_p99", "GET /v1/daemon round trip p99 (ms) [C]", "%.3f"),
    ("probe_max", "GET /v1/daemon round trip max (ms) [C]", "%.3f"),
    ("expected_per_svc", "checks per service expected in window A", "%.1f"),
    ("min_per_svc", "checks per service done: min [A]", "%d"),
    ("med_per_svc", "checks per service done: median [A]", "%.1f"),
    ("eff_cycle", "effective cycle = window / checks per service (s) [A]", "%.4f"),
    ("cycle_med", "cycle per endpoint, servers' view: median (s) [A]", "%.4f"),
    ("cycle_max", "cycle per endpoint, servers' view: slowest (s) [A]", "%.4f"),
    ("gap_max", "longest gap between two checks of one service (s) [A]", "%.3f"),
    ("uniform_slot", "checks per 1 ms of the cycle if evenly spread [P]", "%.1f"),
    ("peak_slot", "checks in the busiest 1 ms of the cycle [P]", "%d"),
    ("slots_used", "1 ms slots of the cycle with any check [P]", "%d"),
    ("on_schedule", "on schedule [S]", "%s"),
    ("srv_cpu", "HTTP servers' CPU, all, % of one core [A]", "%.1f"),
    ("srv_cpu_max", "HTTP servers' CPU, busiest one, % of one core [A]", "%.1f"),
    ("srv_lag_p99", "HTTP servers' own loop lag p99, worst server (ms) [A]", "%.2f"),
    ("machine_busy", "whole machine busy, % of all cpus [A]", "%.1f"),
    ("restarts", "service restarts during the run", "%d"),
]


def step_table(res):
    w = max(len(r[1]) for r in ROWS)
    hdr = "%-*s" % (w, "check interval") + "".join("%11s" % ("%gms" % r["interval_ms"]) for r in res)
    out = [hdr, "-" * len(hdr)]
    for key, label, fmt in ROWS:
        out.append("%-*s" % (w, label) + "".join("%11s" % f(r.get(key), fmt) for r in res))
    for r in res:
        if "error" in r:
            out.append("ERROR at %gms: %s" % (r["interval_ms"], r["error"]))
        if r.get("lat_bad"):
            out.append("at %gms: %d sampled checks failed: %s" % (r["interval_ms"], r["lat_bad"],
                                                                  "; ".join(r["lat_bad_msgs"])))
        if r.get("not_healthy"):
            out.append("at %gms: %d services not HEALTHY at the end of window A" % (r["interval_ms"],
                                                                                 r["not_healthy"]))
    return "\n".join(out)


MONIT_REF = {"cycle": 1.71, "per_min": 35, "cpu": 5.2}


def side_by_side(herd1, mon, n):
    out = ["%-52s %12s %12s %14s" % ("%d HTTP checks, 1 s cycle asked" % n, "herd", "monit", "monit ref [R]")]
    out.append("-" * len(out[0]))

    def row(label, hv, mv, ref, fmt):
        out.append("%-52s %12s %12s %14s" % (label, f(hv, fmt), f(mv, fmt), f(ref, fmt)))
    row("real cycle per endpoint (s) [Y]", herd1.get("cycle_med"), mon.get("cycle_mean"), MONIT_REF["cycle"],
        "%.3f")
    row("real cycle per endpoint, slowest endpoint (s)", herd1.get("cycle_max"), mon.get("cycle_max"), None, "%.3f")
    row("checks per minute per endpoint", herd1.get("per_min"), mon.get("per_min"), MONIT_REF["per_min"], "%.1f")
    row("CPU, % of one core", herd1.get("cpu"), mon.get("cpu"), MONIT_REF["cpu"], "%.2f")
    row("CPU per check (us)", herd1.get("us_per_check"), mon.get("us_per_check"), None, "%.1f")
    row("longest gap between two checks of one endpoint (s)", herd1.get("gap_max"), mon.get("gap_max"), None, "%.3f")
    row("HTTP servers' CPU meanwhile, % of one core", herd1.get("srv_cpu"), mon.get("srv_cpu"), None, "%.1f")
    out.append("[R] monit with 1,000 HTTP checks at `set daemon 1`, measured elsewhere.")
    out.append("[Y] from the servers' arrival times; herd: median over endpoints (every endpoint within %s s of "
               "it); monit: mean over endpoints. monit's first full cycle took %s s after its start." % (
                   f(max(abs((herd1.get("cycle_max") or 0) - (herd1.get("cycle_med") or 0)),
                         abs((herd1.get("cycle_min") or 0) - (herd1.get("cycle_med") or 0))), "%.4f"),
                   f(mon.get("first_cycle_s"), "%.2f")))
    if "error" in mon:
        out.append("ERROR monit: %s" % mon["error"])
    return "\n".join(out)


def targets(res, n):
    out = ["Targets from the issue (herd, N=%d):" % n]

    def line(label, v, ok, unit=""):
        out.append("  %-66s %12s  %s" % (label, v if isinstance(v, str) else f(v, "%.4g") + unit,
                                         "-" if ok is None else ("PASS" if ok else "MISS")))
    ok_steps = [r for r in res if "error" not in r and r.get("on_schedule") and r["cpu"] < 100]
    best = max(ok_steps, key=lambda r: r["rate"]) if ok_steps else None
    line("highest check rate on schedule with the daemon under one core >= 5000/s",
         "%.0f/s" % best["rate"] if best else "none", bool(best and best["rate"] >= 5000))
    if best:
        out.append("      (at interval %gms: daemon %.1f%% of a core, %.1f us/check)" % (
            best["interval_ms"], best["cpu"], best["us_per_check"] or 0))
    for r in res:
        if "error" in r:
            continue
        prompt = (r.get("srv_lag_p99") or 0) < 5 and (r.get("srv_cpu_max") or 0) < 80
        tag = "%gms = %.0f/s" % (r["interval_ms"], r["nominal"])
        line("check latency p99 < 10 ms at %s%s" % (tag, "" if prompt else " (servers NOT prompt)"),
             r.get("lat_p99"), None if r.get("lat_p99") is None else r["lat_p99"] < 10, " ms")
    for r in res:
        if "error" in r:
            continue
        tag = "%gms = %.0f/s" % (r["interval_ms"], r["nominal"])
        line("loop lag p99 < 5 ms at %s (1 ms timer lateness, herd's probe)" % tag, r.get("lag_p99"),
             None if r.get("lag_p99") is None else r["lag_p99"] < 5, " ms")
    r1 = next((r for r in res if r["interval_ms"] == 1000 and "error" not in r), None)
    if r1:
        c = r1.get("cycle_med")
        line("1 s checks: cycle 1.00 s (median endpoint; slowest %s s)" % f(r1.get("cycle_max"), "%.4f"),
             "%.4f s" % c if c else "-", c is not None and round(c, 2) == 1.00 and r1["cycle_max"] < 1.01)
        line("1 s checks: daemon under 3 % of a core", r1.get("cpu"), r1["cpu"] < 3, " %")
    else:
        out.append("  (the 1 s step did not run: no 1 s targets)")
    return "\n".join(out)


def header(a, servers):
    return "\n".join([
        "herd health-check benchmark  %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        host_line(),
        "herd: %s (%s); libcurl %s" % (a.herd, a.herd_info,
                                      tool_version(["dpkg-query", "-W", "-f", "${Version}", "libcurl4"])),
        "monit: %s" % tool_version(["monit", "-V"]),
        "N = %d sleep services, each with an HTTP check (timeout 1s) on its own endpoint /sNNNN; %d HTTP servers "
        "(python asyncio, keep-alive, separate processes) with %d endpoints each%s" % (
            a.n, len(servers.ports), a.n // len(servers.ports), "; QUICK smoke run" if a.quick else ""),
        "per interval: a fresh daemon, all HEALTHY, %ss warm-up, then windows one after the other: "
        "[A] %ss nobody talks to the daemon (CPU, checks, schedule); [B] %ss check latency; [C] %ss probe" % (
            a.warmup, a.window, a.lat_window, a.lag_window),
        "[A] checks done = sum of check.runs deltas (GET /v1/services before and after, outside the CPU "
        "brackets; rates over the time between the two snapshots); daemon CPU per check = CPU in the window / "
        "requests the servers received in it; cycle per endpoint = (last - first arrival) / (requests - 1), from the servers' clocks",
        "[B] herd's own view: check.last.duration (run start -> result, in the daemon) sampled through the API "
        "(GET /v1/services?match=sNNN*, ten services per request, a full pass per second); each distinct "
        "(service, check.last.at) is one sample. Includes any time the result waited for the loop.",
        "[C] loop lag: herd's built-in probe (GET /v1/daemon/lag?seconds=S: a 1 ms repeating uv timer inside the "
        "daemon, each firing's lateness past 1 ms after the previous one; libuv's timers have 1 ms resolution); "
        "meanwhile, from outside, the round trip of GET /v1/daemon on a kept-alive Unix-socket connection, one "
        "every 10 ms, from a Python client (includes the client's own overhead; see the floor run without checks).",
        "[B] split: the servers' last arrival time of the same ten paths, fetched right after each sample "
        "(CLOCK_MONOTONIC mapped to wall time); kept only when it falls inside that check's run",
        "[P] phase spread: each endpoint's last request arrival modulo the interval, counted in 1 ms slots",
        "[S] on schedule = checks done >= 99 % of asked, every endpoint checked, and the slowest endpoint's "
        "cycle <= 1.02 x interval",
    ])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--herd", required=True)
    p.add_argument("--herd-info", default="")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int)
    p.add_argument("--servers", type=int)
    p.add_argument("--intervals", help="ms, comma-separated (default 1000,500,250,200,100,50; herd allows >= 50)")
    p.add_argument("--warmup", type=float)
    p.add_argument("--window", type=float)
    p.add_argument("--lat-window", type=float)
    p.add_argument("--lag-window", type=float)
    p.add_argument("--monit-window", type=float)
    p.add_argument("--no-monit", action="store_true")
    a = p.parse_args()
    a.herd = os.path.abspath(a.herd)
    q = a.quick
    a.n = a.n or (100 if q else 1000)
    a.servers = a.servers or (2 if q else 4)
    a.intervals = [float(x) for x in (a.intervals or ("1000,250,100" if q else "1000,500,250,200,100,50")).split(",")]
    a.warmup = a.warmup if a.warmup is not None else (2 if q else 5)
    a.window = a.window or (4 if q else 20)
    a.lat_window = a.lat_window or (3 if q else 10)
    a.lag_window = a.lag_window or (3 if q else 10)
    a.monit_window = a.monit_window or (8 if q else 60)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    t_start = time.time()
    servers = None
    try:
        servers = Servers(a.servers)
        LIVE.append(servers)
        print(header(a, servers), flush=True)
        log("floor: %d services without checks, probe %ss" % (a.n, a.lag_window))
        floor = run_herd_step(a, servers, 0, floor=True)
        res = []
        for iv in a.intervals:
            res.append(run_herd_step(a, servers, iv))
            servers.check_alive()
        for r in res:
            if "error" not in r and r.get("cycle_med"):
                r["per_min"] = 60.0 / r["cycle_med"]
        mon = {"error": "not run (--no-monit)"} if a.no_monit else run_monit(a, servers)
        print("\nFloor (same %d services, no checks): GET /v1/daemon round trip p50 %s ms, p99 %s ms, max %s ms "
              "(%d requests; daemon CPU meanwhile %s %% of a core)%s" % (
                  a.n, f(floor.get("probe_p50"), "%.3f"), f(floor.get("probe_p99"), "%.3f"),
                  f(floor.get("probe_max"), "%.3f"), floor.get("probe_n", 0), f(floor.get("probe_cpu"), "%.2f"),
                  ("  ERROR: " + floor["error"]) if "error" in floor else ""), flush=True)
        print("\n" + step_table(res), flush=True)
        r1 = next((r for r in res if r["interval_ms"] == 1000 and "error" not in r), {})
        print("\n" + side_by_side(r1, mon, a.n), flush=True)
        print("\n" + targets(res, a.n), flush=True)
        load = loadavg()
        print("\ntotal bench time %.0f s; load average at the end %s" % (time.time() - t_start, load), flush=True)
        bad = any("error" in r for r in res + [floor]) or ("error" in mon and not a.no_monit)
        return 1 if bad else 0
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
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        try:
            asyncio.run(_serve())
        except KeyboardInterrupt:
            pass
        sys.exit(0)
    sys.exit(main())
