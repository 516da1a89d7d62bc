"""ssh hosts and tunnels end to end, against a real OpenSSH sshd on loopback: one
ControlMaster per host, a service's fixed local endpoint as a forward of it, checks through
it, the connection lost (UNKNOWN, then back), host key mismatch, a local port taken, herd
killed with kill -9 (master and endpoint re-adopted, requests through it keep working) and
no ssh left after a shutdown."""
import json
import os
import socket
import subprocess
import threading
import time
import unittest
import urllib.request

import netns
import sshd
from harness import SanitizedSuiteTest, main, wait_service, wait_until
from servers import free_port


def get(port, timeout=3):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=timeout) as r:
        return r.status


@unittest.skipUnless(sshd.available(), "OpenSSH (sshd, ssh, ssh-keygen) is not installed: scripts/deps.sh --test")
class Tunnel(SanitizedSuiteTest):
    def setUp(self):
        super().setUp()
        self.sshd = sshd.PrivateSshd()
        self.sshd.start()
        self.target = free_port()  # the service's own port ("on the other side")
        self.local = free_port()   # the fixed local endpoint
        self.known_hosts = self.sshd.known_hosts

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.sshd.stop()

    def config(self, local=None, also=None):
        host = {"name": "lo", "destination": "root@127.0.0.1", "port": self.sshd.port,
                "identity_file": self.sshd.client_key, "known_hosts": self.known_hosts,
                "server_alive_interval": "1s", "server_alive_count": 2, "connect_timeout": "5s"}
        web = {"name": "web", "command": ["python3", "-m", "http.server", str(self.target), "--bind", "127.0.0.1"],
               "ssh": "lo", "endpoint": {"port": self.target, "local_port": local or self.local},
               "check": {"type": "http", "path": "/", "interval": "200ms", "timeout": "2s"},
               "stop": {"grace": "2s"}}
        services = [web]
        if also:  # a second service on the same host, port and target of its own
            services.append(dict(web, name="web2", endpoint={"port": also[0], "local_port": also[1]},
                                 command=["python3", "-m", "http.server", str(also[0]), "--bind", "127.0.0.1"]))
        self.d.write_config(json.dumps({"hosts": [host], "services": services}))

    def host(self):
        return self.d.request("GET", "/v1/hosts")[1]["hosts"][0]

    def ssh_of_ours(self):
        sock = self.host()["control_path"]
        pids = []
        for pid in sshd.ssh_processes():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if sock.encode() in f.read():
                        pids.append(pid)
            except OSError:
                pass
        return pids

    def test_endpoint_through_the_master(self):
        self.config()
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=30, what="web HEALTHY")
        self.assertEqual(s["endpoint"]["local"], "127.0.0.1:%d" % self.local)
        self.assertEqual(s["endpoint"]["target"], "127.0.0.1:%d" % self.target)
        self.assertEqual(s["endpoint"]["tunnel"], "up")
        self.assertEqual(get(self.local), 200)
        h = self.host()
        self.assertEqual(h["state"], "up")
        self.assertEqual([f["state"] for f in h["forwards"]], ["up"])
        self.assertEqual(self.ssh_of_ours(), [h["pid"]], "one ssh process for the host, none per tunnel")
        out = self.d.cli("hosts", check=True).stdout
        self.assertIn("lo", out)
        self.assertIn("1/1", out)

        # The connection to the host is lost: UNKNOWN (never restarted for it), then back.
        restarts = s["restarts"]
        self.assertGreater(self.sshd.kill_connections(), 0)
        wait_service(self.d, "web", lambda s: s["state"] == "UNKNOWN", timeout=15, what="web UNKNOWN")
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=30, what="web HEALTHY again")
        self.assertEqual(s["restarts"], restarts, "the service was not restarted for its host")
        self.assertEqual(get(self.local), 200)
        h = self.host()
        self.assertEqual(h["reconnects"], 1)
        # The master's own last words, whichever side of the cut OpenSSH noticed first.
        self.assertRegex(h["last_error"] or "", "closed by remote host|Broken pipe|Connection reset", h)

        # Stopped: the forward goes; a shutdown leaves no ssh process behind.
        self.d.request("POST", "/v1/services/web/stop")
        wait_until(lambda: self.host()["forwards"] == [], timeout=10, what="the forward cancelled")
        with self.assertRaises(OSError):
            get(self.local, timeout=1)
        pids = self.ssh_of_ours()
        self.assertEqual(len(pids), 1)
        self.d.stop()
        wait_until(lambda: not set(pids) & set(sshd.ssh_processes()), timeout=10,
                   what="the master gone after shutdown")

    def test_host_key_mismatch(self):
        self.known_hosts = self.sshd.known_hosts_with_wrong_key()
        self.config()
        self.d.start()
        wait_until(lambda: self.host()["state"] == "backoff", timeout=20, what="host in backoff")
        h = self.host()
        self.assertIn("host key mismatch", h["last_error"] or "", h)
        self.assertIn("IDENTIFICATION HAS CHANGED", h["last_error"] or "", h)
        # A slow backoff, no storm: the next attempt is tens of seconds away.
        self.assertIn("reconnecting in", h["reason"])
        self.assertGreaterEqual(float(h["reason"].rsplit("in ", 1)[1].rstrip("s")), 20.0)
        s = wait_service(self.d, "web", lambda s: "ssh host lo is backoff" in
                         ((s["check"] or {}).get("last") or {}).get("message", ""), timeout=20,
                         what="the check says why")
        self.assertEqual(s["state"], "STARTING")

    def test_local_port_taken(self):
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", self.local))
        squatter.listen(8)
        try:
            # Both forwards go to the master in one command; the refused one is found on its
            # own and the other comes up regardless.
            other = (free_port(), free_port())
            self.config(also=other)
            self.d.start()
            wait_service(self.d, "web2", lambda s: s["state"] == "HEALTHY", timeout=30, what="web2 HEALTHY")
            self.assertEqual(get(other[1]), 200)
            s = wait_service(self.d, "web", lambda s: s["endpoint"].get("error"), timeout=30, what="forward error")
            self.assertIn("forward of local port %d refused" % self.local, s["endpoint"]["error"])
            self.assertEqual(self.host()["state"], "up", "the master stays up")
            # Nothing passes for the service while its endpoint is someone else's port.
            s = wait_service(self.d, "web", lambda s: "endpoint forward failed" in
                             ((s["check"] or {}).get("last") or {}).get("message", ""), timeout=20,
                             what="the check says why")
            self.assertNotEqual(s["state"], "HEALTHY")
        finally:
            squatter.close()
        # The port freed: the forward is retried (slowly) and the service comes up.
        wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=40, what="web HEALTHY after retry")

    def test_kill9_keeps_master_and_connections(self):
        self.config()
        self.d.start()
        wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=30, what="web HEALTHY")
        master = self.host()["pid"]
        web_pid = self.d.service("web")["pid"]
        errors, done = [], threading.Event()
        count = [0]

        def client():
            while not done.is_set():
                try:
                    get(self.local)
                    count[0] += 1
                except OSError as e:
                    errors.append(repr(e))
                time.sleep(0.02)
        t = threading.Thread(target=client)
        t.start()
        try:
            wait_until(lambda: count[0] >= 5, timeout=10, what="requests flowing")
            self.d.kill9()
            before = count[0]
            wait_until(lambda: count[0] >= before + 10, timeout=10, what="requests while herd is down")
            self.d.start()
            wait_until(lambda: self.host()["state"] == "up", timeout=20, what="host up again")
            self.assertEqual(self.host()["pid"], master, "the same master, re-adopted")
            s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=20, what="web re-adopted")
            self.assertEqual(s["pid"], web_pid)
            before = count[0]
            wait_until(lambda: count[0] >= before + 10, timeout=10, what="requests after the restart")
        finally:
            done.set()
            t.join()
        self.assertEqual(errors, [], "no request through the endpoint failed across kill -9")

    def test_kill9_then_target_moved(self):
        """herd killed with kill -9; meanwhile the service's target moved (its new config, as a
        job landing elsewhere would): the re-adopted master still forwards the fixed local port
        to the old target, so the next daemon cancels that one before it adds the new one."""
        self.config()
        self.d.start()
        wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=30, what="web HEALTHY")
        master = self.host()["pid"]
        web_pid = self.d.service("web")["pid"]
        self.d.kill9()
        os.kill(web_pid, 9)  # (ours: the service's process, by its pid) it dies while herd is down
        self.target = free_port()
        self.config()
        self.d.start()
        wait_until(lambda: self.host()["state"] == "up", timeout=20, what="host up again")
        self.assertEqual(self.host()["pid"], master, "the same master, re-adopted")
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY" and
                         s["endpoint"]["target"] == "127.0.0.1:%d" % self.target, timeout=60,
                         what="web HEALTHY on its new target through the same local port")
        self.assertEqual(s["endpoint"]["local"], "127.0.0.1:%d" % self.local)
        self.assertEqual(get(self.local), 200)
        self.assertIn("still forwarded to 127.0.0.1", self.d.log())


@unittest.skipUnless(sshd.available(), "OpenSSH (sshd, ssh, ssh-keygen) is not installed: scripts/deps.sh --test")
class Partition(SanitizedSuiteTest):
    """A compute node as a network namespace: the service listens on the node's own loopback,
    reachable only through the node's sshd; its link is taken down and brought back."""

    def setUp(self):
        why = netns.available()
        if why:
            self.fail(why)
        super().setUp()
        self.node = netns.Node("node1")

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.node.close()

    def host(self):
        return self.d.request("GET", "/v1/hosts")[1]["hosts"][0]

    def test_partition_unknown_then_healed(self):
        target, local, second = 8000, free_port(), free_port()
        host = {"name": "node1", "destination": "root@%s" % self.node.addr, "port": self.node.sshd.port,
                "identity_file": self.node.sshd.client_key, "known_hosts": self.node.sshd.known_hosts,
                "server_alive_interval": "1s", "server_alive_count": 2, "connect_timeout": "2s"}

        def web(name, port, lport):
            return {"name": name, "ssh": "node1", "stop": {"grace": "2s"},
                    "command": self.node.exec_argv(["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"]),
                    "endpoint": {"port": port, "local_port": lport},
                    "check": {"type": "http", "path": "/", "interval": "200ms", "timeout": "1s"}}
        self.d.write_config(json.dumps({"hosts": [host], "services": [web("web", target, local)]}))
        self.d.start()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=40, what="web HEALTHY")
        self.assertEqual(get(local), 200)
        with self.assertRaises(OSError, msg="the node's port is not reachable from here but through ssh"):
            socket.create_connection((self.node.addr, target), timeout=1).close()

        # A forward added and removed at run time, on the same master (no new ssh process).
        master = self.host()["pid"]
        self.d.write_config(json.dumps({"hosts": [host], "services": [web("web", target, local),
                                                                       web("web2", target + 1, second)]}))
        self.d.cli("reload", check=True)
        wait_service(self.d, "web2", lambda s: s["state"] == "HEALTHY", timeout=40, what="web2 HEALTHY")
        self.assertEqual(get(second), 200)
        self.assertEqual(sorted(f["local_port"] for f in self.host()["forwards"]), sorted([local, second]))
        self.d.write_config(json.dumps({"hosts": [host], "services": [web("web", target, local)]}))
        self.d.cli("reload", check=True)
        wait_until(lambda: [f["local_port"] for f in self.host()["forwards"]] == [local], timeout=20,
                   what="web2's forward cancelled")
        with self.assertRaises(OSError):
            get(second, timeout=1)
        self.assertEqual(self.host()["pid"], master, "the same master throughout")
        self.assertEqual(get(local), 200, "the other forward untouched")

        # Partitioned: the dead peer is found within the ServerAlive window (1 s x 2), the
        # service becomes UNKNOWN (its process lives on: never restarted for the network).
        restarts, pid = self.d.service("web")["restarts"], self.d.service("web")["pid"]
        t0 = time.monotonic()
        self.node.partition()
        wait_service(self.d, "web", lambda s: s["state"] == "UNKNOWN", timeout=20, what="web UNKNOWN")
        lost = time.monotonic() - t0
        self.assertLess(lost, 15, "a dead peer found within ~15 s")
        h = self.host()
        self.assertIn(h["state"], ("backoff", "connecting"))
        # Healed: the master reconnects (backoff), the forward comes back, the service is
        # HEALTHY again through it, with the same process.
        self.node.heal()
        s = wait_service(self.d, "web", lambda s: s["state"] == "HEALTHY", timeout=90, what="web HEALTHY after heal")
        self.assertEqual((s["restarts"], s["pid"]), (restarts, pid), "not restarted for the partition")
        self.assertEqual(get(local), 200)
        self.assertEqual(self.host()["state"], "up")
        self.assertGreaterEqual(self.host()["reconnects"], 1)
        evs = [(e["from"], e["to"]) for e in self.d.events() if e.get("service") == "host:node1"]
        self.assertIn(("up", "backoff"), evs)
        print("partition -> UNKNOWN in %.1f s" % lost)


@unittest.skipUnless(sshd.available(), "OpenSSH (sshd, ssh, ssh-keygen) is not installed: scripts/deps.sh --test")
class RemoteCheck(SanitizedSuiteTest):
    """Exec checks run on an ssh host over one libssh2 session in the daemon's loop."""

    def setUp(self):
        super().setUp()
        self.sshd = sshd.PrivateSshd()
        self.sshd.start()
        self.flag = os.path.join(self.sshd.dir, "up")  # the remote "service is fine" marker
        open(self.flag, "w").close()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.sshd.stop()

    def config(self, n=1, known_hosts=None, key=None):
        host = {"name": "lo", "destination": "root@127.0.0.1", "port": self.sshd.port,
                "identity_file": key or self.sshd.client_key, "known_hosts": known_hosts or self.sshd.known_hosts,
                "server_alive_interval": "1s", "server_alive_count": 2, "connect_timeout": "5s"}
        svcs = [{"name": "w%d" % i, "command": ["sleep", "1d"],
                 # A generous timeout: under a parallel build each remote `sh` took 3-11 s here,
                 # and a timed-out run would hide the exit status the test looks for.
                 "check": {"type": "exec", "host": "lo", "interval": "2s", "timeout": "90s",
                           "command": ["sh", "-c", "test -e \"$1\" && echo \"up $HERD_SERVICE\"", "-", self.flag]}}
                for i in range(n)]
        self.d.write_config(json.dumps({"hosts": [host], "services": svcs}))

    def session(self):
        return self.d.request("GET", "/v1/hosts")[1]["hosts"][0]["session"]

    def msg(self, s):
        return ((s["check"] or {}).get("last") or {}).get("message", "")

    def test_remote_exec_check(self):
        self.config(n=6)
        self.d.start()
        for i in range(6):
            s = wait_service(self.d, "w%d" % i, lambda s: s["state"] == "HEALTHY", timeout=60, what="HEALTHY")
        self.assertIn("exit 0 on lo: up w5", self.msg(s))
        ss = self.session()
        self.assertEqual(ss["state"], "up")
        self.assertEqual(ss["connects"], 1, "one session for all the checks")
        self.assertLessEqual(ss["channels"], 8)
        self.assertGreaterEqual(ss["commands"], 6)
        # Two connections to sshd: the host's ControlMaster (tunnels) and the libssh2
        # session (commands); no ssh process runs for the checks.
        master = self.d.request("GET", "/v1/hosts")[1]["hosts"][0]["pid"]
        self.assertEqual(len(sshd.children(self.sshd.proc.pid)), 2)
        self.assertEqual(set(sshd.ssh_processes(self.sshd.port)) - {master}, set(), "no ssh process for the checks")
        # The remote answer changes: UNHEALTHY with the remote exit status.
        os.unlink(self.flag)
        wait_until(lambda: "UNHEALTHY" in [e["to"] for e in self.d.events() if e.get("service") == "w0"],
                   timeout=180, what="w0 UNHEALTHY")
        self.assertIn("exit 1 on lo", [e for e in self.d.events() if e.get("to") == "UNHEALTHY"][-1]["reason"])
        open(self.flag, "w").close()
        wait_service(self.d, "w0", lambda s: s["state"] == "HEALTHY", timeout=30, what="HEALTHY again")
        # The connection dies: checks fail saying so, the session comes back when asked.
        self.assertGreater(self.sshd.kill_connections(), 0)
        wait_until(lambda: self.session()["connects"] >= 2 and self.session()["state"] == "up", timeout=30,
                   what="a new session")
        self.assertIsNotNone(self.session()["last_error"])
        for i in range(6):
            wait_service(self.d, "w%d" % i, lambda s: s["state"] == "HEALTHY", timeout=60, what="HEALTHY after")
        self.d.stop()

    def test_host_key_mismatch_and_wrong_key(self):
        self.config(known_hosts=self.sshd.known_hosts_with_wrong_key())
        self.d.start()
        s = wait_service(self.d, "w0", lambda s: "host key mismatch" in self.msg(s), timeout=30, what="mismatch")
        self.assertNotEqual(s["state"], "HEALTHY")
        self.assertEqual(self.session()["state"], "backoff")
        self.assertIn("host key mismatch", self.session()["last_error"])
        self.d.stop()
        other = os.path.join(self.sshd.dir, "stranger")
        sshd.keygen(other, "stranger")
        self.config(key=other)
        self.d.start()
        wait_service(self.d, "w0", lambda s: "authentication as root" in self.msg(s) and "refused" in self.msg(s),
                     timeout=30, what="auth refused")

    def agent(self, *keys):
        """A private ssh-agent holding these keys; its socket."""
        sock = os.path.join(self.sshd.dir, "agent-%d.sock" % len(keys))
        p = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop():
            p.kill()
            p.wait()
        self.addCleanup(stop)
        wait_until(lambda: os.path.exists(sock), timeout=10, what="ssh-agent's socket")
        for k in keys:
            subprocess.run(["ssh-add", "-q", k], env=dict(os.environ, SSH_AUTH_SOCK=sock), check=True,
                           capture_output=True)
        return sock

    def test_keys_from_an_ssh_agent(self):
        """No identity_file: the libssh2 session (an exec check) and the OpenSSH master (a
        tunnel) both authenticate with the keys of the host's identity_agent, the right one
        found after a key the server refuses."""
        stranger = os.path.join(self.sshd.dir, "stranger")
        sshd.keygen(stranger, "stranger")
        sock = self.agent(stranger, self.sshd.client_key)
        self.d.env.pop("SSH_AUTH_SOCK", None)
        target, local = free_port(), free_port()
        srv = subprocess.Popen(["python3", "-m", "http.server", str(target), "--bind", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (srv.kill(), srv.wait()))
        host = {"name": "lo", "destination": "root@127.0.0.1", "port": self.sshd.port, "identity_agent": sock,
                "known_hosts": self.sshd.known_hosts, "connect_timeout": "5s"}
        svcs = [{"name": "w", "command": ["sleep", "1d"],
                 "check": {"type": "exec", "host": "lo", "interval": "1s", "timeout": "20s",
                           "command": ["sh", "-c", "echo up"]}},
                {"name": "t", "command": ["sleep", "1d"], "ssh": "lo",
                 "endpoint": {"host": "127.0.0.1", "port": target, "local_port": local, "protocol": "http"},
                 "check": {"type": "http", "path": "/", "interval": "500ms"}}]
        self.d.write_config(json.dumps({"hosts": [host], "services": svcs}))
        self.d.start()
        s = wait_service(self.d, "w", lambda s: s["state"] == "HEALTHY", timeout=60, what="w HEALTHY")
        self.assertIn("exit 0 on lo: up", self.msg(s))
        wait_service(self.d, "t", lambda s: s["state"] == "HEALTHY", timeout=60, what="t HEALTHY through the tunnel")
        with urllib.request.urlopen("http://127.0.0.1:%d/" % local, timeout=10) as r:
            self.assertEqual(r.status, 200)
        self.assertEqual(self.session()["state"], "up")
        self.d.stop()
        # An agent with only a key the server does not know: refused, saying so.
        self.host_agent_only = self.agent(stranger)
        host["identity_agent"] = self.host_agent_only
        self.d.write_config(json.dumps({"hosts": [host], "services": svcs[:1]}))
        self.d.start()
        wait_service(self.d, "w", lambda s: "refused for each of the 1 key(s) of the ssh-agent" in self.msg(s),
                     timeout=30, what="auth refused")

    def test_config_errors(self):
        host = {"name": "lo", "destination": "root@127.0.0.1", "known_hosts": self.sshd.known_hosts,
                "proxy_jump": "me@gw"}
        self.d.write_config(json.dumps({"hosts": [host], "services": [
            {"name": "a", "command": ["sleep", "1d"], "check": {"type": "exec", "host": "lo", "command": ["true"]}},
            {"name": "b", "command": ["sleep", "1d"], "check": {"type": "exec", "host": "nope", "command": ["true"]}}]}))
        self.d.env.pop("SSH_AUTH_SOCK", None)  # (no agent either)
        self.d.start(wait=False)
        self.d.proc.wait(30)
        log = self.d.log()
        self.assertIn("a.check.host", log)
        self.assertIn("needs the host's \"identity_file\"", log)
        self.assertIn("identity_agent", log)
        self.assertIn("b.check.host", log)
        self.assertIn("no host named \"nope\"", log)


if __name__ == "__main__":
    main()
