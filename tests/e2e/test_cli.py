"""The CLI's commands and exit codes, and the list filters they rely on."""
import json
import os
import subprocess

from harness import HERD_BIN, SuiteTest, main, pid_alive, wait_until


def svc(name, **kw):
    d = {"name": name, "command": ["sleep", "1000"], "ready_after": 0}
    d.update(kw)
    return d


class Cli(SuiteTest):
    def setUp(self):
        super().setUp()
        self.d.write_config([svc("web-1", tags=["web", "front"]), svc("web-2", tags=["web"]), svc("db", tags=["data"]),
                             svc("idle")])
        self.d.start()
        for n in ("web-1", "web-2", "db", "idle"):
            self.d.wait_state(n, "HEALTHY")
        self.d.cli("stop", "idle", "--wait", check=True)

    def test_colour_on_a_terminal_only_and_no_color(self):
        """Colours only when stdout is a terminal (a real pty here), and never with NO_COLOR."""
        import pty

        def status(env_extra, tty):
            env = dict(self.d.env, HERD_SOCKET=self.d.sock, **env_extra)
            if "NO_COLOR" not in env_extra:
                env.pop("NO_COLOR", None)
            if not tty:
                return subprocess.run([HERD_BIN, "status"], env=env, capture_output=True, timeout=30).stdout
            master, slave = pty.openpty()
            p = subprocess.Popen([HERD_BIN, "status"], env=env, stdout=slave, stderr=subprocess.DEVNULL)
            os.close(slave)
            out = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                out += chunk
            p.wait(30)
            os.close(master)
            return out
        self.assertIn(b"\033[32mHEALTHY", status({}, tty=True))
        self.assertNotIn(b"\033[", status({"NO_COLOR": "1"}, tty=True))
        self.assertIn(b"HEALTHY", status({"NO_COLOR": "1"}, tty=True))
        self.assertNotIn(b"\033[", status({}, tty=False))

    def test_version_help_usage(self):
        r = self.d.cli("--version", check=True)
        self.assertRegex(r.stdout, r"^herd \S+ \(API 1\)")
        r = self.d.cli("help", check=True)
        for cmd in ("daemon", "status", "start", "stop", "restart", "logs", "add", "rm", "replace", "reload", "events",
                    "show", "info", "shutdown"):
            self.assertRegex(r.stdout, r"(?m)^\s+%s\s" % cmd)
        self.assertEqual(self.d.cli("--help", check=True).stdout, r.stdout)
        r = self.d.cli("help", "stop", check=True)
        self.assertIn("usage: herd stop", r.stdout)
        self.assertEqual(self.d.cli("help", "nosuch").returncode, 2)
        self.assertEqual(self.d.cli("nosuch").returncode, 2)
        r = self.d.cli("stop")
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: herd stop", r.stderr)
        self.assertEqual(self.d.cli("start", "web-1", "--timeout", "soon").returncode, 2)

    def test_daemon_usage(self):
        # `herd daemon` is parsed by main(), not the client; its usage still comes from the command table.
        usage = ("usage: herd daemon [--config DIR] [--state-dir DIR] [--socket PATH] [--log-level L] "
                 "[--log-format text|json] [--read-group G] [--leave-running] [--priority realtime|normal] "
                 "[--liveness-file PATH] [--http ADDR] [--http-token-file PATH] [--finished-jobs N]\n")
        r = self.d.cli("help", "daemon", check=True)
        self.assertEqual(r.stdout, usage + "  run the daemon in the foreground\n")
        for args, msg in ((["--bogus"], "unrecognized option"), (["extra"], ""),
                          (["--log-level", "loud"], "herd: --log-level must be debug, info, warn or error\n"),
                          (["--finished-jobs", "-1"], "herd: --finished-jobs must be a whole number from 0 to 10000000\n"),
                          (["--log-format", "xml"], "herd: --log-format must be text or json\n"),
                          (["--priority", "high"], "herd: --priority must be realtime or normal\n"),
                          (["--cgroups", "on"], "herd: --cgroups must be auto or off\n")):
            r = self.d.cli("daemon", *args, timeout=10)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.endswith(usage), r.stderr)
            self.assertIn(msg, r.stderr)
            self.assertEqual(r.stdout, "")

    def test_status_patterns_json_and_filters(self):
        r = self.d.cli("status", "web-*", "--json", check=True)
        self.assertEqual(sorted(s["name"] for s in json.loads(r.stdout)), ["web-1", "web-2"])
        r = self.d.cli("status", "db", "idle", "--json", check=True)
        self.assertEqual(sorted(s["name"] for s in json.loads(r.stdout)), ["db", "idle"])
        r = self.d.cli("status", "--tag", "front", "--json", check=True)
        self.assertEqual([s["name"] for s in json.loads(r.stdout)], ["web-1"])
        r = self.d.cli("status", "--state", "STOPPED", "--json", check=True)
        self.assertEqual([s["name"] for s in json.loads(r.stdout)], ["idle"])
        r = self.d.cli("status", "nomatch*")
        self.assertEqual(r.returncode, 1)
        r = self.d.cli("status", check=True)
        self.assertRegex(r.stdout, r"(?m)^idle\s+STOPPED\s+-")
        self.assertRegex(r.stdout, r"(?m)^db\s+HEALTHY\s+\d+")
        # The API underneath.
        self.assertEqual(sorted(self.d.services("?state=HEALTHY")), ["db", "web-1", "web-2"])
        self.assertEqual(sorted(self.d.services("?match=web-%3F")), ["web-1", "web-2"])
        self.assertEqual(sorted(self.d.services("?tag=web")), ["web-1", "web-2"])
        self.assertEqual(sorted(self.d.services("?tag=web&match=*2")), ["web-2"])
        st, body = self.d.request("GET", "/v1/services?state=bogus")
        self.assertEqual(st, 400, body)

    def test_show_info(self):
        r = self.d.cli("show", "db", check=True)
        s = json.loads(r.stdout)
        self.assertEqual((s["name"], s["state"], s["tags"]), ("db", "HEALTHY", ["data"]))
        self.assertEqual(self.d.cli("show", "nosuch").returncode, 1)
        # A name is one path segment, percent-encoded: the daemon sees it whole and refuses it.
        for bad in ("db?x", "a b", "db#x"):
            for cmd in ("show", "logs", "rm"):
                r = self.d.cli(cmd, bad)
                self.assertEqual(r.returncode, 1, (cmd, bad))
                self.assertEqual(r.stderr, 'herd: "%s" is not a valid service name\n' % bad)
        r = self.d.cli("info", check=True)
        info = json.loads(r.stdout)
        self.assertEqual(info["pid"], self.d.proc.pid)
        self.assertEqual(info["services"], 4)
        self.assertEqual(info["states"], {"HEALTHY": 3, "STOPPED": 1})
        self.assertEqual(info["api"], 1)
        self.assertGreater(info["uptime"], 0)
        self.assertIn("version", info)

    def test_start_stop_restart_patterns(self):
        pids = {n: self.d.service(n)["pid"] for n in ("web-1", "web-2")}
        r = self.d.cli("restart", "web-*", "--wait", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("web-1: HEALTHY", r.stdout)
        self.assertIn("web-2: HEALTHY", r.stdout)
        for n, p in pids.items():
            s = self.d.service(n)
            self.assertNotEqual(s["pid"], p)
            self.assertFalse(pid_alive(p))
            self.assertEqual(s["restarts"], 1)
        r = self.d.cli("stop", "web-*", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(self.d.services("?state=STOPPED")), ["idle", "web-1", "web-2"])
        r = self.d.cli("start", "web-1", "idle", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.service("idle")["state"], "HEALTHY")
        self.assertEqual(self.d.cli("start", "nosuch").returncode, 1)
        self.assertEqual(self.d.cli("start", "nomatch*").returncode, 1)

    def test_add_reads_no_more_than_a_request_takes(self):
        r = self.d.cli("add", "/dev/zero", timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("/dev/zero is larger than 16 MiB; a request may carry 1048576 bytes", r.stderr)

    def test_add_from_stdin_and_rm(self):
        r = self.d.cli("add", "-", input=json.dumps(svc("piped")))
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.d.wait_state("piped", "HEALTHY")
        r = self.d.cli("rm", "piped")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: not pid_alive(s["pid"]), timeout=5, what="removed service to stop")
        r = self.d.cli("rm", "db")
        self.assertEqual(r.returncode, 1, "config-defined services cannot be removed over the API")
        self.assertIn("db", r.stderr)

    def test_shutdown_cli(self):
        pid = self.d.service("db")["pid"]
        r = self.d.cli("shutdown")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.wait_exit(timeout=10), 0)
        self.assertFalse(pid_alive(pid))
        r = self.d.cli("status")
        self.assertEqual(r.returncode, 3)


class DaemonOptions(SuiteTest):
    def test_socket_option_and_json_log(self):
        sock = os.path.join(self.d.root, "elsewhere.sock")
        self.d.sock = sock  # the harness talks to the socket we chose
        self.d.args = ["--socket", sock, "--log-format", "json"]
        self.d.write_config([svc("web")])
        self.d.start()
        self.d.wait_state("web", "HEALTHY")
        self.assertFalse(os.path.exists(os.path.join(self.d.state, "herd.sock")))
        env = dict(self.d.env)
        r = subprocess.run([HERD_BIN, "--socket", sock, "status", "--json"], env=env, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([s["name"] for s in json.loads(r.stdout)], ["web"])
        r = subprocess.run([HERD_BIN, "--state-dir", self.d.state, "status"], env=env, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 3, "no daemon on <state>/herd.sock: %s" % r.stderr)
        lines = [l for l in self.d.log().splitlines() if l.strip()]
        self.assertTrue(lines)
        for l in lines:
            json.loads(l)  # every line of the daemon's own log is one JSON object
        self.assertTrue(any("HEALTHY" in l for l in lines))

    def test_state_dir_option_finds_socket(self):
        self.d.write_config([svc("web")])
        self.d.start()
        self.d.wait_state("web", "HEALTHY")
        r = subprocess.run([HERD_BIN, "--state-dir", self.d.state, "show", "web"], env=self.d.env,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["name"], "web")


if __name__ == "__main__":
    main()
