"""The control socket under abuse: malformed and oversized requests, slow clients, many
clients at once. Raw sockets, so we control every byte."""
import json
import os
import resource
import threading
import time

from harness import (SuiteTest, main, raw_connect, read_http_response, read_until_eof, wait_until)


def parse_json(body):
    o = json.loads(body)
    assert o.get("api") == 1, o
    return o


def send_ignoring_errors(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass  # the daemon may answer and close before it has read everything


class Malformed(SuiteTest):
    def setUp(self):
        super().setUp()
        self.d.start()

    def send_one(self, data, timeout=10):
        s = raw_connect(self.d.sock, timeout=timeout)
        try:
            s.sendall(data)
            return read_http_response(s)
        finally:
            s.close()

    def assert_error(self, status, headers, body, want_status, want_code=None):
        self.assertEqual(status, want_status, body)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
        o = parse_json(body)
        self.assertIn("error", o)
        self.assertIn("message", o["error"])
        if want_code:
            self.assertEqual(o["error"]["code"], want_code)
        return o

    def assert_still_serving(self):
        st, body = self.d.request("GET", "/v1/daemon", timeout=5)
        self.assertEqual(st, 200)
        self.assertEqual(body["api"], 1)
        self.assertIsNone(self.d.proc.poll())

    def test_garbage_is_400(self):
        st, h, body, _ = self.send_one(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        self.assert_error(st, h, body, 400, "bad_request")
        st, h, body, _ = self.send_one(b"GET /v1/daemon HTTP/9.7 please\r\n\r\n")
        self.assert_error(st, h, body, 400)
        self.assert_still_serving()

    def test_oversized_body_is_413(self):
        s = raw_connect(self.d.sock)
        try:
            s.sendall(b"POST /v1/services HTTP/1.1\r\nHost: herd\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % (2 << 20))
            # The daemon may answer as soon as it sees the length; keep sending anyway.
            try:
                s.sendall(b"x" * (2 << 20))
            except OSError:
                pass
            st, h, body, _ = read_http_response(s)
        finally:
            s.close()
        self.assert_error(st, h, body, 413, "too_large")
        self.assert_still_serving()

    def test_oversized_chunked_body_is_413(self):
        s = raw_connect(self.d.sock)
        try:
            s.sendall(b"POST /v1/services HTTP/1.1\r\nHost: herd\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(3):
                    s.sendall(b"100000\r\n" + b"y" * 0x100000 + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass
            st, h, body, _ = read_http_response(s)
        finally:
            s.close()
        self.assert_error(st, h, body, 413, "too_large")
        self.assert_still_serving()

    def test_error_reply_is_sent_once_then_closed(self):
        # After an error the connection gets one reply and is closed: however much more
        # the client was still sending, it must not be answered again.
        for attempt in range(3):
            s = raw_connect(self.d.sock)
            sender = threading.Thread(target=send_ignoring_errors, args=(
                s, b"POST /v1/services HTTP/1.1\r\nHost: herd\r\nContent-Length: %d\r\n\r\n" % (2 << 20)
                + b"x" * (2 << 20)))
            sender.start()
            try:
                got = read_until_eof(s, timeout=10)
            finally:
                sender.join()
                s.close()
            self.assertTrue(got.startswith(b"HTTP/1.1 413 "), got[:200])
            self.assertEqual(got.count(b"HTTP/1.1 "), 1,
                             "attempt %d: %d replies on one connection:\n%r"
                             % (attempt, got.count(b"HTTP/1.1 "), got[:600]))
        self.assert_still_serving()

    def test_huge_headers_are_431(self):
        req = b"GET /v1/daemon HTTP/1.1\r\nHost: herd\r\n" + b"".join(
            b"X-Filler-%d: %s\r\n" % (i, b"h" * 1100) for i in range(20)) + b"\r\n"
        self.assertGreater(len(req), 20 * 1024)
        st, h, body, _ = self.send_one(req)
        self.assert_error(st, h, body, 431, "headers_too_large")
        # One single 20 KiB header line, and a 20 KiB URL.
        st, h, body, _ = self.send_one(b"GET /v1/daemon HTTP/1.1\r\nX-Big: " + b"b" * 20480 + b"\r\n\r\n")
        self.assert_error(st, h, body, 431)
        st, h, body, _ = self.send_one(b"GET /v1/daemon?" + b"q" * 20480 + b" HTTP/1.1\r\n\r\n")
        self.assert_error(st, h, body, 431)
        self.assert_still_serving()

    def test_unknown_route_404_wrong_method_405(self):
        for path in (b"/v1/nope", b"/", b"/v1/services/web/explode", b"/v2/services"):
            st, h, body, _ = self.send_one(b"GET %s HTTP/1.1\r\nHost: herd\r\nConnection: close\r\n\r\n" % path)
            self.assert_error(st, h, body, 404)
        for method, path in ((b"DELETE", b"/v1/daemon"), (b"PUT", b"/v1/events"), (b"GET", b"/v1/reload"),
                             (b"POST", b"/v1/daemon")):
            st, h, body, _ = self.send_one(b"%s %s HTTP/1.1\r\nHost: herd\r\nContent-Length: 0\r\n\r\n" % (method, path))
            self.assert_error(st, h, body, 405, "method_not_allowed")
        self.assert_still_serving()

    def test_keepalive_and_pipelining(self):
        s = raw_connect(self.d.sock)
        try:
            s.sendall(b"GET /v1/daemon HTTP/1.1\r\nHost: herd\r\n\r\n"
                      b"GET /v1/services HTTP/1.1\r\nHost: herd\r\n\r\n"
                      b"GET /v1/nope HTTP/1.1\r\nHost: herd\r\n\r\n")
            st1, _, b1, rest = read_http_response(s)
            st2, _, b2, rest = read_http_response(s, rest)
            st3, _, b3, rest = read_http_response(s, rest)
            self.assertEqual((st1, st2, st3), (200, 200, 404))
            self.assertIn("pid", parse_json(b1))
            self.assertIn("services", parse_json(b2))
            # Still open for another request.
            s.sendall(b"GET /v1/daemon HTTP/1.1\r\nHost: herd\r\n\r\n")
            st4, _, _, _ = read_http_response(s, rest)
            self.assertEqual(st4, 200)
        finally:
            s.close()

    def test_stalled_client_does_not_block_others_and_gets_408(self):
        stall = raw_connect(self.d.sock, timeout=20)
        t0 = time.monotonic()
        try:
            stall.sendall(b"POST /v1/services HTTP/1.1\r\nHost: herd\r\nContent-Length: 100\r\n\r\n{\"name\":")
            # Others are served at once while it stalls.
            for _ in range(5):
                t = time.monotonic()
                st, _ = self.d.request("GET", "/v1/daemon", timeout=5)
                self.assertEqual(st, 200)
                self.assertLess(time.monotonic() - t, 1.0)
            # The unfinished request times out after ~10 s.
            st, h, body, _ = read_http_response(stall)
            took = time.monotonic() - t0
        finally:
            stall.close()
        self.assert_error(st, h, body, 408)
        self.assertGreater(took, 8.0)
        self.assertLess(took, 14.0)
        self.assertEqual(self.d.request("GET", "/v1/services/web")[0], 404)
        self.assert_still_serving()


class ManyClients(SuiteTest):
    def test_1000_concurrent_clients(self):
        n = 1000
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n + 200
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want,
                                                        hard))
        self.assertGreaterEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], want)
        self.d.write_config([{"name": "web", "command": ["sleep", "1000"], "ready_after": 0}])
        self.d.start()
        socks = []
        try:
            for _ in range(n):
                socks.append(raw_connect(self.d.sock, timeout=30))
            for s in socks:
                s.sendall(b"GET /v1/daemon HTTP/1.1\r\nHost: herd\r\n\r\n")
            statuses = []
            for s in socks:
                st, _, body, _ = read_http_response(s)
                statuses.append(st)
                if st == 200:
                    self.assertEqual(parse_json(body)["api"], 1)
            self.assertEqual(statuses.count(200), n, "non-200: %s" % sorted(set(statuses)))
            # All still connected (keep-alive): the daemon counts them.
            st, info = self.d.request("GET", "/v1/daemon")
            self.assertEqual(st, 200)
            self.assertGreaterEqual(info["connections"], n)
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: self.d.request("GET", "/v1/daemon")[1]["connections"] <= 2, timeout=10,
                   what="connections to be released")
        self.assertEqual(self.d.service("web")["state"], "HEALTHY")

    def test_over_4096_connections_get_503(self):
        limit = 4096
        extra = 5
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = limit + extra + 200
        if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
            self.skipTest("RLIMIT_NOFILE hard limit %s too low" % hard)
        self.d.start()
        time.sleep(0.2)
        base = len(os.listdir("/proc/%d/fd" % self.d.proc.pid))
        socks = []
        try:
            for _ in range(limit):
                socks.append(raw_connect(self.d.sock, timeout=30))
            wait_until(lambda: len(os.listdir("/proc/%d/fd" % self.d.proc.pid)) >= base + limit, timeout=20,
                       what="the daemon to accept %d connections" % limit)
            over = [raw_connect(self.d.sock, timeout=10) for _ in range(extra)]
            socks += over
            for s in over:
                st, h, body, _ = read_http_response(s)
                self.assertEqual(st, 503, body)
                self.assertEqual(parse_json(body)["error"]["code"], "busy")
            # The first ones still work.
            socks[0].sendall(b"GET /v1/daemon HTTP/1.1\r\nHost: herd\r\n\r\n")
            st, _, body, _ = read_http_response(socks[0])
            self.assertEqual(st, 200)
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: self.d.request("GET", "/v1/daemon")[0] == 200, timeout=10, what="the daemon to recover")


if __name__ == "__main__":
    main()
