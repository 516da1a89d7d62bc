"""What survives a daemon restart (herd.db): the wanted state of every service, and the
services added over the API."""

from harness import SuiteTest, main, pid_alive, pids_with_cwd, wait_until


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0}
    d.update(kw)
    return d


class Persistence(SuiteTest):
    def restart_daemon(self):
        rc = self.d.stop()
        self.assertEqual(rc, 0, self.d.log()[-3000:])
        self.assertEqual(pids_with_cwd(self.d.state), [], "services left running after a clean exit")
        self.d.start()

    def test_stopped_stays_stopped_and_up_comes_back(self):
        self.d.write_config([svc("down1"), svc("up1")])
        self.d.start()
        self.d.wait_state("down1", "HEALTHY")
        old_up = self.d.wait_state("up1", "HEALTHY")["pid"]
        r = self.d.cli("stop", "down1", "--wait", check=True)
        self.assertIn("down1: STOPPED", r.stdout)
        self.restart_daemon()
        s = self.d.wait_state("up1", "HEALTHY")
        self.assertNotEqual(s["pid"], old_up)
        self.assertEqual(s["wanted"], "up")
        down = self.d.service("down1")
        self.assertEqual(down["state"], "STOPPED")
        self.assertEqual(down["wanted"], "down")
        self.assertIsNone(down["pid"])
        # Started again, it stays wanted up across the next restart.
        self.d.cli("start", "down1", "--wait", check=True)
        self.restart_daemon()
        self.assertEqual(self.d.wait_state("down1", "HEALTHY")["wanted"], "up")

    def test_api_added_service_persists(self):
        self.d.write_config([svc("fromfile")])
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", {"services": [svc("added1", tags=["t1"]), svc("added2")]})
        self.assertEqual(st, 201, body)
        p1 = self.d.wait_state("added1", "HEALTHY")["pid"]
        self.d.wait_state("added2", "HEALTHY")
        st, body = self.d.request("POST", "/v1/services/added2/stop?wait=stopped&timeout=5")
        self.assertEqual(st, 200, body)
        st, body = self.d.request("POST", "/v1/services", svc("added3"))
        self.assertEqual(st, 201, body)
        st, body = self.d.request("DELETE", "/v1/services/added3")
        self.assertEqual(st, 200, body)
        self.restart_daemon()
        self.assertFalse(pid_alive(p1))
        s = self.d.wait_state("added1", "HEALTHY")
        self.assertEqual(s["source"], "api")
        self.assertEqual(s["tags"], ["t1"])
        self.assertEqual(s["spec"]["command"], ["sleep", "1000"])
        s2 = self.d.service("added2")
        self.assertEqual((s2["state"], s2["wanted"]), ("STOPPED", "down"))
        self.assertEqual(self.d.request("GET", "/v1/services/added3")[0], 404, "a deleted service came back")
        self.assertEqual(sorted(self.d.services()), ["added1", "added2", "fromfile"])

    def test_replaced_spec_persists(self):
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", svc("api1"))
        self.assertEqual(st, 201, body)
        self.d.wait_state("api1", "HEALTHY")
        st, body = self.d.request("PUT", "/v1/services/api1", svc("api1", env={"GEN": "2"}))
        self.assertEqual(st, 200, body)
        self.assertTrue(body["changed"])
        wait_until(lambda: (lambda s: s["state"] == "HEALTHY" and s["spec"].get("env") == {"GEN": "2"})(
            self.d.service("api1")), timeout=5, what="the replacement to run")
        self.restart_daemon()
        s = self.d.wait_state("api1", "HEALTHY")
        self.assertEqual(s["spec"]["env"], {"GEN": "2"})

    def test_service_removed_from_config_is_forgotten(self):
        self.d.write_config([svc("a"), svc("b")])
        self.d.start()
        self.d.wait_state("b", "HEALTHY")
        self.d.cli("stop", "b", "--wait", check=True)
        self.d.stop()
        self.d.write_config([svc("a")])
        self.d.start()
        self.assertEqual(sorted(self.d.services()), ["a"])
        # Back in the config later, it starts fresh (wanted up), not with the old "down".
        self.d.stop()
        self.d.write_config([svc("a"), svc("b")])
        self.d.start()
        self.d.wait_state("b", "HEALTHY")


if __name__ == "__main__":
    main()
