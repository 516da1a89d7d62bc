"""herd's priority over its services (prio.c): by default nothing runs real-time. With
`--priority realtime`, when it may, the daemon's spawner threads run SCHED_FIFO 2 (its loop
too, while spawns are under way), and no service, exec check or process it starts ever
inherits that, not even before its exec: each is born SCHED_OTHER at nice 0, with no
reset-on-fork flag, on every spawn path (the spawner threads' posix_spawn, the loop's
uv_spawn for `user`, exec checks) and on every restart. A daemon that may not (not root)
stays at the default, and /v1/daemon and the log say which it is."""
import os
import pwd
import shutil
import subprocess
import sys
import time

from harness import HERD_BIN, Daemon, SanitizedSuiteTest, main, wait_until

SCHED_OTHER, SCHED_FIFO = os.SCHED_OTHER, os.SCHED_FIFO


def rt_permitted():
    """Whether this test process may use SCHED_FIFO (root with CAP_SYS_NICE, RT not forbidden)."""
    r = subprocess.run([sys.executable, "-c", "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"],
                       capture_output=True)
    return r.returncode == 0


def policy(pid, tid=None):
    """(policy incl. the reset-on-fork flag, rt priority, nice) of a process or thread."""
    t = tid or pid
    pol = os.sched_getscheduler(t)
    prio = os.sched_getparam(t).sched_priority
    with open("/proc/%d/task/%d/stat" % (pid, t)) as f:
        nice = int(f.read().rsplit(")", 1)[1].split()[16])
    return pol, prio, nice


def read(path):
    with open(path) as f:
        return f.read()


def threads(pid):
    return sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0, "backoff": {"initial": 0}}
    d.update(kw)
    return d


# The service's own view, recorded by its first process right after the exec: policy and
# nice from /proc/self/stat (fields 41 and 19), then it becomes the long-running process.
SELF_VIEW = "awk '{print $41, $19}' /proc/$$/stat > %s; exec sleep 1000"


class Priority(SanitizedSuiteTest):
    def services_and_checks(self, out):
        return [svc("plain"),
                svc("selfview", command=["sh", "-c", SELF_VIEW % os.path.join(out, "self.txt")]),
                svc("asuser", user="nobody"),
                {"name": "checked", "command": ["sleep", "1000"],
                 "check": {"type": "exec", "interval": "100ms",
                           "command": ["sh", "-c", "awk '{print $41, $19}' /proc/$$/stat > %s" %
                                       os.path.join(out, "check.txt")]}}]

    def assert_services_default(self, out):
        for name in ("plain", "selfview", "asuser", "checked"):
            s = self.d.wait_state(name, "HEALTHY", timeout=15)
            self.assertEqual(policy(s["pid"]), (SCHED_OTHER, 0, 0), "%s runs at the default policy" % name)
        for f in ("self.txt", "check.txt"):
            path = os.path.join(out, f)
            wait_until(lambda: os.path.exists(path) and read(path).strip(), timeout=10, what=f)
            self.assertEqual(read(path).split(), ["0", "0"], "%s: SCHED_OTHER, nice 0" % f)

    def test_daemon_realtime_services_not(self):
        if not rt_permitted():
            self.skipTest("SCHED_FIFO not permitted here (not root, or RT forbidden by the cgroup)")
        out = os.path.join(self.d.root, "out")
        os.mkdir(out)
        # The first process of a service records its policy at its first instruction after
        # the exec: born SCHED_OTHER, never demoted after the fact.
        self.d.write_config(self.services_and_checks(out))
        self.d.start(extra=["--priority", "realtime"])
        st, info = self.d.request("GET", "/v1/daemon")
        self.assertEqual(st, 200)
        self.assertEqual(info["priority"], "realtime")
        self.assertIn("priority: herd's spawner threads run SCHED_FIFO 2, its loop too while spawning", self.d.log())
        pid = self.d.proc.pid
        # Reset-on-fork on the spawner threads: their children are born SCHED_OTHER.
        spawners = [t for t in threads(pid) if policy(pid, t) == (SCHED_FIFO | os.SCHED_RESET_ON_FORK, 2, 0)]
        self.assertGreaterEqual(len(spawners), 2, "at least two spawner threads run SCHED_FIFO 2, reset-on-fork")
        self.assert_services_default(out)
        # No spawn under way: the loop is back at the default policy.
        wait_until(lambda: policy(pid)[:2] == (SCHED_OTHER, 0), timeout=5, what="the loop back to SCHED_OTHER")
        # A restarted instance (kill -9, restart at once) is no different.
        old = self.d.service("plain")["pid"]
        os.kill(old, 9)
        s = wait_until(lambda: (lambda s: s if s["state"] == "HEALTHY" and s["pid"] not in (None, old) else None)(
            self.d.service("plain")), timeout=10, what="plain restarted")
        self.assertEqual(policy(s["pid"]), (SCHED_OTHER, 0, 0))
        # So is one started over the API, and its children.
        st, _ = self.d.request("POST", "/v1/services", svc("later", command=["sh", "-c", "sleep 1000 & wait"]))
        self.assertIn(st, (200, 201))
        s = self.d.wait_state("later", "HEALTHY", timeout=10)
        self.assertEqual(policy(s["pid"]), (SCHED_OTHER, 0, 0))
        kids = wait_until(lambda: [int(p) for p in os.listdir("/proc") if p.isdigit() and self.ppid(int(p)) == s["pid"]],
                          timeout=5, what="the service's child")
        self.assertEqual(policy(kids[0]), (SCHED_OTHER, 0, 0))

    @staticmethod
    def ppid(pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                return int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None

    def test_priority_normal_is_the_default(self):
        out = os.path.join(self.d.root, "out")
        os.mkdir(out)
        self.d.write_config(self.services_and_checks(out))
        self.d.start()
        st, info = self.d.request("GET", "/v1/daemon")
        self.assertEqual(info["priority"], "normal")
        self.assertIn("priority: normal (the default; --priority realtime to opt in)", self.d.log())
        pid = self.d.proc.pid
        for t in threads(pid):
            self.assertEqual(policy(pid, t)[:2], (SCHED_OTHER, 0), "thread %d" % t)
        self.assert_services_default(out)

    def test_bad_priority_value(self):
        r = subprocess.run([HERD_BIN, "daemon", "--state-dir", os.path.join(self.d.root, "st"), "--priority", "fast"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--priority must be realtime or normal", r.stderr)

    def test_not_permitted_runs_normal(self):
        if os.getuid() != 0:
            self.skipTest("needs root to start a daemon as another user")
        nobody = pwd.getpwnam("nobody")
        root = os.path.join(self.d.root, "asnobody")
        os.mkdir(root)
        os.chmod(self.d.root, 0o755)
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        d = Daemon(root=root, config=[svc("mine")])
        for p in (d.confdir, os.path.join(d.confdir, "services.json")):
            os.chown(p, nobody.pw_uid, nobody.pw_gid)
        d.args = []
        logf = open(d.log_path, "ab")
        proc = subprocess.Popen([HERD_BIN, "daemon", "--config", d.confdir, "--state-dir", d.state,
                                 "--priority", "realtime"],
                                stdout=logf, stderr=subprocess.STDOUT, user=nobody.pw_uid, group=nobody.pw_gid,
                                extra_groups=[], env=dict(os.environ, HOME="/"))
        d.proc, d.logf = proc, logf
        try:
            wait_until(lambda: "priority:" in d.log() or proc.poll() is not None, timeout=10, what="the daemon's start")
            log = d.log()
            self.assertIn("priority: normal (Operation not permitted", log, log[-2000:])
            self.assertEqual(policy(proc.pid)[:2], (SCHED_OTHER, 0))
            s = wait_until(lambda: (lambda r: r[1]["service"] if r[0] == 200 and r[1]["service"]["state"] == "HEALTHY"
                                    else None)(run_get(d, "/v1/services/mine")), timeout=10, what="mine HEALTHY")
            self.assertEqual(policy(s["pid"]), (SCHED_OTHER, 0, 0))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            logf.close()
            shutil.rmtree(root, ignore_errors=True)


def run_get(d, path):
    """A GET as root over nobody's socket (root may connect to any socket)."""
    try:
        return d.request("GET", path)
    except OSError:
        return (0, None)


if __name__ == "__main__":
    main()
