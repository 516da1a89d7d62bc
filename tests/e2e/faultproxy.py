"""A TCP fault proxy for the e2e tests: listens on 127.0.0.1 and forwards each connection to
an upstream, or does to it what its current mode says. Standard library only.

Modes (set with `proxy.mode = ...` at any time; a connection takes the mode when it opens):
  pass      forward both ways
  garbage   read the request, answer bytes that are not HTTP, close
  badjson   read the request, answer a well-framed 200 whose JSON body is cut short (what a
            slurmrestd that lost its mind, or a wrong server on its port, might say)
  truncate  forward, but cut the upstream's answer in half and close
  stall     accept, read, never answer (until the mode changes or the proxy stops)
  reset     accept, read the request, close with an RST
  blackhole accept and never read or answer (an sshd that accepts and stalls)
  delay     hold the request `delay` seconds, then forward it

Changing the mode ends the connections open at the time (a client that keeps its connection
alive meets the new mode on its next one).
"""
import select
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream=None, port=0, mode="pass", delay=10):
        self.upstream = upstream  # (host, port) or None
        self._mode = mode
        self.delay = delay
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        self.accepted = 0
        self.closing = False
        self.conns = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, m):
        with self.lock:
            self._mode = m
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
                mode = self._mode
            threading.Thread(target=self._serve, args=(c, mode), daemon=True).start()

    def _read_request(self, c, timeout=5):
        """One HTTP request (headers and a Content-Length body), or what came."""
        c.settimeout(timeout)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return buf
                buf += b
            head, _, body = buf.partition(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v.strip())
            while len(body) < n:
                b = c.recv(65536)
                if not b:
                    break
                body += b
            return head + b"\r\n\r\n" + body
        except (OSError, ValueError):
            return buf

    @staticmethod
    def _close_after(req):
        """One request per connection: ask the upstream to close after it."""
        head, sep, body = req.partition(b"\r\n\r\n")
        lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
        return b"\r\n".join(lines + [b"Connection: close"]) + sep + body

    def _upstream_answer(self, req):
        u = socket.create_connection(self.upstream, timeout=10)
        try:
            u.sendall(req)
            u.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                b = u.recv(65536)
                if not b:
                    return out
                out += b
        finally:
            u.close()

    def _serve(self, c, mode):
        try:
            if mode == "blackhole":
                while not self.closing and self.mode == "blackhole":
                    time.sleep(0.05)
                return
            if mode == "pass":
                return self._pipe(c)
            req = self._read_request(c)
            if mode == "garbage":
                c.sendall(b"\x00\xffthis is not HTTP at all\r\n\r\n\x01\x02")
            elif mode == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "stall":
                while not self.closing and self.mode == "stall":
                    time.sleep(0.05)
            elif mode == "delay":
                time.sleep(self.delay)
                c.sendall(self._upstream_answer(self._close_after(req)))
            elif mode == "badjson":
                body = b'{"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "jobs": [{"job_id": 1, "job_st'
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                          b"Connection: close\r\n\r\n%s" % (len(body), body))
            elif mode == "truncate":
                ans = self._upstream_answer(self._close_after(req))
                c.sendall(ans[:max(1, len(ans) // 2)])
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _pipe(self, c):
        u = socket.create_connection(self.upstream, timeout=10)
        socks = [c, u]
        try:
            while not self.closing:
                r, _, _ = select.select(socks, [], [], 0.2)
                for s in r:
                    b = s.recv(65536)
                    if not b:
                        return
                    (u if s is c else c).sendall(b)
        except OSError:
            pass
        finally:
            u.close()

    def close(self):
        self.closing = True
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
