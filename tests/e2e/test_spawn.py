"""How instances are started: environment, cwd, user, spawn failures, and the restart
policies after a clean or failed exit."""
import os
import time

from harness import environ_bytes, SuiteTest, main, wait_until


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0}
    d.update(kw)
    return d


def proc_environ(pid):
    return dict(kv.split(b"=", 1) for kv in environ_bytes(pid).split(b"\0") if b"=" in kv)


class Spawn(SuiteTest):
    def test_env_cwd_user(self):
        work = os.path.join(self.d.root, "work")
        os.mkdir(work)
        self.d.env["HERD_LEAK"] = "no"
        self.d.env["FROM_HERD"] = "yes"
        self.d.write_config([svc("envy", env={"GREETING": "hi there", "FROM_HERD": "overridden", "NUM": 7},
                                 cwd=work),
                             svc("nob", user="nobody")])
        self.d.start()
        s = self.d.wait_state("envy", "HEALTHY")
        env = proc_environ(s["pid"])
        self.assertEqual(env[b"GREETING"], b"hi there")
        self.assertEqual(env[b"FROM_HERD"], b"overridden")
        self.assertEqual(env[b"NUM"], b"7")
        self.assertEqual(env[b"HERD_SERVICE"], b"envy")
        self.assertEqual(env[b"HERD_ATTEMPT"], b"1")
        self.assertNotIn(b"HERD_LEAK", env, "herd's own HERD_* variables leak into services")
        self.assertEqual(os.readlink("/proc/%d/cwd" % s["pid"]), work)
        # Own session and process group.
        self.assertEqual(os.getsid(s["pid"]), s["pid"])
        self.assertEqual(os.getpgid(s["pid"]), s["pid"])
        n = self.d.wait_state("nob", "HEALTHY")
        st = os.stat("/proc/%d" % n["pid"])
        self.assertEqual((st.st_uid, st.st_gid), (65534, 65534))

    def test_signal_dispositions_are_the_defaults(self):
        """herd ignores and catches signals of its own (SIGPIPE, SIGCHLD, SIGTERM...): a
        service starts with every disposition at its default, nothing ignored or caught."""
        out = os.path.join(self.d.root, "sig")
        self.d.write_config([{"name": "sig", "command": ["sh", "-c", "grep -E '^Sig(Ign|Cgt)' /proc/$$/status > %s.tmp; "
                              "mv %s.tmp %s; exec sleep 100" % (out, out, out)]}])
        self.d.start()
        wait_until(lambda: os.path.exists(out), timeout=20, what="the service's dispositions")
        with open("/proc/%d/status" % self.d.proc.pid) as f:
            mine = {l.split(":")[0]: int(l.split()[1], 16) for l in f if l.startswith(("SigIgn", "SigCgt"))}
        self.assertTrue(mine["SigIgn"] | mine["SigCgt"], "herd itself has dispositions to reset")
        with open(out) as f:
            got = {l.split(":")[0]: int(l.split()[1], 16) for l in f}
        # (sh catches nothing by itself here; whatever it ignored came from its parent)
        self.assertEqual(got["SigIgn"], 0, "a signal herd ignores stayed ignored in the service")

    def test_attempt_counts_up_in_env(self):
        self.d.write_config([svc("k", backoff={"initial": 0})])
        self.d.start()
        pid = self.d.wait_state("k", "HEALTHY")["pid"]
        os.kill(pid, 9)
        s = wait_until(lambda: (lambda s: s if s["pid"] not in (None, pid) else None)(self.d.service("k")),
                       timeout=5, what="a second instance")
        self.assertEqual(s["attempt"], 2)
        self.assertEqual(proc_environ(s["pid"])[b"HERD_ATTEMPT"], b"2")

    def check_missing_binary(self, ready_after):
        self.d.write_config([svc("ghost", command=["/nonexistent/ghost-binary"], ready_after=ready_after,
                                 backoff={"initial": "5s", "max": "5s"})])
        self.d.start()
        try:
            s = self.d.wait_state("ghost", "BACKOFF", timeout=5)
        except AssertionError:
            self.d.proc.kill()  # it may not be able to shut down either
            raise
        self.assertIsNone(s["pid"])
        self.assertIn("cannot start /nonexistent/ghost-binary", s["last_error"] or "")
        evs = [e["to"] for e in self.d.events(service="ghost")]
        self.assertEqual(evs[-3:], ["STARTING", "FAILED", "BACKOFF"], evs)
        st, body = self.d.request("GET", "/v1/services/ghost/logs", raw=True)
        self.assertIn(b"cannot start /nonexistent/ghost-binary", body)
        # Nothing runs, so a shutdown is immediate.
        self.d.signal(15)
        self.assertEqual(self.d.wait_exit(timeout=5), 0)

    def test_missing_binary_fails_with_reason_and_backs_off(self):
        self.check_missing_binary("1s")

    def test_missing_binary_with_ready_after_0(self):
        # ready_after 0 makes STARTING -> HEALTHY immediate; a spawn failure must still
        # end the instance as FAILED, not leave a HEALTHY service without a process.
        self.check_missing_binary(0)

    def test_missing_cwd_is_named_not_the_command(self):
        missing = os.path.join(self.d.root, "no-such-dir")
        self.d.write_config([{"name": "lost", "command": ["sleep", "1000"], "cwd": missing, "ready_after": 0,
                              "restart": "never"}])
        self.d.start()
        s = self.d.wait_state("lost", "FAILED", timeout=10)
        self.assertIn("cannot start sleep: cwd %s: No such file or directory" % missing, s["last_error"] or "")
        st, body = self.d.request("GET", "/v1/services/lost/logs", raw=True)
        self.assertIn(("cwd %s: No such file or directory" % missing).encode(), body)

    def test_restart_policies(self):
        ok = ["/bin/sh", "-c", "exit 0"]
        bad = ["/bin/sh", "-c", "exit 2"]
        b = {"initial": 0, "max": "1s"}
        self.d.write_config([svc("of-ok", command=ok, restart="on-failure", ready_after="1s", backoff=b),
                             svc("of-bad", command=bad, restart="on-failure", ready_after="1s", backoff=b),
                             svc("nv-bad", command=bad, restart="never", ready_after="1s", backoff=b),
                             svc("al-ok", command=ok, restart="always", ready_after="1s", backoff=b)])
        self.d.start()
        self.d.wait_state("of-ok", "COMPLETED")
        self.d.wait_state("nv-bad", "FAILED")
        wait_until(lambda: self.d.service("of-bad")["attempt"] >= 3, timeout=5, what="on-failure to restart")
        wait_until(lambda: self.d.service("al-ok")["attempt"] >= 3, timeout=5, what="always to restart")
        time.sleep(0.5)
        s = self.d.service("of-ok")
        self.assertEqual((s["state"], s["attempt"], s["last_exit"]["code"]), ("COMPLETED", 1, 0))
        s = self.d.service("nv-bad")
        self.assertEqual((s["state"], s["attempt"], s["last_exit"]["code"]), ("FAILED", 1, 2))
        self.assertEqual(s["last_error"], "exited with code 2 while starting")
        self.assertEqual(self.d.service("of-bad")["last_exit"]["code"], 2)


if __name__ == "__main__":
    main()
