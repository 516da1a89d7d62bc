"""Descriptors the daemon holds per service: one per running instance it started (the
log FIFO's reader; its exit comes by SIGCHLD, not a pidfd), none for a service that does
not run, and the log files in a small shared cache. This is what lets one daemon run
10,000 services under a 20,000-descriptor limit."""
import os
import subprocess

from harness import HERD_BIN, Daemon, SanitizedSuiteTest, fd_count, main, wait_until

N = 200
LOG_FD_CACHE = 64  # logpipe.c


def specs(n):
    return [{"name": "f%03d" % i, "command": ["sleep", "1000"], "ready_after": 0} for i in range(n)]


class Fds(SanitizedSuiteTest):
    def baseline(self):
        """Descriptors of a daemon with no service at all."""
        d = Daemon(config=[])
        try:
            d.start()
            return fd_count(d.proc.pid)
        finally:
            d.cleanup()

    def all_in(self, state):
        return lambda: all(s["state"] == state for s in self.d.services().values())

    def test_one_per_running_service_none_when_stopped(self):
        base = self.baseline()
        self.d.write_config(specs(N))
        self.d.start()
        wait_until(self.all_in("HEALTHY"), timeout=60, what="all HEALTHY")
        running = fd_count(self.d.proc.pid) - base
        self.assertLessEqual(running, N + LOG_FD_CACHE + 4, "%d services running hold %d descriptors" % (N, running))
        # Half of them stop: their readers go.
        for i in range(N // 2):
            st, _ = self.d.request("POST", "/v1/services/f%03d/stop" % i)
            self.assertEqual(st, 200)
        wait_until(lambda: sum(s["state"] == "STOPPED" for s in self.d.services().values()) == N // 2, timeout=30,
                   what="half stopped")
        half = fd_count(self.d.proc.pid) - base
        self.assertLessEqual(half, N // 2 + LOG_FD_CACHE + 4)
        self.assertGreaterEqual(running - half, N // 2 - 4, "stopping %d services gave back %d descriptors" %
                                (N // 2, running - half))
        # None running: only the log cache is left.
        self.d.cli("stop", "*", "--wait", check=True)
        none = fd_count(self.d.proc.pid) - base
        self.assertLessEqual(none, LOG_FD_CACHE + 4, "no service running, %d descriptors held" % none)
        # They all start again, and their exits are still seen (SIGCHLD, no pidfd).
        self.d.cli("start", "*", "--wait", check=True)
        pid = self.d.service("f007")["pid"]
        os.kill(pid, 9)
        wait_until(lambda: (lambda s: s["state"] == "HEALTHY" and s["pid"] not in (None, pid))(self.d.service("f007")),
                   timeout=10, what="f007 restarted after kill -9")


def start_limited(d, nofile):
    """Start the test's daemon under a descriptor limit (soft = hard = nofile)."""
    d.logf = open(d.log_path, "ab")
    cmd = ["prlimit", "--nofile=%d:%d" % (nofile, nofile), HERD_BIN, "daemon", "--config", d.confdir,
           "--state-dir", d.state, "--log-level", "debug"]
    d.proc = subprocess.Popen(cmd, stdout=d.logf, stderr=subprocess.STDOUT, env=d.env)
    d.wait_socket()


def pidfds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:[pidfd]"
        except OSError:
            pass
    return n


class Adopted(SanitizedSuiteTest):
    """A re-adopted process is not herd's child: a pidfd watches it while pidfds stay within
    a quarter of the descriptor limit (less 256); past that, one shared timer polls them all."""

    def test_pidfds_within_budget_then_polling(self):
        n = 20
        self.d.write_config(specs(n))
        self.d.start()
        wait_until(lambda: all(s["state"] == "HEALTHY" for s in self.d.services().values()), timeout=30,
                   what="all HEALTHY")
        self.assertEqual(pidfds(self.d.proc.pid), 0, "its own children need no pidfd")
        before = {k: v["pid"] for k, v in self.d.services().items()}
        self.d.kill9()
        self.d.start()
        self.assertEqual({k: v["pid"] for k, v in self.d.services().items()}, before, "all re-adopted")
        self.assertEqual(pidfds(self.d.proc.pid), n, "re-adopted: one pidfd each (within budget)")
        self.d.kill9()
        # A limit of 1,024: the budget is 0, every re-adopted process is polled.
        start_limited(self.d, 1024)
        self.assertEqual({k: v["pid"] for k, v in self.d.services().items()}, before, "all re-adopted")
        self.assertEqual(pidfds(self.d.proc.pid), 0, "past the budget: no pidfd")
        os.kill(before["f003"], 9)
        s = wait_until(lambda: (lambda x: x if x["state"] == "HEALTHY" and x["pid"] not in (None, before["f003"])
                                else None)(self.d.service("f003")), timeout=10, what="f003 seen dead and restarted")
        self.assertIn("exited (status unknown, adopted)", str(self.d.events(service="f003")))


class AtTheLimit(SanitizedSuiteTest):
    """Out of descriptors is the daemon's problem, not the service's: a start that would eat
    the last 256 descriptors (kept for the control socket, the store, logs and checks)
    waits in PENDING saying so, with no failure and no restart counted, and goes ahead
    once descriptors are free again; the control socket keeps answering throughout."""

    def test_pending_not_failed_then_started(self):
        n = 200
        self.d.write_config(specs(n))
        start_limited(self.d, 400)

        def states():
            out = {}
            for s in self.d.services().values():
                out[s["state"]] = out.get(s["state"], 0) + 1
            return out
        wait_until(lambda: states().get("HEALTHY", 0) + states().get("PENDING", 0) == n, timeout=30,
                   what="every service HEALTHY or PENDING")
        svcs = self.d.services()
        pending = [s for s in svcs.values() if s["state"] == "PENDING"]
        self.assertGreater(len(pending), 20, states())
        for s in pending:
            self.assertIn("waiting for a file descriptor: herd is at its limit (RLIMIT_NOFILE 400)", s["reason"])
            self.assertEqual(s["restarts"], 0, s)
            self.assertNotIn(s["state"], ("FAILED", "BACKOFF"))
        self.assertFalse([s for s in svcs.values() if s["state"] in ("FAILED", "BACKOFF")])
        # The control socket answers, many times over, while the services wait.
        for _ in range(50):
            st, _ = self.d.request("GET", "/v1/daemon")
            self.assertEqual(st, 200)
        # Descriptors come back: the waiting ones start, none of them having failed.
        running = [s["name"] for s in svcs.values() if s["state"] == "HEALTHY"]
        for name in running[:len(pending) + 5]:
            st, _ = self.d.request("POST", "/v1/services/%s/stop" % name)
            self.assertEqual(st, 200)
        for s in pending:
            wait_until(lambda: self.d.service(s["name"])["state"] == "HEALTHY", timeout=30,
                       what="%s started once descriptors were free" % s["name"])
            got = self.d.service(s["name"])
            self.assertEqual(got["restarts"], 0, got)
            self.assertEqual(got["attempt"], 1, got)


if __name__ == "__main__":
    main()
