"""Basic life cycle through the real daemon: start, crash and come back, stop, CLI."""
import os
import signal
import time

from harness import DaemonTest, main, pid_alive, wait_until


class Basic(DaemonTest):
    def test_kill_child_comes_back(self):
        self.d.write_config([{"name": "web", "command": ["sleep", "1000"], "ready_after": 0,
                              "backoff": {"initial": 0}}])
        self.d.start()
        s = self.d.wait_state("web", "HEALTHY")
        pid = s["pid"]
        os.kill(pid, signal.SIGKILL)
        s2 = wait_until(lambda: (lambda x: x if x["pid"] and x["pid"] != pid and x["state"] == "HEALTHY" else None)(
            self.d.service("web")), what="a new pid")
        self.assertEqual(s2["restarts"], 1)
        self.assertEqual(s2["last_exit"]["signal"], 9)
        self.assertFalse(pid_alive(pid))

    def test_status_cli_and_stop(self):
        self.d.write_config([{"name": "a", "command": ["sleep", "1000"], "ready_after": 0},
                             {"name": "b", "command": ["sleep", "1000"], "ready_after": 0}])
        self.d.start()
        self.d.wait_state("a", "HEALTHY")
        self.d.wait_state("b", "HEALTHY")
        r = self.d.cli("status", check=True)
        self.assertIn("NAME", r.stdout)
        self.assertRegex(r.stdout, r"a\s+HEALTHY\s+\d+")
        r = self.d.cli("stop", "a", "--wait", check=True)
        self.assertIn("a: STOPPED", r.stdout)
        self.assertEqual(self.d.service("a")["state"], "STOPPED")
        self.assertEqual(self.d.service("b")["state"], "HEALTHY")

    def test_no_daemon_message(self):
        r = self.d.cli("status")
        self.assertEqual(r.returncode, 3)
        self.assertIn("no daemon answers on", r.stderr)
        self.assertIn(self.d.sock, r.stderr)


if __name__ == "__main__":
    main()
