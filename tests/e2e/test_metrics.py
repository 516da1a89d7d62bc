"""Observability: GET /metrics checked by promtool and against what the services do (stop,
kill -9, restart), GET /v1/health (200, and 503 when the store really cannot write: a
file-size limit on the running daemon), --liveness-file, systemd's notify protocol on a
real datagram socket (READY=1, STATUS=, WATCHDOG=1 at its cadence, STOPPING=1), and
config/herd.service through systemd-analyze verify."""
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import unittest

from harness import HERD_BIN, SanitizedSuiteTest, UnixHTTPConnection, checked_request, main, wait_until

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROM_CT = "text/plain; version=0.0.4"


class Checked(SanitizedSuiteTest):
    """Sanitizer reports fail the test, and so does a uv handle left open at exit (the
    heartbeat's timers are new)."""
    SAN_MARKS = SanitizedSuiteTest.SAN_MARKS + ("leaked handle", "loop closed with open handles")


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0}
    d.update(kw)
    return d


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, ((label, value), ...)): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def read(path):
    with open(path) as f:
        return f.read()


def val(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))))


class Metrics(Checked):
    def scrape(self):
        c = UnixHTTPConnection(self.d.sock, timeout=30)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read().decode()
            self.assertEqual(r.status, 200, body[:500])
            self.assertTrue(r.getheader("Content-Type").startswith(PROM_CT), r.getheader("Content-Type"))
            return body
        finally:
            c.close()

    def promtool(self, text):
        if not shutil.which("promtool"):
            self.skipTest("promtool is not installed (scripts/deps.sh --test installs Debian's prometheus)")
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""), "promtool check metrics")

    def test_format_states_and_counters(self):
        self.d.write_config([
            svc("web", backoff={"initial": 0}),
            svc("chk", check={"type": "exec", "command": ["true"], "interval": "200ms"}),
        ])
        self.d.start()
        self.d.wait_state("web", "HEALTHY")
        self.d.wait_state("chk", "HEALTHY")
        text = self.scrape()
        self.promtool(text)
        m = parse(text)
        for state in ("HEALTHY", "STOPPED", "FAILED", "STARTING", "BACKOFF"):
            self.assertEqual(val(m, "herd_service_state", service="web", state=state), 1 if state == "HEALTHY" else 0)
        self.assertEqual(val(m, "herd_service_wanted_up", service="web"), 1)
        self.assertEqual(val(m, "herd_services"), 2)
        self.assertGreaterEqual(val(m, "herd_service_uptime_seconds", service="web"), 0)
        self.assertGreater(val(m, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(val(m, "process_open_fds"), 3)
        self.assertEqual(val(m, "herd_store_failing"), 0)
        self.assertIsNone(val(m, "herd_service_checks_total", service="web", result="pass"))  # no check

        # Checks: results counted, and the histogram's count is every result.
        def checked():
            m = parse(self.scrape())
            return m if val(m, "herd_service_checks_total", service="chk", result="pass") >= 3 else None
        m = wait_until(checked, what="three check results")
        runs = (val(m, "herd_service_checks_total", service="chk", result="pass")
                + val(m, "herd_service_checks_total", service="chk", result="fail"))
        self.assertEqual(val(m, "herd_service_check_duration_seconds_count", service="chk"), runs)
        self.assertEqual(val(m, "herd_service_check_duration_seconds_bucket", service="chk", le="+Inf"), runs)
        self.assertEqual(val(m, "herd_service_check_ok", service="chk"), 1)

        # Stopped: the state gauge moves, the wanted state too, and the end is counted.
        st, body = checked_request(self.d, "POST", "/v1/services/web/stop?wait=stopped&timeout=10")
        self.assertEqual(st, 200, body)
        m = parse(self.scrape())
        self.assertEqual(val(m, "herd_service_state", service="web", state="STOPPED"), 1)
        self.assertEqual(val(m, "herd_service_state", service="web", state="HEALTHY"), 0)
        self.assertEqual(val(m, "herd_service_wanted_up", service="web"), 0)
        self.assertEqual(val(m, "herd_service_instance_ends_total", service="web", reason="stopped"), 1)
        self.assertIsNone(val(m, "herd_service_uptime_seconds", service="web"))

        # Killed with SIGKILL: ended by a signal, restarted by the policy.
        st, body = checked_request(self.d, "POST", "/v1/services/web/start?wait=healthy&timeout=10")
        self.assertEqual(st, 200, body)
        before = parse(self.scrape())
        r0 = val(before, "herd_service_restarts_total", service="web")
        os.kill(body["service"]["pid"], signal.SIGKILL)

        def restarted():
            m = parse(self.scrape())
            return m if (val(m, "herd_service_restarts_total", service="web") > r0
                         and val(m, "herd_service_state", service="web", state="HEALTHY") == 1) else None
        m = wait_until(restarted, what="web restarted after kill -9")
        self.assertEqual(val(m, "herd_service_instance_ends_total", service="web", reason="signal"), 1)
        self.assertEqual(val(m, "herd_service_instance_ends_total", service="web", reason="exit_code"), 0)

        # A restart on request counts too.
        r1 = val(m, "herd_service_restarts_total", service="web")
        st, body = checked_request(self.d, "POST", "/v1/services/web/restart?wait=healthy&timeout=10")
        self.assertEqual(st, 200, body)
        m = parse(self.scrape())
        self.assertEqual(val(m, "herd_service_restarts_total", service="web"), r1 + 1)
        self.assertEqual(val(m, "herd_service_instance_ends_total", service="web", reason="stopped"), 2)
        self.assertGreater(val(m, "herd_store_commits_total"), 0)
        self.promtool(self.scrape())

    def test_exit_code_and_bad_requests(self):
        self.d.write_config([svc("flaky", command=["sh", "-c", "exit 3"], restart="on-failure",
                                 backoff={"initial": "50ms", "max": "100ms"})])
        self.d.start()

        def ended():
            m = parse(self.scrape())
            return m if val(m, "herd_service_instance_ends_total", service="flaky", reason="exit_code") >= 2 else None
        m = wait_until(ended, what="two ends with exit code 3")
        self.assertGreaterEqual(val(m, "herd_service_restarts_total", service="flaky"), 1)
        self.promtool(self.scrape())
        st, body = self.d.request("POST", "/metrics")
        self.assertEqual(st, 405, body)
        self.assertEqual(body["error"]["code"], "method_not_allowed")
        st, body = self.d.request("GET", "/metrics", body={"x": 1})
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], "unknown_key")


    def test_jobs_queues_and_work_items(self):
        import json
        self.d.write_config(json.dumps({"queues": [{"name": "two", "max_running": 2}]}), "queues.json")
        self.d.start()
        gate = os.path.join(self.d.root, "gate")
        for i in range(5):
            st, b = self.d.request("POST", "/v1/jobs", {"name": "j%d" % i, "queue": "two", "command": [
                "sh", "-c", "while [ ! -e %s ]; do sleep 0.02; done; exit %d" % (gate, 1 if i == 4 else 0)]})
            self.assertEqual(st, 201, b)

        def held():
            m = parse(self.scrape())
            return m if (val(m, "herd_jobs", queue="two", state="RUNNING"),
                         val(m, "herd_jobs", queue="two", state="PENDING")) == (2, 3) else None
        m = wait_until(held, what="2 jobs running and 3 queued in the metrics")
        self.assertEqual(val(m, "herd_queue_slots_used", queue="two"), 2)
        self.assertEqual(val(m, "herd_queue_max_running", queue="two"), 2)
        self.assertEqual(val(m, "herd_jobs", queue="two", state="COMPLETED"), 0)
        open(gate, "w").close()

        def finished():
            m = parse(self.scrape())
            return m if (val(m, "herd_jobs", queue="two", state="COMPLETED"),
                         val(m, "herd_jobs", queue="two", state="FAILED")) == (4, 1) else None
        m = wait_until(finished, what="4 jobs COMPLETED and 1 FAILED in the metrics")
        self.assertEqual(val(m, "herd_queue_slots_used", queue="two"), 0)
        st, b = self.d.request("POST", "/v1/queues/w/work", {"items": [{"payload": i} for i in range(3)]})
        self.assertEqual(st, 201, b)
        st, b = self.d.request("POST", "/v1/queues/w/withdraw")
        self.assertEqual(st, 200, b)
        text = self.scrape()
        m = parse(text)
        self.assertEqual([val(m, "herd_work_items", queue="w", state=x) for x in ("queued", "running", "success")],
                         [2, 1, 0])
        self.promtool(text)


class Health(Checked):
    def test_health_and_liveness_file(self):
        live = os.path.join(self.d.root, "live")
        self.d.args += ["--liveness-file", live]
        self.d.write_config([svc("web")])
        self.d.start()
        st, body = checked_request(self.d, "GET", "/v1/health")
        self.assertEqual(st, 200, body)
        self.assertIs(body["ok"], True)
        self.assertIs(body["store"]["ok"], True)
        self.assertLess(body["loop"]["last_tick_ago"], 5)
        t0 = os.stat(live).st_mtime_ns
        wait_until(lambda: os.stat(live).st_mtime_ns > t0, timeout=5, what="the liveness file touched again")
        # Removed under it: made again at the next tick.
        os.unlink(live)
        wait_until(lambda: os.path.exists(live), timeout=5, what="the liveness file made again")

    def test_liveness_file_unwritable(self):
        self.d.args += ["--liveness-file", os.path.join(self.d.root, "no", "such", "dir", "live")]
        self.d.start(wait=False)
        rc = self.d.wait_exit(timeout=10)
        self.assertEqual(rc, 101)
        self.assertIn("--liveness-file", self.d.log())

    def test_loop_stood_still(self):
        """The daemon stopped (SIGSTOP) for 7 s: once it runs again, health says
        the loop stood still (503 loop_stalled) for 10 s, then 200 again."""
        self.d.write_config([svc("web")])
        self.d.start()
        self.d.wait_state("web", "HEALTHY")
        wait_until(lambda: checked_request(self.d, "GET", "/v1/health")[1]["loop"]["ticks"] >= 1, timeout=5,
                   what="a first heartbeat")
        self.d.signal(signal.SIGSTOP)
        try:
            # The stimulus, not a wait for a condition: 7 s held still makes the next tick, due
            # within the first second of it, 6 to 7 s late.
            time.sleep(7)
        finally:
            self.d.signal(signal.SIGCONT)
        st, body = checked_request(self.d, "GET", "/v1/health")
        self.assertEqual((st, body["error"]["code"]), (503, "loop_stalled"), body)
        self.assertRegex(body["error"]["message"], r"stood still for [5-9]\.\ds")
        self.assertGreater(body["error"]["loop"]["lag_max"], 5)
        wait_until(lambda: checked_request(self.d, "GET", "/v1/health")[0] == 200, timeout=20, interval=0.5,
                   what="health 200 again")
        m = parse(checked_request(self.d, "GET", "/metrics", raw=True)[1].decode())
        self.assertEqual(val(m, "herd_loop_lag_seconds_bucket", le="5"),
                         val(m, "herd_loop_lag_seconds_count") - 1)  # the one late tick
        self.assertGreater(val(m, "herd_loop_lag_max_seconds"), 5)

    def test_store_cannot_write(self):
        """A file-size limit set on the running daemon (prlimit): the store's file cannot
        grow, its commits fail for real (EFBIG), and health says so until they succeed."""
        self.d.write_config([svc("web")])
        self.d.start()
        self.d.wait_state("web", "HEALTHY")
        st, body = checked_request(self.d, "GET", "/v1/health")
        self.assertEqual(st, 200, body)
        resource.prlimit(self.d.proc.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
        try:
            def failing():
                # Each restart writes a few events: soon one must grow the WAL.
                checked_request(self.d, "POST", "/v1/services/web/restart?wait=healthy&timeout=10")
                st, body = checked_request(self.d, "GET", "/v1/health")
                return (st, body) if st == 503 else None
            st, body = wait_until(failing, timeout=60, what="health 503 under a 1-byte file-size limit")
            self.assertEqual(body["error"]["code"], "store_failing", body)
            self.assertIn("store cannot write", body["error"]["message"])
            self.assertIs(body["error"]["store"]["ok"], False)
            self.assertGreater(body["error"]["store"]["errors"], 0)
            self.assertEqual(self.d.proc.poll(), None, "the daemon survives SIGXFSZ")
            if os.environ.get("HERD_TEST_VERBOSE"):
                print(body["error"]["message"])
        finally:
            resource.prlimit(self.d.proc.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

        def healthy():
            checked_request(self.d, "POST", "/v1/services/web/restart?wait=healthy&timeout=10")
            st, body = checked_request(self.d, "GET", "/v1/health")
            return body if st == 200 else None
        body = wait_until(healthy, timeout=30, what="health 200 once the store writes again")
        self.assertIs(body["store"]["ok"], True)


class Notifications:
    """The manager's side of sd_notify: a bound SOCK_DGRAM socket, read on a thread."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="herd-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "herd-test-notify-%d-%d" % (os.getpid(), id(self))
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self.dir, "notify.sock")
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.msgs = []  # (monotonic time, text)
        self.lock = threading.Lock()
        self.done = False
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.msgs.append((time.monotonic(), data.decode()))

    def all(self):
        with self.lock:
            return list(self.msgs)

    def find(self, pred):
        return [m for m in self.all() if pred(m[1])]

    def close(self):
        self.done = True
        self.t.join(5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Notify(Checked):
    def start_with(self, n, **env):
        self.d.env.update(NOTIFY_SOCKET=n.address, **env)
        self.d.write_config([svc("web"), svc("env", command=["sh", "-c", "echo NS=[$NOTIFY_SOCKET]; sleep 1000"])])
        self.d.start()

    def test_ready_status_watchdog_stopping(self):
        n = Notifications()
        self.addCleanup(n.close)
        self.start_with(n, WATCHDOG_USEC="400000")
        ready = wait_until(lambda: n.find(lambda t: "READY=1" in t), what="READY=1")[0]
        self.assertRegex(ready[1], r"(^|\n)STATUS=2 services: ")
        # READY=1 came once the socket answered (the harness waits for it before this).
        self.d.wait_state("web", "HEALTHY")
        self.d.wait_state("env", "HEALTHY")
        wait_until(lambda: n.find(lambda t: t == "STATUS=2 services: 2 healthy"), what="STATUS with 2 healthy")
        # The watchdog at half WATCHDOG_USEC: 200 ms apart.
        wait_until(lambda: len(n.find(lambda t: t == "WATCHDOG=1")) >= 8, what="8 WATCHDOG=1")
        times = [t for t, m in n.find(lambda t: t == "WATCHDOG=1")]
        gaps = [b - a for a, b in zip(times[1:], times[2:])]  # (the first is sent with READY=1)
        self.assertTrue(0.15 <= statistics.median(gaps) <= 0.3, gaps)
        # Counts change: a new STATUS (rate-limited to one a second, only when it changes).
        st, body = checked_request(self.d, "POST", "/v1/services/web/stop?wait=stopped&timeout=10")
        self.assertEqual(st, 200, body)
        wait_until(lambda: n.find(lambda t: t == "STATUS=2 services: 1 healthy, 1 stopped"), timeout=5,
                   what="STATUS with 1 stopped")
        statuses = [m for _, m in n.find(lambda t: t.startswith("STATUS="))]
        self.assertEqual(len(statuses), len(set(statuses)), "STATUS is sent only when it changes: %s" % statuses)
        # The services do not inherit herd's manager.
        wait_until(lambda: "NS=[]" in read(os.path.join(self.d.state, "logs", "env.log")), what="env's output")
        self.d.signal(signal.SIGTERM)
        self.assertEqual(self.d.wait_exit(), 0)
        stopping = n.find(lambda t: "STOPPING=1" in t)
        self.assertEqual(len(stopping), 1, n.all()[-5:])
        self.assertIn("STATUS=shutting down: stopping 2 services", stopping[0][1])

    def test_abstract_socket_and_watchdog_of_another_pid(self):
        n = Notifications(abstract=True)
        self.addCleanup(n.close)
        # WATCHDOG_PID names another process: the watchdog is not herd's to pet.
        self.start_with(n, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
        wait_until(lambda: n.find(lambda t: "READY=1" in t), what="READY=1 on an abstract socket")
        self.d.wait_state("web", "HEALTHY")
        st, body = checked_request(self.d, "POST", "/v1/services/web/stop?wait=stopped&timeout=10")
        self.assertEqual(st, 200, body)
        wait_until(lambda: n.find(lambda t: "1 stopped" in t), timeout=5, what="STATUS with 1 stopped")
        self.d.signal(signal.SIGTERM)
        self.assertEqual(self.d.wait_exit(), 0)
        wait_until(lambda: n.find(lambda t: "STOPPING=1" in t), timeout=5, what="STOPPING=1")
        self.assertEqual(n.find(lambda t: "WATCHDOG" in t), [])

    def test_no_notify_socket(self):
        # Not under systemd: nothing is sent anywhere, and the daemon runs as ever.
        self.d.env.pop("NOTIFY_SOCKET", None)
        self.d.write_config([svc("web")])
        self.d.start()
        self.d.wait_state("web", "HEALTHY")
        self.assertNotIn("sd_notify", self.d.log())


class UnitFile(unittest.TestCase):
    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if not tool:
            self.skipTest("systemd-analyze is not installed (Debian's systemd package)")
        text = read(os.path.join(REPO, "config", "herd.service"))
        for key in ("Type=notify", "KillMode=process", "WatchdogSec=", "--state-dir", "NotifyAccess=main"):
            self.assertIn(key, text)
        # verify checks that ExecStart's program exists: point it at the binary under test.
        self.assertIn("ExecStart=/usr/local/bin/herd ", text)
        d = tempfile.mkdtemp(prefix="herd-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        unit = os.path.join(d, "herd.service")
        with open(unit, "w") as f:
            f.write(text.replace("/usr/local/bin/herd", os.path.abspath(HERD_BIN)))
        r = subprocess.run([tool, "verify", unit], capture_output=True, text=True, timeout=120)
        # It exits 0 on unknown keys and bad values too, and only says so: no output at all.
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))
        # ...and it does say so (the check above can fail).
        with open(unit, "w") as f:
            f.write(text.replace("/usr/local/bin/herd", os.path.abspath(HERD_BIN)).replace("KillMode=", "KilMode="))
        r = subprocess.run([tool, "verify", unit], capture_output=True, text=True, timeout=120)
        self.assertIn("KilMode", r.stdout + r.stderr)


if __name__ == "__main__":
    main()
