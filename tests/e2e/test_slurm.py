"""The Slurm backend end to end, against a real single-node Slurm 22.05 (munged, slurmctld,
slurmd, slurmrestd with JWT) that this suite starts and stops (tests/e2e/slurm.py): a job
serving HTTP becomes HEALTHY through its check; stop cancels it; exit codes, Slurm's own
refusals, time limits; slurmrestd dying mid-run (UNKNOWN, then back, no resubmission); a
bad token; kill -9 of herd and re-adoption without a duplicate; a job that is not herd's is
never touched."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from harness import SanitizedSuiteTest, first_event, main, wait_service, wait_until
from servers import free_port
import netns
import slurm
import socket
import subprocess
import urllib.request

CLUSTER = None


def setUpModule():
    global CLUSTER
    ok, why = slurm.cluster_available()
    if not ok:
        raise RuntimeError("the Slurm tests need a real Slurm: " + why)
    CLUSTER = slurm.SlurmCluster()
    CLUSTER.start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def cluster_cfg(**kw):
    c = {"name": "test", "url": CLUSTER.url, "user": "root", "api_version": "auto",
         "auth": {"jwt_key": CLUSTER.jwt_key}, "cwd": CLUSTER.jobs_dir,
         "poll_interval": "500ms", "steady_interval": "2s"}
    c.update(kw)
    return c


def job_svc(name, **kw):
    s = {"name": name, "backend": "slurm", "cluster": "test", "restart": "never"}
    s.update(kw)
    return s


def http_svc(name, port, **kw):
    return job_svc(name, command=["/usr/bin/python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                   endpoint={"port": port, "protocol": "http"},
                   check={"type": "http", "path": "/", "interval": "200ms", "timeout": "1s"},
                   start_timeout="60s", **kw)


class SlurmTest(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        CLUSTER.cancel_all()

    def write(self, services, clusters=None):
        self.d.write_config(json.dumps({"clusters": clusters or [cluster_cfg()], "services": services}))

    def clusters(self):
        return self.d.request("GET", "/v1/clusters")[1]["clusters"]

    def herd_jobs(self, name=None):
        return [j for j in CLUSTER.squeue() if j[3].startswith("herd:") and (name is None or (":%s:" % name) in j[3])]


class TestSlurmLifecycle(SlurmTest):
    def test_http_job_healthy_outage_readoption_and_stop(self):
        port = free_port()
        # A job that is not herd's, on the same cluster: never touched.
        ext = CLUSTER.submit("sleep 600", name="not-herd", time_limit=10)
        self.write([http_svc("web", port)])
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=60, what="HEALTHY")
        job = s["slurm"]["job_id"]
        self.assertEqual(s["slurm"]["job_state"], "RUNNING")
        self.assertEqual(s["slurm"]["node"], CLUSTER.host)
        evs = [e["to"] for e in self.d.events(service="web")]
        self.assertIn("SUBMITTED", evs)
        self.assertLess(evs.index("SUBMITTED"), evs.index("STARTING"))
        self.assertEqual(len(self.herd_jobs("web")), 1)
        # The comment tag and the job name say whose it is.
        rec = CLUSTER.job(job)
        self.assertTrue(rec["comment"].startswith("herd:") and rec["comment"].endswith(":web:1"), rec["comment"])
        self.assertEqual(rec["name"], "herd.web")
        # status shows the job in place of a pid; the job's output file is named.
        out = self.d.cli("status", check=True).stdout
        self.assertRegex(out, r"web\s+HEALTHY\s+job %d\s+\d" % job)
        self.assertEqual(s["slurm"]["output"], os.path.join(CLUSTER.jobs_dir, "herd.web-%d.out" % job))
        wait_until(lambda: os.path.exists(s["slurm"]["output"]), timeout=10, what="the job's output file")
        # herd's own log says what happened to the job; --job reads the job's output (shared filesystem).
        self.assertIn("submitted job %d on cluster test" % job, self.d.cli("logs", "web", check=True).stdout)
        wait_until(lambda: os.path.getsize(s["slurm"]["output"]) > 0, timeout=10, what="output in the job's file")
        r = self.d.cli("logs", "web", "--job", check=True)
        with open(s["slurm"]["output"]) as f:  # the check's requests keep appending to it
            content = f.read()
        self.assertTrue(r.stdout and content.startswith(r.stdout), (r.stdout[-200:], content[-200:]))
        # Following: the last lines, then what the check's requests append (a shared filesystem).
        got = self.d.stream_until("/v1/services/web/logs?job=1&follow=1&tail=2",
                                  lambda t: t.count("GET / HTTP") >= 6, timeout=20)
        self.assertLessEqual(got.splitlines()[0].count("GET / HTTP"), 1)

        # slurmrestd dies: UNKNOWN with the error, nothing cancelled or resubmitted.
        CLUSTER.stop_restd()
        s = wait_service(self.d, "web", lambda s: s["state"] == "UNKNOWN", timeout=30, what="UNKNOWN")
        self.assertIn("Slurm unreachable", s["reason"])
        cl = self.clusters()[0]
        self.assertFalse(cl["reachable"])
        self.assertIn("error", cl)
        time.sleep(2)
        CLUSTER.start_restd()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=60, what="HEALTHY again")
        self.assertEqual(s["slurm"]["job_id"], job, "the same job, not a new one")
        self.assertEqual(s["attempt"], 1)
        self.assertEqual(len(self.herd_jobs("web")), 1)
        self.assertTrue(self.clusters()[0]["reachable"])

        # kill -9 of herd, then a new daemon on the same state: the job is re-adopted.
        self.d.kill9()
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY" and s["slurm"].get("job_state") == "RUNNING",
                         timeout=60, what="HEALTHY after restart")
        self.assertEqual(s["slurm"]["job_id"], job)
        self.assertEqual(len(self.herd_jobs("web")), 1, "no duplicate submission")
        subs = self.clusters()[0]["requests"]["submit"]
        self.assertEqual(subs, 0, "the restarted daemon submitted nothing")

        # Stop: the job is cancelled, the state is STOPPED once Slurm confirms.
        self.d.cli("stop", "web", "--wait", "--timeout", "30", check=True)
        s = self.d.service("web")
        self.assertEqual(s["state"], "STOPPED")
        rec = CLUSTER.job(job)
        self.assertIn(rec["job_state"], ("CANCELLED", "COMPLETING"))
        # The outsider's job is still there, untouched.
        self.assertEqual(CLUSTER.job(ext)["job_state"], "RUNNING")
        CLUSTER.cancel(ext)
        # One poll per tick for the whole cluster, never one per service.
        cl = self.clusters()[0]
        self.assertGreater(cl["polls"], 0)
        self.assertLessEqual(cl["requests"]["job"], 3)


class TestSlurmThroughSsh(SlurmTest):
    """A cluster whose compute node is reached through an ssh host: the job serves on the
    node's own loopback (a network namespace with its own sshd), reachable from here only
    through herd's tunnel. herd draws the job's port, and the local endpoint stays the same
    when a job lands on another port."""

    def setUp(self):
        why = netns.available()
        if why:
            self.fail(why)
        super().setUp()
        self.node = netns.Node("login")
        self.blocker = None

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            if self.blocker:
                self.blocker.kill()
                self.blocker.wait()
            self.node.close()

    def test_tunnel_to_the_job_fixed_endpoint_new_port(self):
        lo, local = 21000 + os.getpid() % 1000 * 2, free_port()
        # The range's first port is taken on the node: a job that draws it fails to bind.
        self.blocker = subprocess.Popen(self.node.exec_argv([
            sys.executable, "-c", "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', %d)); "
            "s.listen(); print('ok', flush=True); time.sleep(3600)" % lo]), stdout=subprocess.PIPE)
        self.assertEqual(self.blocker.stdout.readline().strip(), b"ok")
        sh = self.node.sshd
        host = {"name": "login", "destination": "root@%s" % self.node.addr, "port": sh.port,
                "identity_file": sh.client_key, "known_hosts": sh.known_hosts,
                "server_alive_interval": "1s", "server_alive_count": 2, "connect_timeout": "5s"}
        web = job_svc("web", restart="on-failure", start_timeout="60s",
                      command=["/bin/sh", "-c", 'exec %s -m http.server "$PORT" --bind 127.0.0.1' %
                               " ".join(self.node.exec_argv([sys.executable]))],
                      endpoint={"local_port": local, "port_range": [lo, lo + 1], "protocol": "http"},
                      check={"type": "http", "path": "/", "interval": "200ms", "timeout": "1s"},
                      backoff={"initial": "500ms"})
        self.d.write_config(json.dumps({"hosts": [host], "clusters": [cluster_cfg(ssh="login")], "services": [web]}))
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=120, what="HEALTHY through ssh")
        self.assertEqual(s["port"], lo + 1, "the taken port failed and another was drawn")
        self.assertEqual(s["endpoint"]["via"], "login", "inherited from the cluster")
        self.assertEqual(s["endpoint"]["local"], "127.0.0.1:%d" % local)
        # The node's address as Slurm knows it (NodeAddr), seen from the ssh host.
        self.assertEqual(s["endpoint"]["target"], "127.0.0.1:%d" % (lo + 1))
        with urllib.request.urlopen("http://127.0.0.1:%d/" % local, timeout=5) as r:
            self.assertEqual(r.status, 200)
        with self.assertRaises(OSError, msg="the job's port is on the node, not here"):
            socket.create_connection(("127.0.0.1", lo + 1), timeout=1).close()
        job = s["slurm"]["job_id"]

        # Restarted: the new job may not take the last port; lo is taken on the node, so it
        # fails to bind, and the policy's next draw lands on lo + 1 again. The user's address
        # never changed.
        evs = self.d.events()
        since = evs[-1]["id"] if evs else 0
        self.d.cli("restart", "web", check=True)
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY" and s["slurm"]["job_id"] != job,
                         timeout=120, what="HEALTHY on a new job")
        tos = [(e["to"], e.get("reason", "")) for e in self.d.events(since=since) if e.get("service") == "web"]
        self.assertIn("FAILED", [t for t, _ in tos], "a job drew the taken port and failed: %s" % tos)
        self.assertEqual(s["endpoint"]["local"], "127.0.0.1:%d" % local)
        with urllib.request.urlopen("http://127.0.0.1:%d/" % local, timeout=5) as r:
            self.assertEqual(r.status, 200)
        fw = self.d.request("GET", "/v1/hosts")[1]["hosts"][0]["forwards"]
        self.assertEqual([(f["local_port"], f["port"], f["state"]) for f in fw], [(local, lo + 1, "up")])
        self.d.cli("stop", "web", "--wait", "--timeout", "30", check=True)
        wait_until(lambda: self.d.request("GET", "/v1/hosts")[1]["hosts"][0]["forwards"] == [], timeout=10,
                   what="the forward cancelled")
class TestSlurmNodeAddress(SlurmTest):
    """The node's address (NodeAddr) learned while its first job already runs: the fixed
    local endpoint, first pointed at the node's name, is re-pointed at the address at once
    (not at the job's next state change). Here the ssh host resolves the node's name to an
    address that leads nowhere, so only the re-pointed forward works."""

    def setUp(self):
        why = netns.available()
        if why:
            self.fail(why)
        super().setUp()
        host = socket.gethostname()
        self.node = netns.Node("login", hosts="127.0.0.1 localhost\n192.0.2.1 %s\n" % host)

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.node.close()

    def test_endpoint_follows_the_address_learned_while_running(self):
        port, local = free_port(), free_port()
        sh = self.node.sshd
        host = {"name": "login", "destination": "root@%s" % self.node.addr, "port": sh.port,
                "identity_file": sh.client_key, "known_hosts": sh.known_hosts,
                "server_alive_interval": "1s", "server_alive_count": 2, "connect_timeout": "5s"}
        web = job_svc("web", restart="on-failure", start_timeout="30s",
                      command=self.node.exec_argv([sys.executable, "-m", "http.server", str(port), "--bind",
                                                   "127.0.0.1"]),
                      endpoint={"local_port": local, "port": port, "protocol": "http"},
                      check={"type": "http", "path": "/", "interval": "200ms", "timeout": "1s"})
        self.d.write_config(json.dumps({"hosts": [host], "clusters": [cluster_cfg(ssh="login")], "services": [web]}))
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=90, what="HEALTHY through ssh")
        self.assertEqual(s["endpoint"]["target"], "127.0.0.1:%d" % port)
        tos = [(e["to"], e.get("reason", "")) for e in self.d.events() if e.get("service") == "web"]
        self.assertNotIn("TIMEOUT", [t for t, _ in tos], "the endpoint pointed at the node's name too long: %s" % tos)
        self.assertEqual(s["restarts"], 0, tos)
        with urllib.request.urlopen("http://127.0.0.1:%d/" % local, timeout=5) as r:
            self.assertEqual(r.status, 200)
        # The re-point came with the address itself, not with the service's next event (a
        # check's result): nothing of web's is logged between the two. A check run while the
        # first forward was still being added reached no target and says so; under load one
        # can fall between the two (its line is left out, it is not a result of the target).
        lines = [ln for ln in self.d.log().splitlines() if " web" in ln and ("endpoint" in ln or "check" in ln)
                 and "check failed: endpoint forward adding" not in ln]
        first = next(i for i, ln in enumerate(lines) if "endpoint pointed to" in ln)
        self.assertIn("endpoint re-pointed to 127.0.0.1:%d" % port, lines[first + 1], lines[:first + 3])


class TestSlurmMetrics(SlurmTest):
    def test_metrics_per_cluster(self):
        """GET /metrics: the cluster's requests, bytes and reachability, herd's jobs by Slurm's
        job state, and the job's service state; the page passes promtool."""
        self.write([job_svc("sleeper", command=["sleep", "600"], ready_after="1s")])
        self.d.start()
        wait_service(self.d, "sleeper", lambda s: s["state"] == "HEALTHY", timeout=60, what="HEALTHY")

        def page():
            st, body = self.d.request("GET", "/metrics", raw=True)
            self.assertEqual(st, 200)
            return body.decode()

        def running():
            text = page()
            return text if 'herd_slurm_jobs{cluster="test",state="RUNNING"} 1\n' in text else None
        text = wait_until(running, timeout=30, what="one RUNNING job in the metrics")
        m = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                m[k] = float(v)
        self.assertGreaterEqual(m['herd_slurm_requests_total{cluster="test",kind="submit"}'], 1)
        self.assertGreater(m['herd_slurm_requests_total{cluster="test",kind="jobs"}'], 0)
        self.assertGreater(m['herd_slurm_received_bytes_total{cluster="test"}'], 0)
        self.assertGreater(m['herd_slurm_sent_bytes_total{cluster="test"}'], 0)  # the submission's body
        self.assertEqual(m['herd_slurm_reachable{cluster="test"}'], 1)
        self.assertEqual(m['herd_service_state{service="sleeper",state="HEALTHY"}'], 1)
        self.assertGreater(m['herd_service_uptime_seconds{service="sleeper"}'], 0)
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=60)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))
        self.d.cli("stop", "sleeper", "--wait", "--timeout", "30", check=True)


class TestSlurmEnds(SlurmTest):
    def test_exit_code_refusal_and_bad_token(self):
        self.write([
            job_svc("three", script="#!/bin/sh\nexit 3\n"),
            job_svc("huge", command=["sleep", "60"], cpus_per_task=64),
        ])
        self.d.start()
        s = wait_service(self.d, "three", lambda s: s["state"] == "FAILED", timeout=60, what="FAILED")
        self.assertIn("exit code 3", s["reason"])
        self.assertEqual(s["last_exit"]["code"], 3)
        s = wait_service(self.d, "huge", lambda s: s["state"] == "FAILED", timeout=30, what="FAILED")
        self.assertIn("Slurm refused the job", s["reason"])
        self.assertIn("partition configuration", s["last_error"])
        wait_until(lambda: not [j for j in self.herd_jobs("huge") if j[2] in ("PENDING", "RUNNING")], timeout=20,
                   what="the refused job cancelled")

    def test_bad_token(self):
        bad = os.path.join(self.d.root, "bad.key")
        with open(bad, "wb") as f:
            f.write(os.urandom(32))
        self.write([job_svc("t", command=["sleep", "60"])],
                   clusters=[cluster_cfg(auth={"jwt_key": bad}, api_version="v0.0.38")])
        self.d.start()
        s = wait_service(self.d, "t", lambda s: s["state"] == "UNKNOWN", timeout=30, what="UNKNOWN")
        self.assertIn("token", s["reason"])
        cl = self.clusters()[0]
        self.assertIn("token is probably bad", cl["error"])
        # Secrets never show: no JWT (they all start with the same header) in the log,
        # the service or the cluster view.
        for text in (self.d.log(), json.dumps(self.d.service("t")), json.dumps(self.clusters())):
            self.assertNotIn("eyJhbGci", text)
        self.assertEqual(self.herd_jobs("t"), [])


class TestSlurmJobs(SlurmTest):
    """Jobs (run to completion, issue 15) on the Slurm backend: a failed attempt is
    resubmitted as a new Slurm job until the retries are spent; the queue's limit and
    priority order are herd's, not the cluster's."""

    def test_retries_resubmit_and_queue_order(self):
        flag = os.path.join(CLUSTER.jobs_dir, "sj-ok-%d" % os.getpid())
        order = os.path.join(CLUSTER.jobs_dir, "sj-order-%d" % os.getpid())
        for p in (flag, order):
            if os.path.exists(p):
                os.unlink(p)
        self.addCleanup(lambda: [os.path.exists(p) and os.unlink(p) for p in (flag, order)])
        self.d.write_config(json.dumps({"clusters": [cluster_cfg()], "queues": [{"name": "one", "max_running": 1}]}))
        self.d.start()
        # Fails on its first two attempts, then succeeds: 3 Slurm jobs, COMPLETED.
        st, b = self.d.request("POST", "/v1/jobs", {
            "name": "sj", "backend": "slurm", "cluster": "test", "retries": 3, "backoff": {"initial": "200ms"},
            "script": "#!/bin/sh\nn=$(cat %s 2>/dev/null || echo 0); echo $((n+1)) > %s; "
                      "[ $n -ge 2 ] && exit 0; exit 7\n" % (flag, flag)})
        self.assertEqual(st, 201, b)
        s = wait_service(self.d, "sj", lambda s: s["state"] in ("COMPLETED", "FAILED"), timeout=90,
                         what="the Slurm job finished")
        self.assertEqual(s["state"], "COMPLETED", s)
        st, b = self.d.request("GET", "/v1/services/sj")
        attempts = b["service"]["job"]["attempts"]
        self.assertEqual([a["attempt"] for a in attempts], [1, 2, 3], attempts)
        self.assertEqual([a.get("exit_code") for a in attempts], [7, 7, 0], attempts)
        ids = [a.get("job_id") for a in attempts]
        self.assertTrue(all(ids) and len(set(ids)) == 3, "one Slurm job per attempt: %s" % attempts)
        # No retries: a failure ends it FAILED after one Slurm job.
        st, b = self.d.request("POST", "/v1/jobs", {"name": "sf", "backend": "slurm", "cluster": "test",
                                                     "script": "#!/bin/sh\nexit 5\n"})
        self.assertEqual(st, 201, b)
        s = wait_service(self.d, "sf", lambda s: s["state"] in ("COMPLETED", "FAILED"), timeout=60, what="sf ended")
        self.assertEqual(s["state"], "FAILED", s)
        self.assertEqual(s["last_exit"]["code"], 5)
        # The queue's order is herd's: with one slot, the gate job holds it while three more
        # wait; they run by priority, then FIFO, whatever Slurm's own priorities.
        gate = os.path.join(CLUSTER.jobs_dir, "sj-gate-%d" % os.getpid())
        self.addCleanup(lambda: os.path.exists(gate) and os.unlink(gate))
        st, b = self.d.request("POST", "/v1/jobs", {
            "name": "g", "backend": "slurm", "cluster": "test", "queue": "one",
            "script": "#!/bin/sh\nwhile [ ! -e %s ]; do sleep 0.1; done\n" % gate})
        self.assertEqual(st, 201, b)
        wait_service(self.d, "g", lambda s: s["state"] == "STARTING", timeout=60, what="the gate job running")
        for name, prio in (("low", 1), ("high", 5), ("mid", 3)):
            st, b = self.d.request("POST", "/v1/jobs", {
                "name": name, "backend": "slurm", "cluster": "test", "queue": "one", "priority": prio,
                "script": "#!/bin/sh\necho %s >> %s\n" % (name, order)})
            self.assertEqual(st, 201, b)
        st, b = self.d.request("GET", "/v1/jobs?match=*")
        places = {j["name"]: j.get("position") for j in b["jobs"] if j["name"] in ("low", "high", "mid")}
        self.assertEqual(places, {"high": 1, "mid": 2, "low": 3}, b["jobs"])
        self.assertEqual(self.herd_jobs("low") + self.herd_jobs("high") + self.herd_jobs("mid"), [],
                         "queued jobs are not submitted to Slurm")
        open(gate, "w").close()
        for name in ("g", "low", "high", "mid"):
            wait_service(self.d, name, lambda s: s["state"] == "COMPLETED", timeout=90, what="%s COMPLETED" % name)
        with open(order) as f:
            self.assertEqual(f.read().split(), ["high", "mid", "low"])


class TestSlurmControllerDown(SlurmTest):
    def test_slurmctld_down_is_unknown_then_back(self):
        """slurmctld itself down: slurmrestd answers 500 after its ~9 s timeout, the same body
        as a bad token; herd says which by the time it took, keeps the job, and recovers."""
        self.write([job_svc("c", command=["sleep", "600"], time_limit="10m")],
                   clusters=[cluster_cfg(request_timeout="20s")])
        self.d.start()
        job = wait_service(self.d, "c", lambda s: s["state"] == "HEALTHY", timeout=60,
                           what="HEALTHY")["slurm"]["job_id"]
        CLUSTER.stop_ctld()
        try:
            s = wait_service(self.d, "c", lambda s: s["state"] == "UNKNOWN", timeout=40, what="UNKNOWN")
            self.assertIn("slurmctld unreachable", s["reason"])
        finally:
            CLUSTER.start_ctld()
        s = wait_service(self.d, "c", lambda s: s["state"] == "HEALTHY", timeout=90, what="HEALTHY again")
        self.assertEqual(s["slurm"]["job_id"], job)
        self.assertEqual(s["attempt"], 1, "nothing resubmitted")
        self.assertEqual(self.clusters()[0]["requests"]["submit"], 1)


class TestSlurmShutdown(SlurmTest):
    def test_shutdown_while_unreachable_leaves_the_job_to_the_next_daemon(self):
        self.write([job_svc("s", command=["sleep", "600"], time_limit="10m", stop={"grace": "2s"})])
        self.d.start()
        job = wait_service(self.d, "s", lambda s: s["state"] == "HEALTHY", timeout=60,
                           what="HEALTHY")["slurm"]["job_id"]
        CLUSTER.stop_restd()
        try:
            wait_service(self.d, "s", lambda s: s["state"] == "UNKNOWN", timeout=30, what="UNKNOWN")
            t0 = time.time()
            self.d.signal(signal.SIGTERM)
            rc = self.d.wait_exit(timeout=30)
            took = time.time() - t0
            self.assertEqual(rc, 0)
            self.assertLess(took, 15, "the shutdown is bounded by the stop grace, not by Slurm")
            self.assertIn("leaving it to the next daemon", self.d.log())
            states = {j[0]: j[2] for j in CLUSTER.squeue()}  # squeue talks to slurmctld directly
            self.assertEqual(states.get(job), "RUNNING", "nothing was cancelled blindly")
        finally:
            CLUSTER.start_restd()
        # The next daemon finishes the stop it was asked for.
        self.d.start()
        wait_until(lambda: (CLUSTER.job(job) or {}).get("job_state") in ("CANCELLED", None), timeout=30,
                   what="the job cancelled by the next daemon")
        wait_service(self.d, "s", lambda s: s["state"] == "STOPPED", timeout=30, what="STOPPED")


class TestSlurmTimeLimit(SlurmTest):
    def test_time_limit_is_timeout(self):
        self.write([job_svc("slow", command=["sleep", "1000"], time_limit="1m")])
        self.d.start()
        wait_service(self.d, "slow", lambda s: s["state"] in ("STARTING", "HEALTHY"), timeout=60, what="running")
        s = wait_service(self.d, "slow", lambda s: s["state"] == "TIMEOUT", timeout=150, what="TIMEOUT")
        self.assertIn("TIMEOUT", s["reason"])


class TestSlurmReconcile(SlurmTest):
    def test_removed_while_down_is_cancelled_and_queue_timeout(self):
        # Another herd's job (other herd id) must never be touched, even with a herd-like tag.
        other = CLUSTER.submit("sleep 600", name="herd.keep", comment="herd:0ther1d:keep:1", time_limit=10)
        self.write([job_svc("keep", command=["sleep", "600"], time_limit="10m"),
                    job_svc("gone", command=["sleep", "600"], time_limit="10m")])
        self.d.start()
        keep = wait_service(self.d, "keep", lambda s: s["slurm"].get("job_state") in ("RUNNING", "PENDING"),
                            timeout=60, what="keep submitted")["slurm"]["job_id"]
        gone = wait_service(self.d, "gone", lambda s: s["slurm"].get("job_id"), timeout=60,
                            what="gone submitted")["slurm"]["job_id"]
        self.d.kill9()
        # While herd is down, "gone" leaves the config.
        # (A queued job's reason can change without bumping slurmctld's job-list update time,
        # so it shows at the next full listing: full_refresh, 2 s here.)
        self.write([job_svc("keep", command=["sleep", "600"], time_limit="10m")],
                   clusters=[cluster_cfg(full_refresh="2s")])
        self.d.start()
        wait_until(lambda: (CLUSTER.job(gone) or {}).get("job_state") in ("CANCELLED", None), timeout=30,
                   what="the removed service's job cancelled")
        s = wait_service(self.d, "keep", lambda s: s["slurm"].get("job_id") == keep, timeout=30, what="keep re-adopted")
        self.assertEqual(len([j for j in self.herd_jobs("keep") if j[0] != other]), 1)
        # Listed (removing) until herd has seen its job end, then gone.
        wait_until(lambda: self.d.request("GET", "/v1/services/gone")[0] == 404, timeout=30,
                   what="the removed service gone from the API")
        self.assertIn(CLUSTER.job(other)["job_state"], ("RUNNING", "PENDING"), "another herd's job is untouched")

        # A job that needs every CPU of the node waits in the queue while keep and the other
        # herd's job hold one each (whatever the node's size); with queue_timeout it ends in
        # TIMEOUT and its job is cancelled.
        # Slurm queues a job with the reason "None" and gives one (Resources, Priority) only
        # once its scheduler has looked at the job, which on a loaded machine takes seconds:
        # queue_timeout leaves room to see the reason arrive, and the test waits for it.
        self.d.write_config(json.dumps({"services": [job_svc("queued", command=["sleep", "60"], queue_timeout="25s",
                                                             cpus_per_task=CLUSTER.cpus())]}),
                            name="more.json")
        self.d.cli("reload", check=True)
        s = wait_service(self.d, "queued", lambda s: s["state"] == "PENDING" and s["slurm"].get("job_state") == "PENDING",
                         timeout=30, what="PENDING in Slurm's queue")
        qid = s["slurm"]["job_id"]
        rec = CLUSTER.wait_job_reason(qid, timeout=15)
        self.assertIn(rec["state_reason"], ("Resources", "Priority"), rec)
        # herd sees a changed reason at its next full listing (full_refresh 2 s).
        s = wait_service(self.d, "queued", lambda s: s["state"] == "PENDING" and
                         re.search(r"Resources|Priority", s["reason"] or ""), timeout=15, what="Slurm's reason in herd's")
        self.assertIn(s["slurm"].get("reason"), ("Resources", "Priority"), s)
        s = wait_service(self.d, "queued", lambda s: s["state"] == "TIMEOUT", timeout=40, what="queue TIMEOUT")
        self.assertIn("still queued", s["reason"])
        wait_until(lambda: (CLUSTER.job(qid) or {}).get("job_state") in ("CANCELLED", None), timeout=30,
                   what="the queued job cancelled")
        CLUSTER.cancel(other)

    def test_api_add_needs_a_known_cluster(self):
        self.write([])
        self.d.start()
        st, body = self.d.request("POST", "/v1/services", job_svc("x", cluster="nope", command=["true"]))
        self.assertEqual(st, 422, body)
        err = body["error"]["errors"][0]
        self.assertEqual(err["field"], "x.cluster")
        self.assertIn('no cluster named "nope" (known: test)', err["message"])
        st, body = self.d.request("POST", "/v1/services", job_svc("y", script="#!/bin/sh\nexit 0\n"))
        self.assertEqual(st, 201, body)
        wait_service(self.d, "y", lambda s: s["state"] == "COMPLETED", timeout=60, what="COMPLETED")


class TestSlurmAuth(SlurmTest):
    def test_token_command_over_the_unix_socket(self):
        self.d.env["SLURM_CONF"] = CLUSTER.conf
        self.write([job_svc("tc", script="#!/bin/sh\nexit 0\n")],
                   clusters=[cluster_cfg(url="unix:" + CLUSTER.socket,
                                         auth={"token_command": ["/usr/bin/scontrol", "token", "username=root",
                                                                 "lifespan=600"]})])
        self.d.start()
        s = wait_service(self.d, "tc", lambda s: s["state"] == "COMPLETED", timeout=60, what="COMPLETED")
        cl = json.loads(self.d.cli("clusters", check=True).stdout)["clusters"][0]  # the CLI's view
        self.assertEqual(cl["auth"], "token_command")
        self.assertEqual(cl["api_version"], "v0.0.38")
        self.assertNotIn("eyJhbGci", self.d.log())

    def test_oauth_client_credentials(self):
        import http.server
        import threading
        import urllib.parse
        seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                seen.append(form)
                ok = form.get("client_secret") == ["s3cret"] and form.get("grant_type") == ["client_credentials"]
                body = json.dumps({"access_token": CLUSTER.token(), "expires_in": 600} if ok
                                  else {"error": "invalid_client"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            self.d.env["HERD_TEST_SECRET"] = "s3cret"
            url = "http://127.0.0.1:%d/token" % srv.server_address[1]
            self.write([job_svc("oa", script="#!/bin/sh\nexit 0\n")],
                       clusters=[cluster_cfg(auth={"oauth_client_credentials": {
                           "token_url": url, "client_id": "herd", "client_secret": {"env": "HERD_TEST_SECRET"},
                           "scope": "slurm"}})])
            self.d.start()
            wait_service(self.d, "oa", lambda s: s["state"] == "COMPLETED", timeout=60, what="COMPLETED")
            self.assertEqual(seen[0]["client_id"], ["herd"])
            self.assertEqual(seen[0]["scope"], ["slurm"])
            self.assertEqual(len(seen), 1, "the access token is cached until it expires")
            self.assertNotIn("s3cret", self.d.log())
        finally:
            srv.shutdown()
            srv.server_close()


if __name__ == "__main__":
    main()
