"""A TCP fault proxy for the e2e tests: listens on 127.0.0.1 and forwards each connection to
an upstream, or does to it what its current mode says. Standard library only.

Modes (set with `proxy.mode = ...` at any time; a connection takes the mode when it opens):
  pass      forward both ways
  garbage   read the request, answer bytes that are not HTTP, close
  badjson   forward the request, answer with the upstream's status and headers but a body
            that is not JSON (same length)
  truncate  forward, but cut the upstream's answer in half and close
  stall     accept, read, never answer (until the mode changes or the proxy stops)
  reset     accept, read the request, close with an RST
  blackhole accept and never read or answer (an sshd that accepts and stalls)
"""
import select
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream=None, port=0, mode="pass"):
        self.upstream = upstream  # (host, port) or None
        self.mode = mode
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

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c, self.mode), daemon=True).start()

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
            elif mode in ("truncate", "badjson"):
                # One request per connection: ask the upstream to close after it.
                req = req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1) if b"Connection:" not in req \
                    else req
                ans = self._upstream_answer(req)
                if mode == "truncate":
                    c.sendall(ans[:max(1, len(ans) // 2)])
                else:
                    head, _, body = ans.partition(b"\r\n\r\n")
                    c.sendall(head + b"\r\n\r\n" + (b"{not json" + b"x" * len(body))[:len(body)])
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
