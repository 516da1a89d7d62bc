#!/usr/bin/env python3
"""ssh tunnels: herd's endpoints (one OpenSSH ControlMaster per host, forwards added with
`-O forward`) against one `ssh -L` process per tunnel, as Blackfish opens them. Run through
`bash bench/run.sh tunnels` (root: private sshds, a network namespace; BENCH_QUICK=1: 20
tunnels, fewer samples).

1. N tunnels (default 100) across 4 hosts (4 private sshds on loopback with sshd's default
   MaxStartups 10:30:100): time from start to every local port answering end to end,
   ssh client processes, their memory (PSS), failures; herd, then `ssh -L` x N started
   at once.
2. One path, three ways (direct, herd's endpoint, `ssh -L`): download throughput (MiB/s)
   and request/response latency (p50, p99; added p50 over direct).
3. A compute node as a network namespace: link down -> the service UNKNOWN, link up ->
   HEALTHY again (seconds; ServerAliveInterval 1 s, CountMax 2).
4. A fixed local endpoint re-pointed at another target on one master (bench_repoint, built
   beside herd): how long new connections are refused, herd's way (a cancel and an add back
   to back on its control connection, src/sshmux.c) against `ssh -O cancel` + `ssh -O
   forward`; and whether a connection made before keeps answering.
Standard library only (and tests/e2e/sshd.py, netns.py)."""
import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "tests", "e2e"))
import netns  # noqa: E402
import sshd  # noqa: E402
from procutil import host_line, log  # noqa: E402
from systems import UnixHTTPConnection  # noqa: E402

PING = b"ping\n"


# ---- the targets: one process serving many ports ----------------------------------------
def serve(ports):
    """Each connection: a line "ping" is answered "pong"; a line "get N" gets N bytes."""
    payload = b"x" * (1 << 20)

    async def handle(r, w):
        try:
            while True:
                line = await r.readline()
                if not line:
                    break
                if line.startswith(b"get "):
                    n = int(line[4:])
                    while n > 0:
                        k = min(n, len(payload))
                        w.write(payload[:k])
                        n -= k
                        await w.drain()
                else:
                    w.write(b"pong\n")
                    await w.drain()
        except (ConnectionError, ValueError):
            pass
        w.close()

    async def main():
        servers = [await asyncio.start_server(handle, "127.0.0.1", p, reuse_address=True) for p in ports]
        print("ready", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))
    asyncio.run(main())


class Targets:
    def __init__(self, ports):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", ",".join(map(str, ports))],
                                     stdout=subprocess.PIPE)
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("target server did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def answers(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(PING)
            return c.recv(16) == b"pong\n"
    except OSError:
        return False


PROBE_EVERY = 0.025  # a round over the ports not answering yet, then this pause


def wait_all(ports, limit):
    """Seconds until every port answers end to end, or None; and how many answered.
    A round of 100 refused connects costs Python ~3 ms of CPU: with a 5 ms pause the prober
    took a third of a core, on 2 cores, from the very start-up it timed. So a round every
    PROBE_EVERY (the figure is that much coarser), the same for every contender."""
    t0 = time.monotonic()
    left = set(ports)
    while left and time.monotonic() - t0 < limit:
        for p in list(left):
            if answers(p, 0.2):
                left.discard(p)
        if left:
            time.sleep(PROBE_EVERY)
    return (time.monotonic() - t0 if not left else None), len(ports) - len(left)


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ssh_pids(marker):
    out = []
    for pid in sshd.ssh_processes():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if marker.encode() in f.read():
                    out.append(pid)
        except OSError:
            pass
    return out


# ---- herd ---------------------------------------------------------------------------
class Herd:
    def __init__(self, binary, cfg):
        self.dir = tempfile.mkdtemp(prefix="herd-bench-tun-")
        os.makedirs(self.dir + "/conf")
        with open(self.dir + "/conf/services.json", "w") as f:
            json.dump(cfg, f)
        self.sock = self.dir + "/state/herd.sock"
        self.log = open(self.dir + "/herd.log", "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([binary, "daemon", "--config", self.dir + "/conf", "--state-dir",
                                      self.dir + "/state", "--log-level", "debug"], stdout=self.log, stderr=self.log)

    def get(self, path):
        c = UnixHTTPConnection(self.sock, timeout=10)
        try:
            c.request("GET", path)
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def service(self, name):
        return self.get("/v1/services/" + name).get("service", {})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.copy(self.dir + "/herd.log", os.path.join(tempfile.gettempdir(), "herd-bench-tunnels.log"))
        shutil.rmtree(self.dir, ignore_errors=True)


def host_cfg(name, sd, addr="127.0.0.1"):
    return {"name": name, "destination": "root@%s" % addr, "port": sd.port, "identity_file": sd.client_key,
            "known_hosts": sd.known_hosts, "server_alive_interval": "1s", "server_alive_count": 2}


def ssh_l_argv(sd, lport, tport):
    return ["ssh", "-N", "-L", "127.0.0.1:%d:127.0.0.1:%d" % (lport, tport), "-p", str(sd.port), "-i", sd.client_key,
            "-o", "UserKnownHostsFile=" + sd.known_hosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null", "root@127.0.0.1"]


def bench_many(binary, n, nhosts, limit):
    sds = [sshd.PrivateSshd(alias="h%d" % i, max_startups="10:30:100") for i in range(nhosts)]
    for sd in sds:
        sd.start()
    tports = free_ports(n)
    targets = Targets(tports)
    rows = []
    try:
        # herd: one master per host, the forwards on it.
        lports = free_ports(n)
        cfg = {"hosts": [host_cfg("h%d" % i, sd) for i, sd in enumerate(sds)],
               "services": [{"name": "t%03d" % i, "command": ["sleep", "1d"], "ssh": "h%d" % (i % nhosts),
                             "endpoint": {"port": tports[i], "local_port": lports[i]}} for i in range(n)]}
        h = Herd(binary, cfg)
        try:
            secs, ok = wait_all(lports, limit)
            pids = [x["pid"] for x in h.get("/v1/hosts")["hosts"] if x.get("pid")]
            rows.append(("herd (ControlMaster per host)", secs, ok, len(ssh_pids(h.dir) or pids),
                         sum(pss_kib(p) for p in pids), n - ok))
        finally:
            h.stop()
        # Blackfish: one ssh -L per tunnel, all started at once.
        lports = free_ports(n)
        logs = open(os.devnull, "wb")
        t0 = time.monotonic()
        procs = [subprocess.Popen(ssh_l_argv(sds[i % nhosts], lports[i], tports[i]), stdin=subprocess.DEVNULL,
                                  stdout=logs, stderr=logs) for i in range(n)]
        try:
            secs, ok = wait_all(lports, limit)
            secs = secs if secs is None else time.monotonic() - t0
            alive = [p for p in procs if p.poll() is None]
            rows.append(("ssh -L per tunnel (Blackfish)", secs, ok, len(alive), sum(pss_kib(p.pid) for p in alive),
                         sum(1 for p in procs if p.poll() not in (None, 0))))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait()
            logs.close()
    finally:
        targets.stop()
        for sd in sds:
            sd.stop()
    return rows


# ---- one path, three ways --------------------------------------------------------------
def throughput(port, nbytes):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        t0 = time.monotonic()
        c.sendall(b"get %d\n" % nbytes)
        got, buf = 0, bytearray(1 << 20)
        while got < nbytes:
            k = c.recv_into(buf)
            if not k:
                break
            got += k
        dt = time.monotonic() - t0
    return got / dt / (1 << 20)


def latency(port, k):
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(k):
            t0 = time.perf_counter()
            c.sendall(PING)
            if c.recv(16) != b"pong\n":
                raise RuntimeError("bad answer")
            out.append((time.perf_counter() - t0) * 1e3)
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99)]


def bench_path(binary, nbytes, rounds, samples):
    sd = sshd.PrivateSshd(alias="p")
    sd.start()
    tport, lport, sport = free_ports(3)
    targets = Targets([tport])
    rows = []
    h = Herd(binary, {"hosts": [host_cfg("p", sd)], "services": [
        {"name": "p", "command": ["sleep", "1d"], "ssh": "p", "endpoint": {"port": tport, "local_port": lport}}]})
    sl = subprocess.Popen(ssh_l_argv(sd, sport, tport), stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paths = (("direct", tport), ("herd endpoint", lport), ("ssh -L", sport))
    try:
        for what, port in paths:
            if wait_all([port], 30)[0] is None:
                raise RuntimeError("%s did not come up" % what)
        # Interleaved (each sample runs every path once): drift in the machine's load
        # lands on all three alike.
        tps = {w: [] for w, _ in paths}
        lats = {w: [] for w, _ in paths}
        for _ in range(samples):
            for what, port in paths:
                tps[what].append(throughput(port, nbytes))
                lats[what].append(latency(port, rounds))
        for what, _ in paths:
            rows.append([what, statistics.median(tps[what]), statistics.median(x[0] for x in lats[what]),
                         statistics.median(x[1] for x in lats[what])])
    finally:
        sl.terminate()
        sl.wait()
        h.stop()
        targets.stop()
        sd.stop()
    return rows


# ---- partition ------------------------------------------------------------------------
def bench_partition(binary, samples):
    why = netns.available()
    if why:
        return None, why
    node = netns.Node("bnode")
    lport = free_ports(1)[0]
    sd = node.sshd
    cfg = {"hosts": [dict(host_cfg("n", sd, node.addr), connect_timeout="2s")], "services": [
        {"name": "web", "ssh": "n", "command": node.exec_argv([sys.executable, "-m", "http.server", "8000", "--bind",
                                                               "127.0.0.1"]),
         "endpoint": {"port": 8000, "local_port": lport},
         "check": {"type": "http", "path": "/", "interval": "200ms", "timeout": "1s"}}]}
    h = Herd(binary, cfg)
    lost, back = [], []

    def wait_state(want, limit=120):
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            try:
                if h.service("web").get("state") == want:
                    return time.monotonic() - t0
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        with open(h.dir + "/herd.log", errors="replace") as f:
            raise RuntimeError("web never became %s:\n%s" % (want, f.read()[-3000:]))
    try:
        wait_state("HEALTHY")
        for _ in range(samples):
            node.partition()
            lost.append(wait_state("UNKNOWN"))
            node.heal()
            back.append(wait_state("HEALTHY"))
            # The next cut from a steady host: a host up less than 30 s keeps its backoff
            # (a flapping link backs off further: 1, 2, 4, 8... s), which is not the figure.
            time.sleep(31)
        restarts = h.service("web")["restarts"]
    finally:
        h.stop()
        node.close()
    return (lost, back, restarts), None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--herd", default=os.path.join(here, "..", "build", "herd"))
    ap.add_argument("--herd-info", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=100, help="tunnels (default 100)")
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--mib", type=int, default=256, help="MiB per throughput sample")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--parts", default="many,path,partition,repoint", help="which parts (default: all four)")
    ap.add_argument("--rounds", type=int, default=200, help="re-points per way (default 200)")
    args = ap.parse_args()
    if args.serve:
        serve([int(p) for p in args.serve.split(",")])
        return
    if args.quick:
        args.n, args.mib, args.samples, args.rounds = 20, 32, 2, 20
    if not sshd.available():
        sys.exit("tunnels.py: OpenSSH (sshd, ssh, ssh-keygen) is not installed: scripts/deps.sh --test")
    print("# ssh tunnels: herd vs one ssh -L per tunnel (%s)" % host_line())
    print("# herd: %s (%s); %s" % (args.herd, args.herd_info,
                                   subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()))
    parts = args.parts.split(",")
    if "many" in parts:
        many(args)
    if "path" in parts:
        path(args)
    if "partition" in parts:
        partition(args)
    if "repoint" in parts:
        repoint(args)


def many(args):
    log("1/3: %d tunnels across %d hosts" % (args.n, args.hosts))
    rows = bench_many(args.herd, args.n, args.hosts, 60)
    print("\n## %d tunnels across %d hosts (sshd MaxStartups 10:30:100, its default)" % (args.n, args.hosts))
    print("%-32s %14s %10s %12s %14s %9s" % ("how", "all reachable", "reachable", "ssh procs", "ssh PSS", "failures"))
    for how, secs, ok, procs, pss, fails in rows:
        print("%-32s %14s %10s %12d %11.1f MiB %9d" % (how, "%.3f s" % secs if secs is not None else "never (60 s)",
                                                      "%d/%d" % (ok, args.n), procs, pss / 1024, fails))


def path(args):
    log("2/3: throughput and latency on one path")
    rows = bench_path(args.herd, args.mib << 20, 2000, args.samples)
    print("\n## One path (loopback), median of %d: download of %d MiB, 2,000 request/response round trips"
          % (args.samples, args.mib))
    print("%-16s %12s %12s %12s %14s %16s" % ("path", "MiB/s", "p50 ms", "p99 ms", "added p50 ms", "vs ssh -L"))
    direct, sshl = rows[0], rows[2]
    for what, tp, p50, p99 in rows:
        print("%-16s %12.1f %12.3f %12.3f %14.3f %15.0f%%" % (what, tp, p50, p99, p50 - direct[2], 100 * tp / sshl[1]))


def partition(args):
    log("3/3: partition and heal")
    res, why = bench_partition(args.herd, 2 if args.quick else 3)
    print("\n## A compute node (network namespace) cut off and healed: ServerAliveInterval 1 s, CountMax 2, "
          "each cut from a host up > 30 s")
    if res is None:
        print("skipped: " + why)
    else:
        lost, back, restarts = res
        print("partition -> UNKNOWN: median %.2f s (%s)" % (statistics.median(lost), ", ".join("%.2f" % x for x in lost)))
        print("heal -> HEALTHY:      median %.2f s (%s)" % (statistics.median(back), ", ".join("%.2f" % x for x in back)))
        print("restarts of the service for the partitions: %d" % restarts)


def bench_repoint(binary, rounds):
    sd = sshd.PrivateSshd(alias="rp")
    sd.start()
    a, b, lport = free_ports(3)
    targets = Targets([a, b])
    ctl = tempfile.mkdtemp(prefix="herd-bench-rp-")
    sock = ctl + "/m.sock"
    opts = ["-F", "/dev/null", "-p", str(sd.port), "-i", sd.client_key, "-o", "IdentitiesOnly=yes",
            "-o", "UserKnownHostsFile=" + sd.known_hosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "ControlPersist=no"]
    master = subprocess.Popen(["ssh", "-M", "-N", "-S", sock] + opts +
                              ["-L", "127.0.0.1:%d:127.0.0.1:%d" % (lport, a), "root@127.0.0.1"],
                              stdin=subprocess.DEVNULL)
    rows = []
    try:
        secs, ok = wait_all([lport], 30)
        if secs is None:
            raise RuntimeError("the master's forward never answered")
        for way in ("mux", "ssh"):
            out = subprocess.run([binary, sock, str(lport), str(a), str(b), str(rounds), way] + opts,
                                 capture_output=True, text=True, timeout=600)
            if out.returncode:
                raise RuntimeError("bench_repoint %s: %s" % (way, out.stderr.strip()[-300:]))
            f = out.stdout.split()
            rows.append(dict(zip(f[1::2], f[2::2]), way=f[0]))
    finally:
        master.terminate()
        master.wait()
        targets.stop()
        sd.stop()
        shutil.rmtree(ctl, ignore_errors=True)
    return rows


def repoint(args):
    log("4/4: re-pointing an endpoint")
    binary = os.path.join(os.path.dirname(os.path.abspath(args.herd)), "bench_repoint")
    print("\n## A fixed local endpoint re-pointed between two targets on one master, %d times each way" % args.rounds)
    if not os.access(binary, os.X_OK):
        print("skipped: %s is not built (cmake --build BUILD --target bench_repoint)" % binary)
        return
    rows = bench_repoint(binary, args.rounds)
    print("%-34s %10s %14s %14s %14s %14s %9s %9s" % ("how", "refused", "window p50", "window max", "request p50",
                                                       "request max", "probes", "kept"))
    names = {"mux": "herd: cancel+add on its connection", "ssh": "ssh -O cancel; ssh -O forward"}
    for r in rows:
        print("%-34s %10s %11.3f ms %11.3f ms %11.3f ms %11.3f ms %9s %9s"
              % (names[r["way"]], "%s/%d" % (r["refused_rounds"], args.rounds), float(r["span_p50_ms"]),
                 float(r["span_max_ms"]), float(r["request_p50_ms"]), float(r["request_max_ms"]), r["probes"],
                 r["kept"]))
    print("(refused: re-points during which at least one new connection was refused; window: from the first "
          "refused connect to the first that succeeded after the last refused one)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    main()
