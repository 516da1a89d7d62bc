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
from harness import HERD_BIN, SanitizedSuiteTest, main, pid_alive, wait_until  # noqa: E402


def queues(*qs):
    return json.dumps({"queues": [{"name": n, "max_running": m} for n, m in qs]})


class JobsBase(SanitizedSuiteTest):
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

class JobsTest(JobsBase):
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
        log, gate = self.path("log"), self.path("gate")
        for i in range(12):
            self.run_job("--name", "c-%d" % i, "--queue", "three", "--", "sh", "-c",
                         "echo + >> %s; while [ ! -e %s ]; do sleep 0.02; done; sleep 0.1; echo - >> %s"
                         % (log, gate, log))
        # Held by the gate: 3 run, 9 wait.
        wait_until(lambda: self.jobs("?match=c-*")["counts"] == {"RUNNING": 3, "PENDING": 9}, 15,
                   what="3 running, 9 queued (now %s)" % self.jobs("?match=c-*")["counts"])
        open(gate, "w").close()
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

    def test_retention_forgets_finished_jobs_and_items(self):
        self.d.write_config(json.dumps({"queues": [{"name": "short", "max_running": 4, "retention": "1s"}]}),
                            "queues.json")
        self.d.start()
        self.run_job("--name", "brief", "--queue", "short", "--", "true")
        self.run_job("--name", "kept", "--", "true")  # the default queue keeps its jobs
        self.run_job("--name", "running", "--queue", "short", "--", "sleep", "100")
        self.d.request("POST", "/v1/queues/short/work", {"payload": 1})
        st, b = self.d.request("POST", "/v1/queues/short/withdraw")
        item = b["work"]
        self.d.request("POST", "/v1/work/%d/done" % item["id"], {"lease": item["lease"], "status": "success"})
        wait_until(lambda: self.d.request("GET", "/v1/services/brief")[0] == 404, 10, what="brief forgotten")
        wait_until(lambda: self.d.request("GET", "/v1/work/%d" % item["id"])[0] == 404, 10, what="item forgotten")
        self.assertEqual(self.job("kept")["state"], "COMPLETED")
        self.assertEqual(self.job("running")["job"]["state"], "RUNNING")  # not finished: kept
        r = self.d.cli("config", "check", self.d.confdir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.write_config(json.dumps({"queues": [{"name": "bad", "retention": "soon", "max": 1}]}), "queues.json")
        r = self.d.cli("config", "check", self.d.confdir)
        self.assertEqual(r.returncode, 100)
        self.assertRegex(r.stderr, r"queues.json:1:\d+: queues\[0\]\.retention")
        self.assertIn("queues[0].max", r.stderr)
        self.d.cli("kill", "running", check=True)

    def test_finished_jobs_keep_their_reason_across_restarts(self):
        self.d.start()
        self.run_job("--name", "four", "--", "sh", "-c", "exit 4")
        self.run_job("--name", "slow", "--timeout", "200ms", "--", "sleep", "30")
        self.run_job("--name", "fine", "--", "true")
        want = {"four": ("FAILED", "exited with code 4"), "slow": ("TIMEOUT", "ran longer than its timeout"),
                "fine": ("COMPLETED", "exited with code 0")}
        for name, (state, _) in want.items():
            self.wait_job(name, (state,))
        before = {n: self.d.service(n)["reason"] for n in want}
        for name, (state, text) in want.items():
            self.assertIn(text, before[name])
        self.d.stop()
        self.d.start()
        # The same reason, as its last attempt recorded it (which may say more: "then killed").
        after = {n: self.d.service(n) for n in want}
        rows = {j["name"]: j["reason"] for j in self.jobs()["jobs"]}
        for n in want:
            self.assertEqual(after[n]["state"], want[n][0])
            self.assertTrue(after[n]["reason"].startswith(before[n]), (before[n], after[n]["reason"]))
            self.assertEqual(rows[n], after[n]["reason"])

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
        """kill -9 of the daemon while 1,000 jobs run 8 at a time: after a restart every job
        finishes, none is lost, none runs twice, nothing is left running unknown."""
        self.d.write_config(queues(("storm", 8)), "queues.json")
        self.d.start()
        ran = self.path("ran")
        n = 1000
        for i in range(n):
            st, body = self.d.request("POST", "/v1/jobs", {
                "name": "s-%04d" % i, "queue": "storm",
                "command": ["sh", "-c", "echo $HERD_SERVICE >> %s; sleep 0.01" % ran]})
            self.assertEqual(st, 201, body)

        def finished_count():
            c = self.jobs("?match=s-*&limit=1")["counts"]
            return c.get("COMPLETED", 0) + c.get("FAILED", 0)
        wait_until(lambda: finished_count() >= 60, 60, what="a part of the storm done")
        self.d.kill9()
        self.d.start()
        r = self.d.cli("wait", "s-*", timeout=300)
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


class HistoryTest(JobsBase):
    """Past the most recent --finished-jobs finished jobs, the rest leave memory for the
    store's job history, and everything still sees them: listing and paging, counts, the
    job's own view and attempts, its logs, wait, a name kept taken, a daemon restart,
    prune (rows, attempts, logs), a queue's retention, metrics."""

    def start(self, keep=3):
        self.d.start(extra=["--finished-jobs", str(keep)])

    def test_finished_jobs_move_to_the_history(self):
        self.start()
        for i in range(8):
            self.run_job("--name", "h%d" % i, "--tag", "t%d" % i, "--", "sh", "-c",
                         "echo out-%d; exit %d" % (i, 3 if i == 2 else 0))
        r = self.d.cli("wait", "h*", check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("h2", r.stdout)
        # Only 3 finished ones stay services; the other 5 are history rows.
        wait_until(lambda: len([s for s in self.d.request("GET", "/v1/services")[1]["services"]
                                if s["name"].startswith("h")]) == 3, 10, what="3 finished jobs left in memory")
        body = self.jobs()
        self.assertEqual(body["matched"], 8)
        self.assertEqual(body["counts"], {"COMPLETED": 7, "FAILED": 1})
        names = [j["name"] for j in body["jobs"]]
        self.assertEqual(sorted(names), ["h%d" % i for i in range(8)])
        archived = [j["name"] for j in body["jobs"] if j.get("archived")]
        self.assertEqual(len(archived), 5)
        self.assertEqual(names[:5], archived, "the history's rows (the oldest) come first")
        # Paging goes across both.
        page = self.jobs("?offset=4&limit=2")
        self.assertEqual([j["name"] for j in page["jobs"]], names[4:6])
        self.assertTrue(page["more"])
        # A cursor: the page after a row, across the history and memory alike.
        cur, seen_names = None, []
        while True:
            page = self.jobs("?limit=3" + ("&after=" + cur if cur else ""))
            seen_names += [j["name"] for j in page["jobs"]]
            if not page["more"]:
                self.assertNotIn("next_after", page)
                break
            cur = page["next_after"]
        self.assertEqual(seen_names, names)
        st, b = self.d.request("GET", "/v1/jobs?after=nosuch")
        self.assertEqual(st, 400, b)
        self.assertIn("h5", self.d.cli("jobs", "--after", "h4").stdout)
        # A pattern and a state filter reach the history too.
        failed = self.jobs("?match=h2,h1&state=FAILED")
        self.assertEqual([(j["name"], j["exit_code"], j["tags"]) for j in failed["jobs"]], [("h2", 3, ["t2"])])
        # The job's view, its attempts and its log, from the history.
        old = self.job("h2")
        self.assertTrue(old["archived"])
        self.assertEqual((old["state"], old["last_exit"]["code"], old["tags"]), ("FAILED", 3, ["t2"]))
        self.assertEqual([(a["attempt"], a["exit_code"]) for a in old["job"]["attempts"]], [(1, 3)])
        self.assertIn("out-2", self.d.cli("logs", "h2").stdout)
        self.assertIn("out-0", self.d.cli("logs", "h0", "--attempt", "1").stdout)
        # The name stays taken while its row is kept.
        st, b = self.d.request("POST", "/v1/jobs", {"name": "h0", "command": ["true"]})
        self.assertEqual(st, 409, b)
        # wait sees history rows (all finished: at once), and its exit code says h2 failed.
        self.assertEqual(self.d.cli("wait", "h0", "h1", check=False).returncode, 0)
        self.assertEqual(self.d.cli("wait", "h2", check=False).returncode, 1)
        # Metrics count them.
        st, text = self.d.request("GET", "/metrics", raw=True)
        self.assertIn('herd_jobs{queue="default",state="COMPLETED"} 7', text.decode())
        # A restart keeps them.
        self.d.stop()
        self.start()
        self.assertEqual(self.jobs()["counts"], {"COMPLETED": 7, "FAILED": 1})
        # Prune: the rows, their attempts and logs.
        logs = os.path.join(self.d.state, "logs")
        self.assertTrue(os.path.exists(os.path.join(logs, "h0.log")))
        r = self.d.cli("prune", "h0", "h2")
        self.assertIn("pruned 2", r.stdout)
        self.assertFalse(os.path.exists(os.path.join(logs, "h0.log")))
        st, _ = self.d.request("GET", "/v1/services/h0")
        self.assertEqual(st, 404)
        self.assertEqual(self.jobs()["counts"], {"COMPLETED": 6})
        self.run_job("--name", "h0", "--", "true")  # (the name is free again)
        self.wait_job("h0", ("COMPLETED",))

    def test_config_jobs_stay_services(self):
        # A job of the config files is never moved out: its file would bring it back.
        self.d.write_config([{"name": "cfgjob", "command": ["true"], "job": {}}])
        self.start(keep=0)
        self.wait_job("cfgjob", ("COMPLETED",))
        self.run_job("--name", "apijob", "--", "true")
        self.wait_job("apijob", ("COMPLETED",))
        wait_until(lambda: self.job("apijob").get("archived"), 10, what="the API's job in the history")
        self.assertFalse(self.job("cfgjob").get("archived"))
        self.d.cli("reload", check=True)
        self.assertEqual(self.job("cfgjob")["state"], "COMPLETED", "not run again by the reload")

    def test_retention_reaches_the_history(self):
        self.d.write_config(json.dumps({"queues": [{"name": "r", "retention": "2s"}]}), "queues.json")
        self.start(keep=0)
        for i in range(4):
            self.run_job("--name", "r%d" % i, "--queue", "r", "--", "true")
        self.assertEqual(self.d.cli("wait", "r*").returncode, 0)
        wait_until(lambda: self.jobs("?match=r*")["matched"] == 0, 20, what="the history's rows past retention gone")
        self.assertFalse(os.path.exists(os.path.join(self.d.state, "logs", "r0.log")))


class WorkQueueTest(SanitizedSuiteTest):
    """Work items for external workers: deposit, withdraw under a lease, report."""

    def setUp(self):
        super().setUp()
        self.d.start()

    def req(self, method, path, body=None, want=200):
        st, b = self.d.request(method, path, body)
        self.assertEqual(st, want, b)
        return b

    def withdraw(self, q="q", wait=None):
        return self.req("POST", "/v1/queues/%s/withdraw" % q + ("?wait=%s" % wait if wait else ""))["work"]

    def done(self, item, status="success", want=200, **kw):
        return self.req("POST", "/v1/work/%d/done" % item["id"], dict(lease=item["lease"], status=status, **kw), want)

    def test_order_report_and_listing(self):
        ids = self.req("POST", "/v1/queues/q/work", {"items": [
            {"payload": {"n": 1}}, {"payload": {"n": 2}, "priority": 5}, {"payload": {"n": 3}},
            {"payload": {"n": 4}, "priority": 5, "tags": ["x"]}]}, 201)["ids"]
        self.assertEqual(len(ids), 4)
        got = [self.withdraw()["payload"]["n"] for _ in range(4)]
        self.assertEqual(got, [2, 4, 1, 3])  # priority first, then FIFO
        self.assertIsNone(self.withdraw())
        st, body = self.d.request("POST", "/v1/queues/q/work", {"payload": 1, "priority": 7})
        self.assertEqual(st, 400)
        st, body = self.d.request("POST", "/v1/queues/q/work", {"nopayload": 1})
        self.assertEqual(st, 400)
        self.req("POST", "/v1/queues/other/work", {"payload": "o"}, 201)
        item = self.withdraw("other")
        self.assertEqual(item["attempt"], 1)
        self.assertEqual(item["state"], "running")
        w = self.done(item, result={"ok": 1})["work"]
        self.assertEqual((w["state"], w["result"]), ("success", {"ok": 1}))
        self.done(item, want=409)  # reported already
        lst = self.req("GET", "/v1/queues/q/work")
        self.assertEqual(lst["counts"], {"running": 4})
        self.assertEqual(self.req("POST", "/v1/queues/other/prune")["pruned"], 1)
        self.assertEqual(self.d.request("GET", "/v1/work/%d" % item["id"])[0], 404)

    def test_lease_expiry_failure_and_retries(self):
        self.req("POST", "/v1/queues/q/work", {"payload": "p", "timeout": 0.3, "retries": 2}, 201)
        a1 = self.withdraw()
        # Not reported: the lease expires and the item is back, attempt counted.
        a2 = self.withdraw(wait=5)
        self.assertEqual((a2["id"], a2["attempt"]), (a1["id"], 2))
        self.assertIn("lease expired", a2["error"])
        self.assertNotEqual(a1["lease"], a2["lease"])
        self.done(a1, want=409)  # a stale lease cannot report
        self.done(a2, "failure", error="bad input")
        a3 = self.withdraw()
        self.assertEqual(a3["attempt"], 3)
        w = self.done(a3, "failure", error="still bad")["work"]
        self.assertEqual(w["state"], "failure")
        self.assertIn("no retries left", w["error"])
        self.assertIsNone(self.withdraw())

    def test_withdraw_waits_for_a_deposit(self):
        import threading
        out = {}

        def worker():
            t0 = time.time()
            out["item"] = self.withdraw(wait=20)
            out["took"] = time.time() - t0
        t = threading.Thread(target=worker)
        t.start()
        time.sleep(0.3)  # (the withdrawal is parked: nothing to take yet)
        self.req("POST", "/v1/queues/q/work", {"payload": "late"}, 201)
        t.join(20)
        self.assertEqual(out["item"]["payload"], "late")
        self.assertLess(out["took"], 5)

    def test_kill9_loses_nothing_and_hands_nothing_out_twice(self):
        import threading
        n = 300
        for k in range(0, n, 100):
            self.req("POST", "/v1/queues/q/work",
                     {"items": [{"payload": i, "timeout": 3} for i in range(k, k + 100)]}, 201)
        lock = threading.Lock()
        handed, succeeded, stop = [], [], threading.Event()

        def call(method, path, body=None):
            while not stop.is_set():
                try:
                    return self.d.request(method, path, body, timeout=10)
                except OSError:
                    time.sleep(0.05)  # the daemon is down: try again
            return None, None

        def worker():
            while not stop.is_set():
                st, b = call("POST", "/v1/queues/q/withdraw?wait=0.5")
                if st != 200:
                    continue
                item = b["work"]
                if item is None:
                    continue
                with lock:
                    handed.append((item["id"], item["attempt"]))
                time.sleep(0.005)
                st, b = call("POST", "/v1/work/%d/done" % item["id"], {"lease": item["lease"], "status": "success"})
                # 409 with the item a success: our report was committed, its answer lost in the kill.
                if st == 200 or (st == 409 and b["error"]["work"]["state"] == "success"):
                    with lock:
                        succeeded.append(item["id"])
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(succeeded) >= 80, 60, what="some work done")
            self.d.kill9()
            self.d.start()

            def all_done():
                st, b = self.d.request("GET", "/v1/queues/q/work?limit=1")
                return b["counts"] == {"success": n}
            wait_until(all_done, 60, what="all %d items done" % n)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(len(handed), len(set(handed)), "no (item, attempt) handed out twice")
        self.assertEqual(sorted(set(succeeded)), list(range(1, n + 1)), "none lost")
        self.assertEqual(len(succeeded), n, "each reported once")


if __name__ == "__main__":
    main()
