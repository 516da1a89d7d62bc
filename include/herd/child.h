/*
 * Starting one service process: clone(CLONE_VM | CLONE_VFORK) and exec, as glibc's
 * posix_spawn does, with the steps posix_spawn cannot take before the exec: the child
 * joins its service's cgroup first (no instruction of the service's program runs outside
 * it, so nothing it forks can escape), then drops to the service's user and group.
 */
#ifndef HERD_CHILD_H
#define HERD_CHILD_H

#include "herd/herd.h"

#include <sys/types.h>

struct child_plan {
  char **args, **env;
  const char *cwd;
  const char *cg_procs; /* <service cgroup>/cgroup.procs, or NULL */
  int logfd;            /* becomes stdout and stderr; stdin is /dev/null */
  bool set_uid, set_gid;
  uid_t uid;
  gid_t gid;
};

/** What went wrong, for the message: the exec, or a step before it. */
enum child_stage { CHILD_OK, CHILD_SETUP, CHILD_CWD, CHILD_USER, CHILD_EXEC };

struct child_result {
  int pid;                /* > 0: the process runs the program */
  int err;                /* errno of the failed step (pid <= 0) */
  enum child_stage stage; /* which step */
  int cg_err;             /* joining the cgroup failed (errno; the process runs outside it) */
};

/** Start the process in its own session, signals at their defaults and unblocked, every
 *  descriptor but 0-2 closed, at the scheduling its parent's children get (prio.c). Blocks
 *  until the child has exec'd or failed: call it on a spawner thread. The program is
 *  looked up in herd's own PATH when it has no '/', as posix_spawnp does. */
void child_spawn(const struct child_plan *p, struct child_result *r);
/** "cannot start sleep: ...", "cwd /srv/x: ..." for a failed child_spawn. */
void child_strerror(const struct child_plan *p, const struct child_result *r, char *buf, size_t len);

#endif
