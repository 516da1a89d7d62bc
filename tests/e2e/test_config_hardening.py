"""Config files that are not what they seem (issue 11): a FIFO, a symlink to /dev/zero, a
file past the 16 MiB cap, a directory named *.json, a file herd may not read. At start-up
each is an error naming the path (exit 100, nothing hangs); on a reload each is refused with
that error while the daemon stays up and running services are untouched. Also: durations
past 365 days, an empty program and fractional counts are refused from files and from the
API alike, and loading 10,000 chained services is quick."""
import json
import os
import pwd
import re
import signal
import subprocess
import time

from harness import HERD_BIN, SanitizedSuiteTest, checked_request, main, wait_until

MiB = 1 << 20


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0, "stop": {"grace": "2s"}}
    d.update(kw)
    return d


def pos_of(text, needle):
    i = text.index(needle)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


class Hardening(SanitizedSuiteTest):
    # -- helpers ---------------------------------------------------------------------
    def run_daemon(self, timeout=20, **kw):
        """A daemon expected to refuse its config: returns the finished process."""
        return subprocess.run([HERD_BIN, "daemon", "--config", self.d.confdir, "--state-dir", self.d.state],
                              capture_output=True, text=True, timeout=timeout, env=self.d.env, **kw)

    def assert_refused(self, r, path, *words):
        self.assertEqual(r.returncode, 100, "exit %d\nstderr: %s" % (r.returncode, r.stderr))
        lines = [l for l in r.stderr.splitlines() if l.startswith(path + ":")]
        self.assertTrue(lines, "no error line for %s in:\n%s" % (path, r.stderr))
        for w in words:
            self.assertTrue(any(w in l for l in lines), "%r not in %s" % (w, lines))
        self.assertNotIn("Input/output error", r.stderr)
        for mark in self.SAN_MARKS:
            self.assertNotIn(mark, r.stderr)
        return lines

    def start_keep(self):
        self.d.write_config([svc("keep")], name="a.json")
        self.d.start()
        return self.d.wait_state("keep", "HEALTHY")["pid"]

    def assert_reload_refused(self, keep_pid, path, *words):
        t0 = time.monotonic()
        st, body = checked_request(self.d, "POST", "/v1/reload", timeout=15)
        took = time.monotonic() - t0
        self.assertEqual(st, 422, body)
        errs = body["error"]["errors"]
        mine = [e for e in errs if e["file"] == path]
        self.assertTrue(mine, "no error for %s: %s" % (path, errs))
        for w in words:
            self.assertTrue(any(w in e["message"] for e in mine), "%r not in %s" % (w, mine))
        self.assertLess(took, 10, "the reload held the daemon %.1fs" % took)
        self.assertIsNone(self.d.proc.poll(), "the daemon must stay up")
        s = self.d.service("keep")
        self.assertEqual((s["pid"], s["state"], s["restarts"]), (keep_pid, "HEALTHY", 0), "keep was touched")
        self.assertEqual(sorted(self.d.services()), ["keep"])
        return mine

    # -- start-up ----------------------------------------------------------------------
    def test_fifo_at_startup(self):
        path = os.path.join(self.d.confdir, "pipe.json")
        os.mkfifo(path)
        r = self.run_daemon()
        self.assert_refused(r, path, "named pipe (FIFO)", "only regular files")

    def test_dev_zero_symlink_at_startup(self):
        path = os.path.join(self.d.confdir, "zero.json")
        os.symlink("/dev/zero", path)
        r = self.run_daemon()
        self.assert_refused(r, path, "a symlink to /dev/zero", "character device")

    def test_symlink_to_a_regular_file_is_fine(self):
        real = os.path.join(self.d.root, "real.json")
        with open(real, "w") as f:
            json.dump(svc("linked"), f)
        os.symlink(real, os.path.join(self.d.confdir, "linked.json"))
        self.d.start()
        self.d.wait_state("linked", "HEALTHY")

    def test_dangling_symlink_names_its_target(self):
        path = os.path.join(self.d.confdir, "gone.json")
        os.symlink("/nonexistent/herd.json", path)
        r = self.run_daemon()
        self.assert_refused(r, path, "a symlink to /nonexistent/herd.json", "No such file or directory")

    def test_file_past_the_cap_at_startup(self):
        # Valid JSON, padded past 16 MiB: refused for its size, not read whole.
        path = os.path.join(self.d.confdir, "big.json")
        head = json.dumps(svc("big"))
        with open(path, "w") as f:
            f.write(head + " " * (16 * MiB + 1 - len(head)))
        r = self.run_daemon()
        self.assert_refused(r, path, "%d bytes" % (16 * MiB + 1), "at most 16 MiB")
        # At the cap exactly, it loads.
        os.truncate(path, 16 * MiB)
        self.d.start()
        self.d.wait_state("big", "HEALTHY")

    def test_directory_named_json_at_startup(self):
        path = os.path.join(self.d.confdir, "x.json")
        os.mkdir(path)
        r = self.run_daemon()
        self.assert_refused(r, path, "is a directory")

    def run_as_nobody(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run the daemon as another user")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        os.chmod(self.d.root, 0o755)
        os.chmod(self.d.confdir, 0o755)
        os.makedirs(self.d.state, exist_ok=True)
        os.chown(self.d.state, nobody.pw_uid, nobody.pw_gid)
        return dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])

    def test_permission_denied_names_the_path(self):
        ids = self.run_as_nobody()
        self.d.write_config([svc("keep")], name="a.json")
        path = self.d.write_config([svc("hidden")], name="b.json")
        os.chmod(path, 0o600)  # root's
        r = self.run_daemon(**ids)
        lines = self.assert_refused(r, path, "Permission denied", "uid %d" % ids["user"])
        self.assertTrue(any(("cannot read " + path) in l for l in lines), lines)

    def test_duration_bound_at_startup(self):
        text = '{"services": [\n  {"name": "web", "command": ["true"],\n   "stop": {"grace": 1e300}}\n]}\n'
        path = self.d.write_config(text)
        r = self.run_daemon()
        line, col = pos_of(text, "1e300")
        lines = self.assert_refused(r, path, "at most 365d")
        self.assertTrue(any(l.startswith("%s:%d:%d: services[0].stop.grace: " % (path, line, col)) for l in lines),
                        lines)

    # -- reload ------------------------------------------------------------------------
    def test_reload_refuses_each_bad_file(self):
        pid = self.start_keep()
        c = self.d.confdir

        path = os.path.join(c, "pipe.json")
        os.mkfifo(path)
        self.assert_reload_refused(pid, path, "named pipe (FIFO)")
        os.unlink(path)

        path = os.path.join(c, "zero.json")
        os.symlink("/dev/zero", path)
        self.assert_reload_refused(pid, path, "character device", "/dev/zero")
        os.unlink(path)

        path = os.path.join(c, "big.json")
        with open(path, "w") as f:
            f.write(json.dumps(svc("big")) + " " * (16 * MiB))
        self.assert_reload_refused(pid, path, "at most 16 MiB")
        os.unlink(path)

        path = os.path.join(c, "dir.json")
        os.mkdir(path)
        self.assert_reload_refused(pid, path, "is a directory")
        os.rmdir(path)

        path = self.d.write_config([svc("keep", stop={"grace": 1e300})], name="a.json")
        mine = self.assert_reload_refused(pid, path, "at most 365d")
        self.assertEqual(mine[0]["field"], "services[0].stop.grace")
        self.d.write_config([svc("keep")], name="a.json")

        # Everything removed again: the reload goes through and changes nothing.
        st, body = checked_request(self.d, "POST", "/v1/reload")
        self.assertEqual(st, 200, body)
        self.assertEqual((body["added"], body["changed"], body["removed"], body["unchanged"]), ([], [], [], 1))

    def test_sighup_with_a_fifo_keeps_the_loop_running(self):
        pid = self.start_keep()
        path = os.path.join(self.d.confdir, "pipe.json")
        os.mkfifo(path)
        self.d.signal(signal.SIGHUP)
        wait_until(lambda: re.search(r"reload: %s:1:1: .*named pipe" % re.escape(path), self.d.log()), timeout=10,
                   what="the SIGHUP reload to log the FIFO")
        st, _ = checked_request(self.d, "GET", "/v1/daemon", timeout=5)
        self.assertEqual(st, 200)
        s = self.d.service("keep")
        self.assertEqual((s["pid"], s["state"]), (pid, "HEALTHY"))

    def test_reload_permission_denied(self):
        ids = self.run_as_nobody()
        self.d.write_config([svc("keep")], name="a.json")
        self.d.logf = open(self.d.log_path, "ab")
        self.d.proc = subprocess.Popen([HERD_BIN, "daemon", "--config", self.d.confdir, "--state-dir", self.d.state,
                                        "--log-level", "debug"], stdout=self.d.logf, stderr=subprocess.STDOUT,
                                       env=self.d.env, **ids)
        self.d.wait_socket()
        pid = self.d.wait_state("keep", "HEALTHY")["pid"]
        path = self.d.write_config([svc("hidden")], name="b.json")
        os.chmod(path, 0o600)
        mine = self.assert_reload_refused(pid, path, "Permission denied", "uid %d" % ids["user"])
        self.assertIn("cannot read " + path, mine[0]["message"])

    def test_reload_of_10000_chained_services_is_quick(self):
        # 10,000 services, each depending on the one before, and the last on one that does not
        # exist: loaded and validated completely, then refused. This took 14-22 s (quadratic).
        pid = self.start_keep()
        specs = [svc("s%05d" % i, depends_on=["s%05d" % (i - 1)] if i else []) for i in range(10000)]
        specs[-1]["depends_on"].append("no-such-service")
        path = self.d.write_config(specs, name="b.json")
        mine = self.assert_reload_refused(pid, path, "no-such-service")
        self.assertEqual(mine[0]["field"], "s09999.depends_on")
        text = open(path).read()
        self.assertEqual(mine[0]["line"], pos_of(text, '"no-such-service"')[0])

    # -- the API -----------------------------------------------------------------------
    def test_api_specs_get_the_same_bounds(self):
        self.d.start()
        cases = [
            (svc("a", stop={"grace": 1e300}), "stop.grace", "at most 365d"),
            (svc("a", start_timeout="400d"), "start_timeout", "at most 365d"),
            (svc("a", command=[""]), "command[0]", "the program to run is empty"),
            (svc("a", log={"keep": 1.5}), "log.keep", "integer"),
        ]
        for spec, field, words in cases:
            st, body = checked_request(self.d, "POST", "/v1/services", body=spec)
            self.assertEqual(st, 422, body)
            e = body["error"]["errors"][0]
            self.assertEqual((e["file"], e["field"]), ("request body", field), body)
            self.assertIn(words, e["message"])
            self.assertGreater(e["column"], 1)
        self.assertEqual(self.d.services(), {})
        # ready_after 0 + reset_after 0: accepted, reset_after raised, with a warning.
        st, body = checked_request(self.d, "POST", "/v1/services",
                                   body=svc("b", backoff={"initial": 0, "reset_after": 0}))
        self.assertEqual(st, 201, body)
        wait_until(lambda: "request body:1:" in self.d.log() and "backoff.reset_after" in self.d.log(), timeout=5,
                   what="the reset_after warning")


if __name__ == "__main__":
    main()
