"""Fault injection, end to end (issue 17): the real daemon over its real socket while what it
depends on fails: its state dir fills up (a tiny tmpfs: ENOSPC in store commits and log
writes), becomes unwritable, its store is locked by another process, its descriptor limit is
lowered under load, a cluster's token command hangs, slurmrestd answers garbage, truncated
bodies, stalls and resets (faultproxy.py in front of a small slurmrestd stand-in), and an ssh
host accepts connections and never answers.

For each: the daemon stays up and answers, nothing already recorded is lost, the error is
visible where a user looks (`herd info`, the service's reason, the log), and it recovers by
itself when the fault goes."""
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import resource

import faultproxy
import sshd
from harness import Daemon, SanitizedSuiteTest, fd_count, main, pid_alive, wait_service, wait_until
from servers import HTTPServer, free_port

ROOT = os.geteuid() == 0


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0}
    d.update(kw)
    return d


def chatty(name="chatty"):
    """A service that prints and exits every 0.2 s, restarted at once: a stream of state
    changes (store commits) and output (log writes)."""
    return svc(name, command=["sh", "-c", "echo line from $HERD_ATTEMPT; head -c 5000 /dev/zero | tr '\\0' x; echo; "
                                           "sleep 0.2; exit 3"], restart="always",
               backoff={"initial": "50ms", "max": "100ms", "jitter": 0})


@contextlib.contextmanager
def tmpfs(size):
    """A private tmpfs of `size` (e.g. "2m"), unmounted after."""
    path = tempfile.mkdtemp(prefix="herd-fault-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path])
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def ext4(size_mb=32):
    """A private ext4 file system on a loop device (chattr +i works there)."""
    path = tempfile.mkdtemp(prefix="herd-fault-")
    img = path + ".img"
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-R", "-i", path], capture_output=True)
        subprocess.run(["umount", "-l", path])
        shutil.rmtree(path, ignore_errors=True)
        os.unlink(img)


def can_mount():
    if not ROOT:
        return False
    try:
        with tmpfs("64k"):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False


def fill(path):
    """Fill the file system holding path to the last byte; returns the filler's path."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:  # the last partial block
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def health(d):
    return d.request("GET", "/v1/health", timeout=5)


def info(d):
    r = d.cli("info")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def store_events(state):
    """The events table as the next daemon would find it (read straight from herd.db)."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(state, "herd.db"), uri=True, timeout=10)
    try:
        return db.execute("SELECT id, service, from_state, to_state FROM events ORDER BY id").fetchall()
    finally:
        db.close()


class StoreFaults(SanitizedSuiteTest):
    """The state dir fills up, becomes unwritable, or its store is locked by another process."""

    def setUp(self):
        super().setUp()
        self.mounts = contextlib.ExitStack()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.mounts.close()

    def on(self, root):
        """Run this test's daemon with its state dir under root."""
        self.d.cleanup()
        self.d = Daemon(root=root)

    def outage_then_recovery(self, start_fault, end_fault, error_words, log_lost=True):
        """The common script: services running and recording; the fault; while it lasts the
        daemon answers, says so (health, herd info, the log) and a stop is obeyed; the fault
        goes; everything recorded, during the outage too, is in the store, and a daemon
        restarted on it keeps what was asked during the outage."""
        d = self.d
        d.write_config([chatty(), svc("steady")])
        d.start()
        d.wait_state("steady", "HEALTHY")
        wait_until(lambda: d.service("chatty")["restarts"] >= 3, timeout=20, what="chatty restarting")
        st, h = health(d)
        self.assertEqual(st, 200, h)
        before = [e["id"] for e in d.events()]
        start_fault()
        # The store fails: visible in /v1/health, herd info and the daemon's log.
        wait_until(lambda: health(d)[0] == 503, timeout=20, what="health 503 store_failing")
        st, h = health(d)
        self.assertEqual(h["error"]["code"], "store_failing", h)
        self.assertTrue(any(w in h["error"]["message"] for w in error_words), h)
        i = info(d)
        self.assertTrue(i["store_failing"], i)
        self.assertTrue(any(w in (i["store_error"] or "") for w in error_words), i)
        self.assertIn("store: ", d.log())
        # The daemon answers and acts: a stop asked during the outage is obeyed ...
        t0 = time.time()
        r = d.cli("stop", "steady", "--wait", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertLess(time.time() - t0, 5, "the stop took too long: is the loop held by the store?")
        # ... chatty goes on restarting, its state changes held in memory.
        n0 = d.service("chatty")["restarts"]
        wait_until(lambda: d.service("chatty")["restarts"] >= n0 + 3, timeout=20, what="restarts in the outage")
        wait_until(lambda: info(d)["store_pending"] > 0, timeout=10, what="writes held")
        if log_lost:
            wait_until(lambda: "log_error" in d.service("chatty"), timeout=10, what="the log's error on chatty")
        restarts = d.service("chatty")["restarts"]  # each one follows a FAILED event
        end_fault()
        wait_until(lambda: health(d)[0] == 200, timeout=20, what="health 200 again")
        self.assertFalse(info(d)["store_failing"])
        self.assertIn("store: writing again", d.log())
        # Nothing recorded is lost: the events before and during the outage are all in the
        # database, ids without a gap.
        ids = [e[0] for e in store_events(d.state)]
        self.assertTrue(set(before) <= set(ids), "events recorded before the outage were lost")
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))), "a gap in the events")
        failed = [e for e in store_events(d.state) if e[1] == "chatty" and e[3] == "FAILED"]
        self.assertGreaterEqual(len(failed), restarts, "events of the outage were lost")
        stops = [e for e in store_events(d.state) if e[1] == "steady" and e[3] == "STOPPED"]
        self.assertTrue(stops, "the stop during the outage is not in the store")
        if log_lost:
            wait_until(lambda: "log_error" not in d.service("chatty"), timeout=10, what="the log writing again")
            with open(os.path.join(d.state, "logs", "chatty.log"), errors="replace") as f:
                self.assertIn("bytes of output were lost here", f.read())
        # What was asked during the outage survives the daemon: steady stays stopped.
        d.kill9()
        d.start()
        s = d.service("steady")
        self.assertEqual((s["state"], s["wanted"]), ("STOPPED", "down"), s)
        d.wait_state("chatty", ("STARTING", "HEALTHY", "BACKOFF", "FAILED"))

    @unittest.skipUnless(can_mount(), "needs root and tmpfs mounts")
    def test_disk_full(self):
        root = self.mounts.enter_context(tmpfs("3m"))
        self.on(root)
        filler = []
        self.outage_then_recovery(lambda: filler.append(fill(root)), lambda: os.unlink(filler[0]),
                                  ("full",))
        self.assertIn("No space left on device", self.d.log())

    @unittest.skipUnless(can_mount() and shutil.which("mkfs.ext4") and shutil.which("chattr"),
                         "needs root, loop mounts, mkfs.ext4 and chattr")
    def test_state_dir_becomes_unwritable(self):
        # A tmpfs cannot be remounted read-only while herd holds files open for writing
        # (EBUSY), so the state dir's files are made immutable (ext4, chattr +i): every write,
        # creation and rename there fails (EPERM) as on a read-only disk, and it can be undone
        # while herd runs. All but herd.db-shm, SQLite's WAL index, which SQLite maps into
        # memory: see test_wal_index_becomes_unwritable for that one.
        root = self.mounts.enter_context(ext4())
        self.on(root)
        state = os.path.join(root, "state")

        def freeze():
            paths = [os.path.join(dp, f) for dp, _, fs in os.walk(state) for f in fs if not f.endswith("-shm")]
            # (chattr refuses FIFOs and sockets: they are not written through anyway)
            subprocess.run(["chattr", "+i", state] + [os.path.join(state, x) for x in ("logs", "run")] + paths,
                           capture_output=True)

        def thaw():
            subprocess.run(["chattr", "-R", "-i", state], capture_output=True)

        self.outage_then_recovery(freeze, thaw, ("disk I/O error", "readonly", "read-only", "not permitted",
                                                 "unable to open"))

    # SQLite maps its WAL index (herd.db-shm) into the daemon's memory; once that file cannot
    # be written (immutable here; on a disk that ext4 remounts read-only after an error, the
    # same), the next store write that touches a page the kernel has cleaned meanwhile faults
    # (SIGBUS), which used to kill the daemon. Now that page becomes a private copy: the daemon
    # goes on, says so in `herd info`, and nothing it records is lost: after the file is
    # writable again and the daemon restarts (a clean stop, then a kill -9), every restart it
    # counted is in the store.
    @unittest.skipUnless(can_mount() and shutil.which("mkfs.ext4") and shutil.which("chattr"),
                         "needs root, loop mounts, mkfs.ext4 and chattr")
    def test_wal_index_becomes_unwritable(self):
        root = self.mounts.enter_context(ext4())
        self.on(root)
        d = self.d
        d.write_config([chatty()])
        d.start()
        wait_until(lambda: d.service("chatty")["restarts"] >= 2, timeout=20, what="chatty restarting")
        shm = os.path.join(d.state, "herd.db-shm")
        subprocess.run(["chattr", "+i", shm], check=True)
        subprocess.run(["sync"], check=True)  # the mapped pages written back and write-protected
        try:
            n0 = d.service("chatty")["restarts"]
            wait_until(lambda: d.proc.poll() is not None or d.service("chatty")["restarts"] >= n0 + 5, timeout=30,
                       what="restarts with the WAL index unwritable")
            self.assertIsNone(d.proc.poll(), "the daemon died (%s)" % d.proc.returncode)
            i = info(d)
            self.assertFalse(i["store_failing"], i)
            self.assertIn("stopped taking writes", i["store_warning"] or "", i)
            self.assertIn("herd.db-shm", d.log())
        finally:
            subprocess.run(["chattr", "-i", shm], capture_output=True)
        # A clean stop checkpoints everything into herd.db; a kill -9 after more restarts
        # leaves them in the WAL, which the next daemon's index is rebuilt from.
        n1 = d.service("chatty")["restarts"]
        d.stop()
        d.start()
        self.assertGreaterEqual(d.service("chatty")["restarts"], n1, "restarts recorded meanwhile were lost")
        self.assertIsNone(info(d)["store_warning"])
        wait_until(lambda: d.service("chatty")["restarts"] >= n1 + 2, timeout=20, what="chatty restarting again")
        n2 = d.service("chatty")["restarts"]
        d.kill9()
        d.start()
        self.assertGreaterEqual(d.service("chatty")["restarts"], n2, "restarts lost after kill -9")

    def test_store_locked_by_another_process(self):
        d = self.d
        holder = []

        def lock():
            # BEGIN EXCLUSIVE held by another process until it is told to end.
            code = ("import sqlite3,sys; db=sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30);"
                    "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read();"
                    "db.execute('ROLLBACK')")
            p = subprocess.Popen([sys.executable, "-c", code, os.path.join(d.state, "herd.db")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "locked")
            holder.append(p)

        def unlock():
            p = holder[0]
            p.stdin.close()
            p.wait(10)

        try:
            self.outage_then_recovery(lock, unlock, ("locked",), log_lost=False)
        finally:
            for p in holder:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def test_jobs_and_work_while_the_store_is_locked(self):
        """A job is acknowledged, and a work item deposited, leased or reported, only once it
        is in the database: while the store cannot write they are refused (503), nothing half
        done; once it writes they go through, and no item was handed out unrecorded."""
        d = self.d
        d.write_config([chatty()])
        d.start()
        st, b = d.request("POST", "/v1/queues/q/work", {"items": [{"payload": 1}, {"payload": 2}]})
        self.assertEqual(st, 201, b)
        code = ("import sqlite3,sys; db=sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30);"
                "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read();"
                "db.execute('ROLLBACK')")
        p = subprocess.Popen([sys.executable, "-c", code, os.path.join(d.state, "herd.db")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(p.stdout.readline().strip(), "locked")
            wait_until(lambda: health(d)[0] == 503, timeout=20, what="the store failing")  # (chatty's writes)
            st, b = d.request("POST", "/v1/jobs", {"name": "j", "command": ["true"]})
            self.assertEqual((st, b["error"]["code"]), (503, "store_failing"), b)
            st, b = d.request("POST", "/v1/queues/q/work", {"payload": 3})
            self.assertEqual((st, b["error"]["code"]), (503, "store_failing"), b)
            st, b = d.request("POST", "/v1/queues/q/withdraw")
            self.assertEqual((st, b["error"]["code"]), (503, "store_failing"), b)
            st, b = d.request("GET", "/v1/services/j")
            self.assertEqual(st, 404, "no job was made: %s" % b)
        finally:
            p.stdin.close()
            p.wait(10)
        wait_until(lambda: health(d)[0] == 200, timeout=20, what="the store writing again")
        st, b = d.request("POST", "/v1/jobs", {"name": "j", "command": ["true"]})
        self.assertEqual(st, 201, b)
        st, b = d.request("POST", "/v1/queues/q/withdraw")
        self.assertEqual(st, 200, b)
        self.assertEqual(b["work"]["payload"], 1)
        st, b = d.request("GET", "/v1/queues/q/work")
        self.assertEqual(b["counts"], {"queued": 1, "running": 1}, "only the two deposited before, one leased")

    @unittest.skipUnless(can_mount(), "needs root and tmpfs mounts")
    def test_read_only_state_dir_at_start(self):
        root = self.mounts.enter_context(tmpfs("1m"))
        os.makedirs(os.path.join(root, "ro", "state"))
        subprocess.run(["mount", "-o", "remount,ro", root], check=True)
        d = self.d
        d.state = os.path.join(root, "ro", "state")
        d.sock = os.path.join(d.state, "herd.sock")
        d.start(wait=False)
        self.assertEqual(d.wait_exit(10), 101, d.log())
        log = d.log()
        self.assertIn(d.state, log)
        self.assertIn("Read-only file system", log)
        self.assertEqual(log.count("\n"), 1 if log.endswith("\n") else 0, "one line saying why:\n" + log)


class DescriptorLimit(SanitizedSuiteTest):
    @unittest.skipUnless(shutil.which("prlimit"), "needs prlimit (util-linux)")
    def test_limit_lowered_under_load(self):
        d = self.d
        n = 30
        d.write_config([svc("s%02d" % i) for i in range(n)])
        d.start()
        for i in range(n):
            d.wait_state("s%02d" % i, "HEALTHY")
        pid = d.proc.pid
        used = fd_count(pid)
        soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
        # Lowered to just above what it holds: most starts would take the last descriptors.
        low = used + 20
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:" % low], check=True)
        stop = threading.Event()
        answered = [0]
        errors = []

        def storm():  # API load meanwhile: the control socket must keep answering
            while not stop.is_set():
                try:
                    st, _ = d.request("GET", "/v1/services?view=summary", timeout=10)
                    if st == 200:
                        answered[0] += 1
                except OSError as e:
                    errors.append(e)

        t = threading.Thread(target=storm)
        t.start()
        try:
            r = d.cli("restart", "s*")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # The starts wait for descriptors instead of failing, saying why.
            s = wait_service(d, "s00", lambda s: s["state"] == "PENDING", timeout=10, what="s00 waiting")
            self.assertIn("file descriptor", s["reason"])
            waiting = [x for x in d.services().values() if x["state"] == "PENDING"]
            self.assertGreater(len(waiting), n // 2)
            self.assertTrue(all(x["restarts"] <= 1 for x in d.services().values()), "no start counted as failed")
            st, h = health(d)
            self.assertEqual(st, 200, h)
            self.assertTrue(pid_alive(pid))
        finally:
            stop.set()
            t.join()
        self.assertGreater(answered[0], 10)
        self.assertEqual(errors, [], "the control socket refused a client under the lowered limit")
        # The limit comes back: every service starts by itself.
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:" % soft], check=True)
        for i in range(n):
            d.wait_state("s%02d" % i, "HEALTHY", timeout=20)
        fails = [e for e in d.events() if e["to"] == "FAILED"]
        self.assertEqual(fails, [], "a start failed for the limit")


def fake_jwt(exp_in=86400):
    import base64

    def b64(o):
        return base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
    return "%s.%s.c2ln" % (b64({"alg": "HS256", "typ": "JWT"}), b64({"exp": int(time.time()) + exp_in, "sun": "root"}))


class TokenCommandHangs(SanitizedSuiteTest):
    # A token_command that hangs: killed after the cluster's request_timeout, "token_command
    # timed out after Ns" on the cluster (and the services' reason), a new attempt after the
    # retry delay, and a shutdown that does not wait for it.
    def test_token_command_hangs(self):
        fdir = tempfile.mkdtemp(prefix="herd-token-")
        flag = os.path.join(fdir, "token-ok")
        self.addCleanup(shutil.rmtree, fdir, True)
        self.addCleanup(lambda: open(flag, "w").close())  # (a hung command ends with the test)
        srv = HTTPServer(status=500, body=b'{"errors":[{"error_number":-1,"error":"fake"}]}')
        self.addCleanup(srv.stop)
        token = fake_jwt()
        cmd = ["sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.1; done; echo "$1"', flag, token]
        cluster = {"name": "c", "url": "http://127.0.0.1:%d" % srv.port, "user": "root", "cwd": "/tmp",
                   "auth": {"token_command": cmd}, "request_timeout": "2s", "poll_interval": "500ms"}
        job = {"name": "job", "backend": "slurm", "cluster": "c", "command": ["sleep", "100"], "restart": "never"}
        self.d.write_config(json.dumps({"clusters": [cluster], "services": [job]}))
        self.d.start()
        try:
            # The daemon answers while the command hangs ...
            for _ in range(5):
                st, _ = self.d.request("GET", "/v1/clusters", timeout=2)
                self.assertEqual(st, 200)
            # ... and says why nothing happens: within a few request timeouts.
            wait_until(lambda: "token_command" in (self.d.request("GET", "/v1/clusters")[1]["clusters"][0]
                                                   .get("error") or ""),
                       timeout=8, what="the token command's error on the cluster")
            s = self.d.service("job")
            self.assertIn("token", s["reason"])
            # A shutdown does not wait for the hung command.
            self.d.stop(timeout=5)
            self.assertEqual(self.d.proc.returncode, 0, "the daemon did not exit on SIGTERM")
            # The command answers again: a request with its token reaches slurmrestd.
            self.d.start()
            open(flag, "w").close()
            wait_until(lambda: any(r["headers"].get("x-slurm-user-token") == token for r in srv.snapshot()),
                       timeout=20, what="a request with the new token")
        finally:
            open(flag, "w").close()  # (a hung command ends with the test)


@unittest.skipUnless(sshd.available(), "OpenSSH (sshd, ssh, ssh-keygen) is not installed: scripts/deps.sh --test")
class SshdStalls(SanitizedSuiteTest):
    """An ssh host that accepts the connection and never says a word (a hung sshd, a
    half-dead middlebox): the host for a tunnel and for a remote exec check."""

    def setUp(self):
        super().setUp()
        self.sshd = sshd.PrivateSshd()
        self.sshd.start()
        self.addCleanup(self.sshd.stop)
        # In front of the real sshd: first it accepts and stalls, then it passes through.
        self.px = faultproxy.FaultProxy(upstream=("127.0.0.1", self.sshd.port), mode="blackhole")
        self.addCleanup(self.px.close)

    def host(self):
        return self.d.request("GET", "/v1/hosts", timeout=5)[1]["hosts"][0]

    def test_sshd_accepts_and_stalls(self):
        target, local = free_port(), free_port()
        host = {"name": "lo", "destination": "root@127.0.0.1", "port": self.px.port, "host_key_alias": "testhost",
                "identity_file": self.sshd.client_key, "known_hosts": self.sshd.known_hosts,
                "server_alive_interval": "1s", "server_alive_count": 2, "connect_timeout": "2s"}
        web = {"name": "web", "command": ["python3", "-m", "http.server", str(target), "--bind", "127.0.0.1"],
               "ssh": "lo", "endpoint": {"port": target, "local_port": local},
               "check": {"type": "http", "path": "/", "interval": "300ms", "timeout": "1s"}, "stop": {"grace": "2s"}}
        rcheck = {"name": "rc", "command": ["sleep", "1d"],
                  "check": {"type": "exec", "host": "lo", "interval": "500ms", "timeout": "20s",
                            "command": ["echo", "fine"]}}
        self.d.write_config(json.dumps({"hosts": [host], "services": [web, rcheck]}))
        self.d.start()
        # Stalled: the daemon answers at once, the host is not up and says why, both checks
        # fail with a reason naming the host, nothing is restarted for it.
        wait_until(lambda: self.px.accepted >= 2, timeout=10, what="herd connecting (master and session)")
        t0 = time.time()
        for _ in range(5):
            self.assertEqual(self.d.request("GET", "/v1/services", timeout=2)[0], 200)
        self.assertLess(time.time() - t0, 2)
        h = wait_until(lambda: (lambda h: h if h["state"] in ("backoff", "down") and h["reason"] else None)(
            self.host()), timeout=15, what="the master's connect to time out")
        self.assertNotEqual(h["state"], "up")
        rc = wait_service(self.d, "rc", lambda s: ((s["check"] or {}).get("last") or {}).get("ok") is False,
                          timeout=20, what="the remote check to fail")
        self.assertIn("lo", rc["check"]["last"]["message"])
        wait_until(lambda: self.host()["session"]["last_error"], timeout=20, what="the session's error")
        self.assertNotEqual(self.host()["session"]["state"], "up")
        web = self.d.service("web")
        self.assertNotEqual(web["state"], "HEALTHY")
        self.assertEqual(self.d.service("rc")["restarts"], 0)
        # sshd answers again: the master, the forward and the session come back by themselves.
        self.px.mode = "pass"
        wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=60, what="web HEALTHY through it")
        wait_service(self.d, "rc", lambda s: s["state"] == "HEALTHY", timeout=60, what="rc HEALTHY")
        self.assertEqual(self.host()["state"], "up")
        self.assertEqual(self.host()["session"]["state"], "up")


if __name__ == "__main__":
    main()
