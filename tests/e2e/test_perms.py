"""File modes in the state dir: herd.db holds every spec's env (secrets) and logs/ every
service's output, so the state dir and its subdirectories are 0700 and every file herd makes
there 0600, on a fresh state dir and on one left wide open by an older herd (tightened at
start, in one log line). Another user (nobody) can neither list nor read any of it; with
--read-group the group may only pass through the state dir to reach the socket."""
import grp
import os
import stat
import subprocess
import sys

from harness import SanitizedSuiteTest, main, run_as, wait_until

NOBODY = 65534
NOGROUP = 65534
SECRET = "hunter2-s3cret-%d" % os.getpid()


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def as_nobody(argv):
    """Run argv as nobody:nogroup with no supplementary groups; (returncode, stderr)."""
    def drop():
        os.setgroups([])
        os.setgid(NOGROUP)
        os.setuid(NOBODY)
    r = subprocess.run(argv, preexec_fn=drop, capture_output=True, text=True, timeout=30, cwd="/")
    return r.returncode, r.stderr


class Perms(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to run a check as another user")
        os.chmod(self.d.root, 0o755)  # only the state dir itself may stand in nobody's way
        self.d.write_config([])

    def add_secret_service(self, name="vault"):
        st, body = self.d.request("POST", "/v1/services", {
            "name": name, "command": ["sh", "-c", "echo started with $API_TOKEN; exec sleep 1000"],
            "env": {"API_TOKEN": SECRET}, "ready_after": 0})
        self.assertEqual(st, 201, body)
        self.d.wait_state(name, "HEALTHY")
        log = os.path.join(self.d.state, "logs", name + ".log")
        def has_secret():
            with open(log) as f:
                return SECRET in f.read()
        wait_until(lambda: os.path.exists(log) and has_secret(), timeout=10, what="the service's output")
        return log

    def herd_paths(self, log):
        s = self.d.state
        return {"dirs": [s, os.path.join(s, "logs"), os.path.join(s, "run")],
                "files": [os.path.join(s, f) for f in ("herd.db", "herd.db-wal", "herd.db-shm", "herd.lock")] + [log]}

    def assert_private(self, log, dirmode=0o700):
        paths = self.herd_paths(log)
        self.assertEqual(mode(self.d.state), dirmode, "state dir")
        for d in paths["dirs"][1:]:
            self.assertEqual(mode(d), 0o700, d)
        for f in paths["files"]:
            self.assertEqual(mode(f), 0o600, f)
        # Everything herd made under the state dir, whatever its name: no bit for group or other
        # (the socket is 0600 too without --read-group).
        for dirpath, dirnames, filenames in os.walk(self.d.state):
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                self.assertEqual(mode(p) & 0o077, 0, "%s is %04o" % (p, mode(p)))
        # The secret is there to be read (the test means something) ...
        with open(os.path.join(self.d.state, "herd.db"), "rb") as f:
            db = f.read()
        with open(os.path.join(self.d.state, "herd.db-wal"), "rb") as f:
            db += f.read()
        self.assertIn(SECRET.encode(), db)
        # ... but not by another user: no listing, no reading, not even by a full path.
        for p in paths["dirs"]:
            rc, err = as_nobody(["ls", p])
            self.assertNotEqual(rc, 0, "nobody lists %s" % p)
            self.assertIn("Permission denied", err)
        for p in paths["files"]:
            rc, err = as_nobody(["cat", p])
            self.assertNotEqual(rc, 0, "nobody reads %s" % p)
            self.assertIn("Permission denied", err)

    def test_fresh_state_dir(self):
        self.assertFalse(os.path.exists(self.d.state))
        self.d.start()
        log = self.add_secret_service()
        self.assert_private(log)
        self.assertEqual(mode(self.d.sock), 0o600)
        self.assertNotIn("private to herd's user", self.d.log(), "nothing to tighten on a fresh dir")

    def test_premade_0755_state_dir(self):
        os.mkdir(self.d.state, 0o755)
        os.chmod(self.d.state, 0o755)
        self.d.start()
        self.assertIn("made 1 path(s) private to herd's user (first: %s was 0755)" % self.d.state, self.d.log())
        log = self.add_secret_service()
        self.assert_private(log)

    def test_older_herd_state_dir_is_tightened(self):
        # What an older herd left: state dir and logs/ 0755, herd.db and its WAL 0644, logs 0640.
        self.d.start()
        log = self.add_secret_service()
        self.d.request("POST", "/v1/services/vault/stop")
        self.d.wait_state("vault", "STOPPED")
        self.d.kill9()  # kill -9 leaves herd.db-wal and -shm behind, as a crash or an upgrade may
        s = self.d.state
        wide = {s: 0o755, os.path.join(s, "logs"): 0o755, os.path.join(s, "herd.db"): 0o644,
                os.path.join(s, "herd.db-wal"): 0o644, os.path.join(s, "herd.db-shm"): 0o644,
                os.path.join(s, "herd.lock"): 0o644, log: 0o640}
        for p, m in wide.items():
            self.assertTrue(os.path.exists(p), p)
            os.chmod(p, m)
        rc, _ = as_nobody(["cat", os.path.join(s, "herd.db")])
        self.assertEqual(rc, 0, "the widened copy is readable by anyone (what the fix is about)")
        # A file a service wrote into its working directory (the state dir) is its own business.
        theirs = os.path.join(s, "service-output.txt")
        with open(theirs, "w") as f:
            f.write("public\n")
        os.chmod(theirs, 0o644)

        self.d.start()
        lines = [l for l in self.d.log().splitlines() if "private to herd's user" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("made %d path(s) private" % len(wide), lines[0])
        self.assertIn("%s was 0755" % s, lines[0])
        self.assertEqual(mode(theirs), 0o644, "herd changed a file that is not its own")
        os.unlink(theirs)
        self.d.request("POST", "/v1/services/vault/start")
        self.d.wait_state("vault", "HEALTHY")
        self.assert_private(log)
        # A second start finds nothing to do and says nothing.
        self.d.stop()
        self.d.start()
        self.assertEqual(len([l for l in self.d.log().splitlines() if "private to herd's user" in l]), 1)

    def test_read_group_passes_through_to_the_socket_only(self):
        self.d.args = ["--read-group", grp.getgrgid(NOGROUP).gr_name]
        os.mkdir(self.d.state, 0o755)
        self.d.start()
        log = self.add_secret_service()
        st = os.stat(self.d.state)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_gid), (0o710, NOGROUP))
        self.assertEqual(mode(self.d.sock), 0o660)
        # The group reaches the socket and reads over it ...
        got = run_as(NOBODY, NOGROUP, lambda: self.d.request("GET", "/v1/services")[0])
        self.assertEqual(got, 200)
        # ... and nothing else: no listing of the state dir, no file.
        rc, err = as_nobody(["ls", self.d.state])
        self.assertNotEqual(rc, 0)
        for p in self.herd_paths(log)["files"]:
            self.assertEqual(mode(p), 0o600, p)
            rc, err = as_nobody(["cat", p])
            self.assertNotEqual(rc, 0, "nobody reads %s" % p)
        # Without --read-group again: 0700.
        self.d.stop()
        self.d.args = []
        self.d.start()
        self.assertEqual(mode(self.d.state), 0o700)

    def test_shared_dir_is_not_changed(self):
        # A sticky, world-writable directory (a /tmp) is not herd's to chmod: a warning instead.
        os.mkdir(self.d.state)
        os.chmod(self.d.state, 0o1777)
        self.d.start()
        self.assertEqual(mode(self.d.state), 0o1777)
        self.assertIn("is not private (mode 1777", self.d.log())
        log = self.add_secret_service()
        for p in self.herd_paths(log)["files"]:
            self.assertEqual(mode(p), 0o600, p)


if __name__ == "__main__":
    sys.exit(main())
