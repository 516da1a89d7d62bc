"""Endpoints end to end: port choice (configured, busy, allocated, reused), ${port} in
argv and env, and PORT/HERD_PORT in the service's environment, checked in /proc."""
import http.client
import os
import random
import signal
import time

from harness import environ_bytes, SanitizedSuiteTest, first_event, main, pid_alive, wait_service, wait_until
from servers import TCPListener, free_port

HTTP_SERVER = ["python3", "-m", "http.server", "${port}", "--bind", "127.0.0.1"]


def port_range(width=50):
    # Below Linux's ephemeral range (32768-60999): a client connection anywhere on the
    # machine may hold an ephemeral port, and a range there can be partly taken.
    lo = random.randrange(20000, 32000 - width)
    return [lo, lo + width - 1]


def http_svc(name, endpoint, **kw):
    e = {"protocol": "http"}
    e.update(endpoint)
    s = {"name": name, "command": HTTP_SERVER, "endpoint": e,
         "check": {"type": "http", "path": "/", "interval": "100ms", "timeout": "1s"},
         "backoff": {"initial": 0}, "stop": {"grace": "2s"}}
    s.update(kw)
    return s


def proc_env(pid):
    items = [x.decode() for x in environ_bytes(pid).split(b"\0") if x]
    return dict(x.split("=", 1) for x in items)


def proc_argv(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [x.decode() for x in f.read().split(b"\0")[:-1]]


def http_get(port, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


class PortTest(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        self.listeners = []

    def hold(self, port=0):
        lst = TCPListener(port)
        self.listeners.append(lst)
        return lst

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for lst in self.listeners:
                lst.close()


class Conflicts(PortTest):
    def test_busy_port_without_allocate_fails(self):
        busy = self.hold()
        busy2 = self.hold()
        self.d.write_config([
            {"name": "once", "command": ["sleep", "1000"], "ready_after": 0, "restart": "never",
             "endpoint": {"port": busy.port}},
            {"name": "retry", "command": ["sleep", "1000"], "ready_after": 0,
             "backoff": {"initial": "100ms", "max": "200ms", "jitter": 0},
             "endpoint": {"port": busy2.port, "allocate": False}},
        ])
        self.d.start()
        s = self.d.wait_state("once", "FAILED", timeout=5)
        want = "port %d on 127.0.0.1 is in use (set endpoint.allocate to take another)" % busy.port
        self.assertEqual(s["last_error"], want)
        self.assertIsNone(s["pid"])
        ev = first_event(self.d, "once", "FAILED")
        self.assertEqual(ev["reason"], want)
        self.assertIn(want, self.d.cli("status", "once", check=True).stdout)
        time.sleep(0.3)
        self.assertEqual(self.d.service("once")["state"], "FAILED")
        # the other keeps trying (backoff), and never takes another port
        wait_service(self.d, "retry", lambda x: x["restarts"] >= 2, timeout=5, what="retries")
        s = self.d.service("retry")
        self.assertIn("port %d on 127.0.0.1 is in use" % busy2.port, s["last_error"])
        self.assertIsNone(s["pid"])
        # ports freed: a start takes the configured port; the retrying one gets it by itself
        busy.close()
        busy2.close()
        self.d.cli("start", "once", "--wait", "--timeout", "5", check=True)
        s = self.d.service("once")
        self.assertEqual((s["state"], s["port"]), ("HEALTHY", busy.port))
        self.assertEqual(proc_env(s["pid"])["PORT"], str(busy.port))
        s = wait_service(self.d, "retry", lambda x: x["state"] == "HEALTHY", timeout=5, what="retry HEALTHY")
        self.assertEqual(s["port"], busy2.port)

    def test_busy_port_with_allocate_takes_another(self):
        busy = self.hold()
        lo, hi = port_range()
        want = free_port()
        self.d.write_config([
            http_svc("alloc", {"port": busy.port, "allocate": True, "port_range": [lo, hi]}),
            http_svc("fixed", {"port": want, "allocate": True, "port_range": [lo, hi]}),
        ])
        self.d.start()
        s = self.d.wait_state("alloc", "HEALTHY", timeout=10)
        self.assertNotEqual(s["port"], busy.port)
        self.assertTrue(lo <= s["port"] <= hi, s["port"])
        self.assertEqual(s["check"]["last"]["message"], "HTTP 200")
        self.assertEqual(http_get(s["port"]), 200)
        self.assertEqual(proc_env(s["pid"])["PORT"], str(s["port"]))
        # a free configured port is taken as it is, even with allocate
        s = self.d.wait_state("fixed", "HEALTHY", timeout=10)
        self.assertEqual(s["port"], want)


class Distinct(PortTest):
    def test_allocation_never_hands_out_a_port_twice(self):
        # Services started in the same moment: none has bound its port yet, so "can I bind
        # it?" alone cannot tell that a port was just given to another service.
        lo, hi = port_range(3)
        same = free_port()
        self.d.write_config(
            [http_svc("r%d" % i, {"port_range": [lo, hi]}) for i in range(3)] +
            [http_svc("p%d" % i, {"port": same, "allocate": True, "port_range": port_range(50)}) for i in range(2)])
        self.d.start()
        names = ["r0", "r1", "r2", "p0", "p1"]
        ss = [self.d.wait_state(n, "HEALTHY", timeout=15) for n in names]
        first = {}
        for e in self.d.events(since=0):
            if e["to"] == "STARTING" and e["service"] not in first:
                first[e["service"]] = e
        ports = {n: s["port"] for n, s in zip(names, ss)}
        self.assertEqual(sorted(ports[n] for n in ("r0", "r1", "r2")), [lo, lo + 1, lo + 2], ports)
        self.assertIn(same, (ports["p0"], ports["p1"]))
        self.assertNotEqual(ports["p0"], ports["p1"])
        # and each got it right the first time: no instance failed on a taken port
        self.assertEqual({n: s["restarts"] for n, s in zip(names, ss)}, {n: 0 for n in names})


class Substitution(PortTest):
    def test_port_in_argv_env_and_environment(self):
        self.assertNotIn("HERD_PORT", os.environ)
        self.d.write_config([
            http_svc("web", {}, env={"MY_URL": "http://127.0.0.1:${port}/x", "TWICE": "${port}-${port}",
                                     "PLAIN": "no $port here"}),
            {"name": "noport", "command": ["sleep", "1000"], "ready_after": 0, "env": {"P": "${port}"}},
        ])
        self.d.start()
        s = self.d.wait_state("web", "HEALTHY", timeout=10)
        port = s["port"]
        self.assertTrue(20000 <= port <= 29999, port)  # no port given: from the default range
        argv = proc_argv(s["pid"])
        self.assertEqual(argv[1:], ["-m", "http.server", str(port), "--bind", "127.0.0.1"])
        env = proc_env(s["pid"])
        self.assertEqual(env["PORT"], str(port))
        self.assertEqual(env["HERD_PORT"], str(port))
        self.assertEqual(env["MY_URL"], "http://127.0.0.1:%d/x" % port)
        self.assertEqual(env["TWICE"], "%d-%d" % (port, port))
        self.assertEqual(env["PLAIN"], "no $port here")
        self.assertEqual(env["HERD_SERVICE"], "web")
        self.assertEqual(http_get(port), 200)
        # the spec keeps the placeholder
        self.assertEqual(s["spec"]["command"][3], "${port}")
        # without an endpoint: no port, no PORT/HERD_PORT
        n = self.d.wait_state("noport", "HEALTHY", timeout=5)
        self.assertIsNone(n["port"])
        env = proc_env(n["pid"])
        self.assertNotIn("HERD_PORT", env)
        self.assertEqual(env.get("PORT"), os.environ.get("PORT"))


class Reuse(PortTest):
    def test_allocate_reuses_the_last_port(self):
        busy = self.hold()
        lo, hi = port_range(200)
        self.d.write_config([http_svc("web", {"port": busy.port, "allocate": True, "port_range": [lo, hi]})])
        self.d.start()
        s = self.d.wait_state("web", "HEALTHY", timeout=10)
        q, pid = s["port"], s["pid"]
        self.assertNotEqual(q, busy.port)
        # crash: the next instance gets the same allocated port
        os.kill(pid, signal.SIGKILL)
        s = wait_service(self.d, "web", lambda x: x["state"] == "HEALTHY" and x["pid"] not in (None, pid),
                         timeout=10, what="a new healthy instance")
        self.assertEqual(s["port"], q)
        self.assertEqual(proc_env(s["pid"])["PORT"], str(q))
        self.assertEqual(http_get(q), 200)
        # restart requested: again the same port
        pid = s["pid"]
        self.d.cli("restart", "web", "--wait", "--timeout", "10", check=True)
        s = self.d.service("web")
        self.assertNotEqual(s["pid"], pid)
        self.assertEqual(s["port"], q)
        # across a daemon restart too (the last port comes from the store)
        self.d.stop()
        wait_until(lambda: not pid_alive(s["pid"]), timeout=5, what="the service to stop with the daemon")
        self.d.start()
        s = self.d.wait_state("web", "HEALTHY", timeout=10)
        self.assertEqual(s["port"], q)
        # the last port is taken meanwhile: a third one from the range
        self.d.cli("stop", "web", "--wait", check=True)
        taken = self.hold(q)
        self.d.cli("start", "web", "--wait", "--timeout", "10", check=True)
        s = self.d.service("web")
        self.assertNotIn(s["port"], (busy.port, q))
        self.assertTrue(lo <= s["port"] <= hi)
        # the configured port is free again: it is preferred over the last one
        r = s["port"]
        busy.close()
        taken.close()
        self.d.cli("restart", "web", "--wait", "--timeout", "10", check=True)
        s = self.d.service("web")
        self.assertEqual(s["port"], busy.port)
        self.assertNotEqual(s["port"], r)


if __name__ == "__main__":
    main()
