"""A real single-node Slurm 22.05 for herd's end-to-end tests: munged, slurmctld, slurmd and
slurmrestd (JWT auth, REST on 127.0.0.1) from Debian 12's packages, started and stopped by the
test process itself, as root, without systemd. Everything lives in one run directory; nothing is
written to /etc/slurm, /etc/munge or /run/munge. Standard library only.
Recipe: /work/shared/reference/slurm-local-cluster.md.

    c = SlurmCluster()
    c.start()                      # ~1-3 s
    try:
        st, body = c.rest("GET", "/slurm/v0.0.38/ping")
        jid = c.submit("echo hi")
        c.wait_job_state(jid, "COMPLETED")
    finally:
        c.stop()                   # ~5-6 s; also registered with atexit

Daemons are stopped by the PIDs this module recorded, never by name. Each daemon carries
HERD_SLURM_RUN=<run dir> in its environment so that a PID read back from a pid file is only
signalled after checking that it still belongs to that run.

`python3 slurm.py` runs a self-check (root only).
Set HERD_SLURM_KEEP=1 to keep the run directory (logs) after stop().
"""
import atexit
import fcntl
import base64
import glob
import hashlib
import hmac
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

API = "v0.0.38"
CTLD_PORT = 6817      # fixed: slurmctld and slurmd bind 0.0.0.0 on these
SLURMD_PORT = 6818
REST_USER = "slurmrest"
RUN_PREFIX = "herd-slurm-"
MARK = "HERD_SLURM_RUN"
PACKAGES = ("munge", "slurmctld", "slurmd", "slurmrestd", "slurm-client", "slurm-wlm-jwt-plugin")
NODE_READY = ("idle", "mix", "alloc", "comp")
NODE_RESUME = ("down*", "drain*", "drng", "down", "drain")
_FILES = (("/usr/sbin/munged", "munge"), ("/usr/bin/munge", "munge"), ("/usr/bin/unmunge", "munge"),
          ("/usr/sbin/slurmctld", "slurmctld"), ("/usr/sbin/slurmd", "slurmd"),
          ("/usr/sbin/slurmrestd", "slurmrestd"), ("/usr/bin/sinfo", "slurm-client"),
          ("/usr/bin/squeue", "slurm-client"), ("/usr/bin/scancel", "slurm-client"),
          ("/usr/bin/scontrol", "slurm-client"))
_hw_cache = None


class SlurmError(RuntimeError):
    """A REST or CLI call failed. status/body: the HTTP reply; job_id: set when a submit
    returned a job id together with errors (the job exists and must be cancelled)."""

    def __init__(self, msg, status=None, body=None, job_id=None):
        super().__init__(msg)
        self.status = status
        self.body = body
        self.job_id = job_id

    @property
    def error_numbers(self):
        return error_numbers(self.body)


def error_numbers(body):
    """The error numbers in a reply's errors[] (v0.0.38 uses error_number or error_code)."""
    out = []
    if isinstance(body, dict):
        for e in body.get("errors") or []:
            if isinstance(e, dict):
                for k in ("error_number", "error_code"):
                    if isinstance(e.get(k), int):
                        out.append(e[k])
    return out


def cluster_available():
    """(True, "ok") when the Slurm packages, the users they create and root are present,
    else (False, a message that says what is missing and how to fix it)."""
    missing = sorted({pkg for path, pkg in _FILES if not os.access(path, os.X_OK)})
    if not glob.glob("/usr/lib/*/slurm-wlm/auth_jwt.so"):
        missing.append("slurm-wlm-jwt-plugin")
    if missing:
        return False, ("real-Slurm tests need the Debian package(s) %s (not installed); run "
                       "`scripts/deps.sh --test` as root" % " ".join(sorted(set(missing))))
    if os.geteuid() != 0:
        return False, ("real-Slurm tests must run as root (slurmd runs as root; the harness writes "
                       "keys owned by slurm and munge and creates the user %s)" % REST_USER)
    for u in ("slurm", "munge"):
        try:
            pwd.getpwnam(u)
        except KeyError:
            return False, ("user %r is missing (the slurm/munge packages create it): reinstall with "
                           "`apt-get install --reinstall %s`" % (u, "munge" if u == "munge" else "slurmctld"))
    for tool in ("/usr/sbin/runuser", "/usr/sbin/useradd"):
        if not os.access(tool, os.X_OK):
            return False, "%s is missing (package util-linux / passwd)" % tool
    return True, "ok"


# ---- processes, by pid only ------------------------------------------------------------

def _stat(pid):
    """(state, ppid, sid, starttime) of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[3]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid):
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _belongs(pid, run):
    """Does process pid belong to the cluster in `run`? (marker in its environment, the run dir
    on its command line as for munged, or its cwd in the run dir as for slurmstepd and jobs).
    A process that is exiting may no longer show any of these: identify it by pid + start time
    once it has been recognised (see _Proc)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            if ("%s=%s" % (MARK, run)).encode() in f.read().split(b"\0"):
                return True
    except OSError:
        pass
    if (run + "/") in _cmdline(pid):
        return True
    try:
        cwd = os.readlink("/proc/%d/cwd" % pid)
    except OSError:
        return False
    return cwd == run or cwd.startswith(run + "/") or cwd == run + " (deleted)"


def cluster_processes(run):
    """Live processes of the cluster in `run` (daemons, slurmstepd, job processes still in the
    run dir): [(pid, ppid, comm, cmdline)]. For reporting; nothing here kills."""
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != os.getpid():
            pid = int(e)
            st = _stat(pid)
            if st and st[0] != "Z" and _belongs(pid, run):
                out.append((pid, st[1], _comm(pid), _cmdline(pid)))
    return out


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class _Proc:
    """A process of this cluster: our child (popen set), or a process found through a pid file
    or /proc and checked with _belongs once (popen None): from then on it is identified by pid
    plus start time, so a reused pid is never signalled."""

    def __init__(self, name, pid, popen, run, logs):
        self.name, self.pid, self.popen, self.run, self.logs = name, pid, popen, run, logs
        st = _stat(pid)
        self.starttime = st[3] if st else None

    def alive(self):
        if self.popen is not None:
            return self.popen.poll() is None
        st = _stat(self.pid)
        return st is not None and st[0] != "Z" and st[3] == self.starttime

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def _terminate(procs, timeout=10):
    """SIGTERM every live proc, wait up to `timeout` s, SIGKILL what is left, wait again."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in procs if p.alive()]
    for p in left:
        print("slurm.py: %s (pid %d) ignored SIGTERM for %ss: SIGKILL" % (p.name, p.pid, timeout),
              file=sys.stderr)
        p.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(p.alive() for p in left) and time.monotonic() < deadline:
        time.sleep(0.05)


def _tail(path, n=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().decode(errors="replace").splitlines()[-n:]
        return "---- %s ----\n%s" % (path, "\n".join(lines))
    except OSError as e:
        return "---- %s: %s" % (path, e)


def _port_busy(addr, port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def _listeners(port):
    try:
        r = subprocess.run(["ss", "-Hltnp", "sport = :%d" % port], capture_output=True, text=True,
                           timeout=5)
        return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def reap_stale_clusters():
    """Stop and remove clusters left in $TMPDIR/herd-slurm-* by a test process that died without
    running its atexit hook (e.g. SIGKILL). Only runs whose owner (harness.pid) is gone are
    touched, only the PIDs recorded in their pid files are signalled, and only after checking
    that each still belongs to that run. Returns the run dirs it removed."""
    removed = []
    for d in sorted(glob.glob(os.path.join(tempfile.gettempdir(), RUN_PREFIX + "*"))):
        if not os.path.isdir(d):
            continue
        owner = _read_pid(os.path.join(d, "harness.pid"))
        if owner is not None and _alive(owner):
            continue
        if owner is None:
            try:
                if time.time() - os.stat(d).st_mtime < 60:
                    continue    # maybe being created right now
            except OSError:
                continue
        c = SlurmCluster(run_dir=d)
        c._attach()
        print("slurm.py: cleaning up stale cluster %s (owner pid %s gone; daemons %s)" % (
            d, owner, {n: p.pid for n, p in c._procs.items()}), file=sys.stderr)
        c.stop(_keep=False)
        removed.append(d)
    return removed


# ---- the cluster -----------------------------------------------------------------------

class SlurmCluster:
    def __init__(self, run_dir=None, rest_port=6820):
        self.rest_port = rest_port
        self.host = socket.gethostname().split(".")[0]
        self.url = "http://127.0.0.1:%d" % rest_port
        self._procs = {}
        self._key = None
        self._atexit = False
        self._stopped = False
        self.timings = {}
        self._set_run(os.path.abspath(run_dir) if run_dir else None)

    def _set_run(self, run):
        self.run = run
        j = (lambda *p: os.path.join(run, *p)) if run else (lambda *p: None)
        self.conf = j("slurm.conf")
        self.jwt_key = j("jwt_hs256.key")
        self.jobs_dir = j("jobs")
        self.socket = j("rest", "slurmrestd.socket")
        self.munge_socket = j("munge", "munge.socket")
        self.log_dir = j("log")
        self.env = None
        if run:
            self.env = dict(os.environ, SLURM_CONF=self.conf)
            self.env.pop("SLURM_JWT", None)

    def _daemon_env(self, **extra):
        env = dict(self.env, **{MARK: self.run})
        env.update(extra)
        return env

    # -- start -----------------------------------------------------------------
    def start(self, timeout=60):
        if any(p.alive() for p in self._procs.values()):
            raise RuntimeError("SlurmCluster already started in %s" % self.run)
        ok, why = cluster_available()
        if not ok:
            raise RuntimeError(why)
        self._lock()
        t0 = time.monotonic()
        deadline = t0 + timeout
        reap_stale_clusters()
        self._check_ports()
        self._stopped = False
        if not self._atexit:
            atexit.register(self._at_exit)
            self._atexit = True
        try:
            self._ensure_rest_user()
            self._make_run()
            self._write_conf()
            self._start_munged(deadline)
            self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i"])
            self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-N", self.host])
            self._wait_node(deadline)
            self._spawn_restd()
            self._wait_restd(deadline)
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def _lock(self):
        """Slurm's ports are fixed, so one test cluster runs on a machine at a time: a second test
        run (another build's suite, a bench) waits here for the first one's cluster to stop."""
        if getattr(self, "_lockf", None):
            return
        f = open(os.path.join(tempfile.gettempdir(), "herd-test-slurm.lock"), "a")
        waited = time.monotonic()
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - waited > 1800:
                    f.close()
                    raise RuntimeError("another test run has held the Slurm test cluster for 30 min")
                time.sleep(0.5)
        self._lockf = f

    def _unlock(self):
        f, self._lockf = getattr(self, "_lockf", None), None
        if f:
            f.close()

    def _check_ports(self):
        for addr, port in (("0.0.0.0", CTLD_PORT), ("0.0.0.0", SLURMD_PORT), ("127.0.0.1", self.rest_port)):
            if _port_busy(addr, port):
                raise RuntimeError(
                    "port %d is already in use, cannot start the test Slurm cluster (a Slurm left by "
                    "another test run that is still alive, or a system Slurm?). Find its pid with "
                    "`ss -ltnp` or in %s/pids/*.pid and stop it by pid.\n%s" % (
                        port, os.path.join(tempfile.gettempdir(), RUN_PREFIX + "*"), _listeners(port)))

    def _ensure_rest_user(self):
        try:
            pwd.getpwnam(REST_USER)
        except KeyError:
            r = subprocess.run(["/usr/sbin/useradd", "--system", "--user-group", "--no-create-home",
                                "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", REST_USER],
                               capture_output=True, text=True)
            if r.returncode != 0:
                try:
                    pwd.getpwnam(REST_USER)      # created concurrently
                except KeyError:
                    raise RuntimeError("useradd %s failed: %s" % (REST_USER, r.stderr.strip()))

    def _make_run(self):
        if self.run is None:
            self._set_run(tempfile.mkdtemp(prefix=RUN_PREFIX))
        else:
            os.makedirs(self.run, exist_ok=True)
        os.chown(self.run, 0, 0)
        os.chmod(self.run, 0o755)
        with open(os.path.join(self.run, "harness.pid"), "w") as f:
            f.write("%d\n" % os.getpid())
        for sub, user, mode in (("log", "slurm", 0o755), ("state", "slurm", 0o700), ("spool", "root", 0o755),
                                ("munge", "munge", 0o755), ("rest", REST_USER, 0o755), ("pids", "root", 0o755),
                                ("jobs", "root", 0o1777)):
            d = os.path.join(self.run, sub)
            os.makedirs(d, exist_ok=True)
            pw = pwd.getpwnam(user)
            os.chown(d, pw.pw_uid, pw.pw_gid)
            os.chmod(d, mode)
        self._write_secret(os.path.join(self.run, "munge", "munge.key"), 1024, "munge", 0o400)
        self._write_secret(self.jwt_key, 32, "slurm", 0o600)
        with open(self.jwt_key, "rb") as f:
            self._key = f.read()

    @staticmethod
    def _write_secret(path, size, user, mode):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(size))
            pw = pwd.getpwnam(user)
            os.fchown(fd, pw.pw_uid, pw.pw_gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _hardware(self):
        global _hw_cache
        if _hw_cache is None:
            env = dict(os.environ)
            env.pop("SLURM_CONF", None)
            r = subprocess.run(["/usr/sbin/slurmd", "-C"], capture_output=True, text=True, env=env, timeout=30)
            line = r.stdout.splitlines()[0] if r.stdout else ""
            if r.returncode != 0 or not line.startswith("NodeName="):
                raise RuntimeError("slurmd -C failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))
            _hw_cache = line.split(" ", 1)[1].strip()
        return _hw_cache

    def cpus(self):
        """The node's CPU count as slurmd -C reports it (what slurm.conf gives the node)."""
        for field in self._hardware().split():
            if field.startswith("CPUs="):
                return int(field[5:])
        raise RuntimeError("slurmd -C gave no CPUs=: %s" % self._hardware())

    def _write_conf(self):
        R = self.run
        text = """\
ClusterName=test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={R}/munge/munge.socket
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key={R}/jwt_hs256.key
StateSaveLocation={R}/state
SlurmdSpoolDir={R}/spool
SlurmctldPidFile={R}/slurmctld.pid
SlurmdPidFile={R}/slurmd.pid
SlurmctldLogFile={R}/log/slurmctld.log
SlurmdLogFile={R}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
MaxJobCount=10000
NodeName={host} NodeAddr=127.0.0.1 NodeHostname={host} {hw} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""".format(host=self.host, ctld=CTLD_PORT, slurmd=SLURMD_PORT, R=R, hw=self._hardware())
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o644)

    def _fail(self, what, *logs):
        return RuntimeError("test Slurm cluster: %s (run dir %s)\n%s" % (
            what, self.run, "\n".join(_tail(os.path.join(self.run, l)) for l in logs)))

    def _start_munged(self, deadline):
        mdir = os.path.join(self.run, "munge")
        for f in ("munge.socket", "munge.socket.lock"):
            try:
                os.unlink(os.path.join(mdir, f))
            except FileNotFoundError:
                pass
        pidfile = os.path.join(mdir, "munged.pid")
        with open(os.path.join(self.log_dir, "munged.stderr"), "ab") as err:
            r = subprocess.run(
                ["/usr/sbin/runuser", "-u", "munge", "--", "/usr/sbin/munged",
                 "--socket=" + self.munge_socket, "--key-file=%s/munge.key" % mdir,
                 "--pid-file=" + pidfile, "--log-file=%s/munged.log" % mdir,
                 "--seed-file=%s/munged.seed" % mdir],
                cwd=self.run, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=self._daemon_env(),
                start_new_session=True, timeout=max(1, deadline - time.monotonic()))
        if r.returncode != 0:
            raise self._fail("munged exited with %d" % r.returncode, "log/munged.stderr", "munge/munged.log")
        while True:
            pid = _read_pid(pidfile)
            if pid and _alive(pid) and _belongs(pid, self.run):
                self._procs["munged"] = _Proc("munged", pid, None, self.run, ["munge/munged.log"])
                break
            if time.monotonic() > deadline:
                raise self._fail("munged wrote no pid file", "log/munged.stderr", "munge/munged.log")
            time.sleep(0.02)
        while True:
            m = subprocess.run(["/usr/bin/munge", "-S", self.munge_socket, "-n"], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=10)
            if m.returncode == 0:
                u = subprocess.run(["/usr/bin/unmunge", "-S", self.munge_socket], input=m.stdout,
                                   capture_output=True, timeout=10)
                if u.returncode == 0:
                    return
            if not self._procs["munged"].alive():
                raise self._fail("munged died", "log/munged.stderr", "munge/munged.log")
            if time.monotonic() > deadline:
                raise self._fail("munged not ready: %s" % (m.stderr or b"").decode(errors="replace").strip(),
                                 "munge/munged.log")
            time.sleep(0.05)

    def _spawn(self, name, cmd, env=None, log=None):
        log = log or "log/%s.stderr" % name
        with open(os.path.join(self.run, log), "ab") as logf:
            p = subprocess.Popen(cmd, cwd=self.run, stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=subprocess.STDOUT, env=env or self._daemon_env(),
                                 start_new_session=True, close_fds=True)
        with open(os.path.join(self.run, "pids", name + ".pid"), "w") as f:
            f.write("%d\n" % p.pid)
        logs = [log] if name == "slurmrestd" else ["log/%s.log" % name, log]
        self._procs[name] = _Proc(name, p.pid, p, self.run, logs)
        return p

    def _alive(self, name):
        p = self._procs.get(name)
        return p is not None and p.alive()

    def node_state(self):
        """sinfo's short state of our node ('idle', 'alloc', 'down*', ...), or None."""
        try:
            r = subprocess.run(["sinfo", "-h", "-n", self.host, "-o", "%t"], env=self.env,
                               capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return None
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None

    def _wait_node(self, deadline):
        last_resume = 0.0
        state = None
        while True:
            for n in ("slurmctld", "slurmd"):
                p = self._procs[n]
                if not p.alive():
                    raise self._fail("%s exited with %s" % (n, p.popen.returncode), *p.logs)
            state = self.node_state()
            if state in NODE_READY:
                return state
            if state in NODE_RESUME and time.monotonic() - last_resume > 1:
                last_resume = time.monotonic()
                subprocess.run(["scontrol", "update", "nodename=" + self.host, "state=resume"],
                               env=self.env, capture_output=True, timeout=15)
            if time.monotonic() > deadline:
                raise self._fail("node %s not ready, sinfo state %r" % (self.host, state),
                                 "log/slurmctld.log", "log/slurmd.log", "log/slurmctld.stderr",
                                 "log/slurmd.stderr")
            time.sleep(0.1)

    def _spawn_restd(self):
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass
        self._spawn("slurmrestd",
                    ["/usr/sbin/slurmrestd", "-a", "rest_auth/jwt",
                     "-s", "openapi/v0.0.38,openapi/v0.0.37,openapi/v0.0.36",
                     "-u", REST_USER, "-g", REST_USER,
                     "127.0.0.1:%d" % self.rest_port, "unix:" + self.socket],
                    env=self._daemon_env(SLURM_JWT="daemon"), log="log/slurmrestd.log")

    def _wait_restd(self, deadline):
        p = self._procs["slurmrestd"]
        last = None
        while True:
            if not p.alive():
                raise self._fail("slurmrestd exited with %s" % p.popen.returncode, "log/slurmrestd.log")
            try:
                st, body = self.rest("GET", "/slurm/%s/ping" % API, timeout=15)
                last = (st, body)
                if st == 200 and isinstance(body, dict) and body.get("pings") and \
                        body["pings"][0].get("ping") == "UP":
                    return
            except OSError as e:
                last = e
            if time.monotonic() > deadline:
                raise self._fail("slurmrestd not ready, last ping: %r" % (last,), "log/slurmrestd.log",
                                 "log/slurmctld.log")
            time.sleep(0.02)

    # -- control-plane outages ---------------------------------------------------
    def stop_restd(self):
        _terminate([self._procs.get("slurmrestd")])

    def start_restd(self, timeout=30):
        if self._alive("slurmrestd"):
            return
        self._spawn_restd()
        self._wait_restd(time.monotonic() + timeout)

    def stop_ctld(self):
        _terminate([self._procs.get("slurmctld")])

    def start_ctld(self, timeout=60):
        """Restart slurmctld (-i: keep the saved state, running jobs stay RUNNING) and wait until
        the node answers again."""
        if self._alive("slurmctld"):
            return
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i"])
        self._wait_node(time.monotonic() + timeout)

    # -- stop ----------------------------------------------------------------------
    def _attach(self):
        """Pick up the daemons of an existing run dir from their pid files (stale-run cleanup)."""
        if not self.run:
            return
        files = {n: os.path.join(self.run, "pids", n + ".pid") for n in ("slurmrestd", "slurmctld", "slurmd")}
        files["munged"] = os.path.join(self.run, "munge", "munged.pid")
        for n, f in files.items():
            pid = _read_pid(f)
            if pid and _alive(pid) and _belongs(pid, self.run):
                self._procs[n] = _Proc(n, pid, None, self.run, [])

    def _squeue_ids(self):
        r = subprocess.run(["squeue", "-h", "-o", "%A"], env=self.env, capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise SlurmError("squeue failed: " + r.stderr.strip())
        return [l.strip() for l in r.stdout.split() if l.strip()]

    def cancel_all(self, timeout=30):
        """scancel every job and wait until squeue lists none (pending, running, completing).
        Returns True when none is left."""
        deadline = time.monotonic() + timeout
        last_cancel = 0.0
        while True:
            try:
                ids = self._squeue_ids()
            except (SlurmError, subprocess.TimeoutExpired) as e:
                if not self._alive("slurmctld") or time.monotonic() > deadline:
                    print("slurm.py: cannot list jobs to cancel: %s" % e, file=sys.stderr)
                    return False
                ids = None
            if ids == []:
                return True
            if ids and time.monotonic() - last_cancel > 2:
                last_cancel = time.monotonic()
                subprocess.run(["scancel"] + ids, env=self.env, capture_output=True, timeout=30)
            if time.monotonic() > deadline:
                print("slurm.py: jobs still in the queue after %ss: %s" % (timeout, ids), file=sys.stderr)
                return False
            time.sleep(0.2)

    def stop(self, _keep=None):
        """Stop everything (idempotent): slurmrestd, cancel all jobs and wait for their slurmstepd,
        slurmd + slurmctld, munged; report leftover processes of this cluster (never kill by name);
        remove the run dir (unless HERD_SLURM_KEEP=1)."""
        if self._stopped:
            return
        t0 = time.monotonic()
        try:
            _terminate([self._procs.get("slurmrestd")])
            if self._alive("slurmd") and not self._alive("slurmctld") and self._alive("munged") \
                    and self.conf and os.path.exists(self.conf):
                try:      # a test left slurmctld down: bring it back so the jobs can be cancelled
                    self.start_ctld(timeout=20)
                except Exception as e:
                    print("slurm.py: could not restart slurmctld to cancel jobs: %s" % e, file=sys.stderr)
            stepds = self._stepds()
            if self._alive("slurmctld") and self._alive("munged"):
                self.cancel_all(timeout=30)
            stepds += self._stepds()
            # a cancelled job's slurmstepd outlives its squeue entry by a moment: let it finish
            # while slurmd is still there to talk to
            deadline = time.monotonic() + 15
            while any(p.alive() for p in stepds) and time.monotonic() < deadline:
                time.sleep(0.05)
            _terminate([self._procs.get("slurmd"), self._procs.get("slurmctld")])
            _terminate([self._procs.get("munged")])
            left = {x[0]: x for x in self.leftovers()}
            for p in stepds:
                if p.alive() and p.pid not in left:
                    left[p.pid] = (p.pid, (_stat(p.pid) or (0, 0))[1], "slurmstepd", _cmdline(p.pid))
            if left:
                print("slurm.py: WARNING: processes of %s left after stop (not killed):\n%s" % (
                    self.run, "\n".join("  pid %d ppid %d %s: %s" % x for x in left.values())),
                    file=sys.stderr)
        finally:
            self._stopped = True
            keep = os.environ.get("HERD_SLURM_KEEP") == "1" if _keep is None else _keep
            if self.run and os.path.isdir(self.run):
                if keep:
                    print("slurm.py: kept %s" % self.run, file=sys.stderr)
                else:
                    shutil.rmtree(self.run, ignore_errors=True)
            self.timings["stop"] = time.monotonic() - t0
            self._unlock()

    def _at_exit(self):
        try:
            self.stop()
        except Exception as e:    # never raise from atexit
            print("slurm.py: stop at exit failed: %s" % e, file=sys.stderr)

    def _stepds(self):
        if not self.run:
            return []
        return [_Proc("slurmstepd", pid, None, self.run, []) for pid, _, comm, _ in
                cluster_processes(self.run) if comm == "slurmstepd"]

    def leftovers(self):
        """Live processes of this cluster other than its daemons (slurmstepd, job processes whose
        cwd is in the run dir) plus any daemon still alive: [(pid, ppid, comm, cmdline)]."""
        if not self.run:
            return []
        return cluster_processes(self.run)

    # -- REST ---------------------------------------------------------------------
    def token(self, user="root", lifespan=3600, exp=None, key=None):
        """An HS256 JWT {"exp","iat","sun"} signed with the cluster's key (or `key`)."""
        now = int(time.time())
        claims = {"exp": int(exp) if exp is not None else now + int(lifespan), "iat": now, "sun": user}
        if key is None:
            if self._key is None:
                with open(self.jwt_key, "rb") as f:
                    self._key = f.read()
            key = self._key
        elif isinstance(key, str):
            key = key.encode()

        def b64(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=")
        signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode()) + \
            b"." + b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(key, signing, hashlib.sha256).digest()
        return (signing + b"." + b64(sig)).decode()

    def rest(self, method, path, body=None, token=None, user="root", timeout=30):
        """One request over TCP. token None: a fresh token for `user`; token "" (or False): no
        X-SLURM-USER-TOKEN header; user "" or None: no X-SLURM-USER-NAME header. body: dict/list
        (sent as JSON), str or bytes. Returns (status, body): parsed JSON when the reply is JSON
        (None if empty), else text."""
        headers = {}
        if token is None and user:
            token = self.token(user)
        if user:
            headers["X-SLURM-USER-NAME"] = user
        if token:
            headers["X-SLURM-USER-TOKEN"] = token
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        c = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=timeout)
        try:
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
            if "json" in (r.getheader("Content-Type") or ""):
                if not raw.strip():
                    return r.status, None
                try:
                    return r.status, json.loads(raw)
                except ValueError:
                    pass
            return r.status, raw.decode(errors="replace")
        finally:
            c.close()

    def submit(self, script, name="ext", time_limit=5, **job):
        """Submit a batch job directly (not through herd): cwd jobs_dir, environment PATH only,
        stdout jobs_dir/%x-%j.out, 1 task. `#!/bin/bash` is prepended when the script has no #!.
        Extra keyword arguments are v0.0.38 job fields (they override the defaults)."""
        if not script.startswith("#!"):
            script = "#!/bin/bash\n" + script
        if not script.endswith("\n"):
            script += "\n"
        desc = {"name": name, "current_working_directory": self.jobs_dir,
                "environment": {"PATH": "/usr/bin:/bin"}, "time_limit": time_limit, "tasks": 1,
                "standard_output": os.path.join(self.jobs_dir, "%x-%j.out")}
        desc.update(job)
        st, body = self.rest("POST", "/slurm/%s/job/submit" % API, {"script": script, "job": desc})
        jid = body.get("job_id") if isinstance(body, dict) else None
        if st != 200 or not isinstance(body, dict) or body.get("errors") or not jid:
            raise SlurmError("submit failed: HTTP %s %s" % (st, body), st, body, jid)
        return int(jid)

    def job(self, job_id):
        """The job record (v0.0.38 dict), or None when slurmctld does not know the id (2017)."""
        st, body = self.rest("GET", "/slurm/%s/job/%d" % (API, int(job_id)))
        if st == 200 and isinstance(body, dict) and not body.get("errors"):
            jobs = body.get("jobs") or []
            return jobs[0] if jobs else None
        if 2017 in error_numbers(body):
            return None
        raise SlurmError("GET job/%s: HTTP %s %s" % (job_id, st, body), st, body)

    def jobs(self):
        st, body = self.rest("GET", "/slurm/%s/jobs" % API)
        if st == 200 and isinstance(body, dict) and not body.get("errors"):
            return body.get("jobs") or []
        raise SlurmError("GET jobs: HTTP %s %s" % (st, body), st, body)

    def cancel(self, job_id):
        """DELETE job/{id} (SIGTERM, SIGKILL after KillWait; ends CANCELLED). An already finished
        job is fine; an unknown one raises SlurmError (error 2017)."""
        st, body = self.rest("DELETE", "/slurm/%s/job/%d" % (API, int(job_id)))
        if st != 200 or (isinstance(body, dict) and body.get("errors")):
            raise SlurmError("DELETE job/%s: HTTP %s %s" % (job_id, st, body), st, body)

    def squeue(self):
        """Active jobs per squeue: [(job_id, name, state, comment)]; no comment -> ""."""
        r = subprocess.run(["squeue", "-h", "-o", "%A|%j|%T|%k"], env=self.env, capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise SlurmError("squeue failed (%d): %s" % (r.returncode, r.stderr.strip()))
        out = []
        for line in r.stdout.splitlines():
            parts = line.split("|")
            if len(parts) < 4:
                continue
            comment = "|".join(parts[3:])
            out.append((int(parts[0]), parts[1], parts[2], "" if comment == "(null)" else comment))
        return out

    def wait_job_reason(self, job_id, timeout=60):
        """Poll GET job/{id} every 0.2 s until Slurm has given a pending job its reason (a job is
        queued with state_reason "None" until the scheduler has looked at it); returns the record.
        Raises AssertionError when the job is no longer PENDING or the timeout passes."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.job(job_id)
                if last is not None and last.get("job_state") != "PENDING":
                    raise AssertionError("job %s is %s, not PENDING, before Slurm gave a reason: %r" % (
                        job_id, last.get("job_state"), last.get("state_reason")))
                if last is not None and last.get("state_reason") not in (None, "", "None"):
                    return last
            except (SlurmError, OSError) as e:
                last = e
            if time.monotonic() > deadline:
                if isinstance(last, dict):
                    last = {k: last.get(k) for k in ("job_id", "name", "job_state", "state_reason")}
                raise AssertionError("Slurm gave job %s no pending reason within %ss; last: %r" % (
                    job_id, timeout, last))
            time.sleep(0.2)

    def wait_job_state(self, job_id, states, timeout=60):
        """Poll GET job/{id} every 0.2 s until job_state is one of `states`; returns the record.
        REST errors in between (e.g. during an outage) are retried until the timeout."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.job(job_id)
                if last is not None and last.get("job_state") in states:
                    return last
            except (SlurmError, OSError) as e:
                last = e
            if time.monotonic() > deadline:
                if isinstance(last, dict):
                    last = {k: last.get(k) for k in ("job_id", "name", "job_state", "state_reason",
                                                     "exit_code", "comment")}
                raise AssertionError("job %s did not reach %s within %ss; last: %r" % (
                    job_id, states, timeout, last))
            time.sleep(0.2)


# ---- self-check ------------------------------------------------------------------------

def _free_port():
    for _ in range(200):
        port = random.randint(20000, 30000)
        if not _port_busy("127.0.0.1", port):
            return port
    raise RuntimeError("no free port in 20000-30000")


def _self_check():
    ok, why = cluster_available()
    if not ok:
        print("slurm.py self-check: cannot run: " + why)
        return 2
    results = []

    def check(name, cond, detail=""):
        results.append(bool(cond))
        print("%s  %s%s" % ("PASS" if cond else "FAIL", name, ("  (%s)" % detail) if detail else ""))
        sys.stdout.flush()
        return cond

    c = SlurmCluster()
    try:
        t0 = time.monotonic()
        c.start()
        check("start", True, "%.2f s, run dir %s" % (time.monotonic() - t0, c.run))
        ping = "/slurm/%s/ping" % API
        st, body = c.rest("GET", ping)
        check("authenticated ping is 200 UP", st == 200 and body["pings"][0]["ping"] == "UP", st)
        st, body = c.rest("GET", ping, token="")
        check("ping without token is 401", st == 401, "%s %r" % (st, body))
        st, body = c.rest("GET", ping, token=c.token(key=b"not-the-key"))
        check("bad-signature token is 500", st == 500, st)
        st, body = c.rest("GET", ping, token=c.token(exp=int(time.time()) - 60))
        check("expired token is 500", st == 500, st)

        t = time.monotonic()
        jid = c.submit("echo hi", name="echo")
        j = c.wait_job_state(jid, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout=60)
        try:
            with open(os.path.join(c.jobs_dir, "echo-%d.out" % jid)) as f:
                out = f.read()
        except OSError as e:
            out = str(e)
        check("echo hi job COMPLETED", j["job_state"] == "COMPLETED" and out == "hi\n",
              "job %d %s exit %s in %.2f s, output %r" % (jid, j["job_state"], j["exit_code"],
                                                          time.monotonic() - t, out))

        port = _free_port()
        t = time.monotonic()
        jid = c.submit("exec /usr/bin/python3 -m http.server %d --bind 127.0.0.1" % port, name="web",
                       comment="herd-selfcheck")
        j = c.wait_job_state(jid, ("RUNNING", "COMPLETED", "FAILED", "CANCELLED"), timeout=60)
        check("http.server job RUNNING", j["job_state"] == "RUNNING",
              "job %d after %.2f s, port %d" % (jid, time.monotonic() - t, port))
        sq = c.squeue()
        check("squeue lists it with its comment", (jid, "web", "RUNNING", "herd-selfcheck") in sq, sq)
        status, deadline = None, time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                h = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                h.request("GET", "/")
                status = h.getresponse().status
                h.close()
                break
            except OSError:
                time.sleep(0.05)
        check("job's port answers 200", status == 200, status)
        t = time.monotonic()
        c.cancel(jid)
        j = c.wait_job_state(jid, ("CANCELLED", "COMPLETED", "FAILED"), timeout=30)
        check("cancel -> CANCELLED", j["job_state"] == "CANCELLED",
              "%.2f s, exit_code %s" % (time.monotonic() - t, j["exit_code"]))

        jid = c.submit("exit 3", name="fail")
        j = c.wait_job_state(jid, ("COMPLETED", "FAILED", "CANCELLED"), timeout=60)
        check("exit 3 job FAILED with exit_code 768", j["job_state"] == "FAILED" and j["exit_code"] == 768,
              "%s %s" % (j["job_state"], j["exit_code"]))
        check("unknown job is None", c.job(999999) is None)
        check("jobs() lists 3 jobs", len(c.jobs()) == 3, len(c.jobs()))

        t = time.monotonic()
        c.stop_restd()
        down = False
        try:
            c.rest("GET", ping, timeout=3)
        except OSError:
            down = True
        check("stop_restd: REST refuses connections", down, "%.2f s" % (time.monotonic() - t))
        t = time.monotonic()
        c.start_restd()
        st, body = c.rest("GET", ping)
        check("start_restd: ping 200 UP again", st == 200 and body["pings"][0]["ping"] == "UP",
              "%.2f s" % (time.monotonic() - t))

        t = time.monotonic()
        jid = c.submit("sleep 300", name="survivor")
        c.wait_job_state(jid, "RUNNING", timeout=60)
        c.stop_ctld()
        c.start_ctld()
        j = c.wait_job_state(jid, ("RUNNING", "COMPLETED", "FAILED", "CANCELLED"), timeout=30)
        check("stop_ctld + start_ctld keeps a running job RUNNING", j["job_state"] == "RUNNING",
              "%.2f s" % (time.monotonic() - t))
        # left running on purpose: stop() must cancel it
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("no exception", False, repr(e))
    finally:
        run = c.run
        t = time.monotonic()
        c.stop()
        check("stop", not any(p.alive() for p in c._procs.values()) and not (run and os.path.exists(run)),
              "%.2f s" % (time.monotonic() - t))
        if run:
            left = cluster_processes(run)
            check("no process of the cluster left", not left, left)
    passed = sum(results)
    failed = len(results) - passed
    print("slurm.py self-check: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_self_check())
