"""Peer credentials on the control socket: root and the daemon's uid may do everything,
other uids get 403; --read-group members (by primary gid) may read but not write."""
import json
import os
import stat
import subprocess

from harness import HERD_BIN, SuiteTest, UnixHTTPConnection, main, run_as

NOBODY = 65534
NOGROUP = 65534


def requests_as_child(sock, reqs):
    """Runs in the forked child: [(method, path)] -> [[status, body]]."""
    out = []
    for method, path in reqs:
        c = UnixHTTPConnection(sock, timeout=10)
        try:
            c.request(method, path, body=None if method == "GET" else "{}",
                      headers={} if method == "GET" else {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            try:
                body = json.loads(data)
            except ValueError:
                body = data.decode(errors="replace")
            out.append([r.status, body])
        finally:
            c.close()
    return out


def connect_as_child(sock):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock)
        return "connected"
    except PermissionError:
        return "EACCES"
    finally:
        s.close()


WRITES = [("POST", "/v1/services/web/stop"), ("POST", "/v1/services/web/restart"), ("DELETE", "/v1/services/web"),
          ("POST", "/v1/services"), ("PUT", "/v1/services/web"), ("POST", "/v1/reload"), ("POST", "/v1/shutdown")]
READS = [("GET", "/v1/daemon"), ("GET", "/v1/services"), ("GET", "/v1/services/web"),
         ("GET", "/v1/services/web/logs?tail=5"), ("GET", "/v1/events?since=0")]


class PeerCredentials(SuiteTest):
    def setUp(self):
        super().setUp()
        os.chmod(self.d.root, 0o755)  # let other uids reach the socket's directory
        self.d.write_config([{"name": "web", "command": ["sleep", "1000"], "ready_after": 0}])

    def assert_untouched(self, pid):
        s = self.d.service("web")
        self.assertEqual(s["state"], "HEALTHY")
        self.assertEqual(s["pid"], pid)
        self.assertIsNone(self.d.proc.poll())

    def test_socket_is_0600_without_read_group(self):
        self.d.start()
        st = os.stat(self.d.sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(run_as(NOBODY, NOGROUP, lambda: connect_as_child(self.d.sock)), "EACCES")

    def test_other_uid_gets_403_on_everything(self):
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY")["pid"]
        os.chmod(self.d.sock, 0o666)
        os.chmod(self.d.state, 0o711)  # the state dir is 0700: open a way to the socket too
        res = run_as(NOBODY, NOGROUP, lambda: requests_as_child(self.d.sock, READS + WRITES))
        for (method, path), (status, body) in zip(READS + WRITES, res):
            self.assertEqual(status, 403, "%s %s as uid %d -> %s %s" % (method, path, NOBODY, status, body))
            self.assertIsInstance(body, dict, body)
            self.assertEqual(body.get("api"), 1, body)
            self.assertEqual(body["error"]["code"], "forbidden", body)
            self.assertIn(str(NOBODY), body["error"]["message"])
        self.assert_untouched(pid)

    def test_cli_as_other_uid(self):
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY")["pid"]
        os.chmod(self.d.sock, 0o666)
        os.chmod(self.d.state, 0o711)  # the state dir is 0700: open a way to the socket too
        env = dict(self.d.env, HERD_SOCKET=self.d.sock)
        r = subprocess.run([HERD_BIN, "stop", "web"], env=env, capture_output=True, text=True, timeout=30,
                           user=NOBODY, group=NOGROUP, extra_groups=[])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("uid %d" % NOBODY, r.stderr)
        self.assert_untouched(pid)

    def test_read_group_members_may_read_not_write(self):
        self.d.args = ["--read-group", "nogroup"]
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY")["pid"]
        st = os.stat(self.d.sock)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(st.st_gid, NOGROUP)
        res = run_as(NOBODY, NOGROUP, lambda: requests_as_child(self.d.sock, READS + WRITES))
        for (method, path), (status, body) in zip(READS, res[:len(READS)]):
            self.assertEqual(status, 200, "%s %s as a read-group member -> %s %s" % (method, path, status, body))
        for (method, path), (status, body) in zip(WRITES, res[len(READS):]):
            self.assertEqual(status, 403, "%s %s as a read-group member -> %s %s" % (method, path, status, body))
            self.assertEqual(body["api"], 1)
            self.assertEqual(body["error"]["code"], "forbidden")
        self.assertEqual(res[2][1]["service"]["pid"], pid)
        self.assert_untouched(pid)
        # Root still may write.
        st_, body = self.d.request("POST", "/v1/services/web/restart")
        self.assertEqual(st_, 200, body)

    def test_read_group_by_primary_gid_only(self):
        # Same uid, another primary gid (nogroup only as a supplementary group): 403 even to read.
        self.d.args = ["--read-group", "nogroup"]
        self.d.start()
        pid = self.d.wait_state("web", "HEALTHY")["pid"]
        os.chmod(self.d.sock, 0o666)
        res = run_as(NOBODY, 4242, lambda: requests_as_child(self.d.sock, READS[:1] + WRITES[:1]),
                     groups=[NOGROUP])
        self.assertEqual([r[0] for r in res], [403, 403], res)
        self.assert_untouched(pid)


if __name__ == "__main__":
    main()
