#!/usr/bin/env python3
"""Slurm over ssh ("api": "ssh"): herd runs sbatch, squeue, scontrol and scancel on a login node
through its libssh2 session, as a user with only ssh would. The login node is a private OpenSSH
sshd on loopback whose sessions see the real test Slurm (SLURM_CONF set by sshd's SetEnv); the
Slurm is the real single-node one tests/e2e/slurm.py starts."""
import json
import os
import sys
import time

from harness import SanitizedSuiteTest, main, wait_service, wait_until
from servers import free_port
import netns
import slurm
import sshd

CLUSTER = None


def setUpModule():
    global CLUSTER
    ok, why = slurm.cluster_available()
    if not ok:
        raise RuntimeError("the Slurm tests need a real Slurm: " + why)
    if not sshd.available():
        raise RuntimeError("the Slurm-over-ssh tests need OpenSSH's sshd and ssh-keygen")
    CLUSTER = slurm.SlurmCluster()
    CLUSTER.start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def host_cfg(sh, **kw):
    h = {"name": "login", "destination": "root@127.0.0.1", "port": sh.port, "identity_file": sh.client_key,
         "known_hosts": sh.known_hosts, "server_alive_interval": "1s", "server_alive_count": 2,
         "connect_timeout": "5s"}
    h.update(kw)
    return h


def cluster_cfg(**kw):
    c = {"name": "hpc", "api": "ssh", "ssh": "login", "cwd": CLUSTER.jobs_dir, "poll_interval": "300ms",
         "steady_interval": "1s", "request_timeout": "20s"}
    c.update(kw)
    return c


def job_svc(name, **kw):
    s = {"name": name, "backend": "slurm", "cluster": "hpc", "restart": "never", "start_timeout": "60s"}
    s.update(kw)
    return s


class SshSlurmTest(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        CLUSTER.cancel_all()
        self.sh = sshd.PrivateSshd(extra=["SetEnv SLURM_CONF=%s" % CLUSTER.conf])
        self.sh.start()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.sh.stop()

    def write(self, services, host=None, cluster=None):
        self.d.write_config(json.dumps({"hosts": [host or host_cfg(self.sh)], "clusters": [cluster or cluster_cfg()],
                                        "services": services}))

    def cluster(self):
        return self.d.request("GET", "/v1/clusters")[1]["clusters"][0]

    def herd_jobs(self, name):
        return [j for j in CLUSTER.squeue() if j[3].startswith("herd:") and (":%s:" % name) in j[3]]


class TestLifecycle(SshSlurmTest):
    def test_submit_healthy_outage_readoption_stop(self):
        port = free_port()
        web = job_svc("web", command=["/usr/bin/python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                      endpoint={"port": port, "protocol": "http"},
                      check={"type": "http", "path": "/", "interval": "200ms", "timeout": "1s"})
        envjob = job_svc("envjob", command=["/bin/sh", "-c", 'echo "G=$GREETING S=$HERD_SERVICE A=$HERD_ATTEMPT"'],
                         env={"GREETING": "it's here"})
        self.write([web, envjob])
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=90, what="HEALTHY over ssh")
        job = s["slurm"]["job_id"]
        self.assertEqual(s["slurm"]["job_state"], "RUNNING")
        self.assertEqual(s["slurm"]["node"], CLUSTER.host)
        # The node's address (its NodeAddr, from sinfo) replaces its name once looked up.
        wait_until(lambda: self.d.service("web")["slurm"].get("host") == "127.0.0.1", timeout=30,
                   what="the node's address from sinfo")
        evs = [e["to"] for e in self.d.events(service="web")]
        self.assertLess(evs.index("SUBMITTED"), evs.index("STARTING"))
        rec = CLUSTER.job(job)
        self.assertTrue(rec["comment"].startswith("herd:") and rec["comment"].endswith(":web:1"), rec["comment"])
        self.assertEqual(rec["name"], "herd.web")
        self.assertEqual(rec["user_name"], "root", "submitted as the ssh user")
        # The job's environment: the spec's env and herd's variables, quoted through the shell.
        e = wait_service(self.d, "envjob", lambda s: s["state"] == "COMPLETED", timeout=60, what="envjob done")
        out = e["slurm"]["output"]
        wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 0, timeout=10, what="envjob output")
        with open(out) as f:
            self.assertEqual(f.read().strip(), "G=it's here S=envjob A=1")
        self.assertEqual(e["last_exit"]["code"], 0, e)

        cl = self.cluster()
        self.assertEqual(cl["api"], "ssh")
        self.assertEqual(cl["url"], "ssh://login")
        self.assertTrue(cl["reachable"])
        self.assertEqual(cl["session"]["state"], "up", cl["session"])
        # One squeue per tick for the whole cluster (plus the odd sinfo/scontrol), never one per service.
        polls0, total0 = cl["polls"], cl["requests"]["total"]
        wait_until(lambda: self.cluster()["polls"] >= polls0 + 5, timeout=30, what="five more ticks")
        cl = self.cluster()
        # (a command is counted when sent, a poll when answered: one may be in flight at either end)
        self.assertLessEqual(abs((cl["requests"]["total"] - total0) - (cl["polls"] - polls0)), 1,
                             "steady: one command per tick")
        hosts = self.d.request("GET", "/v1/hosts")[1]["hosts"]
        self.assertGreater([h for h in hosts if h["name"] == "login"][0]["session"]["commands"], 5)

        # The login node's sshd goes away: control-plane trouble (UNKNOWN), the job is untouched.
        self.sh.halt()
        s = wait_service(self.d, "web", lambda s: s["state"] == "UNKNOWN", timeout=30, what="UNKNOWN")
        # (the tunnel to the job's endpoint or the cluster's squeue says so first)
        self.assertIn("ssh host login", s["reason"])
        wait_until(lambda: not self.cluster()["reachable"], timeout=30, what="the cluster unreachable")
        self.assertIn("ssh host login", self.cluster()["error"])
        self.assertEqual(CLUSTER.job(job)["job_state"], "RUNNING")
        self.sh.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=60, what="HEALTHY again")
        self.assertEqual(s["slurm"]["job_id"], job, "the same job, not a new one")
        self.assertEqual(s["attempt"], 1)
        self.assertEqual(len(self.herd_jobs("web")), 1)

        # kill -9 of herd: the next daemon re-adopts the job and submits nothing.
        self.d.kill9()
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY" and s["slurm"].get("job_state") == "RUNNING",
                         timeout=60, what="HEALTHY after a restart")
        self.assertEqual(s["slurm"]["job_id"], job)
        self.assertEqual(self.cluster()["requests"]["submit"], 0, "the restarted daemon submitted nothing")
        self.assertEqual(len(self.herd_jobs("web")), 1, "no duplicate")

        # Stop: scancel, STOPPED once squeue confirms.
        self.d.cli("stop", "web", "--wait", "--timeout", "30", check=True)
        self.assertEqual(self.d.service("web")["state"], "STOPPED")
        self.assertIn(CLUSTER.job(job)["job_state"], ("CANCELLED", "COMPLETING"))
        self.assertGreaterEqual(self.cluster()["requests"]["cancel"], 1)


class TestOutcomes(SshSlurmTest):
    def test_exit_code_restart_refusal_and_pending_reason(self):
        # Fails with exit 3 twice: the exit code comes from scontrol (squeue has none), and the
        # policy restarts it with a new attempt each time.
        flaky = job_svc("flaky", command=["/bin/sh", "-c", "exit 3"], restart="on-failure",
                        backoff={"initial": "300ms", "max": "1s"})
        # Slurm says no: a partition that does not exist is a refusal, not trouble.
        bad = job_svc("bad", command=["true"], partition="nosuch")
        self.write([flaky, bad])
        self.d.start()
        s = wait_service(self.d, "bad", lambda s: s["state"] == "FAILED", timeout=60, what="bad FAILED")
        self.assertIn("Slurm refused the job", s["reason"])
        self.assertIn("Invalid partition name specified", s["reason"])
        wait_service(self.d, "flaky", lambda s: s["attempt"] >= 2, timeout=90, what="flaky restarted by policy")
        self.d.cli("stop", "flaky", check=True)
        failed = [e for e in self.d.events(service="flaky") if e["to"] == "FAILED"]
        self.assertTrue(failed, "FAILED before the restart")
        self.assertIn("exit code 3", failed[0]["reason"], failed[0])
        # Waits in Slurm's queue behind a job that holds every CPU, with Slurm's reason.
        hog = CLUSTER.submit("sleep 600", name="hog", cpus_per_task=CLUSTER.cpus())
        self.write([job_svc("queued", command=["sleep", "60"])])
        self.d.cli("reload", check=True)
        s = wait_service(self.d, "queued", lambda s: s["state"] == "PENDING" and
                         ("Resources" in (s["reason"] or "") or "Priority" in (s["reason"] or "")),
                         timeout=60, what="PENDING with Slurm's reason")
        self.assertIn(s["slurm"]["reason"], ("Resources", "Priority"))
        CLUSTER.cancel(hog)
        wait_service(self.d, "queued", lambda s: s["slurm"].get("job_state") == "RUNNING", timeout=60,
                     what="RUNNING once the hog left")
        subs = self.cluster()["requests"]["submit"]
        self.assertEqual(len(self.herd_jobs("queued")), 1, "queued submitted once")
        self.assertGreaterEqual(subs, 4, "flaky at least twice, bad, queued")


class TestHostTrouble(SshSlurmTest):
    def test_wrong_host_key_and_wrong_client_key(self):
        """A host key that does not match, then a key the host does not accept: the cluster says
        why, the service waits in UNKNOWN (no job is known to be lost), nothing crashes; fixed
        config -> submitted once."""
        svc = job_svc("w", command=["sleep", "60"])
        self.write([svc], host=host_cfg(self.sh, known_hosts=self.sh.known_hosts_with_wrong_key()))
        self.d.start()
        wait_until(lambda: "host key" in (self.cluster().get("error") or ""), timeout=30,
                   what="the host key mismatch in the cluster's error")
        s = self.d.service("w")
        self.assertEqual(s["state"], "PENDING", s)
        self.assertIn("not submitted", s["reason"])
        self.assertEqual(self.herd_jobs("w"), [], "nothing reached Slurm")
        other = os.path.join(self.sh.dir, "other_client")
        sshd.keygen(other, "stranger")
        self.write([svc], host=host_cfg(self.sh, identity_file=other))
        self.d.cli("reload", check=True)
        wait_until(lambda: "auth" in (self.cluster().get("error") or "").lower(), timeout=30,
                   what="the refused key in the cluster's error")
        self.assertEqual(self.herd_jobs("w"), [])
        self.write([svc])
        self.d.cli("reload", check=True)
        s = wait_service(self.d, "w", lambda s: s["slurm"].get("job_state") == "RUNNING", timeout=90,
                         what="RUNNING once fixed")
        self.assertEqual(s["attempt"], 1, "put off, not failed: still the first attempt")
        self.assertEqual(len(self.herd_jobs("w")), 1, "exactly one job")
        self.assertNotIn("FAILED", [e["to"] for e in self.d.events(service="w")])


class TestRemoteJobLogs(SshSlurmTest):
    def test_logs_job_over_ssh(self):
        """The job writes its output where the daemon cannot read it (a directory the daemon's
        own mount namespace covers): `herd logs --job` reads it, and follows it, over the ssh
        host's session."""
        hidden = os.path.join(CLUSTER.jobs_dir, "remote-only")
        os.makedirs(hidden, exist_ok=True)
        self.d.wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                       'mount -t tmpfs none "$0" && exec "$@"', hidden]
        talk = job_svc("talk", cwd=hidden,
                       command=["/bin/sh", "-c", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line $i; "
                                                 "sleep 0.1; done"])
        self.write([talk])
        self.d.start()
        s = wait_service(self.d, "talk", lambda s: s["slurm"].get("job_state") == "RUNNING", timeout=90,
                         what="the job running")
        out = s["slurm"]["output"]
        self.assertTrue(out.startswith(hidden + "/"), out)
        wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 20, timeout=30, what="output (seen here)")
        r = self.d.cli("logs", "talk", "--job", check=True)
        self.assertTrue(r.stdout.startswith("line 1\nline 2\n"), r.stdout[:200])
        r = self.d.cli("logs", "talk", "--job", "-n", "1", check=True)
        self.assertRegex(r.stdout, r"^line \d+\n$")
        first = int(r.stdout.split()[1])
        got = self.d.stream_until("/v1/services/talk/logs?job=1&follow=1&tail=1",
                                  lambda t: len(t.splitlines()) >= 15, timeout=30)
        nums = [int(l.split()[1]) for l in got.splitlines()[:15]]
        self.assertGreaterEqual(nums[0], first)
        self.assertEqual(nums, list(range(nums[0], nums[0] + 15)), "in order, none lost or repeated")
        # Over the session: the daemon itself could not open the file.
        self.assertIn("No such file or directory here: reading it through ssh host login", self.d.log())
        self.d.cli("stop", "talk", check=True)


class TestShutdown(SshSlurmTest):
    def test_shutdown_cancels_the_jobs(self):
        """A clean shutdown stops a Slurm-over-ssh service as it stops any: its job is
        cancelled over the session that is up (no new connection is made while stopping)."""
        self.write([job_svc("s", command=["sleep", "600"], stop={"grace": "20s"})])
        self.d.start()
        job = wait_service(self.d, "s", lambda s: s["state"] == "HEALTHY", timeout=90,
                           what="HEALTHY")["slurm"]["job_id"]
        t0 = time.monotonic()
        self.d.stop(timeout=60)
        self.assertEqual(self.d.proc.returncode, 0)
        self.assertLess(time.monotonic() - t0, 30)
        self.assertNotIn("leaving it to the next daemon", self.d.log())
        wait_until(lambda: (CLUSTER.job(job) or {}).get("job_state") in ("CANCELLED", "COMPLETED", None), 30,
                   what="the job cancelled by the shutdown (now %s)" % (CLUSTER.job(job) or {}).get("job_state"))


class TestPartition(SanitizedSuiteTest):
    """The login node behind a link that goes down (a network namespace with its own sshd,
    Slurm's controller relayed into it): the session's silence is found by herd's own timer,
    the cluster's services are UNKNOWN (never failed, never resubmitted), and once the link
    is back the same job is HEALTHY again."""

    def setUp(self):
        why = netns.available()
        if why:
            self.fail(why)
        super().setUp()
        CLUSTER.cancel_all()
        self.node = netns.Node("login", sshd_extra=["SetEnv SLURM_CONF=%s" % CLUSTER.conf])
        self.relay = self.node.relay(slurm.CTLD_PORT)

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.relay.kill()
            self.relay.wait()
            self.node.close()

    def test_partition_is_unknown_then_back(self):
        sh = self.node.sshd
        host = host_cfg(sh, destination="root@%s" % self.node.addr)
        self.d.write_config(json.dumps({"hosts": [host], "clusters": [cluster_cfg()],
                                        "services": [job_svc("p", command=["sleep", "600"])]}))
        self.d.start()
        s = wait_service(self.d, "p", lambda s: s["state"] == "HEALTHY", timeout=120, what="HEALTHY over ssh")
        job = s["slurm"]["job_id"]
        cl = self.d.request("GET", "/v1/clusters")[1]["clusters"][0]
        connects = cl["session"]["connects"]
        t0 = time.monotonic()
        self.node.partition()
        s = wait_service(self.d, "p", lambda s: s["state"] == "UNKNOWN", timeout=30, what="UNKNOWN")
        lost_after = time.monotonic() - t0
        self.node.heal()
        s = wait_service(self.d, "p", lambda s: s["state"] == "HEALTHY", timeout=90, what="HEALTHY again")
        self.assertEqual(s["slurm"]["job_id"], job, "the same job")
        self.assertEqual(s["restarts"], 0)
        self.assertEqual(len([j for j in CLUSTER.squeue() if ":p:" in j[3]]), 1, "no second submission")
        cl = self.d.request("GET", "/v1/clusters")[1]["clusters"][0]
        self.assertGreater(cl["session"]["connects"], connects, "a new session after the link came back")
        evs = [e["to"] for e in self.d.events() if e.get("service") == "p"]
        self.assertNotIn("FAILED", evs)
        self.assertLess(lost_after, 20, "the dead link found within the session's alive window and a tick")


class TestConfig(SanitizedSuiteTest):
    def test_errors(self):
        d = self.d
        key = os.path.join(d.root, "k")
        with open(key, "w") as f:
            f.write("x")
        h = {"name": "login", "destination": "me@login", "identity_file": key, "known_hosts": key}
        cases = [
            ({"name": "c", "api": "ssh", "cwd": "/tmp"}, [h], "missing required key \"ssh\""),
            ({"name": "c", "api": "ssh", "ssh": "login", "url": "http://x:1", "cwd": "/tmp"}, [h],
             "\"url\" is for \"api\": \"rest\""),
            ({"name": "c", "api": "ssh", "ssh": "nope", "cwd": "/tmp"}, [h], "no host named \"nope\""),
            ({"name": "c", "api": "ssh", "ssh": "login", "cwd": "/tmp"}, [{"name": "login", "destination": "x", "known_hosts": key}],
             "needs the host's \"identity_file\""),
            ({"name": "c", "api": "ssh", "ssh": "login", "cwd": "/tmp"}, [dict(h, proxy_jump="bastion")],
             "cannot use host \"login\"'s proxy_jump"),
            ({"name": "c", "api": "sftp", "ssh": "login", "cwd": "/tmp"}, [h], "expected \"rest\""),
        ]
        for cl, hosts, want in cases:
            d.write_config(json.dumps({"hosts": hosts, "clusters": [cl], "services": []}))
            r = d.cli("config", "check", d.confdir)
            self.assertEqual(r.returncode, 100, (cl, r.stdout, r.stderr))
            self.assertIn(want, r.stdout + r.stderr, cl)
            self.assertRegex(r.stdout + r.stderr, r"\.json:\d+:\d+", "file:line:column")
        d.write_config(json.dumps({"hosts": [h], "clusters": [{"name": "c", "api": "ssh", "ssh": "login",
                                                                 "cwd": "/tmp"}],
                                   "services": [{"name": "s", "backend": "slurm", "cluster": "c", "user": "bob",
                                                 "command": ["true"]}]}))
        r = d.cli("config", "check", d.confdir)
        self.assertEqual(r.returncode, 100)
        self.assertIn("runs its jobs as its ssh host's user", r.stdout + r.stderr)


if __name__ == "__main__":
    main()
