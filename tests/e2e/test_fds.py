"""Descriptors the daemon holds per service: one per running instance it started (the
log FIFO's reader; its exit comes by SIGCHLD, not a pidfd), none for a service that does
not run, and the log files in a small shared cache. This is what lets one daemon run
10,000 services under a 20,000-descriptor limit."""
import os

from harness import Daemon, SanitizedSuiteTest, fd_count, main, wait_until

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


if __name__ == "__main__":
    main()
