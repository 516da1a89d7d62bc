"""A private OpenSSH sshd on loopback for the tunnel tests (standard library only).

Everything lives in one fresh 0700 directory; nothing under /etc/ssh is touched. The
listener runs in the foreground as our child (-D), so it is stopped by its pid; the
per-connection sshd processes are its children (kill_connections ends only those: "the
connection to the host is lost" while the listener stays).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from servers import free_port  # never the same port twice in one process

SSHD = "/usr/sbin/sshd"


def available():
    return os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")


def wait_port(host, port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def ssh_processes(port=None):
    """Pids of live ssh client processes (by executable); with `port`, only those aimed at that
    sshd port (other test runs on the machine have their own)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.path.basename(os.readlink("/proc/%s/exe" % d)) != "ssh":
                continue
            if port is not None:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    args = f.read().decode(errors="replace").split("\0")
                if not ({str(port), "-p%d" % port, "Port=%d" % port} & set(args)):
                    continue
            with open("/proc/%s/stat" % d) as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(int(d))
        except OSError:
            pass
    return out


def keygen(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)
    os.chmod(path, 0o600)


class PrivateSshd:
    def __init__(self, alias="testhost", addr="127.0.0.1", netns=None, port=None, max_startups="200:30:400",
                 extra=()):
        """An sshd on addr (in network namespace netns when given: a "compute node"); `extra`:
        more sshd_config lines (e.g. "SetEnv SLURM_CONF=..." for a login node)."""
        self.dir = tempfile.mkdtemp(prefix="herd-sshd-")
        os.chmod(self.dir, 0o700)
        self.addr = addr
        self.netns = netns
        self.port = port or free_port()
        self.host_alias = alias
        self.proc = None
        d = self.dir
        keygen(os.path.join(d, "host_ed25519"), "test-host")
        keygen(os.path.join(d, "client_ed25519"), "test-client")
        self.client_key = os.path.join(d, "client_ed25519")
        shutil.copy(self.client_key + ".pub", os.path.join(d, "authorized_keys"))
        os.chmod(os.path.join(d, "authorized_keys"), 0o600)
        with open(os.path.join(d, "host_ed25519.pub")) as f:
            key = " ".join(f.read().split()[:2])
        self.known_hosts = os.path.join(d, "known_hosts")
        with open(self.known_hosts, "w") as f:
            f.write("%s %s\n%s %s\n" % (self.known_name(), key, alias, key))
        self.log_path = os.path.join(d, "sshd.log")
        with open(os.path.join(d, "sshd_config"), "w") as f:
            f.write("\n".join([
                "ListenAddress %s:%d" % (addr, self.port),
                "HostKey %s/host_ed25519" % d,
                "PidFile %s/sshd.pid" % d,
                "AuthorizedKeysFile %s/authorized_keys" % d,
                "AllowUsers root",
                "UsePAM no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                # The directory may sit under a world-writable one (/tmp): a test fixture only.
                "StrictModes no",
                "AllowTcpForwarding yes",
                "X11Forwarding no",
                "PermitTTY no",
                "PrintMotd no",
                "MaxStartups %s" % max_startups,  # (sshd's default: 10:30:100)
                "LogLevel VERBOSE"] + list(extra) + [""]))

    def known_name(self):
        """The host as ssh names it in known_hosts (the port only when it is not 22)."""
        return self.addr if self.port == 22 else "[%s]:%d" % (self.addr, self.port)

    def known_hosts_with_wrong_key(self):
        other = os.path.join(self.dir, "other_host")
        if not os.path.exists(other):
            keygen(other, "other-host")
        with open(other + ".pub") as f:
            key = " ".join(f.read().split()[:2])
        path = os.path.join(self.dir, "known_hosts_wrong")
        with open(path, "w") as f:
            f.write("%s %s\n%s %s\n" % (self.known_name(), key, self.host_alias, key))
        return path

    def start(self):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        cfg = os.path.join(self.dir, "sshd_config")
        subprocess.run([SSHD, "-t", "-f", cfg], check=True)
        self.logf = open(self.log_path, "ab")
        pre = ["ip", "netns", "exec", self.netns] if self.netns else []  # (execs sshd: its pid is sshd's)
        self.proc = subprocess.Popen(pre + [SSHD, "-D", "-e", "-f", cfg], stdout=self.logf, stderr=self.logf)
        if not wait_port(self.addr, self.port, 10):
            raise AssertionError("sshd did not listen:\n" + self.log())

    def kill_connections(self):
        """End every established connection (its sshd process); the listener stays."""
        n = 0
        for pid in children(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except ProcessLookupError:
                pass
        return n

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)

    def halt(self):
        """Stop the listener and every connection; start() brings the same host back."""
        if self.proc and self.proc.poll() is None:
            kids = children(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None
