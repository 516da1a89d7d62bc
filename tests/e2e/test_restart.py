"""Restart policy under stress: crash loops are throttled, a stop during BACKOFF cancels
the restart, and restarting instances leaks no descriptors in the daemon."""
import os
import signal
import time

from harness import SuiteTest, cpu_seconds, fd_count, main, pid_alive, pids_with_cwd, wait_until

CRASH = ["/bin/sh", "-c", "exit 1"]


def crash_gaps(events):
    """(failure number, seconds from the FAILED event to the next STARTING) for a crash loop."""
    gaps = []
    failed_at = None
    n = 0
    for e in events:
        if e["to"] == "FAILED":
            failed_at = e["time"]
            n += 1
        elif e["to"] == "STARTING" and failed_at is not None:
            gaps.append((n, e["time"] - failed_at))
            failed_at = None
    return gaps


class CrashLoop(SuiteTest):
    def test_crash_loop_is_throttled_not_a_busy_loop(self):
        self.d.write_config([{"name": "crash", "command": CRASH,
                              "backoff": {"initial": 0, "max": "1s"}}])
        self.d.start()
        cpu0 = cpu_seconds(self.d.proc.pid)
        t0 = time.time()
        # A measurement window: how much work does a 3 s crash loop cost?
        time.sleep(3.0)
        cpu = cpu_seconds(self.d.proc.pid) - cpu0
        elapsed = time.time() - t0
        evs = self.d.events(service="crash")
        starts = [e for e in evs if e["to"] == "STARTING"]
        s = self.d.service("crash")
        self.assertGreaterEqual(len(starts), 4, "the crash loop should keep restarting: %s" % evs)
        self.assertLessEqual(len(starts), 10, "too many instances in %.1fs: %d" % (elapsed, len(starts)))
        self.assertLessEqual(s["attempt"], 10)
        self.assertGreaterEqual(s["restarts"], 3)
        self.assertEqual(s["last_exit"]["code"], 1)
        self.assertLess(cpu, 0.3, "daemon used %.2fs CPU in %.1fs of crash loop" % (cpu, elapsed))
        gaps = [g for _, g in crash_gaps(evs)]
        self.assertGreaterEqual(len(gaps), 4, gaps)
        # The delays grow (jitter may shave up to 20% off each) towards the 1 s cap.
        for a, b in zip(gaps[1:], gaps[2:]):
            self.assertGreaterEqual(b, a * 0.6, "backoff shrank: %s" % gaps)
        self.assertGreater(gaps[-1], 0.5, "backoff never grew towards max: %s" % gaps)
        self.assertLess(gaps[1], 0.2, gaps)
        self.assertLess(max(gaps), 1.5, "backoff exceeded max 1s: %s" % gaps)

    def test_crash_loop_floor_is_at_least_100ms_doubling(self):
        # Contract: with backoff.initial 0, from the 2nd consecutive failure the delay is
        # at least 100 ms, doubling up to 1 s -- whatever the jitter (default 0.2) does.
        self.d.write_config([{"name": "crash", "command": CRASH,
                              "backoff": {"initial": 0, "max": "1s"}}])
        self.d.start()
        wait_until(lambda: len(crash_gaps(self.d.events(service="crash"))) >= 5, timeout=10,
                   interval=0.1, what="5 restarts")
        gaps = crash_gaps(self.d.events(service="crash"))
        for n, g in gaps:
            floor = 0.0 if n < 2 else min(0.1 * 2 ** (n - 2), 1.0)
            self.assertGreaterEqual(g, floor - 0.005,
                                    "restart after failure #%d came after %.3fs, below the %.3fs floor; all: %s"
                                    % (n, g, floor, [(k, round(x, 3)) for k, x in gaps]))


class StopInBackoff(SuiteTest):
    def test_stop_during_backoff_cancels_restart(self):
        self.d.write_config([{"name": "crash", "command": CRASH,
                              "backoff": {"initial": "1s", "max": "1s", "jitter": 0}}])
        self.d.start()
        s = self.d.wait_state("crash", "BACKOFF", timeout=5)
        attempt = s["attempt"]
        t_backoff = time.time()
        st, body = self.d.request("POST", "/v1/services/crash/stop")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["service"]["state"], "STOPPED")
        self.assertEqual(body["service"]["wanted"], "down")
        last_id = self.d.events(service="crash")[-1]["id"]
        # Watch well past the moment the backoff would have fired.
        while time.time() < t_backoff + 1.8:
            s = self.d.service("crash")
            self.assertEqual(s["state"], "STOPPED", s)
            self.assertIsNone(s["pid"], s)
            self.assertEqual(s["attempt"], attempt, s)
            time.sleep(0.05)
        later = [e for e in self.d.events(service="crash") if e["id"] > last_id]
        self.assertEqual(later, [], "events after the stop: %s" % later)
        self.assertEqual(pids_with_cwd(self.d.state), [])
        # And it can be started again by hand.
        st, body = self.d.request("POST", "/v1/services/crash/start")
        self.assertEqual(st, 200, body)
        wait_until(lambda: self.d.service("crash")["attempt"] > attempt, timeout=5, what="a new attempt")


class FdLeak(SuiteTest):
    def stable_fds(self, pid):
        """The daemon's descriptor count once it has settled (no request in flight)."""
        prev = -1
        for _ in range(50):
            n = fd_count(pid)
            if n == prev:
                return n
            prev = n
            time.sleep(0.1)
        return prev

    def test_no_fd_leak_across_restarts(self):
        self.d.write_config([{"name": "web", "command": ["sleep", "1000"], "ready_after": 0,
                              "backoff": {"initial": 0, "reset_after": 0}}])
        self.d.start()
        dpid = self.d.proc.pid

        def kill_and_wait(old):
            os.kill(old, signal.SIGKILL)
            return wait_until(lambda: (lambda s: s if s["pid"] not in (None, old) and s["state"] == "HEALTHY"
                                       else None)(self.d.service("web")), timeout=10, what="a new instance")

        s = self.d.wait_state("web", "HEALTHY")
        s = kill_and_wait(s["pid"])  # warm-up: first restart opens whatever it opens lazily
        before = self.stable_fds(dpid)
        fds_before = sorted(os.listdir("/proc/%d/fd" % dpid))
        for _ in range(20):
            old = s["pid"]
            s = kill_and_wait(old)
            self.assertFalse(pid_alive(old))
        self.assertGreaterEqual(s["restarts"], 21)
        after = self.stable_fds(dpid)
        if after != before:
            links = {}
            for fd in os.listdir("/proc/%d/fd" % dpid):
                try:
                    links[fd] = os.readlink("/proc/%d/fd/%s" % (dpid, fd))
                except OSError:
                    pass
            self.fail("daemon fds: %d before, %d after 20 restarts (before: %s)\nnow: %s"
                      % (before, after, fds_before, links))


if __name__ == "__main__":
    main()
