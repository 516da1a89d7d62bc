"""Compute nodes as network namespaces for the tunnel tests (standard library only).

A Node is a network namespace joined to this machine by a veth pair (10.X.Y.1 here,
10.X.Y.2 inside), with its own loopback and its own private sshd: a service bound to
127.0.0.1 inside it is reachable from here only through that sshd. partition() and heal()
take the link down and up (`ip link set down`), as a switch or a cable would.
"""
import os
import shutil
import subprocess
import sys

import sshd


def available():
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 (ip) is not installed: scripts/deps.sh --test"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if r.returncode != 0:
        return "ip netns does not work here: " + r.stderr.strip()
    return None


def _ip(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class Node:
    _count = 0

    def __init__(self, label="node", hosts=None, sshd_extra=()):
        """hosts: the node's own /etc/hosts (`ip netns exec` mounts /etc/netns/NS/hosts over
        it for whatever runs in the node, its sshd's sessions included), or None: the host's."""
        Node._count += 1
        pid = os.getpid()
        self.ns = "herd-%d-%d" % (pid, Node._count)
        self.etc = None
        if hosts is not None:
            self.etc = os.path.join("/etc/netns", self.ns)
            os.makedirs(self.etc, exist_ok=True)
            with open(os.path.join(self.etc, "hosts"), "w") as f:
                f.write(hosts)
        self.veth = "hv%d%d" % (pid % 100000, Node._count)  # (15 bytes at most)
        net = "10.%d.%d" % (100 + pid % 150, Node._count % 250)
        self.here, self.addr = net + ".1", net + ".2"
        self.sshd = None
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        try:
            _ip("link", "set", "lo", "up", ns=self.ns)
            _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
            _ip("addr", "add", self.here + "/24", "dev", self.veth)
            _ip("link", "set", self.veth, "up")
            _ip("addr", "add", self.addr + "/24", "dev", "eth0", ns=self.ns)
            _ip("link", "set", "eth0", "up", ns=self.ns)
            self.sshd = sshd.PrivateSshd(alias=label, addr=self.addr, netns=self.ns, port=22, extra=sshd_extra)
            self.sshd.start()
        except BaseException:
            self.close()
            raise

    def exec_argv(self, argv):
        """argv run inside the node (`ip netns exec` execs it: the pid stays the program's)."""
        return ["ip", "netns", "exec", self.ns] + list(argv)

    def relay(self, port, to_port=None):
        """Inside the node, 127.0.0.1:port relayed to this host's side of the link (to_port,
        default the same): a daemon of this host's reached from the node as if local. Returns
        the relay's process (the caller ends it)."""
        code = r"""
import socket, sys, threading
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); ls.bind(("127.0.0.1", int(src))); ls.listen(64)
print("ok", flush=True)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    finally:
        for x in (a, b):
            try: x.shutdown(socket.SHUT_RDWR)
            except OSError: pass
while True:
    c, _ = ls.accept()
    try: u = socket.create_connection((dst, port), timeout=5)
    except OSError: c.close(); continue
    u.settimeout(None)
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"""
        p = subprocess.Popen(self.exec_argv([sys.executable, "-c", code, str(port), self.here, str(to_port or port)]),
                             stdout=subprocess.PIPE)
        if p.stdout.readline().strip() != b"ok":
            p.kill()
            p.wait()
            raise RuntimeError("the relay for port %d did not start in %s" % (port, self.ns))
        return p

    def partition(self):
        _ip("link", "set", self.veth, "down")

    def heal(self):
        _ip("link", "set", self.veth, "up")

    def close(self):
        if self.sshd:
            self.sshd.stop()
        _ip("link", "del", self.veth, check=False)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        if self.etc:
            shutil.rmtree(self.etc, ignore_errors=True)
