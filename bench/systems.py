"""Drivers for the three supervisors under test: herd, supervisord and runit (runsvdir).

Each driver runs one daemon with N services running `sleep 100000` in its own temp
dir with its own socket, and knows how to: start it, tell when all services are up
(by polling, and from the daemon's own timestamps), name the processes that make up
the supervisor, find a service's child pid, run its status commands, stop everything,
and clean up every process it started (by pid and start time, never by name)."""
import glob
import http.client
import json
import os
import re
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client

import procutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
try:
    from harness import UnixHTTPConnection  # noqa: E402
except Exception:  # the harness is someone else's file; do not depend on it staying importable
    class UnixHTTPConnection(http.client.HTTPConnection):
        def __init__(self, path, timeout=30):
            super().__init__("localhost", timeout=timeout)
            self.unix_path = path

        def connect(self):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            s.connect(self.unix_path)
            self.sock = s

SLEEP_ARG = "100000"


class KeepAliveClient:
    """A minimal HTTP/1.1 client on one kept-alive Unix-socket connection: far less Python
    per request than http.client, for probes that time many small requests."""

    def __init__(self, path, timeout=10):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def connect(self):
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def get(self, path, method="GET"):
        """(status, body bytes). Reconnects once if the kept-alive connection was closed."""
        for attempt in (0, 1):
            if self.sock is None:
                self.connect()
            try:
                self.sock.sendall(b"%s %s HTTP/1.1\r\nHost: herd\r\n\r\n" % (method.encode(), path.encode()))
                return self._response()
            except (ConnectionError, BrokenPipeError, EOFError):
                self.close()
                if attempt:
                    raise
        raise EOFError("unreachable")

    def _fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n\r\n")
        head, self.buf = self.buf[:i].decode("latin-1"), self.buf[i + 4:]
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        hdr = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            hdr[k.strip().lower()] = v.strip()
        if "content-length" in hdr:
            n = int(hdr["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif hdr.get("transfer-encoding", "").lower() == "chunked":
            out = []
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                j = self.buf.index(b"\r\n")
                size = int(self.buf[:j].split(b";")[0], 16)
                while len(self.buf) < j + 2 + size + 2:
                    self._fill()
                out.append(self.buf[j + 2:j + 2 + size])
                self.buf = self.buf[j + 2 + size + 2:]
                if size == 0:
                    break
            body = b"".join(out)
        else:  # until EOF
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            body, self.buf = self.buf, b""
            self.close()
        if hdr.get("connection", "").lower() == "close":
            self.close()
        return status, body


def svc_name(i):
    return "s%04d" % i


class BenchError(Exception):
    pass


class System:
    name = "?"
    poll_note = ""

    def __init__(self, root, n):
        self.root = root
        self.n = n
        self.names = [svc_name(i) for i in range(1, n + 1)]
        self.proc = None
        self.logf = None
        self.known = set()  # (pid, starttime) of every process seen under the daemon
        self.log_path = os.path.join(root, "daemon.log")
        self.t0 = self.t0_wall = None
        self.env = dict(os.environ)
        self.env.pop("HERD_SOCKET", None)

    # -- lifecycle -------------------------------------------------------
    def argv(self):
        raise NotImplementedError

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.t0_wall = time.time()
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.root)

    @property
    def pid(self):
        return self.proc.pid

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError("%s exited with %s during the run; log tail:\n%s" % (
                self.name, self.proc.returncode, self.log_tail()))

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def remember_tree(self):
        self.known.update(procutil.descendants(self.pid))

    def sup_pids(self):
        """The processes that make up the supervisor (for RSS/CPU/fds)."""
        return [self.pid]

    def wait_up(self, timeout):
        """Poll until all N services are up; returns seconds since start."""
        raise NotImplementedError

    def own_up_time(self):
        """Seconds from start until the last service was up, by the daemon's own clock."""
        return None

    def child_pid(self, name):
        raise NotImplementedError

    def wait_service_up(self, name, pid, timeout=10):
        raise NotImplementedError

    def own_restart_ms(self, name, kill_wall):
        return None

    def status_cmds(self):
        """[(label, argv, expected_lines_min)]"""
        raise NotImplementedError

    def stop_signal(self):
        return signal.SIGTERM

    def stop_all(self, timeout=60):
        """Signal the daemon; time until every supervisor and service process is gone."""
        self.check_alive()
        tree = procutil.descendants(self.pid)
        self.known.update(tree)
        me = procutil.stat(self.pid)
        watch = procutil.ExitWatch([(self.pid, me["starttime"])] + tree)
        t0 = time.perf_counter()
        os.kill(self.pid, self.stop_signal())
        left = watch.wait(t0, timeout)
        total = time.perf_counter() - t0
        watch.close()
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        return {"stop_s": None if left else total, "stop_daemon_s": watch.gone_at.get(self.pid),
                "stop_left": len(left), "stop_rc": rc, "stop_nproc": len(tree) + 1}

    def cleanup(self):
        """Kill everything this run started (by pid + start time), even after errors."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.known.update(procutil.descendants(self.pid))
            except Exception:
                pass
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for pid, st in list(self.known):
            procutil.kill_exact(pid, st, signal.SIGKILL)
        deadline = time.time() + 10
        while time.time() < deadline and any(procutil.stat(p) and procutil.stat(p)["starttime"] == st and
                                             procutil.alive(p) for p, st in self.known):
            time.sleep(0.05)
        if self.logf:
            self.logf.close()
            self.logf = None

    def remove_dir(self):
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------
class Herd(System):
    name = "herd"
    poll_note = "GET /v1/daemon every 5 ms until states.HEALTHY == N"

    def __init__(self, root, n, binary, specs=None, extra_args=()):
        """specs: the services' JSON objects (default: N `sleep` services, ready_after 0,
        backoff.initial 0); extra_args: more `herd daemon` arguments (e.g. --log-level)."""
        super().__init__(root, n)
        self.bin = binary
        # BENCH_HERD_ARGS: more daemon arguments for every herd the bench starts (e.g.
        # "--cgroups off" or "--priority realtime", to compare).
        self.extra_args = list(extra_args) + shlex.split(os.environ.get("BENCH_HERD_ARGS", ""))
        self.conf = os.path.join(root, "conf")
        self.state = os.path.join(root, "state")
        self.sock = os.path.join(self.state, "herd.sock")
        os.makedirs(self.conf)
        if specs is None:
            specs = [{"name": nm, "command": ["sleep", SLEEP_ARG], "ready_after": 0,
                      "backoff": {"initial": 0}} for nm in self.names]
        with open(os.path.join(self.conf, "services.json"), "w") as f:
            json.dump({"services": specs}, f)

    def argv(self):
        return [self.bin, "daemon", "--config", self.conf, "--state-dir", self.state] + self.extra_args

    def request(self, path, timeout=30, raw=False, method="GET", ok=(200,)):
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read()
            if r.status not in ok:
                raise BenchError("herd %s %s -> %d %s" % (method, path, r.status, body[:300]))
            return body if raw else json.loads(body)
        finally:
            c.close()

    def wait_up(self, timeout):
        deadline = self.t0 + timeout
        last = None
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                d = self.request("/v1/daemon", timeout=5)
                last = d.get("states")
                if self.n == 0 or (d.get("states") or {}).get("HEALTHY", 0) == self.n:
                    t = time.perf_counter() - self.t0
                    self.remember_tree()
                    return t
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.005)
        raise BenchError("herd: not all %d HEALTHY within %ss (last states %s)" % (self.n, timeout, last))

    def events(self, service=None):
        q = "/v1/events?since=0" + ("&service=" + service if service else "")
        body = self.request(q, raw=True)
        return [json.loads(l) for l in body.decode().splitlines() if l.strip()]

    def own_up_time(self):
        if self.n == 0:
            return None
        ts = [e["time"] for e in self.events() if e.get("to") == "HEALTHY"]
        return max(ts) - self.t0_wall if len(ts) >= self.n else None

    def child_pid(self, name):
        return self.request("/v1/services/" + name)["service"]["pid"]

    def wait_service_up(self, name, pid, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.request("/v1/services/" + name)["service"]
            if s["pid"] == pid and s["state"] == "HEALTHY":
                return
            time.sleep(0.005)
        raise BenchError("herd: %s not HEALTHY with pid %d within %ss: %s" % (name, pid, timeout, s))

    def own_restart_ms(self, name, kill_wall):
        for e in self.events(name):
            if e.get("to") == "STARTING" and e["time"] >= kill_wall:
                return (e["time"] - kill_wall) * 1e3
        return None

    def status_cmds(self):
        env = dict(self.env, HERD_SOCKET=self.sock)
        return [("all", [self.bin, "status"], self.n + 1, env),
                ("one", [self.bin, "status", self.names[0]], 1, env),
                ("floor", [self.bin, "--version"], 1, env)]


# ---------------------------------------------------------------------------------
class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path, timeout=60):
        super().__init__()
        self.path = path
        self.timeout = timeout

    def make_connection(self, host):
        if self._connection[1] is not None:
            self._connection[1].close()
        c = UnixHTTPConnection(self.path, timeout=self.timeout)
        self._connection = host, c
        return c


class Supervisord(System):
    name = "supervisord"
    poll_note = "XML-RPC supervisor.getAllProcessInfo (what `supervisorctl status` calls) every 20 ms"
    LOGTS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+ (.*)$")

    def __init__(self, root, n, minfds):
        super().__init__(root, n)
        self.conf = os.path.join(root, "supervisord.conf")
        self.sock = os.path.join(root, "supervisor.sock")
        self.slog = os.path.join(root, "supervisord.log")
        os.makedirs(os.path.join(root, "childlogs"))
        lines = [
            "[unix_http_server]", "file=%s" % self.sock, "",
            "[supervisord]", "nodaemon=true", "logfile=%s" % self.slog, "loglevel=info",
            "pidfile=%s" % os.path.join(root, "supervisord.pid"),
            "childlogdir=%s" % os.path.join(root, "childlogs"),
            "minfds=%d" % minfds, "minprocs=200", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", "serverurl=unix://%s" % self.sock, "",
        ]
        for nm in self.names:
            lines += ["[program:%s]" % nm, "command=sleep %s" % SLEEP_ARG, "autostart=true",
                      "autorestart=true", "startsecs=0", "startretries=100", ""]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))

    def argv(self):
        return ["supervisord", "-n", "-c", self.conf]

    def rpc(self, timeout=60):
        return xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(self.sock, timeout))

    def wait_up(self, timeout):
        deadline = self.t0 + timeout
        last = None
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                info = self.rpc(timeout=30).supervisor.getAllProcessInfo()
                last = sum(1 for p in info if p["statename"] == "RUNNING")
                if last == self.n:
                    t = time.perf_counter() - self.t0
                    self.remember_tree()
                    return t
            except (OSError, xmlrpc.client.Error, http.client.HTTPException):
                pass
            time.sleep(0.02)
        raise BenchError("supervisord: not all %d RUNNING within %ss (last count %s); log:\n%s" % (
            self.n, timeout, last, self.slog_tail()))

    def slog_tail(self, n=3000):
        try:
            with open(self.slog, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_times(self, pattern):
        out = []
        with open(self.slog) as f:
            for line in f:
                m = self.LOGTS.match(line)
                if m and pattern.search(m.group(3)):
                    t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
                    out.append((t, m.group(3)))
        return out

    def own_up_time(self):
        if self.n == 0:
            return None
        ts = self._log_times(re.compile(r"^success: \S+ entered RUNNING state"))
        return max(t for t, _ in ts) - self.t0_wall if len(ts) >= self.n else None

    def child_pid(self, name):
        return self.rpc().supervisor.getProcessInfo(name)["pid"]

    def wait_service_up(self, name, pid, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            i = self.rpc().supervisor.getProcessInfo(name)
            if i["pid"] == pid and i["statename"] == "RUNNING":
                return
            time.sleep(0.005)
        raise BenchError("supervisord: %s not RUNNING with pid %d within %ss: %s" % (name, pid, timeout, i))

    def own_restart_ms(self, name, kill_wall):
        pat = re.compile(r"^spawned: '%s' with pid" % re.escape(name))
        # the log has ms resolution: allow for the truncation of the kill's own millisecond
        for t, _ in self._log_times(pat):
            if t >= kill_wall - 0.001:
                return max(0.0, (t - kill_wall) * 1e3)
        return None

    def status_cmds(self):
        base = ["supervisorctl", "-c", self.conf]
        return [("all", base + ["status"], self.n, self.env),
                ("one", base + ["status", self.names[0]], 1, self.env),
                ("floor", ["supervisorctl", "-h"], 1, self.env)]


# ---------------------------------------------------------------------------------
class Runit(System):
    name = "runit"
    poll_note = "`sv status DIR/*` in a loop until N lines say run:"

    def __init__(self, root, n):
        super().__init__(root, n)
        self.svdir = os.path.join(root, "sv")
        os.makedirs(self.svdir)
        self.dirs = []
        for nm in self.names:
            d = os.path.join(self.svdir, nm)
            os.makedirs(d)
            with open(os.path.join(d, "run"), "w") as f:
                f.write("#!/bin/sh\nexec sleep %s\n" % SLEEP_ARG)
            os.chmod(os.path.join(d, "run"), 0o755)
            self.dirs.append(d)

    def argv(self):
        return ["runsvdir", self.svdir]

    def sup_pids(self):
        return [self.pid] + sorted(procutil.children(self.pid))

    def sv_status(self, dirs, timeout=30):
        r = subprocess.run(["sv", "status"] + dirs, capture_output=True, text=True, timeout=timeout)
        return r.stdout

    def wait_up(self, timeout):
        deadline = self.t0 + timeout
        last = None
        if self.n == 0:
            time.sleep(0.2)
            self.check_alive()
            return time.perf_counter() - self.t0
        while time.perf_counter() < deadline:
            self.check_alive()
            out = self.sv_status(self.dirs)
            last = sum(1 for l in out.splitlines() if l.startswith("run: "))
            if last == self.n:
                t = time.perf_counter() - self.t0
                self.remember_tree()
                return t
            time.sleep(0.005)
        raise BenchError("runit: not all %d run within %ss (last count %s)" % (self.n, timeout, last))

    def own_up_time(self):
        if self.n == 0:
            return None
        ts = []
        for d in self.dirs:
            try:
                ts.append(os.stat(os.path.join(d, "supervise", "status")).st_mtime_ns / 1e9)
            except OSError:
                return None
        return max(ts) - self.t0_wall

    def child_pid(self, name):
        with open(os.path.join(self.svdir, name, "supervise", "pid")) as f:
            return int(f.read().strip() or 0)

    def wait_service_up(self, name, pid, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.child_pid(name) == pid:
                return
            time.sleep(0.005)
        raise BenchError("runit: %s supervise/pid is not %d within %ss" % (name, pid, timeout))

    # own_restart_ms: none. supervise/pid's mtime would be runsv's own record, but ext4
    # stamps files with the coarse clock (one tick), too coarse for a ~2 ms restart.

    def status_cmds(self):
        return [("all", ["sv", "status"] + self.dirs, self.n, self.env),
                ("one", ["sv", "status", self.dirs[0]], 1, self.env),
                ("floor", ["sv"], 0, self.env)]

    def stop_signal(self):
        return signal.SIGHUP  # runsvdir: TERM to every runsv, which stops its service and exits
