"""herd survives its own death: kill -9 the daemon, start it again, and every live
service is re-adopted (same pid, instance, attempt), dead ones are restarted, stopped ones
stay stopped, logs keep flowing; plus pid-reuse protection, the --leave-running upgrade,
two daemons on one state dir, and a store that survives 200 SIGKILLs mid-storm."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import time

from harness import HERD_BIN, Daemon, DaemonTest, main, pid_alive, wait_until

COUNTER = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo \"n $i\"; sleep 0.01; done"]


def db(d):
    c = sqlite3.connect(os.path.join(d.state, "herd.db"), timeout=10)
    c.row_factory = sqlite3.Row
    return c


def counter_lines(path):
    with open(path) as f:
        return [int(l.split()[1]) for l in f if l.startswith("n ")]


class Adopt(DaemonTest):
    def test_kill9_with_50_services(self):
        specs = []
        for i in range(44):
            specs.append({"name": "s%02d" % i, "command": ["sleep", "1000%02d" % i], "ready_after": 0})
        # In BACKOFF when the daemon dies: a long backoff after a crash.
        for i in range(3):
            specs.append({"name": "crash%d" % i, "command": ["/bin/sh", "-c", "exit 1"], "ready_after": 0,
                          "backoff": {"initial": "30s", "max": "30s", "jitter": 0}})
        specs.append({"name": "counter", "command": COUNTER, "ready_after": 0})
        # STOPPING when the daemon dies: ignores TERM for a while.
        specs.append({"name": "slowstop", "command": ["/bin/sh", "-c", "trap 'sleep 1; exit 0' TERM; "
                                                      "while :; do sleep 0.05; done"],
                      "ready_after": 0, "stop": {"grace": "10s"}})
        specs.append({"name": "stopped", "command": ["sleep", "1000"], "ready_after": 0})
        self.d.write_config(specs)
        self.d.start()
        for s in specs:
            if s["name"].startswith("crash"):
                self.d.wait_state(s["name"], "BACKOFF")
            else:
                self.d.wait_state(s["name"], "HEALTHY")
        self.d.cli("stop", "stopped", "--wait", check=True)
        before = self.d.services()
        st, _ = self.d.request("POST", "/v1/services/slowstop/stop")
        self.assertEqual(st, 200)
        self.assertEqual(self.d.service("slowstop")["state"], "STOPPING")
        # Two services die while no daemon watches.
        time.sleep(0.3)
        self.d.kill9()
        os.kill(before["s00"]["pid"], signal.SIGKILL)
        os.kill(before["s01"]["pid"], signal.SIGKILL)
        time.sleep(0.5)  # the counter keeps writing into its FIFO meanwhile
        self.d.start()
        after = self.d.services()
        for i in range(2, 44):
            n = "s%02d" % i
            self.assertEqual(after[n]["pid"], before[n]["pid"], n)
            self.assertEqual(after[n]["instance"], before[n]["instance"], n)
            self.assertEqual(after[n]["attempt"], before[n]["attempt"], n)
            self.assertEqual(after[n]["state"], "HEALTHY", n)
        self.assertEqual(after["counter"]["pid"], before["counter"]["pid"])
        for n in ("s00", "s01"):
            s = self.d.wait_state(n, "HEALTHY", timeout=10)
            self.assertNotEqual(s["pid"], before[n]["pid"])
            self.assertEqual(s["attempt"], before[n]["attempt"] + 1)
            self.assertIn("exited while herd was down", json.dumps(self.d.events(service=n)))
        self.assertEqual(after["stopped"]["state"], "STOPPED")
        self.assertIsNone(after["stopped"]["pid"])
        # The service being stopped finishes stopping.
        s = self.d.wait_state("slowstop", "STOPPED", timeout=10)
        self.assertEqual(s["wanted"], "down")
        self.assertFalse(pid_alive(before["slowstop"]["pid"]))
        # Services in BACKOFF are restarted by the new daemon, not left waiting forever.
        for i in range(3):
            self.assertIn(after["crash%d" % i]["state"], ("STARTING", "HEALTHY", "FAILED", "BACKOFF"))
        # Zero duplicates: one process per adopted service's command line.
        for i in range(2, 44):
            out = subprocess.run(["pgrep", "-fx", "sleep 1000%02d" % i], capture_output=True, text=True).stdout.split()
            out = [p for p in out if in_dir(p, self.d.state)]  # not another suite's
            self.assertEqual(len(out), 1, "duplicates of s%02d: %s" % (i, out))
        # Logs contiguous across the crash: no gap, no duplicate.
        time.sleep(0.3)
        nums = counter_lines(os.path.join(self.d.state, "logs", "counter.log"))
        self.assertGreater(len(nums), 50)
        self.assertEqual(nums, list(range(nums[0], nums[0] + len(nums))), "gap or duplicate in the counter log")
        self.assertEqual(nums[0], 1)

    def test_adopted_exit_is_seen_promptly(self):
        self.d.write_config([{"name": "a", "command": ["sleep", "1000"], "ready_after": 0,
                              "backoff": {"initial": 0}}])
        self.d.start()
        pid = self.d.wait_state("a", "HEALTHY")["pid"]
        self.d.kill9()
        self.d.start()
        self.assertEqual(self.d.service("a")["pid"], pid)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        s = wait_until(lambda: (lambda x: x if x["pid"] not in (None, pid) else None)(self.d.service("a")),
                       timeout=5, what="a restart after the adopted process died")
        self.assertLess(time.monotonic() - t0, 1.0)
        evs = self.d.events(service="a")
        self.assertIn("exited (status unknown, adopted)", [e["reason"] for e in evs])
        self.assertEqual(s["restarts"], 1)

    def test_pid_reuse_is_not_adopted(self):
        self.d.write_config([{"name": "a", "command": ["sleep", "1000"], "ready_after": 0},
                             {"name": "b", "command": ["sleep", "1001"], "ready_after": 0}])
        self.d.start()
        a = self.d.wait_state("a", "HEALTHY")
        b = self.d.wait_state("b", "HEALTHY")
        self.d.kill9()
        unrelated = subprocess.Popen(["sleep", "999"])
        try:
            with open("/proc/%d/stat" % unrelated.pid) as f:
                starttime = int(f.read().rsplit(")", 1)[1].split()[19])
            with db(self.d) as c:
                # a: the pid now belongs to another process (start time differs).
                c.execute("UPDATE instances SET pid=? WHERE id=?", (unrelated.pid, a["instance"]))
                # b: even the start time matches, but the command line is not ours.
                c.execute("UPDATE instances SET pid=?, starttime=? WHERE id=?", (unrelated.pid, starttime, b["instance"]))
            os.kill(a["pid"], signal.SIGKILL)
            os.kill(b["pid"], signal.SIGKILL)
            self.d.start()
            for n in ("a", "b"):
                s = self.d.wait_state(n, "HEALTHY", timeout=10)
                self.assertNotEqual(s["pid"], unrelated.pid)
                self.assertIn("gone while herd was down", json.dumps(self.d.events(service=n)))
            self.assertIsNone(unrelated.poll(), "herd touched an unrelated process")
        finally:
            unrelated.kill()
            unrelated.wait()

    def test_leave_running_upgrade_cycle(self):
        self.d.write_config([
            {"name": "a", "command": ["sleep", "1000"], "ready_after": 0},
            {"name": "checked", "command": ["sleep", "1001"],
             "check": {"type": "exec", "command": ["true"], "interval": "100ms"}},
        ], )
        self.d.args.append("--leave-running")
        self.d.start()
        a = self.d.wait_state("a", "HEALTHY")
        c = self.d.wait_state("checked", "HEALTHY")
        self.d.signal(signal.SIGTERM)
        self.assertEqual(self.d.wait_exit(10), 0)
        self.assertTrue(pid_alive(a["pid"]) and pid_alive(c["pid"]))
        self.d.logf.close()
        self.d.args.remove("--leave-running")
        self.d.start()
        a2, c2 = self.d.service("a"), self.d.service("checked")
        self.assertEqual((a2["pid"], a2["instance"], a2["state"]), (a["pid"], a["instance"], "HEALTHY"))
        self.assertEqual(c2["pid"], c["pid"])
        # Checks resume on the adopted instance.
        runs = c2["check"]["runs"]
        wait_until(lambda: self.d.service("checked")["check"]["runs"] >= runs + 3, timeout=5, what="checks to resume")
        # The CLI form of the same thing.
        r = self.d.cli("shutdown", "--leave-running", check=True)
        self.assertIn("leaving", r.stdout)
        self.assertEqual(self.d.wait_exit(10), 0)
        self.assertTrue(pid_alive(a["pid"]))
        self.d.logf.close()
        self.d.start()
        self.assertEqual(self.d.service("a")["pid"], a["pid"])
        # A plain shutdown stops them.
        self.assertEqual(self.d.stop(), 0)
        self.assertFalse(pid_alive(a["pid"]))

    def test_two_daemons_one_state_dir(self):
        self.d.write_config([{"name": "a", "command": ["sleep", "1000"], "ready_after": 0}])
        self.d.start()
        r = subprocess.run([HERD_BIN, "daemon", "--state-dir", self.d.state, "--config", self.d.confdir],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 101)
        self.assertIn("in use by another herd daemon (pid %d)" % self.d.proc.pid, r.stderr)
        # Another state dir but the same socket: refused as well.
        other = Daemon()
        try:
            r = subprocess.run([HERD_BIN, "daemon", "--state-dir", other.state, "--socket", self.d.sock],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 101)
            self.assertIn("(pid %d)" % self.d.proc.pid, r.stderr)
        finally:
            other.cleanup()
        self.assertEqual(self.d.service("a")["state"], "HEALTHY")

    def test_store_not_herds_is_refused(self):
        os.makedirs(self.d.state, exist_ok=True)
        c = sqlite3.connect(os.path.join(self.d.state, "herd.db"))
        c.execute("CREATE TABLE t(x)")
        c.commit()
        c.close()
        r = subprocess.run([HERD_BIN, "daemon", "--state-dir", self.d.state], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 101)
        self.assertIn("not herd's store", r.stderr)
        with open(os.path.join(self.d.state, "herd.db"), "wb") as f:
            f.write(b"this is not a database at all" * 100)
        r = subprocess.run([HERD_BIN, "daemon", "--state-dir", self.d.state], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 101)
        self.assertIn("herd.db", r.stderr)


def in_dir(pid, state):
    """Whether the process runs in this daemon's state dir (a service's default cwd)."""
    try:
        return os.readlink("/proc/%s/cwd" % pid) == os.path.realpath(state)
    except OSError:
        return False


class CrashStorm(DaemonTest):
    KILLS = int(os.environ.get("HERD_CRASH_KILLS", "200"))

    def check_store(self, names):
        with db(self.d) as c:
            have = {r["name"] for r in c.execute("SELECT name FROM services")}
            # All or nothing: a daemon killed before its first commit (the config's services
            # go in with it, in one transaction) leaves none; the config still has them.
            self.assertIn(have, (set(), names))
            last = {}
            prev = 0
            for e in c.execute("SELECT id, service, from_state, to_state FROM events ORDER BY id"):
                self.assertGreater(e["id"], prev)
                prev = e["id"]
                if e["service"] in last:
                    self.assertEqual(e["from_state"], last[e["service"]],
                                     "event %d: %s left %s but was %s" % (e["id"], e["service"], e["from_state"],
                                                                         last[e["service"]]))
                last[e["service"]] = e["to_state"]
            for r in c.execute("SELECT name, state FROM services"):
                if r["name"] in last:
                    self.assertEqual(r["state"], last[r["name"]], "stored state of %s" % r["name"])
            return prev

    def test_sigkill_200_times_during_a_storm(self):
        specs = [{"name": "crash%02d" % i, "command": ["/bin/sh", "-c", "sleep 0.00%d; exit 1" % (i % 9 + 1)],
                  "ready_after": 0, "backoff": {"initial": 0, "max": "100ms", "jitter": 0.5}} for i in range(12)]
        specs += [{"name": "steady%d" % i, "command": ["sleep", "1000"], "ready_after": 0} for i in range(4)]
        self.d.write_config(specs)
        names = {s["name"] for s in specs}
        rnd = random.Random(42)
        last_id = 0
        for k in range(self.KILLS):
            self.d.start(wait=False)
            time.sleep(rnd.uniform(0.02, 0.25))
            self.d.kill9()
            last_id = max(last_id, self.check_store(names))
        self.d.start()
        steady = [self.d.wait_state("steady%d" % i, "HEALTHY")["pid"] for i in range(4)]
        for p in steady:
            out = subprocess.run(["pgrep", "-x", "sleep"], capture_output=True, text=True).stdout.split()
            self.assertIn(str(p), out)
        # Exactly one process per steady service survived 200 daemon deaths.
        out = subprocess.run(["pgrep", "-fx", "sleep 1000"], capture_output=True, text=True).stdout.split()
        def environ(p):
            try:
                with open("/proc/%s/environ" % p, "rb") as f:
                    return f.read()
            except OSError:
                return b""
        # This daemon's only (another suite may run its own "steady" services at the same
        # time): a service's default working directory is its daemon's state dir.
        mine = [p for p in out if b"HERD_SERVICE=steady" in environ(p) and in_dir(p, self.d.state)]
        self.assertEqual(len(mine), 4, mine)
        self.assertGreater(last_id, self.KILLS)


if __name__ == "__main__":
    main()
