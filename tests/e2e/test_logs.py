"""Service logs: size rotation with `keep`, tail over the API and the CLI, and follow
streams that deliver lines as they are written."""
import os
import re
import select
import socket
import subprocess
import time

from harness import HERD_BIN, SuiteTest, main, raw_connect, read_until_eof, wait_until

LINE_RE = re.compile(r"^line (\d{6}) [a-z]{40}$")
READ_CHUNK = 64 * 1024


class ChunkedReader:
    """Incremental reader of a chunked HTTP response on a raw socket."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.data = b""
        self.done = False
        self.head = None

    def _fill(self, timeout):
        r, _, _ = select.select([self.s], [], [], timeout)
        if not r:
            return False
        chunk = self.s.recv(65536)
        if not chunk:
            self.done = True
            return False
        self.buf += chunk
        return True

    def _parse(self):
        if self.head is None:
            if b"\r\n\r\n" not in self.buf:
                return
            self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        while True:
            if b"\r\n" not in self.buf:
                return
            size_line, rest = self.buf.split(b"\r\n", 1)
            n = int(size_line.split(b";")[0], 16)
            if len(rest) < n + 2:
                return
            if n == 0:
                self.done = True
                self.buf = rest[2:]
                return
            self.data += rest[:n]
            self.buf = rest[n + 2:]

    def read_until(self, pred, timeout=5):
        deadline = time.time() + timeout
        while True:
            self._parse()
            if pred(self.data):
                return self.data
            left = deadline - time.time()
            if left <= 0 or self.done:
                raise AssertionError("stream did not deliver in time; have %r" % self.data[-500:])
            self._fill(min(left, 0.2))


def trigger_service(root):
    """A service that prints `marker NAME` when a file trig-NAME appears in root."""
    script = ('while :; do for f in %s/trig-*; do if [ -e "$f" ]; then echo "marker ${f##*/trig-}"; '
              'rm -f "$f"; fi; done; sleep 0.05; done') % root
    return ["/bin/sh", "-c", script]


def line_writer(nlines, per_line_write=True):
    """A python3 program printing nlines numbered lines. per_line_write: only whole lines
    per write(2), each write at most PIPE_BUF (so atomic); else block-buffered print()
    (8 KiB writes that end mid-line)."""
    if per_line_write:
        return ("import os\nL = ['line %%06d %%s\\n' %% (i, 'abcdefghijklmnopqrstuvwxyzabcdefghijklmn') "
                "for i in range(%d)]\n"
                "for k in range(0, len(L), 70):\n"
                "    b = ''.join(L[k:k + 70]).encode()\n"
                "    assert len(b) <= 4096\n"
                "    os.write(1, b)\n" % nlines)
    return ("for i in range(%d):\n    print('line %%06d %%s' %% (i, 'abcdefghijklmnopqrstuvwxyzabcdefghijklmn'))\n"
            % nlines)


class Rotation(SuiteTest):
    def run_writer(self, nlines, keep, per_line_write=True):
        self.d.write_config([{"name": "chatty", "command": ["python3", "-c", line_writer(nlines, per_line_write)],
                              "restart": "never", "ready_after": 0, "log": {"max_size": 4096, "keep": keep}}])
        self.d.start()
        self.d.wait_state("chatty", "COMPLETED", timeout=30)
        base = os.path.join(self.d.state, "logs", "chatty.log")
        return base, [base + ".%d" % k for k in range(keep, 0, -1)] + [base]

    def test_rotation_by_size_keeps_k_files(self):
        nlines = 3000
        base, files = self.run_writer(nlines, keep=2)
        for f in files:
            self.assertTrue(os.path.exists(f), "%s missing; logs dir: %s" % (f, os.listdir(os.path.dirname(base))))
        self.assertFalse(os.path.exists(base + ".3"), "keep is 2 but .log.3 exists")
        data = b""
        for f in files:
            size = os.path.getsize(f)
            self.assertLessEqual(size, 4096 + READ_CHUNK, "%s is %d bytes" % (f, size))
            with open(f, "rb") as fh:
                data += fh.read()
        # Read in order, the kept files are the newest output with nothing lost or garbled.
        numbers = []
        lines = data.decode().split("\n")
        self.assertEqual(lines[-1], "")
        for l in lines[1:-1]:  # the first may be the tail of a line rotated away
            if l.startswith("[herd "):
                continue
            m = LINE_RE.match(l)
            self.assertIsNotNone(m, "broken line %r" % l)
            numbers.append(int(m.group(1)))
        self.assertEqual(numbers[-1], nlines - 1)
        self.assertEqual(numbers, list(range(numbers[0], nlines)), "lines missing or out of order across files")
        self.assertIn("exited with code 0", lines[-2])

    def test_rotation_bounded_without_newlines(self):
        # A service that never writes a newline (a progress bar, binary output) must not
        # grow one file without bound: files stay within max_size + one read chunk.
        prog = "import os\nfor _ in range(256):\n    os.write(1, b'x' * 4096)\n"
        self.d.write_config([{"name": "blob", "command": ["python3", "-c", prog], "restart": "never",
                              "ready_after": 0, "log": {"max_size": 4096, "keep": 2}}])
        self.d.start()
        self.d.wait_state("blob", "COMPLETED", timeout=30)
        base = os.path.join(self.d.state, "logs", "blob.log")
        for f in (base, base + ".1", base + ".2"):
            self.assertTrue(os.path.exists(f), "%s missing: no rotation happened" % f)
            size = os.path.getsize(f)
            self.assertLessEqual(size, 4096 + READ_CHUNK, "%s is %d bytes (max_size 4096)" % (f, size))

    def check_whole_lines(self, files):
        files = [f for f in files if os.path.exists(f)]
        self.assertGreaterEqual(len(files), 5, "expected several rotations")
        for f in files:
            with open(f, "rb") as fh:
                data = fh.read()
            if not data:
                continue
            self.assertTrue(data.endswith(b"\n"), "%s ends mid-line: %r" % (f, data[-70:]))
            for l in data.decode().split("\n")[:-1]:
                if not l.startswith("[herd "):
                    self.assertRegex(l, LINE_RE, "%s: a line was cut by rotation" % f)

    def test_rotation_keeps_lines_whole(self):
        # Only whole lines per atomic write(2), but herd reads the pipe in 64 KiB chunks: when
        # the output comes faster than that, a chunk ends mid-line. A rotation between
        # two chunks must not cut that line in two.
        base, files = self.run_writer(20000, keep=40)
        self.check_whole_lines(files)

    def test_rotation_keeps_lines_whole_block_buffered(self):
        # Python's stdout to a pipe is block-buffered (8 KiB writes that end mid-line).
        base, files = self.run_writer(20000, keep=40, per_line_write=False)
        self.check_whole_lines(files)


class TailAndFollow(SuiteTest):
    def test_tail_api_and_cli(self):
        prog = "for i in $(seq 1 50); do echo \"out $i\"; done; exec sleep 1000"
        self.d.write_config([{"name": "t", "command": ["/bin/sh", "-c", prog], "ready_after": 0}])
        self.d.start()
        self.d.wait_state("t", "HEALTHY")
        wait_until(lambda: b"out 50\n" in self.d.request("GET", "/v1/services/t/logs", raw=True)[1],
                   timeout=5, what="50 lines in the log")
        st, body = self.d.request("GET", "/v1/services/t/logs?tail=3", raw=True)
        self.assertEqual(st, 200)
        self.assertEqual(body, b"out 48\nout 49\nout 50\n")
        r = self.d.cli("logs", "t", "-n", "5", check=True)
        self.assertEqual(r.stdout, "out 46\nout 47\nout 48\nout 49\nout 50\n")
        r = self.d.cli("logs", "t", check=True)
        self.assertIn("[herd ", r.stdout)
        self.assertIn("started pid", r.stdout)
        lines = [l for l in r.stdout.splitlines() if not l.startswith("[herd ")]
        self.assertEqual(lines, ["out %d" % i for i in range(1, 51)])
        st, body = self.d.request("GET", "/v1/services/nope/logs?tail=3")
        self.assertEqual(st, 404)

    def test_follow_api_receives_new_lines(self):
        self.d.write_config([{"name": "trig", "command": trigger_service(self.d.root), "ready_after": 0}])
        self.d.start()
        self.d.wait_state("trig", "HEALTHY")
        s = raw_connect(self.d.sock)
        try:
            s.sendall(b"GET /v1/services/trig/logs?follow=1&tail=0 HTTP/1.1\r\nHost: herd\r\n\r\n")
            rd = ChunkedReader(s)
            rd.read_until(lambda d: rd.head is not None, timeout=5)
            self.assertTrue(rd.head.startswith(b"HTTP/1.1 200"), rd.head)
            self.assertIn(b"chunked", rd.head.lower())
            for name in ("one", "two", "three"):
                t0 = time.time()
                open(os.path.join(self.d.root, "trig-" + name), "w").close()
                rd.read_until(lambda d, n=name: ("marker %s\n" % n).encode() in d, timeout=5)
                self.assertLess(time.time() - t0, 2.0)
            self.assertNotIn(b"started pid", rd.data, "tail=0 should send no old lines")
            # Another request is served while the follower stays connected.
            st, _ = self.d.request("GET", "/v1/daemon")
            self.assertEqual(st, 200)
        finally:
            s.close()

    def test_follow_default_context_and_end_on_removal(self):
        prog = "for i in $(seq 1 30); do echo \"ctx $i\"; done; exec sleep 1000"
        self.d.start()
        st, _ = self.d.request("POST", "/v1/services", {"name": "t", "command": ["/bin/sh", "-c", prog],
                                                         "ready_after": 0})
        self.assertEqual(st, 201)
        wait_until(lambda: b"ctx 30\n" in self.d.request("GET", "/v1/services/t/logs", raw=True)[1], timeout=5,
                   what="30 lines")
        s = raw_connect(self.d.sock)
        try:
            s.sendall(b"GET /v1/services/t/logs?follow=1 HTTP/1.1\r\nHost: herd\r\n\r\n")
            rd = ChunkedReader(s)
            data = rd.read_until(lambda d: b"ctx 30\n" in d, timeout=5)
            self.assertEqual(data, b"".join(b"ctx %d\n" % i for i in range(21, 31)),
                             "follow without tail should start with the last 10 lines")
            st, _ = self.d.request("DELETE", "/v1/services/t")
            self.assertEqual(st, 200)
            # The stream ends (terminating chunk) once the service is gone.
            deadline = time.time() + 5
            while not rd.done and time.time() < deadline:
                rd._fill(0.2)
                rd._parse()
            self.assertTrue(rd.done, "follow stream did not end after the service was removed")
            self.assertIn(b"killed by signal 15", rd.data)
        finally:
            s.close()

    def test_log_survives_daemon_restart_and_keep_0(self):
        self.d.write_config([{"name": "t", "command": ["/bin/sh", "-c", "echo run-$HERD_ATTEMPT; exec sleep 1000"],
                              "ready_after": 0, "log": {"max_size": "1M", "keep": 0}}])
        self.d.start()
        wait_until(lambda: b"run-1" in self.d.request("GET", "/v1/services/t/logs", raw=True)[1], timeout=5,
                   what="first output")
        self.d.stop()
        self.d.start()
        wait_until(lambda: b"run-2" in self.d.request("GET", "/v1/services/t/logs", raw=True)[1], timeout=5,
                   what="second output")
        log = self.d.request("GET", "/v1/services/t/logs", raw=True)[1]
        self.assertIn(b"run-1", log, "the log was truncated by a daemon restart")
        self.assertLess(log.index(b"run-1"), log.index(b"run-2"))
        self.assertEqual(os.listdir(os.path.join(self.d.state, "logs")), ["t.log"])

    def test_slow_follower_is_cut_off_not_blocking(self):
        # A follower that never reads must not block the daemon or make it hold the whole
        # log in memory: past 8 MiB of backlog its stream is closed.
        self.d.write_config([{"name": "trig", "command": trigger_service(self.d.root), "ready_after": 0},
                             {"name": "flood", "command": ["python3", "-c",
                                                           "import os, sys, time\n"
                                                           "while not os.path.exists(sys.argv[1]): time.sleep(0.02)\n"
                                                           "for _ in range(480): os.write(1, b'f' * 65535 + b'\\n')\n"
                                                           "time.sleep(1000)\n",
                                                           os.path.join(self.d.root, "go")],
                              "ready_after": 0, "log": {"max_size": "4M", "keep": 1}}])
        self.d.start()
        self.d.wait_state("flood", "HEALTHY")
        s = raw_connect(self.d.sock)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.sendall(b"GET /v1/services/flood/logs?follow=1&tail=0 HTTP/1.1\r\nHost: herd\r\n\r\n")
            time.sleep(0.2)
            open(os.path.join(self.d.root, "go"), "w").close()  # 30 MiB of output starts now
            t0 = time.time()
            while time.time() - t0 < 20:
                t = time.monotonic()
                st, _ = self.d.request("GET", "/v1/daemon", timeout=5)
                self.assertEqual(st, 200)
                self.assertLess(time.monotonic() - t, 1.0, "the daemon was blocked by a slow follower")
                if "cutting off" in self.d.log() or "fell" in self.d.log():
                    break
                time.sleep(0.1)
            # The stream ends: reading it now gives at most what was buffered, then EOF.
            got = read_until_eof(s, timeout=10)
            self.assertLess(len(got), 20 * 1024 * 1024, "the whole flood was queued for a follower that never read")
        finally:
            s.close()
        with open("/proc/%d/status" % self.d.proc.pid) as f:
            rss_kb = int([l for l in f if l.startswith("VmRSS:")][0].split()[1])
        self.assertLess(rss_kb, 200 * 1024, "daemon RSS %d KiB after a slow follower" % rss_kb)
        # Logs still work for others.
        open(os.path.join(self.d.root, "trig-after"), "w").close()
        wait_until(lambda: b"marker after" in self.d.request("GET", "/v1/services/trig/logs", raw=True)[1],
                   timeout=5, what="other logs to keep flowing")

    def test_follow_cli(self):
        self.d.write_config([{"name": "trig", "command": trigger_service(self.d.root), "ready_after": 0}])
        self.d.start()
        self.d.wait_state("trig", "HEALTHY")
        env = dict(self.d.env, HERD_SOCKET=self.d.sock)
        p = subprocess.Popen([HERD_BIN, "logs", "trig", "-f", "-n", "0"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            out = b""
            deadline = time.time() + 10
            n = 0
            next_trigger = 0
            # Lines written before the follower attached are not shown (-n 0): keep
            # triggering new ones until one comes through.
            while b"marker cli-" not in out and time.time() < deadline:
                if time.time() >= next_trigger:
                    n += 1
                    open(os.path.join(self.d.root, "trig-cli-%d" % n), "w").close()
                    next_trigger = time.time() + 0.5
                r, _, _ = select.select([p.stdout], [], [], 0.1)
                if r:
                    chunk = os.read(p.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    out += chunk
            self.assertIn(b"marker cli-", out)
            self.assertNotIn(b"started pid", out, "-n 0 printed old lines")
            self.assertIsNone(p.poll(), "herd logs -f exited early")
        finally:
            p.kill()
            p.communicate()


if __name__ == "__main__":
    main()
