"""The notify protocol herd offers its services ("ready": "notify", "watchdog"): real
programs on herd's NOTIFY_SOCKET. systemd-notify (Debian's, which needs only
NOTIFY_SOCKET, not systemd as PID 1) says STATUS= and READY=1 and waits on its BARRIER=1;
a small Python script pets the watchdog and then stops; a grandchild in its own session is
still its service's (NotifyAccess=all); a stranger's READY=1 counts for nothing."""
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

from harness import HERD_BIN, SanitizedSuiteTest, main, wait_until

PETTER = r'''
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
usec = int(os.environ["WATCHDOG_USEC"])
flag = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(m):
    s.sendto(m.encode(), addr)
say("STATUS=warming up")
time.sleep(0.2)
say("READY=1\nSTATUS=petting")
while os.path.exists(flag):
    say("WATCHDOG=1")
    time.sleep(usec / 4e6)
say("STATUS=hung")
time.sleep(1000)
'''


class Notify(SanitizedSuiteTest):
    SAN_MARKS = SanitizedSuiteTest.SAN_MARKS + ("leaked handle", "loop closed with open handles")

    def svc(self, name, cmd, **kw):
        d = {"name": name, "command": cmd, "ready": "notify", "restart": "always",
             "backoff": {"initial": 0.1, "jitter": 0}, "stop": {"grace": "1s"}}
        d.update(kw)
        return d

    @unittest.skipUnless(shutil.which("systemd-notify"), "systemd-notify (Debian's systemd package) not installed")
    def test_systemd_notify_status_then_ready(self):
        """STARTING until READY=1 (STATUS= shown meanwhile), then HEALTHY; systemd-notify's
        barrier is answered (it returns at once, not after its 5 s timeout)."""
        mark = os.path.join(self.d.root, "after-ready")
        gate = os.path.join(self.d.root, "gate")
        script = ('systemd-notify --status="loading the model"; '
                  'while [ ! -e %s ]; do sleep 0.05; done; '
                  'systemd-notify --ready --status="serving 3 clients"; touch %s; exec sleep 1000' % (gate, mark))
        self.d.write_config([self.svc("web", ["/bin/sh", "-c", script], start_timeout="30s")])
        self.d.start()
        s = wait_until(lambda: (lambda x: x if x.get("notify_status") else None)(self.d.service("web")),
                       what="STATUS= shown")
        self.assertEqual(s["notify_status"], "loading the model")
        self.assertEqual(s["state"], "STARTING", "no READY=1 yet")
        out = self.d.cli("status", "web", check=True).stdout
        self.assertIn("loading the model", out)
        t0 = time.time()
        open(gate, "w").close()
        s = self.d.wait_state("web", "HEALTHY", timeout=10)
        self.assertIn("READY=1", s["reason"])
        self.assertEqual(s["notify_status"], "serving 3 clients")
        wait_until(lambda: os.path.exists(mark), timeout=4, what="systemd-notify --ready to return (its barrier)")
        self.assertLess(time.time() - t0, 4, "systemd-notify waited for its barrier's timeout")
        out = self.d.cli("status", check=True).stdout
        self.assertRegex(out, r"web\s+HEALTHY.*serving 3 clients")
        self.assertNotIn("barrier", self.d.log())

    def test_python_watchdog_restarts_a_silent_service(self):
        """WATCHDOG=1 every WATCHDOG_USEC/4 keeps it HEALTHY past several periods; silent
        for a period, it is FAILED with a reason that says so, and restarted."""
        flag = os.path.join(self.d.root, "pet")
        open(flag, "w").close()
        self.d.write_config([self.svc("wd", [sys.executable, "-c", PETTER, flag], watchdog="1s")])
        self.d.start()
        s = self.d.wait_state("wd", "HEALTHY", timeout=10)
        pid = s["pid"]
        self.assertEqual(s["notify_status"], "petting")
        time.sleep(2.5)  # (on purpose: two and a half watchdog periods must pass uneventfully)
        s = self.d.service("wd")
        self.assertEqual((s["state"], s["pid"], s["restarts"]), ("HEALTHY", pid, 0), "petted: left alone")
        os.unlink(flag)
        ev = wait_until(lambda: next((e for e in self.d.events(service="wd") if e["to"] == "FAILED"), None),
                        timeout=5, what="the watchdog to fire")
        self.assertIn("watchdog: no WATCHDOG=1 for 1s", ev["reason"])
        open(flag, "w").close()  # the next instance pets again (it checks after its READY=1, 0.2 s in)
        s = wait_until(lambda: (lambda x: x if x["state"] == "HEALTHY" and x["pid"] != pid else None)(
            self.d.service("wd")), timeout=10, what="a new instance")
        self.assertGreaterEqual(s["restarts"], 1)
        self.assertIn("watchdog", s["last_error"])
        self.assertEqual(self.d.service("wd")["attempt"], 2)

    def test_no_ready_is_a_timeout_and_strangers_do_not_count(self):
        """Without READY=1 STARTING ends in TIMEOUT at start_timeout; a READY=1 from a
        process that is no instance of the service changes nothing."""
        self.d.write_config([self.svc("mute", ["sleep", "1000"], start_timeout="2s", restart="never")])
        self.d.start()
        # STARTING comes before the spawn is back from its thread: wait for the pid too.
        env = wait_until(lambda: (lambda x: x if x["state"] == "STARTING" and x["pid"] else None)(
            self.d.service("mute")), timeout=10, what="mute STARTING with a pid")
        sockpath = os.path.join(self.d.state, "run", "notify.sock")
        self.assertTrue(os.path.exists(sockpath))
        with open("/proc/%d/environ" % env["pid"], "rb") as f:
            self.assertIn(b"NOTIFY_SOCKET=" + sockpath.encode(), f.read().split(b"\0"))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1\nSTATUS=not mine", sockpath)
        s.close()
        s = self.d.wait_state("mute", "TIMEOUT", timeout=10)
        self.assertIn("no READY=1 within start_timeout 2s", s["reason"])
        self.assertNotIn("notify_status", s)

    @unittest.skipUnless(shutil.which("systemd-notify"), "systemd-notify not installed")
    def test_grandchild_in_its_own_session_and_a_check(self):
        """READY=1 from a grandchild that left the process group (setsid) still counts (it
        carries the instance's HERD_INSTANCE); with a check, HEALTHY needs both."""
        script = "setsid sh -c 'sleep 1; systemd-notify --ready' & exec sleep 1000"
        self.d.write_config([self.svc("both", ["/bin/sh", "-c", script], start_timeout="20s",
                                      check={"type": "exec", "command": ["true"], "interval": "100ms"})])
        self.d.start()
        t0 = time.time()
        s = self.d.wait_state("both", "HEALTHY", timeout=10)
        self.assertGreater(time.time() - t0, 0.8, "HEALTHY before READY=1 (the check alone)")
        self.assertIn("READY=1, and check passed", s["reason"])

    def test_config_errors(self):
        conf = os.path.join(self.d.root, "bad")
        os.makedirs(conf)
        with open(os.path.join(conf, "a.json"), "w") as f:
            f.write('{"name": "a", "command": ["true"],\n "ready": "soon",\n "watchdog": 0}\n')
        r = subprocess.run([HERD_BIN, "config", "check", conf], capture_output=True, text=True)
        self.assertEqual(r.returncode, 100, r.stderr)
        self.assertRegex(r.stderr, r"a\.json:2:\d+: ready: .*notify")
        self.assertRegex(r.stderr, r"a\.json:3:\d+: watchdog: must be more than 0")


if __name__ == "__main__":
    main()
