"""herd status --watch in a real pty: the table again at each state change, driven by the
daemon's event stream, and nothing between changes (no polling: no redraw, no request, the
CLI asleep in read())."""
import os
import pty
import re
import select
import signal
import subprocess
import time

from harness import HERD_BIN, SuiteTest, main, wait_until

CLEAR = b"\033[H\033[2J"


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0}
    d.update(kw)
    return d


class Watch(SuiteTest):
    def setUp(self):
        super().setUp()
        self.d.write_config([svc("web"), svc("db"), svc("other")])
        self.d.start()
        for n in ("web", "db", "other"):
            self.d.wait_state(n, "HEALTHY")
        self.out = b""

    def spawn(self, *args):
        env = dict(self.d.env, HERD_SOCKET=self.d.sock, NO_COLOR="1")
        self.master, slave = pty.openpty()
        self.p = subprocess.Popen([HERD_BIN, "status", "--watch"] + list(args), env=env, stdout=slave,
                                  stderr=slave, stdin=slave)
        os.close(slave)
        self.addCleanup(self.reap)

    def reap(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            self.p.wait(10)
        os.close(self.master)

    def read_for(self, seconds):
        end = time.time() + seconds
        while True:
            left = end - time.time()
            if left <= 0:
                return
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.out += chunk

    def frames(self):
        return self.out.split(CLEAR)[1:]

    def wait_frame(self, pred, timeout=10, what="a frame"):
        end = time.time() + timeout
        while time.time() < end:
            fr = self.frames()
            if fr and pred(fr[-1].decode()):
                return fr[-1].decode()
            self.read_for(0.05)
        raise AssertionError("no %s within %ss; output:\n%s" % (what, timeout, self.out.decode(errors="replace")))

    def test_redraws_on_change_only(self):
        self.spawn()
        first = self.wait_frame(lambda f: re.search(r"(?m)^web\s+HEALTHY", f), what="the first table")
        self.assertIn("herd status --watch", first)
        self.assertRegex(first, r"(?m)^db\s+HEALTHY")
        # Nothing changes: nothing is drawn, and the CLI sleeps (state S, no CPU to speak of).
        n = len(self.frames())
        cpu0 = self.cpu()
        self.read_for(1.5)
        self.assertEqual(len(self.frames()), n, "redrawn without a change (polling?)")
        self.assertLess(self.cpu() - cpu0, 0.05, "the CLI used CPU while nothing changed")
        with open("/proc/%d/stat" % self.p.pid) as f:
            self.assertEqual(f.read().rsplit(")", 1)[1].split()[0], "S")
        # A change: redrawn within a moment, showing it.
        t0 = time.time()
        self.d.cli("stop", "web", check=True)
        self.wait_frame(lambda f: re.search(r"(?m)^web\s+STOPPED", f), timeout=5, what="web STOPPED")
        self.assertLess(time.time() - t0, 3)
        self.d.cli("start", "web", check=True)
        self.wait_frame(lambda f: re.search(r"(?m)^web\s+HEALTHY", f), timeout=5, what="web HEALTHY again")
        self.assertIsNone(self.p.poll())

    def test_pattern_and_daemon_gone(self):
        self.spawn("w*")
        first = self.wait_frame(lambda f: "web" in f, what="the first table")
        self.assertNotIn("db", first)
        n = len(self.frames())
        self.d.cli("restart", "db", "--wait", check=True)  # not watched: no redraw
        self.read_for(0.5)
        self.assertEqual(len(self.frames()), n, "redrawn for a service the pattern leaves out")
        self.d.cli("restart", "web", check=True)
        self.wait_frame(lambda f: re.search(r"(?m)^web\s+(STOPPING|STOPPED|STARTING|HEALTHY)", f) and
                        len(self.frames()) > n, what="a redraw for web")
        self.d.stop()
        wait_until(lambda: self.p.poll() is not None, timeout=10, what="the CLI to end with the daemon")
        self.read_for(0.2)
        self.assertEqual(self.p.returncode, 3)
        self.assertRegex(self.out, rb"herd: the daemon (on \S+ )?closed the")

    def test_usage(self):
        r = self.d.cli("status", "--watch", "--json")
        self.assertEqual(r.returncode, 2)
        r = self.d.cli("status", "--watch", "a", "b")
        self.assertEqual(r.returncode, 2)

    def cpu(self):
        with open("/proc/%d/stat" % self.p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
