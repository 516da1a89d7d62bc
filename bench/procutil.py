"""/proc helpers for the benchmark: stat parsing, CPU, memory, fds, process trees,
waiting for processes to exit (pidfd), and finding a freshly forked child quickly.
Standard library only; Linux only."""
import os
import subprocess
import platform
import sys
import select
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _read(path, n=4096):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, n)
    finally:
        os.close(fd)


def stat(pid):
    """Fields of /proc/PID/stat we use, or None if the process is gone."""
    try:
        b = _read("/proc/%d/stat" % pid)
    except OSError:
        return None
    lp, rp = b.find(b"("), b.rfind(b")")
    f = b[rp + 2:].split()
    # f[0] is field 3 (state)
    return {"comm": b[lp + 1:rp].decode(errors="replace"), "state": f[0].decode(), "ppid": int(f[1]),
            "utime": int(f[11]), "stime": int(f[12]), "starttime": int(f[19])}


def alive(pid):
    s = stat(pid)
    return s is not None and s["state"] not in ("Z", "X")


def cpu_ns(pid):
    """CPU time of the process in ns: sum_exec_runtime from schedstat (ns precision), and
    utime+stime from stat (clock-tick precision) as a cross-check. (None, None) if gone."""
    s = stat(pid)
    if s is None:
        return None, None
    ticks_ns = (s["utime"] + s["stime"]) * (1_000_000_000 // CLK_TCK)
    try:
        sched = int(_read("/proc/%d/schedstat" % pid).split()[0])
    except (OSError, ValueError, IndexError):
        sched = None
    return sched, ticks_ns


def cpu_ns_threads(pid):
    """CPU time of the whole process in ns: (sum of every live thread's schedstat
    sum_exec_runtime, utime+stime from /proc/PID/stat in ns, which also counts threads that
    have exited, at clock-tick precision). /proc/PID/schedstat alone is the main thread's.
    (None, None) if the process is gone."""
    _, ticks = cpu_ns(pid)
    if ticks is None:
        return None, None
    total = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                total += int(_read("/proc/%d/task/%s/schedstat" % (pid, t)).split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return None, None
    return total, ticks


def status_fields(pid, keys=("VmRSS", "VmHWM", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def rss_kib(pid):
    s = status_fields(pid, ("VmRSS",))
    return s.get("VmRSS") if s else None


def anon_kib(pid):
    """Anonymous memory (heap, stacks, private writable data) from smaps_rollup. Unlike
    PSS/USS it does not move when other processes map or unmap the same libraries."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_busy():
    """(busy, total) jiffies over all cpus from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return total - v[3] - v[4], total


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def all_stats():
    """{pid: stat} for every process (one /proc scan)."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = stat(int(name))
            if s:
                out[int(name)] = s
    return out


def children(ppid, stats=None):
    stats = stats if stats is not None else all_stats()
    return [p for p, s in stats.items() if s["ppid"] == ppid and s["state"] not in ("Z", "X")]


def descendants(pid, stats=None):
    """[(pid, starttime)] of all live descendants (one /proc scan)."""
    stats = stats if stats is not None else all_stats()
    kids = {}
    for p, s in stats.items():
        kids.setdefault(s["ppid"], []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if stats[c]["state"] not in ("Z", "X"):
                out.append((c, stats[c]["starttime"]))
            todo.append(c)
    return out


def kill_exact(pid, starttime, sig):
    """Signal pid only if it is still the same process (same start time)."""
    s = stat(pid)
    if s is None or s["starttime"] != starttime or s["state"] in ("Z", "X"):
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


class ExitWatch:
    """Watch a set of processes through pidfds; wait() returns when all have exited
    (exit = the kernel notifies the pidfd, i.e. the process is a zombie or reaped)."""

    def __init__(self, pids_with_start):
        self.poll = select.poll()
        self.fds = {}
        self.gone_at = {}
        for pid, st in pids_with_start:
            try:
                fd = os.pidfd_open(pid)
            except (ProcessLookupError, OSError):
                self.gone_at[pid] = 0.0
                continue
            s = stat(pid)
            if s is None or (st is not None and s["starttime"] != st):
                os.close(fd)
                self.gone_at[pid] = 0.0
                continue
            self.fds[fd] = pid
            self.poll.register(fd, select.POLLIN)

    def wait(self, t0, timeout):
        """Wait until all exited or timeout. Returns the list of pids still alive.
        gone_at[pid] = seconds after t0 (perf_counter) when its exit was seen."""
        deadline = t0 + timeout
        while self.fds:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            for fd, _ in self.poll.poll(max(1, int(left * 1000))):
                now = time.perf_counter()
                pid = self.fds.pop(fd)
                self.poll.unregister(fd)
                os.close(fd)
                self.gone_at[pid] = now - t0
        return list(self.fds.values())

    def close(self):
        for fd in list(self.fds):
            try:
                self.poll.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
        self.fds.clear()


def pid_max():
    try:
        return int(_read("/proc/sys/kernel/pid_max").strip())
    except OSError:
        return 32768


def last_pid():
    return int(_read("/proc/sys/kernel/ns_last_pid").strip())


def next_free_pids(after, k, pmax):
    """The next k pids the kernel can hand out after `after` (skipping pids in use,
    wrapping to 300 = RESERVED_PIDS past pid_max)."""
    out, p, steps = [], after, 0
    while len(out) < k and steps < pmax:
        p += 1
        steps += 1
        if p >= pmax:
            p = 300
        if not os.path.exists("/proc/%d" % p):
            out.append(p)
    return out


def _ppid_comm(pid):
    try:
        b = _read("/proc/%d/stat" % pid, 512)
    except OSError:
        return None, None
    rp = b.rfind(b")")
    f = b[rp + 2:rp + 40].split()
    return int(f[1]), b[b.find(b"(") + 1:rp]


def kill_and_find_new_child(victim, parent, exec_comm=b"sleep", timeout=5.0):
    """SIGKILL `victim` and find, in a tight loop, the new process whose parent is
    `parent`. Probes the next free pids directly (a few open()s per round, ~tens of us)
    and falls back to a full /proc scan every 50 ms. Returns a dict with times in ms
    after the kill: fork (new pid visible), exec (its comm became exec_comm), or None."""
    pmax = pid_max()
    before = set(children(parent))
    cands = next_free_pids(last_pid(), 12, pmax)
    t_wall = time.time()
    t0 = time.perf_counter()
    os.kill(victim, 9)
    deadline = t0 + timeout
    next_scan = t0 + 0.05
    new = None
    rounds = 0
    while new is None:
        rounds += 1
        for p in cands:
            ppid, comm = _ppid_comm(p)
            if ppid == parent and p != victim:
                new = p
                break
        if new is not None:
            break
        now = time.perf_counter()
        if now > deadline:
            return {"wall": t_wall, "error": "no new child of %d within %.1fs" % (parent, timeout)}
        if now > next_scan:
            for p in children(parent):
                if p not in before and p != victim:
                    new = p
                    break
            next_scan = time.perf_counter() + 0.05
        os.sched_yield()
    t_fork = time.perf_counter()
    t_exec = None
    while time.perf_counter() < deadline:
        ppid, comm = _ppid_comm(new)
        if comm is None:
            break
        if comm == exec_comm:
            t_exec = time.perf_counter()
            break
        os.sched_yield()
    return {"wall": t_wall, "pid": new, "fork_ms": (t_fork - t0) * 1e3,
            "exec_ms": (t_exec - t0) * 1e3 if t_exec else None, "rounds": rounds}


# ---- shared by the bench scripts ----

class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop("signal %d" % signum)


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def tool_version(argv):
    """The first line a tool prints about itself, or "? (why)"."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except Exception as e:
        return "? (%s)" % e


def loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg writes them."""
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def host_line():
    return "host: %s, kernel %s, %d cpus, python %s, load average at start %s" % (
        platform.node(), platform.release(), os.cpu_count(), platform.python_version(), loadavg())


def fmt_value(v, fmt):
    """A table cell: "-" for None, yes/NO for booleans, else fmt % v."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return fmt % v
