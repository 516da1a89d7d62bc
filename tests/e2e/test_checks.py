"""Health checks end to end: http (plain and TLS), tcp and exec checks against real
servers on 127.0.0.1, their messages and timing, thresholds, start_period, on_unhealthy,
and that one hung check never holds up another service's checks."""
import os
import re
import shutil
import signal
import tempfile
import time

from harness import (SanitizedSuiteTest, find_events, first_event, last_event_id, main, pid_alive,
                     wait_service, wait_until)
from servers import HTTPServer, TCPListener, free_port, make_test_ca, tls_context

SERVERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers.py")


def svc(name, check, **kw):
    c = {"interval": "100ms", "timeout": "1s"}
    c.update(check)
    s = {"name": name, "command": ["sleep", "1000"], "check": c,
         "backoff": {"initial": 0}, "stop": {"grace": "2s"}}
    s.update(kw)
    return s


def last_check(s):
    return (s.get("check") or {}).get("last")


def has_result(ok=None, msg_re=None):
    """A predicate on a service: its last check result exists (and matches)."""
    def pred(s):
        last = last_check(s)
        if not last:
            return False
        if ok is not None and last["ok"] != ok:
            return False
        return msg_re is None or re.search(msg_re, last["message"])
    return pred


def status_line(d, name):
    out = d.cli("status", check=True).stdout
    for line in out.splitlines():
        if line.split() and line.split()[0] == name:
            return line
    raise AssertionError("no line for %s in:\n%s" % (name, out))


def procs_with_arg(arg):
    """Live processes whose command line contains `arg` as one argument."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % e, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if arg.encode() in args and pid_alive(int(e)):
            out.append(int(e))
    return out


class ServerTest(SanitizedSuiteTest):
    """SuiteTest that also stops the test's servers."""

    def setUp(self):
        super().setUp()
        self.servers = []

    def server(self, *a, **kw):
        srv = HTTPServer(*a, **kw)
        self.servers.append(srv)
        return srv

    def listener(self, port=0):
        lst = TCPListener(port)
        self.servers.append(lst)
        return lst

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for srv in self.servers:
                srv.stop() if hasattr(srv, "stop") else srv.close()


class HTTPChecks(ServerTest):
    def test_http_pass(self):
        srv = self.server(200, body="all good: ok")
        head = self.server(204, body="")
        self.d.write_config([
            svc("web", {"type": "http", "url": srv.url("/health?x=1"), "headers": {"X-Probe": "herd-e2e"},
                        "body_contains": "good"}),
            svc("head", {"type": "http", "url": head.url("/h"), "method": "HEAD", "status": 204}),
        ])
        self.d.start()
        s = self.d.wait_state("web", "HEALTHY", timeout=5)
        ev = first_event(self.d, "web", "HEALTHY")
        self.assertEqual(ev["from"], "STARTING")
        self.assertEqual(ev["reason"], "check passed 1 time(s): HTTP 200")
        s = wait_service(self.d, "web", lambda x: x["check"]["runs"] >= 3, what="3 runs")
        self.assertEqual(s["check"]["type"], "http")
        self.assertTrue(s["check"]["last"]["ok"])
        self.assertEqual(s["check"]["last"]["message"], "HTTP 200")
        self.assertEqual(s["check"]["runs"], s["check"]["passes"])
        self.assertLess(abs(s["check"]["last"]["at"] - time.time()), 2.0)
        self.assertGreaterEqual(s["check"]["last"]["duration"], 0)
        self.assertLess(s["check"]["last"]["duration"], 0.5)
        reqs = srv.snapshot()
        self.assertEqual(reqs[0]["method"], "GET")
        self.assertEqual(reqs[0]["path"], "/health?x=1")
        self.assertEqual(reqs[0]["headers"].get("x-probe"), "herd-e2e")
        self.assertTrue(reqs[0]["headers"].get("user-agent", "").startswith("herd/"), reqs[0]["headers"])
        # interval 100ms: over 1 s about 10 more runs, not 2 and not 50
        n0 = srv.count()
        time.sleep(1.0)
        n = srv.count() - n0
        self.assertGreaterEqual(n, 6)
        self.assertLessEqual(n, 14)
        h = self.d.wait_state("head", "HEALTHY", timeout=5)
        self.assertEqual(h["check"]["last"]["message"], "HTTP 204")
        self.assertEqual({r["method"] for r in head.snapshot()}, {"HEAD"})
        # stopped: no more checks; started again: checks again
        self.d.cli("stop", "web", "--wait", check=True)
        n0 = srv.count()
        time.sleep(0.5)
        self.assertLessEqual(srv.count() - n0, 1)  # at most one already in flight
        n0 = srv.count()
        time.sleep(0.3)
        self.assertEqual(srv.count(), n0)
        self.d.cli("start", "web", "--wait", "--timeout", "5", check=True)
        wait_until(lambda: srv.count() >= n0 + 3, timeout=5, what="checks to resume")

    def test_http_recovers_with_on_unhealthy_keep(self):
        srv = self.server(200)
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/"), "on_unhealthy": "keep",
                                         "failure_threshold": 2})])
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY", timeout=5)["pid"]
        mark = last_event_id(self.d)
        srv.set(status=500)
        s = self.d.wait_state("web", "UNHEALTHY", timeout=5)
        self.assertEqual(s["reason"], "check failed 2 time(s): HTTP 500 (want 200-399)")
        self.assertEqual(s["check"]["last"]["message"], "HTTP 500 (want 200-399)")
        self.assertFalse(s["check"]["last"]["ok"])
        self.assertIn("check failed 2 time(s): HTTP 500 (want 200-399)", status_line(self.d, "web"))
        # keep: it stays UNHEALTHY and running while the server keeps failing
        time.sleep(0.6)
        s = self.d.service("web")
        self.assertEqual(s["state"], "UNHEALTHY")
        self.assertEqual(s["pid"], pid)
        self.assertTrue(pid_alive(pid))
        srv.set(status=200)
        s = self.d.wait_state("web", "HEALTHY", timeout=5)
        self.assertEqual(s["pid"], pid)
        self.assertEqual(s["restarts"], 0)
        evs = self.d.events(since=mark, service="web")
        self.assertEqual([(e["from"], e["to"]) for e in evs],
                         [("HEALTHY", "UNHEALTHY"), ("UNHEALTHY", "HEALTHY")])
        self.assertEqual(evs[1]["reason"], "check passed 1 time(s): HTTP 200")

    def test_http_no_answer_times_out_at_the_timeout(self):
        srv = self.server(mode="hang")
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/"), "timeout": "500ms",
                                         "interval": "200ms"})])
        self.d.start()
        s = wait_service(self.d, "web", has_result(), timeout=5, what="a check result")
        last = s["check"]["last"]
        self.assertFalse(last["ok"])
        self.assertRegex(last["message"],
                         r"^(Operation timed out after \d+ milliseconds with 0 bytes received|timed out after 0\.5s)$")
        self.assertGreaterEqual(last["duration"], 0.45)
        self.assertLess(last["duration"], 0.9)
        self.assertEqual(s["state"], "STARTING")
        self.assertGreaterEqual(srv.count(), 1)
        self.assertIn("check: " + last["message"].split(" after")[0], status_line(self.d, "web"))
        # the next runs time out too, each within its own timeout
        s = wait_service(self.d, "web", lambda x: x["check"]["runs"] >= 3, timeout=5, what="3 runs")
        self.assertEqual(s["check"]["passes"], 0)
        self.assertLess(s["check"]["last"]["duration"], 0.9)

    def test_http_headers_then_stalled_body(self):
        srv = self.server(mode="stall_body")
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/"), "timeout": "500ms",
                                         "interval": "200ms"})])
        self.d.start()
        s = wait_service(self.d, "web", has_result(), timeout=5, what="a check result")
        last = s["check"]["last"]
        self.assertFalse(last["ok"], last)
        self.assertNotRegex(last["message"], r"^HTTP 200")
        self.assertRegex(last["message"], r"timed out after")
        self.assertGreaterEqual(last["duration"], 0.45)
        self.assertLess(last["duration"], 0.9)
        self.assertEqual(s["state"], "STARTING")

    def test_http_server_down_is_refused(self):
        port = free_port()
        self.d.write_config([svc("web", {"type": "http", "url": "http://127.0.0.1:%d/" % port})])
        self.d.start()
        s = wait_service(self.d, "web", has_result(), timeout=5, what="a check result")
        last = s["check"]["last"]
        self.assertFalse(last["ok"])
        # libcurl's wording: "Connection refused" (newer) or "Couldn't connect to server" (7.88)
        self.assertRegex(last["message"], r"^Failed to connect to 127\.0\.0\.1 port %d after \d+ ms: "
                                          r"(Connection refused|Couldn't connect to server)$" % port)
        self.assertLess(last["duration"], 0.5)
        self.assertEqual(s["state"], "STARTING")
        self.assertIn("check: Failed to connect", status_line(self.d, "web"))
        # the server comes up on that port: the service becomes healthy
        srv = self.server(200, port=port)
        self.d.wait_state("web", "HEALTHY", timeout=5)
        self.assertGreaterEqual(srv.count(), 1)

    def test_http_body_contains_mismatch_and_status(self):
        srv = self.server(200, body="hello world")
        self.d.write_config([
            svc("body", {"type": "http", "url": srv.url("/"), "body_contains": "xyz"}),
            svc("code", {"type": "http", "url": srv.url("/"), "status": 204}),
            svc("range", {"type": "http", "url": srv.url("/"), "status": "200-204", "body_contains": "lo wo"}),
        ])
        self.d.start()
        s = wait_service(self.d, "body", has_result(), timeout=5, what="a check result")
        self.assertFalse(s["check"]["last"]["ok"])
        self.assertEqual(s["check"]["last"]["message"], 'HTTP 200 but the body lacks "xyz"')
        s = wait_service(self.d, "code", has_result(), timeout=5, what="a check result")
        self.assertFalse(s["check"]["last"]["ok"])
        self.assertRegex(s["check"]["last"]["message"], r"^HTTP 200 \(want 204")
        self.d.wait_state("range", "HEALTHY", timeout=5)
        time.sleep(0.4)
        self.assertEqual(self.d.service("body")["state"], "STARTING")
        self.assertEqual(self.d.service("code")["state"], "STARTING")
        self.assertEqual(self.d.service("body")["check"]["passes"], 0)


class HTTPSChecks(ServerTest):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="herd-ca-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        if not shutil.which("openssl"):
            self.fail("the openssl CLI is needed (apt-get install -y openssl)")
        self.pki = make_test_ca(self.tmp)

    def test_https_ca_file_insecure_and_unknown_ca(self):
        srv = self.server(200, body="secure ok", tls=tls_context(self.pki["cert"], self.pki["key"]))
        by_name = "https://localhost:%d/" % srv.port
        self.d.write_config([
            svc("ca", {"type": "http", "url": srv.url("/"), "ca_file": self.pki["ca"], "body_contains": "secure"}),
            svc("ca-dns", {"type": "http", "url": by_name, "ca_file": self.pki["ca"]}),
            svc("noca", {"type": "http", "url": srv.url("/")}),
            svc("insecure", {"type": "http", "url": srv.url("/"), "insecure": True}),
        ])
        self.d.start()
        for name in ("ca", "ca-dns", "insecure"):
            s = self.d.wait_state(name, "HEALTHY", timeout=5)
            self.assertEqual(s["check"]["last"]["message"], "HTTP 200", name)
        s = wait_service(self.d, "noca", has_result(), timeout=5, what="a check result")
        last = s["check"]["last"]
        self.assertFalse(last["ok"])
        self.assertRegex(last["message"].lower(), r"certificate")
        time.sleep(0.3)
        s = self.d.service("noca")
        self.assertEqual(s["state"], "STARTING")
        self.assertEqual(s["check"]["passes"], 0)
        self.assertIn("check: ", status_line(self.d, "noca"))
        # the server answered the ones that trusted it, never the one that did not
        self.assertGreaterEqual(srv.count(), 3)

    def test_https_endpoint_path(self):
        # the service itself serves HTTPS on its allocated port; the check is a path on it
        self.d.write_config([{
            "name": "tls", "stop": {"grace": "2s"},
            "command": ["python3", SERVERS, "--port", "${port}", "--body", "tls here",
                        "--tls", self.pki["cert"], self.pki["key"]],
            "endpoint": {"protocol": "https", "allocate": True},
            "check": {"type": "http", "path": "/ready", "ca_file": self.pki["ca"], "body_contains": "tls here",
                      "interval": "100ms", "timeout": "1s"}}])
        self.d.start()
        s = self.d.wait_state("tls", "HEALTHY", timeout=10)
        self.assertEqual(s["check"]["last"]["message"], "HTTP 200")
        self.assertTrue(20000 <= s["port"] <= 29999)


class KeptAliveHTTP(ServerTest):
    """Plain http:// checks to an address run on herd's own client: one connection kept
    open across runs, answers framed every way HTTP/1.1 allows, servers that drop
    connections, and answers that are not HTTP."""

    def runs_at_least(self, name, n, timeout=10):
        return wait_service(self.d, name, lambda x: x["check"]["runs"] >= n, timeout=timeout,
                            what="%d runs of %s" % (n, name))

    def test_one_connection_for_many_runs(self):
        srv = self.server(200, body="fine")
        head = self.server(200, body="a body HEAD must not read")
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/h?probe=1#frag"),
                                         "headers": {"X-Probe": "k"}}),
                             svc("head", {"type": "http", "url": head.url("/"), "method": "HEAD"})])
        self.d.start()
        s = self.runs_at_least("web", 10)
        self.assertEqual(s["check"]["passes"], s["check"]["runs"])
        self.assertEqual(srv.accepted, 1, "a new connection per run")
        r = srv.snapshot()[-1]
        self.assertEqual((r["method"], r["path"]), ("GET", "/h?probe=1"))
        self.assertEqual(r["headers"]["host"], "127.0.0.1:%d" % srv.port)
        self.assertEqual(r["headers"]["x-probe"], "k")
        self.assertTrue(r["headers"]["user-agent"].startswith("herd/"))
        # HEAD: the announced body is not waited for, and the connection stays in step.
        s = self.runs_at_least("head", 10)
        self.assertEqual(s["check"]["passes"], s["check"]["runs"], s["check"]["last"])
        self.assertEqual(head.accepted, 1)
        self.assertEqual({r["method"] for r in head.snapshot()}, {"HEAD"})
        # The service stops: its connection is closed, not left open.
        self.d.cli("stop", "web", "--wait", check=True)
        wait_until(lambda: not srv._conns, timeout=5, what="the server to see the connection closed")

    def test_a_reused_connection_the_server_dropped_is_retried(self):
        srv = self.server(200, mode="drop_reused")
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/")})])
        self.d.start()
        s = self.runs_at_least("web", 8)
        # Every run passes: a kept-alive connection found closed is retried on a new one.
        self.assertEqual(s["check"]["passes"], s["check"]["runs"], s["check"]["last"])
        self.assertGreaterEqual(srv.accepted, 8)
        self.assertGreaterEqual(srv.count(None), 1, "the server never dropped a reused connection")

    def test_bodies_framed_by_close_and_by_chunks(self):
        eof = self.server(200, body="alive and well", mode="eof_body")
        chunked = self.server(200, body="chunks of a healthy body", mode="chunked")
        self.d.write_config([svc("eof", {"type": "http", "url": eof.url("/"), "body_contains": "well"}),
                             svc("chunked", {"type": "http", "url": chunked.url("/"),
                                             "body_contains": "healthy"}),
                             svc("nomatch", {"type": "http", "url": chunked.url("/"),
                                             "body_contains": "sick"})])
        self.d.start()
        for name in ("eof", "chunked"):
            s = self.runs_at_least(name, 5)
            self.assertEqual(s["check"]["passes"], s["check"]["runs"], (name, s["check"]["last"]))
            self.assertEqual(s["check"]["last"]["message"], "HTTP 200")
        self.assertGreaterEqual(eof.accepted, 5)  # each answer closed its connection
        s = self.runs_at_least("nomatch", 3)
        self.assertEqual(s["check"]["passes"], 0)
        self.assertEqual(s["check"]["last"]["message"], 'HTTP 200 but the body lacks "sick"')

    def test_an_answer_that_is_not_http(self):
        srv = self.server(mode="garbage")
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/")})])
        self.d.start()
        s = self.runs_at_least("web", 3)
        self.assertEqual(s["check"]["passes"], 0)
        self.assertRegex(s["check"]["last"]["message"], r"^invalid HTTP answer: ")
        self.assertEqual(s["state"], "STARTING")
        # It recovers when a real server answers there.
        srv.set(mode="answer")
        self.d.wait_state("web", "HEALTHY", timeout=5)


class TCPChecks(ServerTest):
    def test_tcp_open_closed_and_endpoint_port(self):
        lst = self.listener()
        closed = free_port()
        self.d.write_config([
            svc("open", {"type": "tcp", "port": lst.port, "on_unhealthy": "keep", "failure_threshold": 1}),
            svc("closed", {"type": "tcp", "host": "127.0.0.1", "port": closed}),
            {"name": "ep", "command": ["python3", "-m", "http.server", "${port}", "--bind", "127.0.0.1"],
             "endpoint": {"protocol": "http", "allocate": True, "port_range": [31000, 31999]},
             "check": {"type": "tcp", "interval": "100ms", "timeout": "1s"}},
        ])
        self.d.start()
        s = self.d.wait_state("open", "HEALTHY", timeout=5)
        self.assertEqual(s["check"]["type"], "tcp")
        self.assertEqual(s["check"]["last"]["message"], "connected to port %d" % lst.port)
        s = wait_service(self.d, "closed", has_result(), timeout=5, what="a check result")
        self.assertFalse(s["check"]["last"]["ok"])
        self.assertEqual(s["check"]["last"]["message"], "connect to port %d: connection refused" % closed)
        self.assertEqual(s["state"], "STARTING")
        s = self.d.wait_state("ep", "HEALTHY", timeout=10)
        self.assertTrue(31000 <= s["port"] <= 31999, s["port"])
        self.assertEqual(s["check"]["last"]["message"], "connected to port %d" % s["port"])
        # the listener goes away: the open one turns UNHEALTHY and is kept
        pid = self.d.service("open")["pid"]
        lst.close()
        s = self.d.wait_state("open", "UNHEALTHY", timeout=5)
        self.assertEqual(s["reason"], "check failed 1 time(s): connect to port %d: connection refused" % lst.port)
        self.assertEqual(s["pid"], pid)


class ExecChecks(ServerTest):
    def test_exec_pass_fail_and_env(self):
        self.d.write_config([
            svc("pass", {"type": "exec", "command": ["sh", "-c", "echo first; echo port=$HERD_PORT svc=$HERD_SERVICE"]},
                endpoint={"allocate": True, "port_range": [32000, 32999]}),
            svc("fail", {"type": "exec", "command": ["sh", "-c", "echo one; echo 'db not ready' >&2; exit 3"]}),
            svc("nosuch", {"type": "exec", "command": ["/nonexistent/probe", "x"]}),
        ])
        self.d.start()
        s = self.d.wait_state("pass", "HEALTHY", timeout=5)
        self.assertTrue(32000 <= s["port"] <= 32999)
        self.assertEqual(s["check"]["type"], "exec")
        self.assertEqual(s["check"]["last"]["message"], "exit 0: port=%d svc=pass" % s["port"])
        s = wait_service(self.d, "fail", has_result(), timeout=5, what="a check result")
        self.assertFalse(s["check"]["last"]["ok"])
        self.assertEqual(s["check"]["last"]["message"], "exit 3: db not ready")
        self.assertEqual(s["state"], "STARTING")
        self.assertIn("check: exit 3: db not ready", status_line(self.d, "fail"))
        s = wait_service(self.d, "nosuch", has_result(), timeout=5, what="a check result")
        self.assertFalse(s["check"]["last"]["ok"])
        self.assertRegex(s["check"]["last"]["message"], r"^cannot run /nonexistent/probe: no such file or directory")
        self.assertEqual(s["state"], "STARTING")

    def test_exec_hang_is_killed_at_its_timeout(self):
        tag = "3%d.%d" % (os.getpid() % 1000, int(time.time() * 1000) % 100000)  # a unique sleep argument
        self.d.write_config([svc("hang", {"type": "exec", "command": ["sh", "-c", "echo probing; exec sleep " + tag],
                                          "timeout": "300ms", "interval": "200ms"})])
        self.d.start()
        wait_until(lambda: procs_with_arg(tag), timeout=5, what="the check's sleep to run")
        s = wait_service(self.d, "hang", has_result(), timeout=5, what="a check result")
        last = s["check"]["last"]
        self.assertFalse(last["ok"])
        self.assertEqual(last["message"], "timed out after 0.3s (killed)")
        self.assertGreaterEqual(last["duration"], 0.29)
        self.assertLess(last["duration"], 0.6)
        # stop the service (and its checks): no check process may be left behind
        self.d.cli("stop", "hang", "--wait", check=True)
        wait_until(lambda: not procs_with_arg(tag), timeout=3, what="no leftover sleep " + tag)

    def test_exec_check_leaves_no_children(self):
        tag = "4%d.%d" % (os.getpid() % 1000, int(time.time() * 1000) % 100000)
        self.d.write_config([svc("bg", {"type": "exec", "command": ["sh", "-c", "sleep %s & echo started; exit 0" % tag],
                                        "interval": "200ms"})])
        self.d.start()
        s = self.d.wait_state("bg", "HEALTHY", timeout=5)
        self.assertEqual(s["check"]["last"]["message"], "exit 0: started")
        self.assertLess(s["check"]["last"]["duration"], 0.5)
        time.sleep(0.5)
        self.assertEqual(procs_with_arg(tag), [])


class Lifecycle(ServerTest):
    def test_start_period_expires_into_timeout(self):
        self.d.write_config([
            svc("never", {"type": "exec", "command": ["false"], "start_period": "700ms"}, restart="never"),
            svc("stubborn", {"type": "exec", "command": ["false"], "start_period": "500ms"}, restart="never",
                command=["sh", "-c", "trap '' TERM; sleep 1000"], stop={"grace": "300ms"}),
            svc("again", {"type": "exec", "command": ["false"], "start_period": "400ms"}, restart="on-failure"),
            svc("deflt", {"type": "exec", "command": ["false"]}, start_timeout="600ms", restart="never"),
        ])
        t0 = time.time()
        self.d.start()
        # STARTING comes with the spawn request; the pid follows once the process exists.
        pid = wait_service(self.d, "never", lambda x: x["state"] == "STARTING" and x["pid"], timeout=5,
                           what="never's process")["pid"]
        spid = wait_service(self.d, "stubborn", lambda x: x["state"] == "STARTING" and x["pid"], timeout=5,
                            what="stubborn's process")["pid"]
        s = self.d.wait_state("never", "TIMEOUT", timeout=5)
        self.assertGreaterEqual(time.time() - t0, 0.65)
        self.assertEqual(s["reason"], "not healthy within start_timeout 0.7s")
        wait_until(lambda: not pid_alive(pid), timeout=3, what="the timed-out instance to be killed")
        s = wait_service(self.d, "never", lambda x: x["pid"] is None and x["last_exit"], timeout=3,
                         what="the exit recorded")
        self.assertEqual(s["last_exit"]["signal"], signal.SIGTERM)
        self.assertRegex(s["last_error"] or "", r"start[ _]timeout")  # why the instance ended
        # restart: never leaves it in TIMEOUT
        time.sleep(0.5)
        s = self.d.service("never")
        self.assertEqual(s["state"], "TIMEOUT")
        self.assertEqual(s["attempt"], 1)
        evs = self.d.events(since=0, service="never")
        self.assertEqual([e["to"] for e in evs], ["STARTING", "TIMEOUT"])
        self.assertFalse(find_events(evs, to="UNHEALTHY"))
        # TERM ignored: SIGKILL after the stop grace
        s = wait_service(self.d, "stubborn", lambda x: x["state"] == "TIMEOUT" and x["pid"] is None, timeout=5,
                         what="stubborn killed")
        self.assertEqual(s["last_exit"]["signal"], signal.SIGKILL)
        self.assertFalse(pid_alive(spid))
        # no start_period: the service's start_timeout is the limit
        s = self.d.wait_state("deflt", "TIMEOUT", timeout=5)
        self.assertEqual(s["reason"], "not healthy within start_timeout 0.6s")
        # on-failure: TIMEOUT -> BACKOFF -> a new instance
        s = wait_service(self.d, "again", lambda x: x["attempt"] >= 2 and x["state"] == "STARTING", timeout=5,
                         what="a second attempt")
        tos = [e["to"] for e in self.d.events(since=0, service="again")]
        self.assertEqual(tos[:4], ["STARTING", "TIMEOUT", "BACKOFF", "STARTING"])

    def test_start_period_is_never_cut_short(self):
        # Many services started together (at start-up, and in one POST): each still gets
        # its whole start_period. Services are started one after another, so service i's
        # deadline was set no earlier than service i-1's STARTING event.
        n = 12
        sp = 0.4
        self.d.write_config([svc("s%02d" % i, {"type": "exec", "command": ["false"], "start_period": sp},
                                 restart="never") for i in range(n)])
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", {"services": [
            svc("p%02d" % i, {"type": "exec", "command": ["false"], "start_period": sp}, restart="never")
            for i in range(n)]})
        self.assertEqual(st, 201, body)
        for prefix in ("s", "p"):
            for i in range(n):
                self.d.wait_state("%s%02d" % (prefix, i), "TIMEOUT", timeout=10)
        evs = self.d.events(since=0)
        short = []
        for prefix in ("s", "p"):
            starts = sorted((e for e in evs if e["to"] == "STARTING" and e["service"].startswith(prefix)),
                            key=lambda e: e["id"])
            for prev, cur in zip(starts, starts[1:]):
                to = find_events(evs, cur["service"], "TIMEOUT")[0]
                got = to["time"] - prev["time"]
                if got < sp - 0.003:
                    short.append("%s: TIMEOUT %.3fs after the previous start" % (cur["service"], got))
        if short:
            self.fail("start_period %.1fs cut short:\n  %s" % (sp, "\n  ".join(short)))

    def test_failure_and_success_thresholds(self):
        srv = self.server(200)
        srv.queue([200, 200, 500])  # two passes, then a failure resets the streak
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/"), "failure_threshold": 3,
                                         "success_threshold": 3, "on_unhealthy": "keep"})])
        self.d.start()
        s = self.d.wait_state("web", "HEALTHY", timeout=5)
        ev = first_event(self.d, "web", "HEALTHY")
        self.assertEqual(ev["reason"], "check passed 3 time(s): HTTP 200")
        self.assertGreaterEqual(s["check"]["runs"], 6)
        self.assertEqual(srv.count(500), 1)
        # two failures in a row, twice: never three, so never UNHEALTHY
        mark = last_event_id(self.d)
        n0 = srv.count()
        srv.queue([500, 500, 200, 500, 500, 200])
        wait_until(lambda: srv.count() >= n0 + 8, timeout=5, what="the flapping sequence to be served")
        self.assertEqual(self.d.events(since=mark, service="web"), [])
        self.assertEqual(self.d.service("web")["state"], "HEALTHY")
        # three in a row: UNHEALTHY
        srv.set(status=500)
        s = self.d.wait_state("web", "UNHEALTHY", timeout=5)
        self.assertEqual(s["reason"], "check failed 3 time(s): HTTP 500 (want 200-399)")
        # back: two passes and a failure do not make it HEALTHY; three passes do
        mark = last_event_id(self.d)
        n0 = srv.count()
        srv.queue([200, 200, 500])
        srv.set(status=200)
        ev = first_event(self.d, "web", "HEALTHY", after=mark, timeout=5)
        self.assertEqual(ev["reason"], "check passed 3 time(s): HTTP 200")
        reqs = srv.snapshot()[n0:]
        # the HEALTHY event came only after the 6th answer since the recovery began
        self.assertGreaterEqual(len([r for r in reqs if r["time"] <= ev["time"] + 0.05]), 6)
        self.assertEqual([(e["from"], e["to"]) for e in self.d.events(since=mark, service="web")],
                         [("UNHEALTHY", "HEALTHY")])

    def test_on_unhealthy_restart(self):
        srv = self.server(200)
        self.d.write_config([svc("web", {"type": "http", "url": srv.url("/"), "failure_threshold": 1,
                                         "unhealthy_grace": "800ms"})])
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY", timeout=5)["pid"]
        # a blip shorter than the grace: UNHEALTHY then HEALTHY again, same instance
        mark = last_event_id(self.d)
        srv.queue([500])
        first_event(self.d, "web", "UNHEALTHY", after=mark, timeout=5)
        first_event(self.d, "web", "HEALTHY", after=mark, timeout=5)
        time.sleep(1.0)
        s = self.d.service("web")
        self.assertEqual((s["state"], s["pid"], s["restarts"]), ("HEALTHY", pid, 0))
        self.assertFalse(find_events(self.d.events(since=mark, service="web"), to="FAILED"))
        # persistent failure: FAILED after the grace, killed, restarted with a new pid
        mark = last_event_id(self.d)
        srv.set(status=500)
        un = first_event(self.d, "web", "UNHEALTHY", after=mark, timeout=5)
        failed = first_event(self.d, "web", "FAILED", after=mark, timeout=5)
        srv.set(status=200)
        self.assertEqual(failed["from"], "UNHEALTHY")
        self.assertIn("unhealthy", failed["reason"])
        self.assertGreaterEqual(failed["time"] - un["time"], 0.75)
        self.assertLess(failed["time"] - un["time"], 1.5)
        s = wait_service(self.d, "web", lambda x: x["state"] == "HEALTHY" and x["pid"] not in (None, pid),
                         timeout=10, what="a new healthy instance")
        self.assertFalse(pid_alive(pid))
        self.assertEqual(s["restarts"], 1)
        self.assertEqual(s["attempt"], 2)
        self.assertEqual(s["last_exit"]["signal"], signal.SIGTERM)
        tos = [e["to"] for e in self.d.events(since=mark, service="web")]
        self.assertEqual(tos, ["UNHEALTHY", "FAILED", "BACKOFF", "STARTING", "HEALTHY"])
        # the ended instance's reason (shown as last_error) says why it failed
        self.assertIn("unhealthy", s["last_error"] or "", "last_error should say why the instance failed")

    def test_on_unhealthy_restart_with_restart_never(self):
        srv = self.server(200)
        self.d.write_config([svc("once", {"type": "http", "url": srv.url("/"), "failure_threshold": 1},
                                 restart="never")])
        self.d.start()
        pid = self.d.wait_state("once", "HEALTHY", timeout=5)["pid"]
        srv.set(status=503)
        s = self.d.wait_state("once", "FAILED", timeout=5)
        self.assertEqual(s["reason"], "unhealthy for 0s")
        wait_until(lambda: not pid_alive(pid), timeout=3, what="the unhealthy instance to be killed")
        s = wait_service(self.d, "once", lambda x: x["pid"] is None, timeout=3, what="no pid")
        time.sleep(0.4)
        s = self.d.service("once")
        self.assertEqual((s["state"], s["attempt"], s["restarts"]), ("FAILED", 1, 0))
        self.assertEqual([e["to"] for e in self.d.events(since=0, service="once")],
                         ["STARTING", "HEALTHY", "UNHEALTHY", "FAILED"])

    def test_hung_check_does_not_delay_others(self):
        hang = self.server(mode="hang")
        fast = self.server(200)
        tag = "5%d.%d" % (os.getpid() % 1000, int(time.time() * 1000) % 100000)
        self.d.write_config([
            svc("stuck-http", {"type": "http", "url": hang.url("/"), "timeout": "2500ms", "interval": "100ms"}),
            svc("stuck-exec", {"type": "exec", "command": ["sleep", tag], "timeout": "2500ms", "interval": "100ms"}),
            svc("fast", {"type": "http", "url": fast.url("/"), "interval": "100ms"}),
            svc("fast-tcp", {"type": "tcp", "port": fast.port, "interval": "100ms"}),
        ])
        self.d.start()
        self.d.wait_state("fast", "HEALTHY", timeout=5)
        wait_until(lambda: hang.count() >= 1 and procs_with_arg(tag), timeout=5, what="the hung checks in flight")
        t0 = time.time()
        tcp0 = self.d.service("fast-tcp")["check"]["runs"]
        time.sleep(1.5)
        reqs = [r["time"] for r in fast.snapshot() if r["time"] >= t0]
        self.assertGreaterEqual(len(reqs), 10, "fast checks ran %d times in 1.5 s" % len(reqs))
        gaps = [b - a for a, b in zip(reqs, reqs[1:])]
        self.assertLess(max(gaps), 0.35, "largest gap between fast checks: %.3fs" % max(gaps))
        self.assertGreaterEqual(self.d.service("fast-tcp")["check"]["runs"] - tcp0, 10)
        # the hung ones are still in their first run (no result yet)
        for name in ("stuck-http", "stuck-exec"):
            s = self.d.service(name)
            self.assertEqual(s["check"]["runs"], 0, name)
            self.assertEqual(s["state"], "STARTING")
        s = wait_service(self.d, "stuck-exec", has_result(), timeout=5, what="the exec timeout")
        self.assertEqual(s["check"]["last"]["message"], "timed out after 2.5s (killed)")
        s = wait_service(self.d, "stuck-http", has_result(), timeout=5, what="the http timeout")
        self.assertRegex(s["check"]["last"]["message"], r"timed out after")
        self.assertGreaterEqual(s["check"]["last"]["duration"], 2.45)


class InFlight(ServerTest):
    def test_replace_and_delete_with_checks_in_flight(self):
        hang = self.server(mode="hang")
        ok = self.server(200)
        tag = "6%d.%d" % (os.getpid() % 1000, int(time.time() * 1000) % 100000)
        self.d.start()
        specs = [svc("h", {"type": "http", "url": hang.url("/"), "timeout": "5s"}),
                 svc("x", {"type": "exec", "command": ["sleep", tag], "timeout": "5s"}),
                 svc("t", {"type": "tcp", "port": ok.port})]
        st, body = self.d.request("POST", "/v1/services", {"services": specs})
        self.assertEqual(st, 201, body)
        wait_until(lambda: hang.count() >= 1 and procs_with_arg(tag), timeout=5, what="checks in flight")
        # replace while a check hangs: the new spec's check takes over
        for name in ("h", "x"):
            st, body = self.d.request("PUT", "/v1/services/" + name,
                                      svc(name, {"type": "http", "url": ok.url("/" + name)}))
            self.assertEqual(st, 200, body)
            self.assertTrue(body["changed"])
        for name in ("h", "x"):
            s = self.d.wait_state(name, "HEALTHY", timeout=5)
            self.assertEqual(s["check"]["type"], "http")
            self.assertEqual(s["check"]["last"]["message"], "HTTP 200")
        wait_until(lambda: not procs_with_arg(tag), timeout=3, what="the replaced exec check killed")
        self.d.wait_state("t", "HEALTHY", timeout=5)
        # delete while checks run (and one hangs again)
        st, body = self.d.request("POST", "/v1/services", svc("h2", {"type": "http", "url": hang.url("/"),
                                                                      "timeout": "5s"}))
        self.assertEqual(st, 201, body)
        wait_until(lambda: hang.count() >= 2, timeout=5, what="a second hung check")
        for name in ("h", "x", "t", "h2"):
            st, body = self.d.request("DELETE", "/v1/services/" + name)
            self.assertEqual(st, 200, (name, body))
        # Removed services stay listed (removing: true) until their processes are gone.
        self.assertTrue(all(s.get("removing") for s in self.d.services().values()), self.d.services())
        wait_until(lambda: self.d.services() == {}, timeout=10, what="every removed service gone")
        n = ok.count()
        time.sleep(0.4)
        self.assertEqual(ok.count(), n, "no checks after the services were deleted")
        self.assertEqual(self.d.request("GET", "/v1/daemon")[0], 200)


if __name__ == "__main__":
    main()
