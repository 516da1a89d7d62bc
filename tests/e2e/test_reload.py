"""Reload: unchanged services keep running, changed ones restart, removed ones stop and go,
new ones start; via SIGHUP, `herd reload` and the API. A bad config changes nothing."""
import os
import signal
import subprocess
import time

from harness import environ_bytes, HERD_BIN, SuiteTest, checked_request, main, pid_alive, wait_until


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0, "stop": {"grace": "2s"}}
    d.update(kw)
    return d


class Reload(SuiteTest):
    def start_three(self):
        self.d.write_config([svc("keep"), svc("change", env={"V": "1"})], name="main.json")
        self.d.write_config([svc("gone")], name="z-gone.json")
        self.d.start()
        return {n: self.d.wait_state(n, "HEALTHY")["pid"] for n in ("keep", "change", "gone")}

    def edit_config(self):
        self.d.write_config([svc("keep"), svc("change", env={"V": "2"}), svc("fresh")], name="main.json")
        os.unlink(os.path.join(self.d.confdir, "z-gone.json"))

    def check_after(self, pids):
        s = self.d.wait_state("fresh", "HEALTHY")
        self.assertIsNotNone(s["pid"])
        keep = self.d.service("keep")
        self.assertEqual(keep["pid"], pids["keep"], "unchanged service was restarted")
        self.assertEqual(keep["state"], "HEALTHY")
        self.assertEqual(keep["restarts"], 0)
        ch = wait_until(lambda: (lambda s: s if s["state"] == "HEALTHY" and s["pid"] != pids["change"] else None)(
            self.d.service("change")), timeout=5, what="changed service to restart")
        self.assertEqual(ch["spec"]["env"], {"V": "2"})
        self.assertFalse(pid_alive(pids["change"]), "old instance of the changed service still runs")
        self.assertIn(b"V=2", environ_bytes(ch["pid"]).split(b"\0"))
        wait_until(lambda: self.d.request("GET", "/v1/services/gone")[0] == 404, timeout=5,
                   what="removed service to disappear")
        # A removed service is listed (removing: true) until its process is reaped; the 404
        # above comes once it is: the process is gone by then, or going.
        wait_until(lambda: not pid_alive(pids["gone"]), timeout=5, what="removed service's process to exit")
        self.assertEqual(sorted(self.d.services()), ["change", "fresh", "keep"])

    def test_reload_cli(self):
        pids = self.start_three()
        self.edit_config()
        r = self.d.cli("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 added, 1 changed, 1 removed, 1 unchanged", r.stdout)
        self.check_after(pids)
        # Reloading the same files again changes nothing.
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 200, body)
        self.assertEqual((body["added"], body["changed"], body["removed"], body["unchanged"]), ([], [], [], 3))

    def test_reload_sighup(self):
        pids = self.start_three()
        self.edit_config()
        self.d.signal(signal.SIGHUP)
        wait_until(lambda: self.d.request("GET", "/v1/services/fresh")[0] == 200, timeout=5,
                   what="SIGHUP reload to add a service")
        self.check_after(pids)
        self.assertIsNone(self.d.proc.poll(), "SIGHUP must not stop the daemon")

    def test_reload_api_summary(self):
        pids = self.start_three()
        self.edit_config()
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["api"], 1)
        self.assertEqual(body["added"], ["fresh"])
        self.assertEqual(body["changed"], ["change"])
        self.assertEqual(body["removed"], ["gone"])
        self.assertEqual(body["unchanged"], 1)
        self.check_after(pids)

    def test_stopped_service_stays_stopped_when_unchanged(self):
        pids = self.start_three()
        r = self.d.cli("stop", "keep", "--wait", "--timeout", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 200, body)
        time.sleep(0.3)
        self.assertEqual(self.d.service("keep")["state"], "STOPPED")
        self.assertEqual(self.d.service("change")["pid"], pids["change"])

    def test_reload_removes_the_first_created_service(self):
        # The service created first (here the only one in a.json) is removed by a reload;
        # looking it up afterwards must answer 404, not touch freed memory.
        self.d.write_config([svc("first")], name="a.json")
        self.d.write_config([svc("second")], name="b.json")
        self.d.start()
        p1 = self.d.wait_state("first", "HEALTHY")["pid"]
        self.d.wait_state("second", "HEALTHY")
        os.unlink(os.path.join(self.d.confdir, "a.json"))
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["removed"], ["first"])
        wait_until(lambda: not pid_alive(p1), timeout=5, what="the removed service to stop")
        # Listed (removing) until the daemon has seen its process go, then gone.
        wait_until(lambda: checked_request(self.d, "GET", "/v1/services/first", timeout=5)[0] == 404, timeout=10,
                   what="the removed service gone from the API")
        st, body = checked_request(self.d, "GET", "/v1/services/first", timeout=5)
        self.assertEqual(st, 404, body)
        self.assertEqual(body["error"]["code"], "no_such_service")
        self.assertIsNone(self.d.proc.poll(), "daemon died")
        # Putting it back works too.
        self.d.write_config([svc("first")], name="a.json")
        st, body = self.d.request("POST", "/v1/reload", timeout=5)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["added"], ["first"])
        self.d.wait_state("first", "HEALTHY")

    def test_config_name_taken_by_api_service(self):
        self.d.write_config([svc("a")])
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", svc("mine"))
        self.assertEqual(st, 201, body)
        st, body = self.d.request("POST", "/v1/services", svc("a"))
        self.assertEqual(st, 409, body)
        pid = self.d.wait_state("mine", "HEALTHY")["pid"]
        path = self.d.write_config([svc("mine", command=["sleep", "999"])], name="z.json")
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 422, body)
        self.assertEqual(body["error"]["errors"][0]["file"], path)
        self.assertIn("mine", body["error"]["errors"][0]["message"])
        s = self.d.service("mine")
        self.assertEqual((s["pid"], s["source"]), (pid, "api"))
        # At start-up the same conflict is a config error.
        self.d.stop()
        r = subprocess.run([HERD_BIN, "daemon", "--config", self.d.confdir, "--state-dir", self.d.state],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 100, r.stderr)
        self.assertIn(path, r.stderr)


class BadReload(SuiteTest):
    def setUp(self):
        super().setUp()
        self.d.write_config([svc("a"), svc("b")])
        self.d.start()
        self.pids = {n: self.d.wait_state(n, "HEALTHY")["pid"] for n in ("a", "b")}

    def assert_nothing_changed(self):
        time.sleep(0.3)
        now = self.d.services()
        self.assertEqual(sorted(now), ["a", "b"])
        for n, p in self.pids.items():
            self.assertEqual(now[n]["pid"], p, "%s was restarted by a failed reload" % n)
            self.assertEqual(now[n]["state"], "HEALTHY")
            self.assertEqual(now[n]["spec"]["command"], ["sleep", "1000"])
        st, info = self.d.request("GET", "/v1/daemon")
        self.assertEqual(st, 200)
        self.assertEqual(info["services"], 2)

    def write_bad(self):
        # A valid change to "a" and a new "c" in one file, and a typo in another:
        # all or nothing, so neither may take effect.
        self.d.write_config([svc("a", command=["sleep", "999"]), svc("b"), svc("c")])
        text = '{\n  "name": "d",\n  "command": ["true"],\n  "restrat": "never"\n}\n'
        return self.d.write_config(text, name="typo.json")

    def test_bad_reload_api_422_nothing_changes(self):
        path = self.write_bad()
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 422, body)
        self.assertEqual(body["api"], 1)
        errs = body["error"]["errors"]
        self.assertEqual(len(errs), 1, errs)
        self.assertEqual(errs[0]["file"], path)
        self.assertEqual((errs[0]["line"], errs[0]["column"]), (4, 3))
        self.assertEqual(errs[0]["field"], "restrat")
        self.assertIn("unknown key", errs[0]["message"])
        self.assertIn("code", body["error"])
        self.assertIn("message", body["error"])
        self.assert_nothing_changed()
        self.assertEqual(self.d.request("GET", "/v1/services/c")[0], 404)

    def test_bad_reload_cli_exit_1(self):
        path = self.write_bad()
        r = self.d.cli("reload")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("%s:4:3: restrat: unknown key" % path, r.stderr)
        self.assert_nothing_changed()

    def test_bad_reload_sighup_nothing_changes(self):
        self.d.write_config("{ not json", name="broken.json")
        self.d.signal(signal.SIGHUP)
        wait_until(lambda: "broken.json" in self.d.log(), timeout=5, what="the reload error in the daemon log")
        self.assertIsNone(self.d.proc.poll())
        self.assert_nothing_changed()
        # Fixing the file and reloading works afterwards.
        os.unlink(os.path.join(self.d.confdir, "broken.json"))
        self.d.write_config([svc("a"), svc("b"), svc("c")])
        st, body = self.d.request("POST", "/v1/reload")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["added"], ["c"])
        self.d.wait_state("c", "HEALTHY")


if __name__ == "__main__":
    main()
