"""Test harness: runs the real herd binary on a private state dir and socket, and talks
to it over its real Unix socket with HTTP/1.1. Standard library only."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERD_BIN = os.environ.get("HERD_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "herd")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("herd", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Daemon:
    """One herd daemon in a fresh temporary directory."""

    def __init__(self, config=None, root=None, args=(), env=None):
        self.root = root or tempfile.mkdtemp(prefix="herd-test-")
        self.state = os.path.join(self.root, "state")
        self.confdir = os.path.join(self.root, "conf")
        self.sock = os.path.join(self.state, "herd.sock")
        self.args = list(args)
        self.wrap = []  # a command prefix for the daemon (e.g. unshare: a mount namespace of its own)
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("HERD_SOCKET", None)
        self.proc = None
        self.log_path = os.path.join(self.root, "daemon.log")
        os.makedirs(self.confdir, exist_ok=True)
        if config is not None:
            self.write_config(config)

    # -- config ---------------------------------------------------------
    def write_config(self, services, name="services.json"):
        """services: a list of spec dicts (written as {"services": [...]}) or raw text."""
        path = os.path.join(self.confdir, name)
        with open(path, "w") as f:
            if isinstance(services, str):
                f.write(services)
            else:
                json.dump({"services": services}, f, indent=2)
        return path

    # -- lifecycle ------------------------------------------------------
    def start(self, wait=True, extra=()):
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError("this test's daemon is already running (pid %d): a second start would "
                                 "leak it" % self.proc.pid)
        self.logf = open(self.log_path, "ab")
        cmd = self.wrap + [HERD_BIN, "daemon", "--config", self.confdir, "--state-dir", self.state,
               "--log-level", "debug"] + self.args + list(extra)
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_socket()
        return self

    def wait_socket(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                st, _ = self.request("GET", "/v1/daemon")
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("daemon socket did not come up:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.logf.close()

    def cleanup(self):
        self.stop()
        remove_cgroups(self.state)
        if os.environ.get("HERD_TEST_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)

    # -- API ------------------------------------------------------------
    def request(self, method, path, body=None, timeout=30, raw=False):
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
            headers = {"Content-Type": "application/json"} if data is not None else {}
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            payload = r.read()
            if raw:
                return r.status, payload
            try:
                return r.status, json.loads(payload) if payload else None
            except ValueError:
                return r.status, payload
        finally:
            c.close()

    def service(self, name):
        st, body = self.request("GET", "/v1/services/" + name)
        if st != 200:
            raise AssertionError("GET %s: %s %s" % (name, st, body))
        return body["service"]

    def services(self, query=""):
        st, body = self.request("GET", "/v1/services" + query)
        assert st == 200, (st, body)
        return {s["name"]: s for s in body["services"]}

    def wait_state(self, name, states, timeout=10):
        """Poll until service `name` is in one of `states`; returns the service object."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.service(name)
            if last["state"] in states:
                return last
            time.sleep(0.02)
        raise AssertionError("%s did not reach %s within %ss; last: %s\n%s" % (
            name, states, timeout, json.dumps(last), self.log()[-4000:]))

    def stream_until(self, path, done, timeout=30):
        """GET a streaming path (e.g. logs with follow=1) and read what comes until done(text)
        is true; returns the text. Raises AssertionError at the timeout."""
        conn = UnixHTTPConnection(self.sock, timeout=timeout)
        text, deadline = "", time.time() + timeout
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            if r.status != 200:
                raise AssertionError("GET %s: %s %s" % (path, r.status, r.read()[:500]))
            while not done(text):
                if time.time() > deadline:
                    raise AssertionError("stream %s: condition not met in %ss; got %r" % (path, timeout, text[-500:]))
                chunk = r.read1(65536)
                if not chunk:
                    raise AssertionError("stream %s ended; got %r" % (path, text[-500:]))
                text += chunk.decode(errors="replace")
            return text
        finally:
            conn.close()

    def events(self, since=0, service=None):
        q = "/v1/events?since=%d" % since + ("&service=" + service if service else "")
        st, payload = self.request("GET", q, raw=True)
        assert st == 200, (st, payload)
        return [json.loads(l) for l in payload.decode().splitlines() if l.strip()]

    def cli(self, *args, check=False, timeout=60, input=None):
        env = dict(self.env, HERD_SOCKET=self.sock)
        r = subprocess.run([HERD_BIN] + list(args), env=env, capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError("herd %s -> %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(pred, timeout=10, interval=0.02, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


class DaemonTest(unittest.TestCase):
    """Base class: self.d is a fresh daemon per test (not started), cleaned up after."""

    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        if self._outcome_failed():
            print("---- daemon log ----\n" + self.d.log()[-6000:])
        self.d.cleanup()

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        errors = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(t is self for t, _ in errors)


def main():
    unittest.main(verbosity=2)


# ---- helpers added for the e2e suites (additive; nothing above changed) -------------

def proc_stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [0] is the state (field 3)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    f = proc_stat_fields(pid)
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def pids_in_pgid(pgid):
    """Live (non-zombie) processes whose process group is pgid."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            f = proc_stat_fields(int(e))
        except (OSError, IndexError):
            continue
        if f[0] != "Z" and int(f[2]) == pgid:
            out.append(int(e))
    return out


def pids_with_cwd(path):
    """Live processes whose working directory is `path` (services run in the state dir
    by default, so this finds a daemon's children, and their children)."""
    real = os.path.realpath(path)
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == os.getpid():
            continue
        try:
            if os.readlink("/proc/%s/cwd" % e) in (real, real + " (deleted)") and pid_alive(int(e)):
                out.append(int(e))
        except OSError:
            pass
    return out


def kill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def raw_connect(path, timeout=10):
    # A Unix socket whose listen backlog is momentarily full answers a connect with
    # EAGAIN (no queueing as with TCP): retry until the timeout, as a real client would.
    deadline = time.time() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.time() > deadline:
                raise
            time.sleep(0.005)


def read_http_response(s, buf=b""):
    """Read one HTTP/1.1 response (Content-Length framed) from socket s.
    Returns (status, headers dict (lower-case names), body bytes, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("connection closed before a full response header: %r" % buf[:200])
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("connection closed inside a response body")
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def read_until_eof(s, timeout=5):
    """Everything the peer sends until it closes (or resets) the connection."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    return out


def run_as(uid, gid, fn, groups=()):
    """Run fn() in a forked child with the given gid/uid (root only); returns what fn
    returns (it must be JSON-serialisable), or raises with the child's error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            res = {"ok": fn()}
        except BaseException as e:  # report anything to the parent
            res = {"error": "%s: %s" % (type(e).__name__, e)}
        try:
            os.write(w, json.dumps(res).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    res = json.loads(data.decode())
    if "error" in res:
        raise AssertionError("child as uid %d failed: %s" % (uid, res["error"]))
    return res["ok"]


class SuiteTest(DaemonTest):
    """DaemonTest that also kills any service process left behind (found by its working
    directory, the state dir), so one failing test cannot leak processes into the next."""

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            kill_pids(pids_with_cwd(self.d.state))


def checked_request(d, method, path, body=None, timeout=10, raw=False):
    """d.request(), but a dead or hung daemon becomes a clear AssertionError (with its
    exit status) instead of a bare connection error."""
    try:
        return d.request(method, path, body=body, timeout=timeout, raw=raw)
    except (OSError, http.client.HTTPException) as e:
        time.sleep(0.2)
        rc = d.proc.poll() if d.proc else None
        what = ("daemon died (exit status %s)" % rc) if rc is not None else "daemon did not answer"
        raise AssertionError("%s %s: %s: %s: %s\n%s" % (method, path, what, type(e).__name__, e,
                                                        d.log()[-3000:]))


# ---- helpers for the checks / ports / deps suites (additive) -------------------------

def find_events(events, service=None, to=None, frm=None, after=0):
    """The events (dicts from Daemon.events) matching service / to / from, with id > after."""
    return [e for e in events if e["id"] > after and (service is None or e["service"] == service)
            and (to is None or e["to"] == to) and (frm is None or e["from"] == frm)]


def first_event(d, service, to, frm=None, after=0, timeout=10):
    """Poll the daemon's events until one of `service` going to `to` (from `frm`) appears
    with id > after; returns it."""
    box = []

    def look():
        evs = find_events(d.events(since=after, service=service), service, to, frm, after)
        if evs:
            box.append(evs[0])
            return True
        return False
    try:
        wait_until(look, timeout=timeout, what="%s -> %s" % (service, to))
    except AssertionError:
        raise AssertionError("no event %s %s-> %s after id %d within %ss; events: %s\n%s" % (
            service, (frm + " ") if frm else "", to, after, timeout,
            json.dumps(d.events(since=after, service=service))[-3000:], d.log()[-3000:]))
    return box[0]


def wait_service(d, name, pred, timeout=10, what="condition"):
    """Poll GET /v1/services/NAME until pred(service) is true; returns the service."""
    box = [None]

    def look():
        box[0] = d.service(name)
        return pred(box[0])
    try:
        wait_until(look, timeout=timeout, what=what)
    except AssertionError:
        raise AssertionError("%s: timed out waiting for %s; last: %s\n%s" % (
            name, what, json.dumps(box[0]), d.log()[-3000:]))
    return box[0]


def last_event_id(d):
    evs = d.events()
    return evs[-1]["id"] if evs else 0


class SanitizedSuiteTest(SuiteTest):
    """SuiteTest that, after the test, stops the daemon and fails the test if its log
    holds an AddressSanitizer / UndefinedBehaviorSanitizer / LeakSanitizer report."""

    SAN_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def tearDown(self):
        bad = None
        try:
            if self.d.proc is not None:
                self.d.stop()
                log = self.d.log()
                bad = next((m for m in self.SAN_MARKS if m in log), None)
                if bad:
                    i = log.index(bad)
                    bad = log[max(0, i - 200):i + 3000]
        finally:
            super().tearDown()
        if bad:
            self.fail("sanitizer report in the daemon log:\n" + bad)


# ---- helpers for the control-channel limits suite (additive) -------------------------

def proc_status_kb(pid, field="VmRSS"):
    """A kB field of /proc/PID/status (VmRSS: resident now; VmHWM: the peak so far)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def raise_nofile(want):
    """Raise this process's soft RLIMIT_NOFILE to `want` (children and a daemon started
    after inherit it); False when the hard limit is too low."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want


def remove_cgroups(state):
    """Kill what is left in this daemon's service cgroups (a test that left services running)
    and remove its cgroup tree: the root is named in its store, so only its own."""
    import sqlite3
    db = os.path.join(state, "herd.db")
    if not os.path.exists(db):
        return
    try:
        c = sqlite3.connect(db, timeout=5)
        try:
            row = c.execute("SELECT value FROM meta WHERE key = 'cgroup_root'").fetchone()
        finally:
            c.close()
    except sqlite3.Error:
        return
    root = row[0] if row else None
    if not root or not os.path.isdir(root) or "/herd-" not in root:
        return
    subs = [os.path.join(root, n) for n in os.listdir(root) if n.startswith("svc-")]
    for d in subs:
        try:
            with open(os.path.join(d, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
    deadline = time.time() + 10
    for d in subs + [root]:
        while time.time() < deadline:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)  # busy until the killed processes are gone


def environ_bytes(pid, timeout=5):
    """/proc/PID/environ once the process's exec has finished: herd reports a pid as soon as
    the exec is past its point of no return, and for a moment after that the new program's
    environment is not yet in place (the file reads empty)."""
    deadline = time.time() + timeout
    while True:
        with open("/proc/%d/environ" % pid, "rb") as f:
            data = f.read()
        if data or time.time() > deadline:
            return data
        time.sleep(0.005)
