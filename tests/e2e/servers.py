"""Test servers for the health-check e2e tests: a scriptable HTTP/1.1 (optionally TLS)
server, a bare TCP listener and a throw-away test CA. Everything listens on 127.0.0.1
only, runs in threads of the test process, and is started and stopped by the tests.
Standard library only (plus the `openssl` CLI for the CA)."""
import collections
import os
import select
import socket
import ssl
import subprocess
import threading
import time

HOST = "127.0.0.1"

REASONS = {200: "OK", 204: "No Content", 302: "Found", 404: "Not Found",
           500: "Internal Server Error", 503: "Service Unavailable"}


_given = set()


def free_port():
    """A port that was free a moment ago (bound to 0 and closed again), never one this
    process was given before: the kernel may hand the same port to two binds in a row once
    the first socket is closed, and two "free" ports that are the same one make a test of
    something else fail (a service's target and its local endpoint, say)."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no free port that was not given out before")


class TCPListener:
    """A listening socket that never accepts: a connect succeeds through the backlog.
    Used to hold a port busy, or as the target of a tcp check."""

    def __init__(self, port=0, host=HOST):
        self.sock = socket.socket()
        # a TIME_WAIT left by earlier connections to this port does not stop us (it does
        # not stop a real server either); a listening socket still does
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class HTTPServer:
    """A scriptable HTTP/1.1 server on 127.0.0.1 in threads of the test process.

    mode "answer":     answer each request with `status` (or the next queued status) and `body`
    mode "hang":       read the request, then never answer (the connection stays open)
    mode "stall_body": send the status line and headers (Content-Length: 1000) and a
                       few bytes of body, then stall
    mode "drop_reused": answer the first request of each connection (keep-alive); close
                       the connection at the second one without answering it
    mode "eof_body":   answer without Content-Length ("Connection: close"): the body ends
                       where the connection does
    mode "chunked":    answer with Transfer-Encoding: chunked (the body in 3-byte chunks)
    mode "garbage":    answer with bytes that are not HTTP

    Every request is recorded in `requests` as a dict: time (wall clock), method, path,
    headers (lower-case names), status (what was answered, or None)."""

    def __init__(self, status=200, body=b"ok", mode="answer", tls=None, port=0):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.mode = mode
        self.tls = tls  # an ssl.SSLContext (server side) or None
        self._queue = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = set()
        self.requests = []
        self.accepted = 0  # connections accepted
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, port))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # -- control ----------------------------------------------------------
    def url(self, path="/"):
        return "%s://%s:%d%s" % ("https" if self.tls else "http", HOST, self.port, path)

    def set(self, status=None, body=None, mode=None):
        with self._lock:
            if status is not None:
                self.status = status
            if body is not None:
                self.body = body if isinstance(body, bytes) else body.encode()
            if mode is not None:
                self.mode = mode

    def queue(self, statuses):
        """Answer these statuses first, one per request, then `status` again."""
        with self._lock:
            self._queue.extend(statuses)

    def queued(self):
        with self._lock:
            return len(self._queue)

    def count(self, status=None):
        with self._lock:
            return sum(1 for r in self.requests if status is None or r["status"] == status)

    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()

    # -- serving ----------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.lsock], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _track(self, c, add):
        with self._lock:
            if add:
                self._conns.add(c)
            else:
                self._conns.discard(c)

    def _serve(self, c):
        self._track(c, True)
        try:
            c.settimeout(10)
            if self.tls:
                try:
                    c = self._wrap(c)
                except (ssl.SSLError, OSError):
                    return  # e.g. the client rejected our certificate
            buf = b""
            served = 0
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path = (lines[0].split() + ["", ""])[:2]
                headers = {}
                for l in lines[1:]:
                    k, _, v = l.partition(":")
                    headers[k.strip().lower()] = v.strip()
                with self._lock:
                    mode = self.mode
                    status = self._queue.popleft() if (mode == "answer" and self._queue) else self.status
                    body = self.body
                    rec = {"time": time.time(), "method": method, "path": path, "headers": headers,
                           "status": status if mode == "answer" else None}
                    self.requests.append(rec)
                if mode == "hang":
                    self._stop.wait()
                    return
                served += 1
                if mode == "drop_reused" and served > 1:
                    with self._lock:
                        rec["status"] = None
                    return
                if mode == "garbage":
                    c.sendall(b"SSH-2.0-not-http\r\n\r\n")
                    return
                if mode == "eof_body":
                    c.sendall(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" %
                               (status, REASONS.get(status, "Status"))).encode() + body)
                    return
                if mode == "chunked":
                    out = ("HTTP/1.1 %d %s\r\nTransfer-Encoding: chunked\r\n\r\n" %
                           (status, REASONS.get(status, "Status"))).encode()
                    for i in range(0, len(body), 3):
                        out += b"%x\r\n%s\r\n" % (len(body[i:i + 3]), body[i:i + 3])
                    c.sendall(out + b"0\r\n\r\n")
                    continue
                if mode == "stall_body":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: 1000\r\n\r\npartial")
                    self._stop.wait()
                    return
                out = ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                       "Connection: keep-alive\r\n\r\n" % (status, REASONS.get(status, "Status"),
                                                           len(body))).encode()
                if method != "HEAD":
                    out += body
                c.sendall(out)
        except OSError:
            pass
        finally:
            self._track(c, False)
            try:
                c.close()
            except OSError:
                pass

    def _wrap(self, c):
        t = self.tls.wrap_socket(c, server_side=True, do_handshake_on_connect=False)
        self._track(t, True)
        t.do_handshake()
        return t


# ---- a test CA ---------------------------------------------------------------

def make_test_ca(directory):
    """Make a CA and a server certificate for 127.0.0.1 and localhost, signed by it, with
    the openssl CLI. Returns dict(ca=..., cert=..., key=...) of PEM file paths."""
    def run(*args):
        r = subprocess.run(["openssl"] + list(args), cwd=directory, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=herd e2e test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return {k: os.path.join(directory, v) for k, v in
            (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"))}


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# ---- as a service's command ----------------------------------------------------------

def serve_main(argv=None):
    """python3 servers.py [--port N] [--status S] [--body B] [--tls CERT KEY]
    Serve HTTP (or HTTPS) on 127.0.0.1:N until SIGTERM/SIGINT: a test server run as a
    service's command (with "${port}" for N)."""
    import argparse
    import signal as _signal
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--body", default="ok")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    a = ap.parse_args(argv)
    srv = HTTPServer(a.status, a.body, tls=tls_context(*a.tls) if a.tls else None, port=a.port)
    done = threading.Event()
    _signal.signal(_signal.SIGTERM, lambda *_: done.set())
    _signal.signal(_signal.SIGINT, lambda *_: done.set())
    print("serving on port %d" % srv.port, flush=True)
    while not done.wait(1.0):
        pass
    srv.stop()


if __name__ == "__main__":
    serve_main()
