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
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Daemon:
    """One herd daemon in a fresh temporary directory."""

    def __init__(self, config=None, root=None, args=(), env=None):
        self.root = root or tempfile.mkdtemp(prefix="herd-test-")
        self.state = os.path.join(self.root, "state")
        self.confdir = os.path.join(self.root, "conf")
        self.sock = os.path.join(self.state, "herd.sock")
        self.args = list(args)
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
        self.logf = open(self.log_path, "ab")
        cmd = [HERD_BIN, "daemon", "--config", self.confdir, "--state-dir", self.state,
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
