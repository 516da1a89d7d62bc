"""Jobs (issue 15): run-to-completion work in queues, over the real socket and CLI.

Priorities and FIFO order, the concurrency limit, a timeout that stops the whole process
group, retries with attempt numbers, `herd wait` (exit codes, its progress line in a pty),
kill and prune by pattern, and a kill -9 of the daemon during a storm of jobs."""
import json
import os
import pty
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import HERD_BIN, Daemon, DaemonTest, main, pid_alive, wait_until  # noqa: E402


def queues(*qs):
    return json.dumps({"queues": [{"name": n, "max_running": m} for n, m in qs]})


class JobsTest(DaemonTest):
    def setUp(self):
        super().setUp()
        self.work = os.path.join(self.d.root, "work")
        os.makedirs(self.work)

    def run_job(self, *args, check=True):
        r = self.d.cli("run", *args, check=check)
        return r.stdout.strip()

    def job(self, name):
        st, body = self.d.request("GET", "/v1/services/" + name)
        self.assertEqual(st, 200, body)
        return body["service"]

    def jobs(self, query=""):
        st, body = self.d.request("GET", "/v1/jobs" + query)
        self.assertEqual(st, 200, body)
        return body

    def wait_job(self, name, states, timeout=15):
        return wait_until(lambda: self.job(name)["job"]["state"] in states and self.job(name), timeout,
                          what="%s in %s (now %s)" % (name, states, self.job(name)["job"]["state"]))

    def path(self, name):
        return os.path.join(self.work, name)

    def test_priority_then_fifo_and_places(self):
        """One slot: a gate job holds it; the rest start by priority, FIFO within a priority."""
        self.d.write_config(queues(("one", 1)), "queues.json")
        self.d.start()
        gate = self.path("gate")
        self.run_job("--name", "gate", "--queue", "one", "--", "sh", "-c", "while [ ! -e %s ]; do sleep 0.02; done" % gate)
        self.wait_job("gate", ("RUNNING",))
        order = self.path("order")
        for name, prio in (("a", 3), ("b", 1), ("c", 5), ("d", 3), ("e", 5)):
            self.run_job("--name", name, "--queue", "one", "--priority", str(prio), "--",
                         "sh", "-c", "echo %s >> %s" % (name, order))
        listing = {j["name"]: j for j in self.jobs("?match=a,b,c,d,e")["jobs"]}
        self.assertEqual({n: listing[n]["position"] for n in "abcde"}, {"c": 1, "e": 2, "a": 3, "d": 4, "b": 5})
        for n in "abcde":
            self.assertEqual(listing[n]["state"], "PENDING")
            self.assertIn("queued in one", listing[n]["reason"])
        # The table shows the place too.
        self.assertRegex(self.d.cli("jobs", "c", check=True).stdout, r"c\s+PENDING\s+0\s+one #1\s+5")
        open(gate, "w").close()
        r = self.d.cli("wait", "gate", "a", "b", "c", "d", "e")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("6 jobs: 6 done, 0 failed", r.stdout)
        with open(order) as f:
            self.assertEqual(f.read().split(), ["c", "e", "a", "d", "b"])

    def test_concurrency_limit_never_exceeded(self):
        self.d.write_config(queues(("three", 3)), "queues.json")
        self.d.start()
        log = self.path("log")
        for i in range(12):
            self.run_job("--name", "c-%d" % i, "--queue", "three", "--",
                         "sh", "-c", "echo + >> %s; sleep 0.15; echo - >> %s" % (log, log))
        self.assertEqual(self.d.cli("wait", "c-*").returncode, 0)
        cur = peak = 0
        with open(log) as f:
            for line in f.read().split():
                cur += 1 if line == "+" else -1
                peak = max(peak, cur)
        self.assertEqual(peak, 3, "at most 3 at once, and 3 reached")
        counts = self.jobs("?match=c-*")["counts"]
        self.assertEqual(counts, {"COMPLETED": 12})

    def test_timeout_stops_the_whole_group(self):
        self.d.start()
        child = self.path("child")
        t0 = time.time()
        r = self.d.cli("run", "--name", "slow", "--timeout", "0.5", "--wait", "--",
                       "sh", "-c", "sleep 100 & echo $! > %s; wait" % child)
        self.assertEqual(r.returncode, 124, r.stdout + r.stderr)  # as timeout(1) says it
        self.assertLess(time.time() - t0, 10)
        j = self.job("slow")
        self.assertEqual(j["state"], "TIMEOUT")
        self.assertIn("timeout 0.5s", j["reason"])
        with open(child) as f:
            pid = int(f.read())
        wait_until(lambda: not pid_alive(pid), 5, what="the job's child gone too")
        att = j["job"]["attempts"]
        self.assertEqual([(a["attempt"], a["state"]) for a in att], [(1, "TIMEOUT")])

    def test_retries_attempt_numbers_and_logs(self):
        self.d.start()
        # Fails twice, then succeeds on its third attempt.
        self.run_job("--name", "flaky", "--retries", "3", "--", "sh", "-c",
                     'echo "try $HERD_ATTEMPT"; [ "$HERD_ATTEMPT" -ge 3 ] || exit 5')
        # Fails every time: 1 + 1 retry, then FAILED.
        self.run_job("--name", "hopeless", "--retries", "1", "--", "sh", "-c", "exit 4")
        r = self.d.cli("wait", "flaky", "hopeless")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("2 jobs: 1 done, 1 failed", r.stdout)
        self.assertRegex(r.stdout, r"hopeless\s+FAILED\s+exited with code 4")
        att = self.job("flaky")["job"]["attempts"]
        self.assertEqual([(a["attempt"], a["state"], a["exit_code"]) for a in att],
                         [(1, "FAILED", 5), (2, "FAILED", 5), (3, "COMPLETED", 0)])
        self.assertEqual(self.job("flaky")["state"], "COMPLETED")
        att = self.job("hopeless")["job"]["attempts"]
        self.assertEqual([(a["attempt"], a["state"], a["exit_code"]) for a in att], [(1, "FAILED", 4), (2, "FAILED", 4)])
        self.assertEqual(self.job("hopeless")["state"], "FAILED")
        out = self.d.cli("logs", "flaky", "--attempt", "2", check=True).stdout
        self.assertIn("try 2", out)
        self.assertNotIn("try 1", out)
        self.assertNotIn("try 3", out)
        self.assertEqual(self.d.cli("logs", "flaky", "--attempt", "9").returncode, 1)
        # run --wait exits with the job's own code.
        r = self.d.cli("run", "--wait", "--", "sh", "-c", "exit 7")
        self.assertEqual(r.returncode, 7)
        r = self.d.cli("run", "--wait", "--", "true")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^job-\d+\n$")

    def test_wait_progress_on_a_tty(self):
        self.d.write_config(queues(("one", 1)), "queues.json")
        self.d.start()
        for i in range(5):
            self.run_job("--name", "w-%d" % i, "--queue", "one", "--", "sleep", "0.2")
        env = dict(self.d.env, HERD_SOCKET=self.d.sock)
        env.pop("NO_COLOR", None)
        master, slave = pty.openpty()
        p = subprocess.Popen([HERD_BIN, "wait", "w-*"], env=env, stdout=slave, stderr=subprocess.DEVNULL)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        self.assertEqual(p.wait(30), 0)
        os.close(master)
        text = out.decode()
        self.assertIn("\r\033[K", text)
        self.assertRegex(text, r"queued [1-4]")  # seen while some were still waiting
        self.assertRegex(text, r"jobs/s  ETA \S+")
        self.assertIn("5 jobs: 5 done, 0 failed", text)
        # Not a terminal: no progress line, the summary only.
        r = self.d.cli("wait", "w-*")
        self.assertEqual(r.stdout, "5 jobs: 5 done, 0 failed (waited 0s)\n")
        self.assertEqual(self.d.cli("wait", "nothing-*").returncode, 1)

    def test_kill_and_prune_patterns(self):
        self.d.write_config(queues(("big", 10)), "queues.json")
        self.d.start()
        for i in range(3):
            self.run_job("--name", "k-%d" % i, "--queue", "big", "--", "sleep", "100")
        self.run_job("--name", "other", "--queue", "big", "--", "sleep", "100")
        self.run_job("--name", "retrying", "--queue", "big", "--retries", "50", "--", "sh", "-c", "exit 1")
        for n in ("k-0", "k-1", "k-2"):
            self.wait_job(n, ("RUNNING",))
        pids = [self.job(n)["pid"] for n in ("k-0", "k-1", "k-2")]
        r = self.d.cli("kill", "k-*", check=True)
        self.assertEqual(sorted(r.stdout.split()), ["k-0", "k-1", "k-2"])
        for n in ("k-0", "k-1", "k-2"):
            self.wait_job(n, ("STOPPED",))
        for p in pids:
            wait_until(lambda: not pid_alive(p), 5, what="pid %d gone" % p)
        self.assertEqual(self.job("other")["job"]["state"], "RUNNING")
        # --failed: the jobs retrying a failure, not the others.
        wait_until(lambda: self.job("retrying")["state"] == "BACKOFF" or self.job("retrying")["attempt"] >= 2, 10,
                   what="a second attempt")
        r = self.d.cli("kill", "--failed", check=True)
        self.assertEqual(r.stdout.split(), ["retrying"])
        self.wait_job("retrying", ("STOPPED",))
        self.assertEqual(self.job("other")["job"]["state"], "RUNNING")
        # The wait counts a stopped job as failed.
        r = self.d.cli("wait", "k-*")
        self.assertEqual(r.returncode, 1)
        # prune: only finished ones, by pattern, state and age.
        r = self.d.cli("prune", "k-*", "--older-than", "1h", check=True)
        self.assertIn("pruned 0 jobs", r.stdout)
        r = self.d.cli("prune", "--state", "STOPPED", "k-0", "k-1", check=True)
        self.assertIn("pruned 2 jobs", r.stdout)
        self.assertEqual(self.d.request("GET", "/v1/services/k-0")[0], 404)
        self.assertFalse(os.path.exists(os.path.join(self.d.state, "logs", "k-0.log")))
        r = self.d.cli("prune", check=True)  # everything finished: k-2 and retrying; not "other"
        self.assertIn("pruned 2 jobs", r.stdout)
        self.assertEqual([j["name"] for j in self.jobs()["jobs"]], ["other"])
        self.assertEqual(self.d.cli("prune", "--state", "nonsense").returncode, 1)
        self.assertEqual(self.d.cli("kill").returncode, 2)
        self.d.cli("kill", "other", check=True)

    def test_bad_jobs_are_refused(self):
        self.d.start()
        st, body = self.d.request("POST", "/v1/jobs", {"command": ["true"], "priority": 9})
        self.assertEqual(st, 422)
        self.assertIn("job.priority", json.dumps(body))
        st, body = self.d.request("POST", "/v1/jobs", {"command": ["true"], "restart": "always"})
        self.assertEqual(st, 422)
        st, body = self.d.request("POST", "/v1/jobs", {"name": "x", "command": ["true"]})
        self.assertEqual(st, 201)
        st, body = self.d.request("POST", "/v1/jobs", {"name": "x", "command": ["true"]})
        self.assertEqual(st, 409)
        st, body = self.d.request("POST", "/v1/jobs", "[1]")
        self.assertEqual(st, 400)
        r = self.d.cli("run", "--priority", "high", "--", "true")
        self.assertEqual(r.returncode, 2)

    def test_kill9_during_a_storm(self):
        """kill -9 of the daemon while 400 jobs run 8 at a time: after a restart every job
        finishes, none is lost, none runs twice, nothing is left running unknown."""
        self.d.write_config(queues(("storm", 8)), "queues.json")
        self.d.start()
        ran = self.path("ran")
        n = 400
        for i in range(n):
            st, body = self.d.request("POST", "/v1/jobs", {
                "name": "s-%03d" % i, "queue": "storm",
                "command": ["sh", "-c", "echo $HERD_SERVICE >> %s; sleep 0.01" % ran]})
            self.assertEqual(st, 201, body)

        def finished_count():
            c = self.jobs("?match=s-*&limit=1")["counts"]
            return c.get("COMPLETED", 0) + c.get("FAILED", 0)
        wait_until(lambda: finished_count() >= 60, 60, what="a part of the storm done")
        self.d.kill9()
        self.d.start()
        r = self.d.cli("wait", "s-*", timeout=120)
        lst = self.jobs("?match=s-*&limit=1000")
        self.assertEqual(lst["matched"], n, "none lost")
        with open(ran) as f:
            lines = f.read().split()
        seen = {}
        for x in lines:
            seen[x] = seen.get(x, 0) + 1
        twice = [x for x, k in seen.items() if k > 1]
        self.assertEqual(twice, [], "none ran twice")
        unknown = []
        for j in lst["jobs"]:
            self.assertIn(j["state"], ("COMPLETED", "FAILED"), j)
            if j["state"] == "COMPLETED":
                self.assertEqual(seen.get(j["name"]), 1, j)
            else:  # over while no daemon watched: its status is unknown, it ran at most once
                self.assertIn("status unknown", j["reason"] or self.job(j["name"])["last_error"], j)
                unknown.append(j["name"])
        self.assertEqual(r.returncode, 1 if unknown else 0)
        self.assertLess(len(unknown), 40)
        # Nothing of ours still runs.
        self.assertEqual(subprocess.run(["pgrep", "-f", ran], capture_output=True).stdout, b"")


if __name__ == "__main__":
    main()
