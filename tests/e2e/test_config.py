"""Bad configuration at start-up: exit code 100 and every error as file:line:col: field:
message on stderr. Also the state-dir lock (exit 101)."""
import os
import subprocess

from harness import HERD_BIN, SuiteTest, main


def pos_of(text, needle, nth=0):
    """1-based (line, column) of the nth occurrence of needle in text."""
    i = -1
    for _ in range(nth + 1):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


class StartupConfig(SuiteTest):
    def run_daemon(self, timeout=10):
        r = subprocess.run([HERD_BIN, "daemon", "--config", self.d.confdir, "--state-dir", self.d.state],
                           capture_output=True, text=True, timeout=timeout, env=self.d.env)
        return r

    def assert_config_error(self, r, path, line, col, field=None, words=()):
        self.assertEqual(r.returncode, 100, "exit %d\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout, r.stderr))
        prefix = "%s:%d:%d: " % (path, line, col)
        lines = [l for l in r.stderr.splitlines() if l.startswith(prefix)]
        self.assertTrue(lines, "no error line starting with %r in:\n%s" % (prefix, r.stderr))
        if field is not None:
            self.assertTrue(any(l.startswith(prefix + field + ": ") for l in lines),
                            "error at %s does not name field %r:\n%s" % (prefix, field, r.stderr))
        for w in words:
            self.assertTrue(any(w in l for l in lines), "%r not in %s" % (w, lines))
        self.assertFalse(os.path.exists(self.d.sock), "a daemon with a bad config must not listen")

    def test_invalid_json(self):
        text = '{\n  "name": "web",\n  "command": ["sleep", "1"],\n}\n'
        path = self.d.write_config(text, name="web.json")
        r = self.run_daemon()
        # jansson reports the '}' after the trailing comma.
        line, col = pos_of(text, "}", nth=0)
        self.assertEqual(r.returncode, 100, r.stderr)
        self.assertRegex(r.stderr, r"(?m)^%s:%d:\d+: invalid JSON" % (path, line))
        self.assertNotIn("Traceback", r.stderr)

    def test_unknown_key_typo(self):
        text = ('{\n  "services": [\n    {"name": "ok", "command": ["sleep", "1"]},\n'
                '    {"name": "db", "comand": ["sleep", "1"]}\n  ]\n}\n')
        path = self.d.write_config(text)
        r = self.run_daemon()
        line, col = pos_of(text, '"comand"')
        self.assert_config_error(r, path, line, col, "services[1].comand", words=["unknown key", "command"])

    def test_bad_duration_points_at_the_value(self):
        text = ('{\n  "services": [\n    {"name": "web", "command": ["sleep", "1"],\n'
                '     "backoff": {"initial": "5 parsecs"}}\n  ]\n}\n')
        path = self.d.write_config(text)
        r = self.run_daemon()
        line, col = pos_of(text, '"5 parsecs"')
        self.assert_config_error(r, path, line, col, "services[0].backoff.initial", words=["5 parsecs"])

    def test_bad_duration_single_service_file(self):
        text = '{"name": "web", "command": ["true"],\n "stop": {"grace": "5 parsecs"}}\n'
        path = self.d.write_config(text, name="web.json")
        r = self.run_daemon()
        line, col = pos_of(text, '"5 parsecs"')
        self.assert_config_error(r, path, line, col, "stop.grace", words=["duration"])

    def test_duplicate_names_across_files(self):
        self.d.write_config('{"name": "dup", "command": ["sleep", "1"]}\n', name="a.json")
        text = '{"services": [\n  {"name": "other", "command": ["sleep", "1"]},\n  {"name": "dup", "command": ["true"]}\n]}\n'
        path_b = self.d.write_config(text, name="b.json")
        r = self.run_daemon()
        line, _ = pos_of(text, '"dup"')
        self.assertEqual(r.returncode, 100, r.stderr)
        self.assertRegex(r.stderr, r"(?m)^%s:%d:\d+: services\[1\]\.name: .*dup" % (path_b, line))
        self.assertIn("a.json", r.stderr)

    def test_config_check_without_a_daemon(self):
        """`herd config check DIR` says what the daemon would, and exits 100, with no daemon."""
        text = ('{"services": [\n  {"name": "a", "command": ["true"], "stop": {"grace": "5 parsecs"}},\n'
                '  {"name": "b", "command": ["true"], "restart": "sometimes"}\n]}\n')
        path = self.d.write_config(text)
        r = subprocess.run([HERD_BIN, "config", "check", self.d.confdir], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 100, r.stderr)
        line, col = pos_of(text, '"5 parsecs"')
        self.assertIn("%s:%d:%d: services[0].stop.grace: expected a duration" % (path, line, col), r.stderr)
        line, col = pos_of(text, '"sometimes"')
        self.assertIn("%s:%d:%d: services[1].restart: " % (path, line, col), r.stderr)
        self.assertIn("2 error(s)", r.stderr)
        # The daemon agrees, error for error.
        d = self.run_daemon()
        self.assertEqual(d.returncode, 100)
        self.assertEqual([l for l in d.stderr.splitlines() if l.startswith(path)],
                         [l for l in r.stderr.splitlines() if l.startswith(path)])
        # Fixed: ok, exit 0; a missing directory and bad usage are errors too.
        self.d.write_config('{"services": [{"name": "a", "command": ["true"], "depends_on": ["b"]},'
                            ' {"name": "b", "command": ["true"]}]}\n')
        r = subprocess.run([HERD_BIN, "config", "check", self.d.confdir], capture_output=True, text=True, timeout=10)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "%s: 2 service(s), 0 cluster(s), 0 host(s): ok"
                                                              % self.d.confdir), r.stderr)
        r = subprocess.run([HERD_BIN, "config", "check", self.d.confdir + "/nope"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 100)
        self.assertIn("cannot open config directory", r.stderr)
        r = subprocess.run([HERD_BIN, "config", "lint"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: herd config check DIR", r.stderr)
        self.assertFalse(os.path.exists(self.d.sock))

    def test_every_error_is_reported(self):
        text = ('{"services": [\n  {"name": "Bad Name", "command": ["true"]},\n'
                '  {"name": "b", "command": ["true"], "restart": "sometimes"},\n'
                '  {"name": "c", "command": ["true"], "log": {"max_size": 10}}\n]}\n')
        path = self.d.write_config(text)
        r = self.run_daemon()
        self.assertEqual(r.returncode, 100, r.stderr)
        for field, needle in (("services[0].name", '"name": "Bad Name"'),
                              ("services[1].restart", '"restart"'),
                              ("services[2].log.max_size", '"max_size"')):
            line, _ = pos_of(text, needle)
            self.assertRegex(r.stderr, r"(?m)^%s:%d:\d+: %s: " % (path, line, field.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")))

    def test_accepted_forms(self):
        # Every documented form of durations and sizes is accepted.
        self.d.write_config([
            {"name": "a", "command": ["sleep", "1000"], "ready_after": "250ms",
             "backoff": {"initial": "1.5s", "max": "2m", "multiplier": 3, "jitter": 0, "reset_after": "1h"},
             "stop": {"signal": "SIGINT", "grace": 2.5}, "start_timeout": 30, "log": {"max_size": "512K", "keep": 0},
             "tags": [], "env": {}, "restart": "on-failure"},
            {"name": "b.c_d-9", "command": ["sleep", "1000"], "ready_after": 0, "stop": {"signal": 15},
             "log": {"max_size": 1024}}])
        self.d.start()
        self.d.wait_state("a", "HEALTHY")
        self.d.wait_state("b.c_d-9", "HEALTHY")

    def test_missing_config_dir(self):
        missing = self.d.confdir + "-missing"
        r = subprocess.run([HERD_BIN, "daemon", "--config", missing, "--state-dir", self.d.state],
                           capture_output=True, text=True, timeout=10, env=self.d.env)
        self.assertEqual(r.returncode, 100, r.stderr)
        self.assertIn(missing, r.stderr)

    def test_out_of_range_values(self):
        text = ('{"services": [\n {"name": "a", "command": ["true"], "log": {"max_size": 1023, "keep": 101}},\n'
                ' {"name": "b", "command": [], "backoff": {"initial": "2s", "max": "1s", "jitter": 1.5}},\n'
                ' {"name": "c", "command": ["true"], "ready_after": -1, "stop": {"signal": "NOPE"}}\n], "x": 1}\n')
        path = self.d.write_config(text)
        r = self.run_daemon()
        self.assertEqual(r.returncode, 100, r.stderr)
        for field in ("services[0].log.max_size", "services[0].log.keep", "services[1].command",
                      "services[1].backoff.max", "services[1].backoff.jitter", "services[2].ready_after",
                      "services[2].stop.signal", "x"):
            self.assertRegex(r.stderr, r"(?m)^%s:\d+:\d+: %s: " % (path, field.replace("[", r"\[").replace(
                "]", r"\]").replace(".", r"\.")), "no error for %s" % field)

    def test_second_daemon_on_same_state_dir_refused(self):
        self.d.write_config([{"name": "web", "command": ["sleep", "1000"], "ready_after": 0}])
        self.d.start()
        r = self.run_daemon()
        self.assertEqual(r.returncode, 101, r.stderr)
        self.assertIn("pid %d" % self.d.proc.pid, r.stderr)
        # The first daemon is unharmed.
        st, _ = self.d.request("GET", "/v1/daemon")
        self.assertEqual(st, 200)


if __name__ == "__main__":
    main()
