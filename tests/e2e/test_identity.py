"""Every process herd starts is findable by the next daemon (ident.c), and a service is every
process of its cgroup (cgroup.c).

Each instance carries HERD_INSTANCE=<herd id>:<instance> from birth, so a daemon killed
between a spawn and recording its pid loses nothing: the next daemon adopts the process of
a live instance and kills every other process that carries its identity. Where cgroups can
be made (root here), a child that calls setsid or double-forks stays inside its service's
cgroup: a stop reaches it, a main process that exits 0 leaving it behind is a failure
(it is killed), and nothing escapes a restart."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time

from harness import HERD_BIN, SanitizedSuiteTest, environ_bytes, main, pid_alive, wait_service, wait_until


def environ(pid, settle=False):
    """A process's environment; settle: wait for a just-started one's exec to finish."""
    try:
        data = environ_bytes(pid) if settle else open("/proc/%d/environ" % pid, "rb").read()
        return dict(e.split(b"=", 1) for e in data.split(b"\0") if b"=" in e)
    except OSError:
        return {}


def marked(herd_id):
    """{pid: instance} of every live process carrying this herd's identity."""
    out = {}
    prefix = herd_id.encode() + b":"
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        v = environ(int(p)).get(b"HERD_INSTANCE", b"")
        if v.startswith(prefix) and pid_alive(int(p)):
            out[int(p)] = int(v[len(prefix):])
    return out


def herd_id_of(d):
    c = sqlite3.connect(os.path.join(d.state, "herd.db"))
    try:
        return c.execute("SELECT value FROM meta WHERE key = 'herd_id'").fetchone()[0]
    finally:
        c.close()


def sleeper(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0, "backoff": {"initial": 0}}
    d.update(kw)
    return d


def cgroups_on(d):
    st, info = d.request("GET", "/v1/daemon")
    return info["cgroups"]["enabled"]


class Identity(SanitizedSuiteTest):
    def test_every_instance_carries_its_identity(self):
        self.d.write_config([sleeper("a"), sleeper("b", command=["sh", "-c", "sleep 1000 & wait"])])
        self.d.start()
        hid = herd_id_of(self.d)
        for name in ("a", "b"):
            s = wait_service(self.d, name, lambda x: x["state"] == "HEALTHY" and x["pid"], what=name)
            env = environ(s["pid"], settle=True)
            self.assertEqual(env.get(b"HERD_INSTANCE"), ("%s:%d" % (hid, s["instance"])).encode())
        # b's child inherits it: it is b's instance too.
        b = self.d.service("b")
        kids = wait_until(lambda: [p for p, i in marked(hid).items() if i == b["instance"] and p != b["pid"]],
                          what="b's child")
        self.assertEqual(len(kids), 1)

    def test_unrecorded_spawn_is_adopted_not_duplicated(self):
        """The window of a daemon killed between the spawn and recording the pid, made exact:
        the store says the instance has no pid yet, the process runs and carries its identity."""
        self.d.write_config([sleeper("a"), sleeper("b")])
        self.d.start()
        a = wait_service(self.d, "a", lambda x: x["state"] == "HEALTHY" and x["pid"], what="a up")
        b = wait_service(self.d, "b", lambda x: x["state"] == "HEALTHY" and x["pid"], what="b up")
        self.d.kill9()
        c = sqlite3.connect(os.path.join(self.d.state, "herd.db"))
        c.execute("UPDATE instances SET pid = 0, starttime = 0 WHERE id = ?", (a["instance"],))
        c.commit()
        c.close()
        self.d.start()
        s = wait_service(self.d, "a", lambda x: x["state"] == "HEALTHY" and x["pid"], what="a re-adopted")
        self.assertEqual((s["pid"], s["instance"]), (a["pid"], a["instance"]), "the same process, not a new one")
        self.assertEqual(self.d.service("b")["pid"], b["pid"])
        self.assertIn("found pid %d of instance %d by its identity" % (a["pid"], a["instance"]),
                      open(os.path.join(self.d.state, "logs", "a.log")).read())
        self.assertEqual(sorted(marked(herd_id_of(self.d))), sorted([a["pid"], b["pid"]]))

    def test_processes_of_no_live_instance_are_killed_at_start(self):
        self.d.write_config([sleeper("a", command=["sh", "-c", "sleep 1000 & wait"])])
        self.d.start()
        a = wait_service(self.d, "a", lambda x: x["state"] == "HEALTHY" and x["pid"], what="a up")
        hid = herd_id_of(self.d)
        kid = wait_until(lambda: [p for p, i in marked(hid).items() if p != a["pid"]], what="a's child")[0]
        self.d.kill9()
        # Processes carrying this herd's identity for instances no service runs: an id the
        # store never saw (a spawn whose row was never committed) and an instance that ended.
        env = dict(os.environ, HERD_INSTANCE="%s:%d" % (hid, 999999))
        ghost = subprocess.Popen(["sleep", "1000"], env=env, start_new_session=True)
        other = subprocess.Popen(["sleep", "1000"], env=dict(os.environ, HERD_INSTANCE="ffffffff:1"),
                                 start_new_session=True)
        try:
            self.d.start()
            wait_until(lambda: ghost.poll() is not None, timeout=10, what="the orphan killed")
            self.assertEqual(ghost.returncode, -signal.SIGKILL)
            self.assertIn("killed pid %d (instance 999999)" % ghost.pid, self.d.log())
            # Another herd's process (another state dir) is none of ours; the live instance
            # and its child are adopted, not killed.
            self.assertIsNone(other.poll())
            s = wait_service(self.d, "a", lambda x: x["state"] == "HEALTHY" and x["pid"], what="a adopted")
            self.assertEqual(s["pid"], a["pid"])
            self.assertTrue(pid_alive(kid))
        finally:
            for p in (ghost, other):
                if p.poll() is None:
                    p.kill()
                p.wait()

    def test_kill9_storm_leaves_no_unknown_process(self):
        """herd SIGKILLed again and again while clients start, stop and restart services:
        after each restart every process carrying its identity belongs to the instance its
        service runs now, no service runs twice, and a final stop leaves nothing."""
        names = ["s%02d" % i for i in range(16)]
        arg = {n: "77%03d" % i for i, n in enumerate(names)}  # each service's own `sleep` argument
        self.d.write_config([sleeper(n, command=["sleep", arg[n]]) for n in names])
        rounds = int(os.environ.get("HERD_STORM_ROUNDS", "12"))
        rng = random.Random(11)

        def running():
            """{pid: service} of every `sleep` process of these services, known to herd or not."""
            by_arg = {a: n for n, a in arg.items()}
            out = {}
            for p in os.listdir("/proc"):
                cl = open_cmdline(int(p)) if p.isdigit() else None
                if cl and len(cl) == 2 and cl[0] == "sleep" and cl[1] in by_arg and pid_alive(int(p)):
                    out[int(p)] = by_arg[cl[1]]
            return out

        for rnd in range(rounds):
            self.d.start()
            stop = threading.Event()

            def client(seed):
                r = random.Random(seed)
                while not stop.is_set():
                    n = r.choice(names)
                    try:
                        self.d.request("POST", "/v1/services/%s/%s" % (n, r.choice(["start", "stop", "restart"])),
                                       timeout=5)
                    except Exception:  # the daemon is being killed under us
                        return

            threads = [threading.Thread(target=client, args=(rnd * 10 + k,)) for k in range(4)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 0.4))  # the storm runs for a random while: when to kill is the point
            self.d.kill9()
            stop.set()
            for t in threads:
                t.join()
        self.d.start()
        # Everything settles: each wanted service runs one instance, the rest are stopped.
        for n in names:
            wait_service(self.d, n, lambda x: x["state"] in ("HEALTHY", "STOPPED") and
                         (x["state"] == "STOPPED") == (x["pid"] is None), timeout=20, what=n)
        svcs = self.d.services()
        known = {s["pid"]: n for n, s in svcs.items() if s["pid"]}
        procs = running()
        unknown = {p: n for p, n in procs.items() if known.get(p) != n}
        self.assertEqual(unknown, {}, "processes of these services that herd does not run as their instance")
        self.assertEqual(sorted(procs), sorted(known), "one process per running service")
        # A final stop of everything and a clean shutdown leave nothing behind.
        self.d.cli("stop", "*", "--wait", check=True)
        self.d.stop()
        wait_until(lambda: not running(), timeout=10, what="no process of these services left")


class Cgroups(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        self.d.write_config([
            sleeper("escapes", command=["sh", "-c", "setsid sleep 1001 & exec sleep 1000"]),
            sleeper("detaches", command=["sh", "-c", "setsid sleep 1002 & exit 0"], restart="never"),
        ])
        self.d.start()
        if not cgroups_on(self.d):
            st, info = self.d.request("GET", "/v1/daemon")
            self.skipTest("no cgroups here: %s" % info["cgroups"]["why"])

    def escaped(self, arg):
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and
                open_cmdline(int(p)) == ["sleep", arg]]

    def test_setsid_child_is_stopped_with_its_service(self):
        s = wait_service(self.d, "escapes", lambda x: x["state"] == "HEALTHY" and x["pid"], what="up")
        self.assertTrue(s["cgroup"].endswith("/svc-escapes"), s["cgroup"])
        kid = wait_until(lambda: self.escaped("1001"), what="the setsid child")[0]
        self.assertNotEqual(os.getsid(kid), s["pid"], "it left the service's session")
        with open(os.path.join(s["cgroup"], "cgroup.procs")) as f:
            self.assertIn(kid, [int(x) for x in f.read().split()])
        # A restart leaves no orphan: the old instance's escapee goes with it.
        st, _ = self.d.request("POST", "/v1/services/escapes/restart")
        self.assertEqual(st, 200)
        wait_until(lambda: not pid_alive(kid), timeout=10, what="the old escapee gone")
        wait_until(lambda: len(self.escaped("1001")) == 1, timeout=10, what="one escapee, the new instance's")
        kid2 = self.escaped("1001")[0]
        self.d.cli("stop", "escapes", "--wait", check=True)
        wait_until(lambda: not pid_alive(kid2), timeout=10, what="the stop reached the setsid child")

    def test_main_exiting_0_leaving_processes_is_a_failure(self):
        s = self.d.wait_state("detaches", "FAILED", timeout=10)
        self.assertIn("main process exited 0 leaving 1 process running (killed)", s["reason"])
        wait_until(lambda: not self.escaped("1002"), timeout=10, what="the detached process killed")

    def test_a_restarted_daemon_kills_what_a_dead_instance_left(self):
        s = wait_service(self.d, "escapes", lambda x: x["state"] == "HEALTHY" and x["pid"], what="up")
        kid = wait_until(lambda: self.escaped("1001"), what="the setsid child")[0]
        self.d.kill9()
        os.kill(s["pid"], signal.SIGKILL)  # the main process dies while no daemon watches
        wait_until(lambda: not pid_alive(s["pid"]), what="main gone")
        self.d.start()
        wait_until(lambda: not pid_alive(kid), timeout=10, what="the dead instance's escapee killed")
        s2 = wait_service(self.d, "escapes", lambda x: x["state"] == "HEALTHY" and x["pid"], what="restarted")
        self.assertNotEqual(s2["pid"], s["pid"])


class CgroupsOff(SanitizedSuiteTest):
    def test_off_means_process_groups_and_says_so(self):
        self.d.write_config([sleeper("plain")])
        self.d.start(extra=["--cgroups", "off"])
        st, info = self.d.request("GET", "/v1/daemon")
        self.assertEqual(info["cgroups"], {"enabled": False, "why": "--cgroups off"})
        s = wait_service(self.d, "plain", lambda x: x["state"] == "HEALTHY" and x["pid"], what="up")
        self.assertIsNone(s["cgroup"])
        with open("/proc/%d/cgroup" % s["pid"]) as f:
            self.assertNotIn("svc-plain", f.read())
        self.assertIn("no cgroups (--cgroups off)", self.d.log())

    def test_bad_value(self):
        r = subprocess.run([HERD_BIN, "daemon", "--state-dir", os.path.join(self.d.root, "x"), "--cgroups", "yes"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--cgroups must be auto or off", r.stderr)


def open_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return None


if __name__ == "__main__":
    main()
