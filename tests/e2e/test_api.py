"""The service API and CLI: add/replace/delete, wait=healthy|stopped with timeouts, and the
event log (ids, filters, follow)."""
import json
import os
import signal
import time

from harness import (SuiteTest, environ_bytes, checked_request, main, pid_alive, pids_in_pgid, raw_connect, read_http_response,
                     wait_until)
from test_logs import ChunkedReader


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0}
    d.update(kw)
    return d


class AddReplaceDelete(SuiteTest):
    def setUp(self):
        super().setUp()
        # A config-defined service, created first.
        self.d.write_config([svc("cfg")])
        self.d.start()
        self.d.wait_state("cfg", "HEALTHY")

    def write(self, name, obj):
        path = os.path.join(self.d.root, name)
        with open(path, "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
        return path

    def test_add_replace_delete_cli(self):
        f = self.write("web.json", svc("web", env={"A": "1"}))
        r = self.d.cli("add", f)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"added web \((STARTING|HEALTHY)\)")
        s = self.d.wait_state("web", "HEALTHY")
        pid = s["pid"]
        self.assertEqual(s["source"], "api")
        # Adding it again: 409, CLI exit 1.
        r = self.d.cli("add", f)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)
        st, body = self.d.request("POST", "/v1/services", svc("web"))
        self.assertEqual(st, 409, body)
        # Replace with the same spec (keys in another order): unchanged, same pid.
        same = self.write("same.json", '{"ready_after": 0, "env": {"A": "1"}, "command": ["sleep", "1000"], '
                                       '"name": "web"}')
        r = self.d.cli("replace", "web", same)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("web unchanged", r.stdout)
        st, body = self.d.request("PUT", "/v1/services/web", svc("web", env={"A": "1"}))
        self.assertEqual(st, 200, body)
        self.assertIs(body["changed"], False)
        time.sleep(0.2)
        s = self.d.service("web")
        self.assertEqual((s["pid"], s["state"], s["restarts"]), (pid, "HEALTHY", 0))
        # A changed spec restarts it.
        f2 = self.write("web2.json", svc("web", env={"A": "2"}))
        r = self.d.cli("replace", "web", f2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("web replaced", r.stdout)
        s = wait_until(lambda: (lambda s: s if s["state"] == "HEALTHY" and s["pid"] != pid else None)(
            self.d.service("web")), timeout=5, what="the replaced service to run")
        self.assertEqual(s["spec"]["env"], {"A": "2"})
        self.assertFalse(pid_alive(pid))
        new_pid = s["pid"]
        # Remove it.
        r = self.d.cli("rm", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("removed web", r.stdout)
        wait_until(lambda: not pid_alive(new_pid), timeout=5, what="the removed service's process to end")
        # Listed (removing) until the daemon has reaped it, then gone.
        wait_until(lambda: checked_request(self.d, "GET", "/v1/services/web")[0] == 404, timeout=10,
                   what="the removed service gone from the API")
        st, body = checked_request(self.d, "GET", "/v1/services/web")
        self.assertEqual(st, 404, body)
        self.assertEqual(body["error"]["code"], "no_such_service")
        st, body = checked_request(self.d, "DELETE", "/v1/services/web")
        self.assertEqual(st, 404, body)
        self.assertEqual(self.d.cli("rm", "web").returncode, 1)
        self.assertNotIn("web", self.d.services())

    def test_add_bad_file_names_file_line_col(self):
        f = self.write("bad.json", '{\n  "name": "web",\n  "comand": ["sleep", "1"]\n}\n')
        r = self.d.cli("add", f)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("%s:3:3: comand: unknown key" % f, r.stderr)
        self.assertIn("%s:1:1: " % f, r.stderr)  # and the missing "command"
        f = self.write("bad2.json", '{"name": "web", "command": ["true"],\n "backoff": {"max": "soon"}}')
        r = self.d.cli("add", f)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("%s:2:21: backoff.max: " % f, r.stderr)
        f = self.write("bad3.json", '{"name": "web", "command": ["true"]')
        r = self.d.cli("add", f)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"%s:1:\d+: invalid JSON" % f)
        self.assertNotIn("web", self.d.services())

    def test_add_api_422_errors(self):
        body = '{"services": [\n {"name": "ok", "command": ["true"]},\n {"name": "x", "command": "true", "tags": [1]}\n]}'
        st, res = self.d.request("POST", "/v1/services", body)
        self.assertEqual(st, 422, res)
        self.assertEqual(res["api"], 1)
        errs = res["error"]["errors"]
        fields = sorted(e["field"] for e in errs)
        self.assertEqual(fields, ["services[1].command", "services[1].tags[0]"])
        for e in errs:
            self.assertEqual(e["file"], "request body")
            self.assertEqual(e["line"], 3)
            self.assertTrue(e["message"])
        cmd = [e for e in errs if e["field"] == "services[1].command"][0]
        self.assertEqual(cmd["column"], body.split("\n")[2].index('"true"') + 1)
        # All or nothing: the valid one was not added either.
        self.assertEqual(self.d.request("GET", "/v1/services/ok")[0], 404)

    def test_config_services_cannot_be_replaced_or_deleted(self):
        st, body = self.d.request("PUT", "/v1/services/cfg", svc("cfg", env={"X": "1"}))
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "from_config")
        st, body = self.d.request("DELETE", "/v1/services/cfg")
        self.assertEqual(st, 409, body)
        self.assertEqual(self.d.service("cfg")["state"], "HEALTHY")

    def test_put_name_mismatch_and_unknown(self):
        st, _ = self.d.request("POST", "/v1/services", svc("web"))
        self.assertEqual(st, 201)
        st, body = self.d.request("PUT", "/v1/services/web", svc("other"))
        self.assertEqual(st, 400, body)
        st, body = self.d.request("PUT", "/v1/services/nosuch", svc("nosuch"))
        self.assertEqual(st, 404, body)
        st, body = self.d.request("GET", "/v1/services/Bad%20Name")
        self.assertEqual(st, 400, body)

    def test_stop_during_replace_stays_stopped(self):
        # The old instance takes 0.5 s to stop after SIGTERM; a stop requested meanwhile
        # must win over the pending "start with the new spec".
        slow = ["/bin/sh", "-c", "trap 'sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done"]
        st, _ = self.d.request("POST", "/v1/services", svc("web", command=slow))
        self.assertEqual(st, 201)
        old = self.d.wait_state("web", "HEALTHY")["pid"]
        # The trap is set before the loop starts its first child.
        wait_until(lambda: len(pids_in_pgid(old)) >= 2, timeout=5, what="the script's trap to be set")
        st, body = self.d.request("PUT", "/v1/services/web", svc("web", command=slow, env={"V": "2"}))
        self.assertEqual(st, 200, body)
        self.assertTrue(body["changed"])
        st, body = self.d.request("POST", "/v1/services/web/stop?wait=stopped&timeout=3")
        self.assertEqual(st, 200, body)
        wait_until(lambda: not pid_alive(old), timeout=5, what="the old instance to stop")
        time.sleep(0.5)
        s = self.d.service("web")
        self.assertEqual((s["state"], s["wanted"], s["pid"]), ("STOPPED", "down", None), s)
        self.assertEqual(s["spec"].get("env"), {"V": "2"})

    def test_replace_keeps_wanted_up_during_swap(self):
        # "wanted" is what the user asked for: a spec change does not turn it to "down"
        # while the old instance is being stopped.
        slow = ["/bin/sh", "-c", "trap 'sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done"]
        st, _ = self.d.request("POST", "/v1/services", svc("web", command=slow))
        self.assertEqual(st, 201)
        old = self.d.wait_state("web", "HEALTHY")["pid"]
        wait_until(lambda: len(pids_in_pgid(old)) >= 2, timeout=5, what="the script's trap to be set")
        st, body = self.d.request("PUT", "/v1/services/web", svc("web", command=slow, env={"V": "2"}))
        self.assertEqual(st, 200, body)
        self.assertEqual(body["service"]["state"], "STOPPING")
        self.assertEqual(body["service"]["wanted"], "up", "PUT reply")
        self.assertEqual(self.d.service("web")["wanted"], "up", "GET during the swap")
        st, body = self.d.request("GET", "/v1/services/web?wait=healthy&timeout=5")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["service"]["wanted"], "up")

    def test_replace_stopped_service_stays_stopped(self):
        st, _ = self.d.request("POST", "/v1/services", svc("web"))
        self.assertEqual(st, 201)
        self.d.wait_state("web", "HEALTHY")
        self.d.cli("stop", "web", "--wait", check=True)
        st, body = self.d.request("PUT", "/v1/services/web", svc("web", env={"V": "3"}))
        self.assertEqual(st, 200, body)
        self.assertTrue(body["changed"])
        time.sleep(0.3)
        s = self.d.service("web")
        self.assertEqual((s["state"], s["wanted"], s["pid"]), ("STOPPED", "down", None))
        self.assertEqual(s["spec"]["env"], {"V": "3"})
        self.d.cli("start", "web", "--wait", check=True)
        self.assertIn(b"V=3", environ_bytes(self.d.service("web")["pid"]).split(b"\0"))

    def test_start_during_backoff_starts_at_once(self):
        st, _ = self.d.request("POST", "/v1/services", svc("crash", command=["/bin/sh", "-c", "sleep 0.2; exit 1"],
                                                             backoff={"initial": "30s", "max": "30s"}))
        self.assertEqual(st, 201)
        s = self.d.wait_state("crash", "BACKOFF", timeout=5)
        t0 = time.monotonic()
        st, body = self.d.request("POST", "/v1/services/crash/start")
        self.assertEqual(st, 200, body)
        self.assertIn(body["service"]["state"], ("STARTING", "HEALTHY"))
        self.assertEqual(body["service"]["attempt"], s["attempt"] + 1)
        self.assertLess(time.monotonic() - t0, 1)

    def test_wait_answers_409_when_service_removed(self):
        st, _ = self.d.request("POST", "/v1/services", svc("slow", ready_after="30s"))
        self.assertEqual(st, 201)
        s = raw_connect(self.d.sock)
        try:
            s.sendall(b"GET /v1/services/slow?wait=healthy&timeout=20 HTTP/1.1\r\nHost: herd\r\n\r\n")
            time.sleep(0.3)
            st, body = self.d.request("DELETE", "/v1/services/slow")
            self.assertEqual(st, 200, body)
            s.settimeout(5)
            st, _, body, _ = read_http_response(s)
        finally:
            s.close()
        self.assertEqual(st, 409, body)
        self.assertIn(json.loads(body)["error"]["code"], ("removed", "not_reached"))


class RemovedWhileStopping(SuiteTest):
    def test_visible_and_counted_until_gone(self):
        """A removed service whose process takes its grace to stop is still a service: shown
        with removing: true, counted, stoppable; not startable (409) until it is gone."""
        self.d.start()
        mark = os.path.join(self.d.root, "trapped")  # SIGTERM ignored from here on
        st, _ = self.d.request("POST", "/v1/services", svc("slowstop", command=[
            "sh", "-c", "trap '' TERM; touch \"$0\"; sleep 1000", mark], stop={"grace": "3s"}))
        self.assertEqual(st, 201)
        pid = self.d.wait_state("slowstop", "HEALTHY")["pid"]
        wait_until(lambda: os.path.exists(mark), timeout=10, what="the trap set")
        st, body = self.d.request("DELETE", "/v1/services/slowstop")
        self.assertEqual(st, 200, body)
        st, body = self.d.request("GET", "/v1/services/slowstop")
        self.assertEqual(st, 200, body)
        self.assertEqual((body["service"]["state"], body["service"].get("removing")), ("STOPPING", True))
        self.assertIn("slowstop", self.d.services())
        self.assertEqual(self.d.request("GET", "/v1/daemon")[1]["services"], 1)
        st, body = self.d.request("POST", "/v1/services/slowstop/start")
        self.assertEqual((st, body["error"]["code"]), (409, "being_removed"), body)
        st, body = self.d.request("POST", "/v1/services/slowstop/stop")
        self.assertEqual(st, 200, body)
        st, body = self.d.request("DELETE", "/v1/services/slowstop")
        self.assertEqual(st, 200, body)
        # After the grace, SIGKILL: gone from the process table, the API and the counts.
        wait_until(lambda: not pid_alive(pid), timeout=15, what="killed after its grace")
        wait_until(lambda: self.d.request("GET", "/v1/services/slowstop")[0] == 404, timeout=10, what="gone")
        self.assertEqual(self.d.request("GET", "/v1/daemon")[1]["services"], 0)


class FirstService(SuiteTest):
    def test_delete_the_only_service_then_get_404(self):
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", svc("solo"))
        self.assertEqual(st, 201, body)
        pid = self.d.wait_state("solo", "HEALTHY")["pid"]
        st, body = self.d.request("DELETE", "/v1/services/solo")
        self.assertEqual(st, 200, body)
        wait_until(lambda: not pid_alive(pid), timeout=5, what="the deleted service to stop")
        # Shown (removing, STOPPING) until the daemon has seen its process go, then gone.
        wait_until(lambda: checked_request(self.d, "GET", "/v1/services/solo", timeout=5)[0] == 404, timeout=10,
                   what="the removed service gone from the API")
        st, body = checked_request(self.d, "POST", "/v1/services", svc("solo"), timeout=5)
        self.assertEqual(st, 201, body)

    def test_unknown_names_answer_404(self):
        # Many different unknown names, with one service registered: each is a quick 404.
        self.d.write_config([svc("web")])
        self.d.start()
        self.d.wait_state("web", "HEALTHY")
        try:
            for i in range(300):
                name = "nosuch-%d" % i
                st, body = checked_request(self.d, "GET", "/v1/services/" + name, timeout=3)
                self.assertEqual(st, 404, (name, body))
        except AssertionError:
            self.d.proc.kill()  # a hung daemon would not honour SIGTERM in tearDown
            raise


class Wait(SuiteTest):
    def test_wait_healthy_times_out_with_504(self):
        self.d.write_config([svc("slow", ready_after="10s")])
        self.d.start()
        self.d.wait_state("slow", "STARTING")
        t0 = time.monotonic()
        st, body = self.d.request("GET", "/v1/services/slow?wait=healthy&timeout=0.5")
        took = time.monotonic() - t0
        self.assertEqual(st, 504, body)
        self.assertGreaterEqual(took, 0.45)
        self.assertLess(took, 1.5)
        self.assertEqual(body["api"], 1)
        self.assertEqual(body["error"]["code"], "timeout")
        self.assertEqual(body["error"]["service"]["name"], "slow")
        self.assertEqual(body["error"]["service"]["state"], "STARTING")
        # The CLI: exit 4 on a --wait timeout.
        t0 = time.monotonic()
        r = self.d.cli("start", "slow", "--wait", "--timeout", "0.5")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertIn("slow", r.stderr)

    def test_wait_healthy_reached(self):
        self.d.write_config([svc("quick", ready_after="0.3s")])
        self.d.start()
        t0 = time.monotonic()
        st, body = self.d.request("GET", "/v1/services/quick?wait=healthy&timeout=5")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["service"]["state"], "HEALTHY")
        self.assertLess(time.monotonic() - t0, 2)
        st, body = self.d.request("POST", "/v1/services/quick/stop?wait=stopped&timeout=5")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["service"]["state"], "STOPPED")

    def test_start_wait_on_failing_restart_never_service(self):
        self.d.write_config([svc("once", command=["/bin/sh", "-c", "exit 1"], restart="never", ready_after="1s")])
        self.d.start()
        self.d.wait_state("once", "FAILED")
        t0 = time.monotonic()
        r = self.d.cli("start", "once", "--wait", "--timeout", "10")
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertLess(took, 5, "start --wait should give up as soon as the service failed")
        self.assertIn("once", r.stderr)
        self.assertIn("will not become HEALTHY", r.stderr)
        self.assertIn("exited with code 1", r.stderr)
        s = self.d.service("once")
        self.assertEqual(s["state"], "FAILED")
        self.assertGreaterEqual(s["attempt"], 2)
        # The API says 409 not_reached for a wait that cannot succeed.
        st, body = self.d.request("GET", "/v1/services/once?wait=healthy&timeout=5")
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "not_reached")
        self.assertEqual(body["error"]["service"]["state"], "FAILED")


class LoopLag(SuiteTest):
    def test_lag_probe(self):
        self.d.write_config([{"name": "l%02d" % i, "command": ["sleep", "1000"], "ready_after": 0}
                             for i in range(20)])
        self.d.start()
        st, body = self.d.request("GET", "/v1/daemon/lag?seconds=1", timeout=10)
        self.assertEqual(st, 200, body)
        lag = body["lag"]
        self.assertEqual(lag["probe"], "1 ms repeating timer")
        self.assertGreater(lag["samples"], 300)
        self.assertLessEqual(lag["p50_ms"], lag["p99_ms"])
        self.assertLessEqual(lag["p99_ms"], lag["max_ms"])
        self.assertLess(lag["p99_ms"], 50)
        for bad in ("0", "61", "soon", "-1"):
            st, body = self.d.request("GET", "/v1/daemon/lag?seconds=" + bad)
            self.assertEqual(st, 400, bad)
            self.assertEqual(body["error"]["code"], "bad_seconds")
        # A client that leaves mid-probe: the timer goes with it (no handle left at exit).
        s = raw_connect(self.d.sock)
        s.sendall(b"GET /v1/daemon/lag?seconds=30 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        s.close()
        s = raw_connect(self.d.sock)
        s.sendall(b"GET /v1/daemon/lag?seconds=30 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        # ... and one still waiting when the daemon stops.
        self.assertEqual(self.d.stop(), 0)
        self.assertNotIn("open handles", self.d.log())
        s.close()


class Events(SuiteTest):
    def test_events_ids_increase_and_chain(self):
        self.d.write_config([svc("a"), svc("b", command=["/bin/sh", "-c", "exit 3"], restart="never", ready_after="1s")])
        self.d.start()
        self.d.wait_state("a", "HEALTHY")
        self.d.wait_state("b", "FAILED")
        self.d.cli("restart", "a", "--wait", check=True)
        evs = self.d.events(since=0)
        self.assertGreaterEqual(len(evs), 6, evs)
        ids = [e["id"] for e in evs]
        self.assertEqual(ids, sorted(set(ids)), "ids not strictly increasing: %s" % ids)
        for e in evs:
            self.assertEqual(sorted(e), ["from", "id", "instance", "reason", "service", "time", "to"])
        # Per service, each event starts where the previous one ended.
        for name in ("a", "b"):
            mine = [e for e in evs if e["service"] == name]
            self.assertEqual(mine[0]["from"], "STOPPED")
            for x, y in zip(mine, mine[1:]):
                self.assertEqual(x["to"], y["from"], "broken chain for %s: %s -> %s" % (name, x, y))
            self.assertEqual(mine, self.d.events(since=0, service=name))
        self.assertEqual([e["to"] for e in evs if e["service"] == "b"], ["STARTING", "FAILED"])
        mid = ids[len(ids) // 2]
        self.assertEqual([e["id"] for e in self.d.events(since=mid)], [i for i in ids if i > mid])
        st, body = self.d.request("GET", "/v1/events?since=abc")
        self.assertEqual(st, 400, body)
        r = self.d.cli("events", "--json", check=True)
        self.assertEqual([json.loads(l)["id"] for l in r.stdout.splitlines()], ids)

    def test_events_without_since_are_the_newest(self):
        # Without since, the newest `limit` events (README: default 1000), oldest first.
        self.d.write_config([svc("a"), svc("b")])
        self.d.start()
        self.d.wait_state("a", "HEALTHY")
        self.d.wait_state("b", "HEALTHY")
        self.d.cli("restart", "a", "b", "--wait", check=True)
        all_ids = [e["id"] for e in self.d.events(since=0)]
        self.assertGreaterEqual(len(all_ids), 8)
        st, payload = self.d.request("GET", "/v1/events?limit=3", raw=True)
        self.assertEqual(st, 200)
        got = [json.loads(l)["id"] for l in payload.decode().splitlines()]
        self.assertEqual(got, all_ids[-3:])
        st, payload = self.d.request("GET", "/v1/events?since=0&limit=3", raw=True)
        self.assertEqual([json.loads(l)["id"] for l in payload.decode().splitlines()], all_ids[:3])

    def test_events_newest_for_one_service(self):
        # ?service= without since: the newest events *of that service*, even when other
        # services changed state more recently.
        self.d.write_config([svc("a"), svc("b")])
        self.d.start()
        self.d.wait_state("a", "HEALTHY")
        self.d.wait_state("b", "HEALTHY")
        mine = [e["id"] for e in self.d.events(since=0, service="a")]
        for _ in range(3):
            self.d.cli("restart", "b", "--wait", check=True)
        st, payload = self.d.request("GET", "/v1/events?service=a&limit=2", raw=True)
        self.assertEqual(st, 200)
        got = [json.loads(l)["id"] for l in payload.decode().splitlines()]
        self.assertEqual(got, mine[-2:])
        r = self.d.cli("events", "--service", "a", "--json", check=True)
        self.assertEqual([json.loads(l)["id"] for l in r.stdout.splitlines()], mine)

    def test_events_follow_receives_new_transition(self):
        self.d.write_config([svc("a"), svc("b")])
        self.d.start()
        self.d.wait_state("a", "HEALTHY")
        self.d.wait_state("b", "HEALTHY")
        last = self.d.events()[-1]["id"]
        s = raw_connect(self.d.sock)
        try:
            s.sendall(b"GET /v1/events?follow=1&service=a HTTP/1.1\r\nHost: herd\r\n\r\n")
            rd = ChunkedReader(s)
            rd.read_until(lambda d: rd.head is not None, timeout=5)
            self.assertTrue(rd.head.startswith(b"HTTP/1.1 200"), rd.head)
            pid = self.d.service("a")["pid"]
            os.kill(pid, signal.SIGKILL)
            self.d.request("POST", "/v1/services/b/restart")
            data = rd.read_until(lambda d: b'"to":"HEALTHY"' in d, timeout=10)
            lines = [json.loads(l) for l in data.decode().splitlines() if l.strip()]
            self.assertEqual([e["to"] for e in lines][:2], ["FAILED", "BACKOFF"], lines)
            for e in lines:
                self.assertEqual(e["service"], "a", "service filter ignored: %s" % e)
                self.assertGreater(e["id"], last)
            self.assertEqual([e["id"] for e in lines], sorted(e["id"] for e in lines))
        finally:
            s.close()
        # The follower going away leaves the daemon fine.
        st, _ = self.d.request("GET", "/v1/daemon")
        self.assertEqual(st, 200)


if __name__ == "__main__":
    main()
