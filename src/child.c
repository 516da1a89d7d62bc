/*
 * Starting a service process (see child.h).
 *
 * The child shares the parent's memory until it execs (CLONE_VM | CLONE_VFORK: no page
 * table is copied, so the cost does not grow with the daemon, and the spawner thread
 * waits for the exec), on a stack of its own. So it may only make raw system calls: a
 * libc wrapper could take a lock some other thread of the daemon holds, set-id wrappers
 * signal every thread of the daemon, and a sanitizer's interceptors keep global state.
 * Its own signal dispositions are a copy (no CLONE_SIGHAND); its signals stay blocked, as
 * the spawner thread's are, until the last step before the exec.
 */
#include "herd/child.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_STACK (64 * 1024)

struct shared {
  const struct child_plan *p;
  const char *path; /* herd's PATH, for a program named without '/' */
  uint64_t reset;   /* the signals (bit sig-1) whose disposition is not SIG_DFL: caught or ignored */
  int err, cg_err;
  enum child_stage stage;
};

#define NO_SAN __attribute__((no_sanitize_address, no_sanitize("undefined")))

NO_SAN static long sys(long nr, long a, long b, long c, long d) {
  long r = syscall(nr, a, b, c, d);
  return r;
}

NO_SAN static int fail(struct shared *sh, enum child_stage stage) {
  sh->err = errno ? errno : EINVAL;
  sh->stage = stage;
  syscall(SYS_exit_group, 127);
  return 127;
}

/* execve through herd's PATH, as execvp does, without its allocations. */
NO_SAN static void exec_search(struct shared *sh) {
  char **args = sh->p->args, **env = sh->p->env;
  const char *file = args[0];
  for (const char *c = file; *c; c++)
    if (*c == '/') {
      sys(SYS_execve, (long)file, (long)args, (long)env, 0);
      return;
    }
  size_t flen = 0;
  while (file[flen]) flen++;
  char buf[4096];
  bool eacces = false;
  const char *dir = sh->path && *sh->path ? sh->path : "/bin:/usr/bin";
  for (;;) {
    const char *end = dir;
    while (*end && *end != ':') end++;
    size_t dlen = (size_t)(end - dir);
    if (dlen + 1 + flen < sizeof buf) {
      size_t n = 0;
      for (size_t i = 0; i < dlen; i++) buf[n++] = dir[i];
      if (dlen) buf[n++] = '/';
      for (size_t i = 0; i <= flen; i++) buf[n++] = file[i];
      sys(SYS_execve, (long)buf, (long)args, (long)env, 0);
      if (errno == EACCES)
        eacces = true;
      else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV && errno != ETIMEDOUT)
        return;
    }
    if (!*end) break;
    dir = end + 1;
  }
  errno = eacces ? EACCES : ENOENT;
}

NO_SAN static int child_main(void *arg) {
  struct shared *sh = arg;
  const struct child_plan *p = sh->p;
  /* Every disposition that is not the default back to it (an all-zero kernel sigaction is
   * SIG_DFL with no flags and an empty mask, whatever the architecture's layout): a
   * handler of herd's must not run here, an ignored signal must not stay ignored in the
   * program. Only those the parent found set: a system call each costs (64 of them were
   * some 2 ms a spawn on a gVisor kernel). */
  static const char dfl[64];
  for (long sig = 1; sig < 65; sig++)
    if (sig != SIGKILL && sig != SIGSTOP && (sh->reset >> (sig - 1) & 1)) sys(SYS_rt_sigaction, sig, (long)dfl, 0, 8);
  /* Into the cgroup before anything of the program runs. A failure is reported, not fatal. */
  if (p->cg_procs) {
    long fd = sys(SYS_openat, AT_FDCWD, (long)p->cg_procs, O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0 || sys(SYS_write, fd, (long)"0", 1, 0) != 1) sh->cg_err = errno ? errno : EIO;
    if (fd >= 0) sys(SYS_close, fd, 0, 0, 0);
  }
  if (sys(SYS_setsid, 0, 0, 0, 0) < 0) return fail(sh, CHILD_SETUP);
  /* stdout and stderr first: the log descriptor may itself sit at 0 when herd runs with
   * stdin closed. */
  for (int fd = 1; fd <= 2; fd++)
    if (p->logfd != fd && sys(SYS_dup3, p->logfd, fd, 0, 0) < 0) return fail(sh, CHILD_SETUP);
  long nul = sys(SYS_openat, AT_FDCWD, (long)"/dev/null", O_RDONLY, 0);
  if (nul < 0 || (nul != 0 && sys(SYS_dup3, nul, 0, 0, 0) < 0)) return fail(sh, CHILD_SETUP);
  if (sys(SYS_close_range, 3, ~0U, 0, 0) < 0)
    for (long fd = 3; fd < 1024; fd++) sys(SYS_close, fd, 0, 0, 0);
  if (p->cwd && sys(SYS_chdir, (long)p->cwd, 0, 0, 0) < 0) return fail(sh, CHILD_CWD);
  /* The service's user and group, after the cgroup (which needs herd's rights). */
  if (p->set_gid || p->set_uid) {
    if (sys(SYS_setgroups, 0, 0, 0, 0) < 0 && errno != EPERM) return fail(sh, CHILD_USER);
    if (p->set_gid && sys(SYS_setgid, (long)p->gid, 0, 0, 0) < 0) return fail(sh, CHILD_USER);
    if (p->set_uid && sys(SYS_setuid, (long)p->uid, 0, 0, 0) < 0) return fail(sh, CHILD_USER);
  }
  static const char none[8];
  sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)none, 0, 8);
  exec_search(sh);
  /* Signals blocked again before reporting: nothing may run on this stack but us. */
  static const char all[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
  sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)all, 0, 8);
  return fail(sh, CHILD_EXEC);
}

/* The signals whose disposition is not SIG_DFL (the kernel's SigIgn | SigCgt of this
 * process: dispositions are the process's, whatever thread asks); all when unknown. */
static uint64_t non_default_signals(void) {
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ~0ULL;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return ~0ULL;
  buf[n] = '\0';
  uint64_t m = 0;
  int found = 0;
  static const char *const keys[] = {"\nSigIgn:", "\nSigCgt:"};
  for (size_t k = 0; k < 2; k++) {
    const char *at = strstr(buf, keys[k]);
    if (!at) continue;
    m |= strtoull(at + strlen(keys[k]), NULL, 16);
    found++;
  }
  return found == 2 ? m : ~0ULL;
}

void child_spawn(const struct child_plan *p, struct child_result *r) {
  memset(r, 0, sizeof *r);
  static __thread char *stack; /* one per spawner thread, kept for its life */
  if (!stack) {
    void *m = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) {
      r->err = errno;
      r->stage = CHILD_SETUP;
      return;
    }
    stack = m;
  }
  struct shared sh = {.p = p, .path = getenv("PATH"), .reset = non_default_signals()};
  /* Blocked in the child until its exec (the spawner threads block everything anyway). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int saved = errno;
  errno = 0;
  int pid = clone(child_main, stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &sh);
  int e = errno;
  errno = saved;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0) {
    r->err = e;
    r->stage = CHILD_SETUP;
    return;
  }
  r->cg_err = sh.cg_err;
  if (sh.stage != CHILD_OK) {
    /* It exited without exec'ing: reap it here (the loop never learns of this pid). */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    r->err = sh.err;
    r->stage = sh.stage;
    return;
  }
  r->pid = pid;
}

void child_strerror(const struct child_plan *p, const struct child_result *r, char *buf, size_t len) {
  const char *what = strerror(r->err);
  switch (r->stage) {
  case CHILD_CWD: snprintf(buf, len, "cannot start %s: cwd %s: %s", p->args[0], p->cwd, what); break;
  case CHILD_USER:
    snprintf(buf, len, "cannot start %s: cannot become uid %d gid %d: %s", p->args[0], p->set_uid ? (int)p->uid : -1,
             p->set_gid ? (int)p->gid : -1, what);
    break;
  case CHILD_EXEC: snprintf(buf, len, "cannot start %s: %s", p->args[0], what); break;
  default: snprintf(buf, len, "cannot start %s: setting up the process: %s", p->args[0], what); break;
  }
}
