"""Fault injection between herd and the real slurmrestd (issue 17): faultproxy.py in front of
the test Slurm's slurmrestd answers garbage, a body that is not JSON, truncated answers,
connection resets, and stalls (10 s) in turn, while a job runs. For each: the daemon answers
at once, the service is UNKNOWN with the error (never cancelled, resubmitted or declared
dead), the cluster says it is unreachable, and the true state comes back by itself with the
next good listing: the same job, the same attempt.

Needs the real single-node Slurm of tests/e2e/slurm.py (it takes a machine-wide lock, so a
run may wait for another one's cluster); named test_slurm_* so `ctest -E slurm` leaves it out
with the others."""
import json
import time

import faultproxy
import slurm
from harness import SanitizedSuiteTest, main, wait_service, wait_until

CLUSTER = None


def setUpModule():
    global CLUSTER
    ok, why = slurm.cluster_available()
    if not ok:
        raise RuntimeError("the Slurm fault tests need a real Slurm: " + why)
    CLUSTER = slurm.SlurmCluster()
    CLUSTER.start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


class SlurmrestdFaults(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        CLUSTER.cancel_all()
        self.px = faultproxy.FaultProxy(upstream=("127.0.0.1", CLUSTER.rest_port), delay=10)
        self.addCleanup(self.px.close)

    def cluster(self):
        return self.d.request("GET", "/v1/clusters", timeout=5)[1]["clusters"][0]

    def test_garbage_truncated_reset_stalled(self):
        cl = {"name": "test", "url": "http://127.0.0.1:%d" % self.px.port, "user": "root",
              "api_version": "v0.0.38", "auth": {"jwt_key": CLUSTER.jwt_key}, "cwd": CLUSTER.jobs_dir,
              "poll_interval": "300ms", "steady_interval": "300ms", "request_timeout": "3s"}
        job = {"name": "job", "backend": "slurm", "cluster": "test", "command": ["sleep", "600"],
               "restart": "never", "ready_after": 0}
        self.d.write_config(json.dumps({"clusters": [cl], "services": [job]}))
        self.d.start()
        s = wait_service(self.d, "job", lambda s: s["state"] == "HEALTHY", timeout=60, what="HEALTHY")
        jid = s["slurm"]["job_id"]
        submits = self.cluster()["requests"]["submit"]
        for mode in ("garbage", "badjson", "truncate", "reset", "stall", "delay"):
            with self.subTest(mode=mode):
                self.px.mode = mode
                # The daemon answers at once, whatever slurmrestd does.
                t0 = time.time()
                for _ in range(5):
                    self.assertEqual(self.d.request("GET", "/v1/services/job", timeout=2)[0], 200)
                self.assertLess(time.time() - t0, 1.5)
                if mode == "delay":
                    # Answers 10 s late, past the 3 s request timeout: the same as a stall.
                    pass
                s = wait_service(self.d, "job", lambda s: s["state"] == "UNKNOWN", timeout=30,
                                 what="UNKNOWN under " + mode)
                self.assertTrue(s["reason"], s)
                c = self.cluster()
                self.assertFalse(c["reachable"], c)
                self.assertTrue(c.get("error"), c)
                # Nothing is cancelled or resubmitted for it.
                self.assertEqual(CLUSTER.job(jid)["job_state"], "RUNNING")
                self.px.mode = "pass"
                s = wait_service(self.d, "job", lambda s: s["state"] == "HEALTHY", timeout=60,
                                 what="HEALTHY after " + mode)
                self.assertEqual((s["slurm"]["job_id"], s["attempt"]), (jid, 1))
                self.assertTrue(self.cluster()["reachable"])
        self.assertEqual(self.cluster()["requests"]["submit"], submits, "a job was submitted again")
        self.assertEqual(len([j for j in CLUSTER.squeue() if j[3].startswith("herd:")]), 1)
        self.d.cli("stop", "job", "--wait", "--timeout", "30", check=True)


if __name__ == "__main__":
    main()
