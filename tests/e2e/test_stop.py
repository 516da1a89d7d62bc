"""Stopping: the grace period and SIGKILL, the whole process group, and the daemon's own
SIGTERM shutdown that stops every service in parallel."""
import os
import signal
import subprocess
import time

from harness import SuiteTest, main, pid_alive, pids_in_pgid, pids_with_cwd, wait_until

# Ignores SIGTERM, and so does the background child it leaves in its process group
# (an ignored signal stays ignored across fork and exec).
STUBBORN = ["/bin/sh", "-c", "trap '' TERM; sleep 1000 & while :; do sleep 0.1; done"]


def gone_soon(pids, timeout=1.0):
    """Other members of a SIGKILLed group may still be tearing down (tens of ms) when the
    leader is reaped and herd reports STOPPED; give them that long, no more."""
    return wait_until(lambda: not [p for p in pids if pid_alive(p)], timeout=timeout, interval=0.01,
                      what="all of %s to be gone within %.1fs" % (pids, timeout))


def traps_set(pid):
    """The shell scripts here set their traps first, then start children: once the group
    has a second process, the traps are in place (a signal before that would kill the
    shell by default, which is not what these tests are about)."""
    return group_members(pid)


def group_members(pgid):
    return wait_until(lambda: (lambda p: p if len(p) >= 2 else None)(pids_in_pgid(pgid)),
                      timeout=5, what="the service's process group to have its children")


class GraceKill(SuiteTest):
    def test_term_ignored_is_killed_after_grace(self):
        self.d.write_config([{"name": "stubborn", "command": STUBBORN, "ready_after": 0,
                              "stop": {"grace": "1s"}}])
        self.d.start()
        s = self.d.wait_state("stubborn", "HEALTHY")
        pid = s["pid"]
        members = group_members(pid)
        self.assertIn(pid, members)
        t0 = time.monotonic()
        st, body = self.d.request("POST", "/v1/services/stubborn/stop")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["service"]["state"], "STOPPING")
        time.sleep(0.5)
        s = self.d.service("stubborn")
        self.assertEqual(s["state"], "STOPPING", "still in its grace period: %s" % s)
        self.assertTrue(pid_alive(pid), "SIGTERM is ignored; the process must still run during grace")
        s = self.d.wait_state("stubborn", "STOPPED", timeout=5)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 0.9, "stopped before the 1s grace was over")
        self.assertLess(took, 2.5, "SIGKILL did not follow the 1s grace promptly")
        self.assertEqual(s["last_exit"]["signal"], 9, s)
        self.assertIsNone(s["pid"])
        self.assertFalse(pid_alive(pid), "STOPPED while the main process is alive")
        gone_soon(members)
        self.assertEqual(pids_in_pgid(pid), [])
        self.assertEqual(pids_with_cwd(self.d.state), [])
        st, log = self.d.request("GET", "/v1/services/stubborn/logs", raw=True)
        self.assertEqual(st, 200)
        self.assertIn(b"sending SIGTERM to process group %d" % pid, log)
        self.assertIn(b"sending SIGKILL to process group %d" % pid, log)

    def test_stop_wait_returns_when_process_gone(self):
        self.d.write_config([{"name": "stubborn", "command": STUBBORN, "ready_after": 0,
                              "stop": {"grace": "0.5s"}}])
        self.d.start()
        pid = self.d.wait_state("stubborn", "HEALTHY")["pid"]
        members = group_members(pid)
        t0 = time.monotonic()
        r = self.d.cli("stop", "stubborn", "--wait", "--timeout", "5")
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stubborn: STOPPED", r.stdout)
        self.assertGreaterEqual(took, 0.45)
        # STOPPED only when the process is gone; the rest of its group goes with it.
        self.assertFalse(pid_alive(pid), "main process alive after stop --wait returned")
        gone_soon(members)

    def test_leftovers_of_a_dead_instance_are_killed(self):
        # The main process dies; its background child (same process group) must not
        # outlive it, and the next instance starts.
        self.d.write_config([{"name": "forky", "command": ["/bin/sh", "-c", "sleep 1000 & exec sleep 999"],
                              "ready_after": 0, "backoff": {"initial": 0}}])
        self.d.start()
        pid = self.d.wait_state("forky", "HEALTHY")["pid"]
        members = group_members(pid)
        os.kill(pid, signal.SIGKILL)
        s = wait_until(lambda: (lambda s: s if s["pid"] not in (None, pid) and s["state"] == "HEALTHY" else None)(
            self.d.service("forky")), timeout=5, what="the next instance")
        gone_soon(members)
        self.assertEqual(pids_in_pgid(pid), [])
        self.assertEqual(len(group_members(s["pid"])), 2)

    def test_stop_delay(self):
        """stop --delay S (Blackfish's stop(delay)): the service stops S later, not now; a start
        in between cancels it; a bad delay is a 400."""
        self.d.write_config([{"name": "a", "command": ["sleep", "1000"], "ready_after": 0},
                             {"name": "b", "command": ["sleep", "1000"], "ready_after": 0}])
        self.d.start()
        self.d.wait_state("a", "HEALTHY")
        self.d.wait_state("b", "HEALTHY")
        t0 = time.time()
        r = self.d.cli("stop", "a", "b", "--delay", "1.5s", check=True)
        self.assertIn("stopping in 1.5s", r.stdout)
        time.sleep(0.5)
        self.assertEqual(self.d.service("a")["state"], "HEALTHY", "not stopped before the delay")
        self.d.cli("start", "b", check=True)  # cancels b's delayed stop
        self.d.wait_state("a", "STOPPED", timeout=5)
        self.assertGreaterEqual(time.time() - t0, 1.4)
        time.sleep(1.5)
        self.assertEqual(self.d.service("b")["state"], "HEALTHY", "a start cancels a delayed stop")
        st, body = self.d.request("POST", "/v1/services/b/stop?delay=soon")
        self.assertEqual(st, 400)
        self.assertEqual(body["error"]["code"], "bad_delay")

    def test_custom_stop_signal(self):
        script = "trap '' TERM; trap 'echo got-INT; exit 0' INT; while :; do sleep 0.05; done"
        self.d.write_config([{"name": "intme", "command": ["/bin/sh", "-c", script], "ready_after": 0,
                              "stop": {"signal": "INT", "grace": "5s"}}])
        self.d.start()
        pid = self.d.wait_state("intme", "HEALTHY")["pid"]
        traps_set(pid)
        t0 = time.monotonic()
        st, body = self.d.request("POST", "/v1/services/intme/stop?wait=stopped&timeout=5")
        self.assertEqual(st, 200, body)
        self.assertLess(time.monotonic() - t0, 2.0, "SIGINT was not delivered; waited for the grace period")
        self.assertEqual(body["service"]["last_exit"]["code"], 0)
        self.assertFalse(pid_alive(pid))
        st, log = self.d.request("GET", "/v1/services/intme/logs", raw=True)
        self.assertIn(b"got-INT", log)
        self.assertIn(b"sending SIGINT", log)


class DaemonSigterm(SuiteTest):
    def test_sigterm_stops_all_in_parallel_and_exits_0(self):
        specs = [{"name": "plain%d" % i, "command": ["sleep", "1000"], "ready_after": 0} for i in range(3)]
        specs += [{"name": "stubborn%d" % i, "command": STUBBORN, "ready_after": 0, "stop": {"grace": "1s"}}
                  for i in range(2)]
        self.d.write_config(specs)
        self.d.start()
        pids = []
        for sp in specs:
            pids.append(self.d.wait_state(sp["name"], "HEALTHY")["pid"])
        for p in pids[3:]:
            group_members(p)
        everything = pids_with_cwd(self.d.state)
        self.assertGreaterEqual(len(everything), 7, everything)  # 3 sleeps + 2 x (sh + sleep)
        t0 = time.monotonic()
        self.d.signal(signal.SIGTERM)
        rc = self.d.wait_exit(timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, self.d.log()[-3000:])
        # Two services each need their 1s grace: in parallel that is ~1s, one after the other 2s+.
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 1.8, "shutdown took %.2fs: services not stopped in parallel?" % took)
        gone_soon(everything)
        self.assertFalse(os.path.exists(self.d.sock), "socket left behind after a clean exit")
        self.assertNotIn("leaked handle", self.d.log())

    def test_sigint_like_sigterm_with_service_in_backoff(self):
        self.d.write_config([{"name": "web", "command": ["sleep", "1000"], "ready_after": 0},
                             {"name": "crash", "command": ["/bin/sh", "-c", "exit 1"],
                              "backoff": {"initial": "30s", "max": "30s"}}])
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY")["pid"]
        self.d.wait_state("crash", "BACKOFF")
        t0 = time.monotonic()
        self.d.signal(signal.SIGINT)
        self.assertEqual(self.d.wait_exit(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertFalse(pid_alive(pid))

    def test_second_sigterm_exits_at_once(self):
        self.d.write_config([{"name": "stubborn", "command": STUBBORN, "ready_after": 0,
                              "stop": {"grace": "10s"}}])
        self.d.start()
        traps_set(self.d.wait_state("stubborn", "HEALTHY")["pid"])
        self.d.signal(signal.SIGTERM)
        self.d.wait_state("stubborn", "STOPPING")
        t0 = time.monotonic()
        self.d.signal(signal.SIGTERM)
        rc = self.d.wait_exit(timeout=5)
        self.assertLess(time.monotonic() - t0, 1.0, "the second SIGTERM did not exit at once")
        self.assertEqual(rc, 1)
        # It leaves the services running (they are killed by the test's cleanup).
        self.assertTrue(pids_with_cwd(self.d.state))

    def test_sigterm_during_spec_change_exits(self):
        # SIGTERM while a replaced service's old instance is still stopping: the daemon
        # must not start the new spec, and must exit.
        slow = ["/bin/sh", "-c", "trap 'sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done"]
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", {"name": "web", "command": slow, "ready_after": 0})
        self.assertEqual(st, 201, body)
        old = self.d.wait_state("web", "HEALTHY")["pid"]
        traps_set(old)
        st, body = self.d.request("PUT", "/v1/services/web", {"name": "web", "command": slow, "ready_after": 0,
                                                              "env": {"V": "2"}})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["service"]["state"], "STOPPING")
        self.d.signal(signal.SIGTERM)
        try:
            rc = self.d.wait_exit(timeout=5)
        except subprocess.TimeoutExpired:
            left = pids_with_cwd(self.d.state)
            self.d.proc.kill()
            self.fail("daemon still running 5s after SIGTERM; service processes: %s\n%s"
                      % (left, self.d.log()[-2000:]))
        self.assertEqual(rc, 0)
        self.assertFalse(pid_alive(old))
        wait_until(lambda: pids_with_cwd(self.d.state) == [], timeout=1,
                   what="no service process left after shutdown")

    def test_shutdown_api_202_then_exit_0(self):
        self.d.write_config([{"name": "web", "command": ["sleep", "1000"], "ready_after": 0}])
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY")["pid"]
        st, body = self.d.request("POST", "/v1/shutdown")
        self.assertEqual(st, 202, body)
        self.assertEqual(body["api"], 1)
        self.assertEqual(self.d.wait_exit(timeout=10), 0)
        self.assertFalse(pid_alive(pid))


if __name__ == "__main__":
    main()
