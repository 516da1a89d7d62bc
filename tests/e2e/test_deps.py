"""depends_on end to end: start order by condition (started, healthy, completed), the
PENDING reason, cycles and missing dependencies rejected (start-up and API), reverse stop
order on SIGTERM, restart_with_dependency, and DELETE of a depended-on service."""
import os
import re
import signal
import time

from harness import (SanitizedSuiteTest, find_events, first_event, last_event_id, main,
                     pid_alive, pids_with_cwd, wait_service, wait_until)
from servers import HTTPServer

SLOW_HTTP = ["sh", "-c", "sleep 0.3; exec python3 -m http.server ${port} --bind 127.0.0.1"]
# On TERM: take 0.2 s to stop, so an order of stops shows in the event times too.
SLOW_STOP = ["sh", "-c", "trap 'sleep 0.2; exit 0' TERM; echo trap-set; while :; do sleep 0.05; done"]


def wait_trap_set(d, name):
    """A shell that gets SIGTERM before its trap is installed dies at once: wait for it."""
    path = os.path.join(d.state, "logs", name + ".log")

    def ready():
        try:
            with open(path) as f:
                return "trap-set" in f.read()
        except OSError:
            return False
    wait_until(ready, timeout=5, what="%s to set its trap" % name)


def web(name, deps=None, **kw):
    s = {"name": name, "command": SLOW_HTTP,
         "endpoint": {"protocol": "http", "allocate": True},
         "check": {"type": "http", "path": "/", "interval": "100ms", "timeout": "1s"},
         "stop": {"grace": "2s"}, "backoff": {"initial": 0}}
    if deps is not None:
        s["depends_on"] = deps
    s.update(kw)
    return s


def plain(name, deps=None, **kw):
    s = {"name": name, "command": ["sleep", "1000"], "ready_after": 0, "stop": {"grace": "2s"},
         "backoff": {"initial": 0}}
    if deps is not None:
        s["depends_on"] = deps
    s.update(kw)
    return s


def status_line(d, name):
    out = d.cli("status", check=True).stdout
    for line in out.splitlines():
        if line.split() and line.split()[0] == name:
            return line
    raise AssertionError("no line for %s in:\n%s" % (name, out))


class StartOrder(SanitizedSuiteTest):
    def test_chain_of_three_starts_in_order(self):
        self.d.write_config([web("c", [{"service": "b", "condition": "healthy"}]), web("b", ["a"]), web("a")])
        self.d.start()
        # while a starts, b and c wait
        s = wait_service(self.d, "b", lambda x: x["state"] == "PENDING", timeout=5, what="b PENDING")
        self.assertRegex(s["reason"], r"^waiting for a \(healthy\): (STOPPED|STARTING)$")
        self.assertEqual(s["depends_on"][0]["service"], "a")
        self.assertEqual(s["depends_on"][0]["condition"], "healthy")
        self.assertIsNone(s["pid"])
        for n in ("a", "b", "c"):
            self.d.wait_state(n, "HEALTHY", timeout=15)
        evs = self.d.events(since=0)

        def ev(name, to):
            e = find_events(evs, name, to)
            self.assertTrue(e, "no %s -> %s in %s" % (name, to, evs))
            return e[0]
        a_h, b_s, b_h, c_s = ev("a", "HEALTHY"), ev("b", "STARTING"), ev("b", "HEALTHY"), ev("c", "STARTING")
        self.assertEqual(b_s["from"], "PENDING")
        self.assertEqual(c_s["from"], "PENDING")
        self.assertEqual(b_s["reason"], "dependencies ready (attempt 1)")
        self.assertGreater(b_s["id"], a_h["id"])
        self.assertGreaterEqual(b_s["time"], a_h["time"])
        self.assertGreater(c_s["id"], b_h["id"])
        self.assertGreaterEqual(c_s["time"], b_h["time"])
        # each took its 0.3 s to come up, so the chain took about 0.9 s
        self.assertGreaterEqual(c_s["time"] - ev("a", "STARTING")["time"], 0.6)
        self.assertEqual(self.d.service("c")["depends_on"],
                         [{"service": "b", "condition": "healthy", "state": "HEALTHY"}])
        self.assertEqual(len(find_events(evs, None, "STARTING")), 3)  # one start each, no restarts

    def test_pending_event_names_a_dependency_defined_later_in_the_config(self):
        # app is listed before db in the same config (and db2 after app2 in one POST): db is
        # defined, so the wait is for db to be healthy, never "not defined" (which is what
        # the event log would keep)
        self.d.write_config([plain("app", ["db"]), plain("db", ready_after="300ms")])
        self.d.start()
        st, body = self.d.request("POST", "/v1/services",
                                  {"services": [plain("app2", ["db2"]), plain("db2", ready_after="300ms")]})
        self.assertEqual(st, 201, body)
        for app, db in (("app", "db"), ("app2", "db2")):
            self.d.wait_state(app, "HEALTHY", timeout=5)
            with self.subTest(app=app):
                pend = first_event(self.d, app, "PENDING")
                self.assertNotIn("not defined", pend["reason"])
                self.assertRegex(pend["reason"], r"^waiting for %s \(healthy\): (STOPPED|STARTING)$" % db)

    def test_conditions_and_the_pending_reason(self):
        self.d.write_config([
            plain("db", check={"type": "exec", "command": ["sh", "-c", "echo not yet; exit 1"], "interval": "100ms"}),
            plain("app", ["db"]),
            plain("early", [{"service": "db", "condition": "started"}]),
            plain("job", command=["sh", "-c", "sleep 0.3"], restart="never"),
            plain("after-job", [{"service": "job", "condition": "completed"}]),
        ])
        self.d.start()
        self.d.wait_state("early", "HEALTHY", timeout=5)
        self.d.wait_state("after-job", "HEALTHY", timeout=5)
        job_done = first_event(self.d, "job", "COMPLETED")
        aj = first_event(self.d, "after-job", "STARTING")
        self.assertGreater(aj["id"], job_done["id"])
        time.sleep(0.3)
        s = self.d.service("app")
        self.assertEqual(s["state"], "PENDING")
        self.assertEqual(s["reason"], "waiting for db (healthy): STARTING")
        self.assertEqual(s["wanted"], "up")
        line = status_line(self.d, "app")
        self.assertRegex(line, r"^app\s+PENDING\s+-\s+.*waiting for db \(healthy\): STARTING$")
        self.assertIn("check: exit 1: not yet", status_line(self.d, "db"))
        # stopping a waiting service: it is STOPPED, and stays so when db is healthy later
        self.d.cli("stop", "app", "--wait", check=True)
        self.assertEqual(self.d.service("app")["state"], "STOPPED")
        # start it again: it waits again
        self.d.cli("start", "app", check=True)
        s = self.d.wait_state("app", "PENDING", timeout=5)
        self.assertEqual(s["reason"], "waiting for db (healthy): STARTING")


class Rejected(SanitizedSuiteTest):
    CYCLE = ('{"services": [\n'
             ' {"name": "a", "command": ["sleep", "1000"], "depends_on": ["b"]},\n'
             ' {"name": "b", "command": ["sleep", "1000"], "depends_on": [{"service": "c"}]},\n'
             ' {"name": "c", "command": ["sleep", "1000"], "depends_on": ["a"]},\n'
             ' {"name": "d", "command": ["sleep", "1000"]}\n'
             ']}\n')

    def start_fails(self):
        self.d.start(wait=False)
        rc = self.d.wait_exit(timeout=10)
        self.assertEqual(rc, 100, self.d.log())
        self.assertFalse(os.path.exists(self.d.sock) and pids_with_cwd(self.d.state))
        return self.d.log()

    def test_cycle_at_startup(self):
        path = self.d.write_config(self.CYCLE)
        log = self.start_fails()
        m = re.findall(r"^(\S+):(\d+):(\d+): ([a-z])\.depends_on: dependency cycle: (.*)$", log, re.M)
        self.assertEqual(len(m), 1, "one cycle, reported once:\n" + log)
        f, line, col, name, cyc = m[0]
        self.assertEqual(os.path.realpath(f), os.path.realpath(path))
        self.assertIn(cyc, ("a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"))
        # file:line:col points into the named service's depends_on
        text_line = self.CYCLE.splitlines()[int(line) - 1]
        self.assertIn('"name": "%s"' % name, text_line)
        self.assertIn("depends_on", text_line[:int(col)])
        self.assertNotIn("HEALTHY", log)

    def test_self_and_missing_dependency_at_startup(self):
        self.d.write_config([plain("a", ["a"]), plain("b", ["nope"]), plain("c")])
        log = self.start_fails()
        self.assertRegex(log, r"services\.json:\d+:\d+: a\.depends_on: a depends on itself")
        self.assertRegex(log, r'services\.json:\d+:\d+: b\.depends_on: b depends on "nope", which is not defined')

    def test_cycle_and_missing_over_the_api(self):
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", {"services": [plain("x", ["y"]), plain("y", ["x"])]})
        self.assertEqual(st, 422, body)
        msgs = [e["message"] for e in body["error"]["errors"]]
        self.assertTrue(any(re.fullmatch(r"dependency cycle: (x -> y -> x|y -> x -> y)", m) for m in msgs), msgs)
        self.assertIn(body["error"]["errors"][0]["field"], ("x.depends_on", "y.depends_on"))
        st, body = self.d.request("POST", "/v1/services", plain("z", ["ghost"]))
        self.assertEqual(st, 422, body)
        self.assertIn('z depends on "ghost", which is not defined', [e["message"] for e in body["error"]["errors"]])
        self.assertEqual(self.d.services(), {})
        # a cycle made by a replace is refused too, and changes nothing
        st, body = self.d.request("POST", "/v1/services", {"services": [plain("p"), plain("q", ["p"])]})
        self.assertEqual(st, 201, body)
        self.d.wait_state("q", "HEALTHY", timeout=5)
        st, body = self.d.request("PUT", "/v1/services/p", plain("p", ["q"]))
        self.assertEqual(st, 422, body)
        msgs = [e["message"] for e in body["error"]["errors"]]
        self.assertTrue(any(re.fullmatch(r"dependency cycle: (p -> q -> p|q -> p -> q)", m) for m in msgs), msgs)
        self.assertNotIn("depends_on", self.d.service("p")["spec"])
        # DELETE of a service another depends on: 409, and nothing happens
        pid = self.d.service("p")["pid"]
        st, body = self.d.request("DELETE", "/v1/services/p")
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "depended_on")
        self.assertIn("q depends on p", body["error"]["message"])
        s = self.d.service("p")
        self.assertEqual((s["state"], s["pid"]), ("HEALTHY", pid))
        st, body = self.d.request("DELETE", "/v1/services/q")
        self.assertEqual(st, 200, body)
        wait_until(lambda: self.d.request("DELETE", "/v1/services/p")[0] == 200, timeout=5,
                   what="p deletable once q is gone")


    def test_reload_with_a_cycle_changes_nothing(self):
        self.d.write_config([plain("a"), plain("b", ["a"])])
        self.d.start()
        pids = {n: self.d.wait_state(n, "HEALTHY", timeout=5)["pid"] for n in ("a", "b")}
        self.d.write_config([plain("a", ["b"]), plain("b", ["a"]), plain("new")])
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 422, body)
        msgs = [e["message"] for e in body["error"]["errors"]]
        self.assertTrue(any(re.fullmatch(r"dependency cycle: (a -> b -> a|b -> a -> b)", m) for m in msgs), msgs)
        self.assertEqual(set(self.d.services()), {"a", "b"})
        self.assertEqual({n: self.d.service(n)["pid"] for n in ("a", "b")}, pids)
        self.assertNotIn("depends_on", self.d.service("a")["spec"])


class StopOrder(SanitizedSuiteTest):
    def test_sigterm_stops_dependents_first(self):
        self.d.write_config([
            plain("a", command=SLOW_STOP),
            plain("b", ["a"], command=SLOW_STOP),
            plain("c", [{"service": "b", "condition": "started"}], command=SLOW_STOP),
            plain("solo", command=SLOW_STOP),
        ])
        self.d.start()
        for n in ("a", "b", "c", "solo"):
            self.d.wait_state(n, "HEALTHY", timeout=5)
            wait_trap_set(self.d, n)
        mark = last_event_id(self.d)
        pids = {n: self.d.service(n)["pid"] for n in ("a", "b", "c", "solo")}
        self.d.signal(signal.SIGTERM)
        self.assertEqual(self.d.wait_exit(timeout=15), 0)
        self.d.logf.close()
        for n, p in pids.items():
            self.assertFalse(pid_alive(p), n)
        # read the events back through a new daemon on the same state dir, without the config
        os.rename(os.path.join(self.d.confdir, "services.json"), os.path.join(self.d.root, "off.json"))
        self.d.start()
        evs = self.d.events(since=mark)

        def ev(name, to):
            e = find_events(evs, name, to)
            self.assertEqual(len(e), 1, "%s -> %s in %s" % (name, to, evs))
            return e[0]
        order = [ev("c", "STOPPING"), ev("c", "STOPPED"), ev("b", "STOPPING"), ev("b", "STOPPED"),
                 ev("a", "STOPPING"), ev("a", "STOPPED")]
        ids = [e["id"] for e in order]
        self.assertEqual(ids, sorted(ids), [(e["service"], e["to"]) for e in order])
        self.assertEqual(order[0]["reason"], "daemon shutting down")
        # each waited for the 0.2 s stop of the one before it
        self.assertGreaterEqual(order[2]["time"] - order[0]["time"], 0.15)
        self.assertGreaterEqual(order[4]["time"] - order[2]["time"], 0.15)
        # the independent one stopped at once, in parallel with c
        self.assertLess(abs(ev("solo", "STOPPING")["time"] - order[0]["time"]), 0.1)
        self.assertFalse(find_events(evs, None, "STARTING"), "nothing restarts during shutdown")


class RestartWithDependency(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        self.srv = HTTPServer(200)
        self.addCleanup(self.srv.stop)

    def test_restart_with_dependency_and_without(self):
        self.d.write_config([
            plain("db", check={"type": "http", "url": self.srv.url("/"), "interval": "100ms",
                               "failure_threshold": 1, "on_unhealthy": "keep"}),
            plain("app", ["db"], restart_with_dependency=True),
            plain("app2", ["db"], restart_with_dependency=True),
            plain("side", ["db"]),
        ])
        self.d.start()
        for n in ("db", "app", "app2", "side"):
            self.d.wait_state(n, "HEALTHY", timeout=5)
        app1 = self.d.service("app")["pid"]
        side = self.d.service("side")["pid"]

        # db turns UNHEALTHY (and keeps running): app goes down with it and waits
        mark = last_event_id(self.d)
        self.srv.set(status=500)
        self.d.wait_state("db", "UNHEALTHY", timeout=5)
        stopping = first_event(self.d, "app", "STOPPING", after=mark)
        self.assertEqual(stopping["reason"], "dependency db is UNHEALTHY: restarting with it")
        s = self.d.wait_state("app", "PENDING", timeout=5)
        self.assertEqual(s["reason"], "waiting for db (healthy): UNHEALTHY")
        self.assertEqual(s["wanted"], "up")
        self.assertIsNone(s["pid"])
        self.assertFalse(pid_alive(app1))
        self.assertIn("waiting for db (healthy): UNHEALTHY", status_line(self.d, "app"))
        # a stop while it waits wins: app2 stays down when db recovers
        self.d.wait_state("app2", "PENDING", timeout=5)
        self.d.cli("stop", "app2", "--wait", check=True)
        s = self.d.service("side")
        self.assertEqual((s["state"], s["pid"]), ("HEALTHY", side))

        # db healthy again: app starts again (new pid) after db's HEALTHY
        mark = last_event_id(self.d)
        self.srv.set(status=200)
        db_h = first_event(self.d, "db", "HEALTHY", after=mark)
        app_s = first_event(self.d, "app", "STARTING", after=mark)
        self.assertGreater(app_s["id"], db_h["id"])
        self.assertEqual(app_s["from"], "PENDING")
        s = self.d.wait_state("app", "HEALTHY", timeout=5)
        app2_pid = s["pid"]
        self.assertNotEqual(app2_pid, app1)
        time.sleep(0.3)
        self.assertEqual(self.d.service("app2")["state"], "STOPPED")

        # db is killed: it fails and restarts; app goes with it; side keeps its pid
        mark = last_event_id(self.d)
        db_pid = self.d.service("db")["pid"]
        os.kill(db_pid, signal.SIGKILL)
        first_event(self.d, "db", "FAILED", after=mark)
        s = wait_service(self.d, "db", lambda x: x["state"] == "HEALTHY" and x["pid"] not in (None, db_pid),
                         timeout=5, what="db back")
        s = wait_service(self.d, "app", lambda x: x["state"] == "HEALTHY" and x["pid"] not in (None, app2_pid),
                         timeout=5, what="app back with a new pid")
        self.assertFalse(pid_alive(app2_pid))
        evs = self.d.events(since=mark, service="app")
        self.assertRegex(find_events(evs, to="STOPPING")[0]["reason"],
                         r"^dependency db is (FAILED|BACKOFF|STOPPED|STARTING): restarting with it$")
        db_h = find_events(self.d.events(since=mark, service="db"), to="HEALTHY")[0]
        self.assertGreater(find_events(evs, to="STARTING")[0]["id"], db_h["id"])
        s = self.d.service("side")
        self.assertEqual((s["state"], s["pid"], s["restarts"]), ("HEALTHY", side, 0))
        self.assertEqual([e["to"] for e in self.d.events(since=0, service="side")], ["PENDING", "STARTING", "HEALTHY"])


if __name__ == "__main__":
    main()
