/* herd's own threads outrank its services' start-up work (see prio.c). */
#ifndef HERD_PRIO_H
#define HERD_PRIO_H

#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>

/** On the main thread, before any other thread exists: when `want`, permitted, and the
 *  daemon runs at the default policy (SCHED_OTHER, nice 0), move it to SCHED_FIFO at
 *  PRIO_DAEMON with SCHED_RESET_ON_FORK. Returns whether that took; if not, `why` says why. */
bool prio_setup(bool want, char *why, size_t whylen);
/** Whether herd's threads run real-time. */
bool prio_rt(void);
/** A spawner thread's first call: the daemon's priority for it too (when on). */
void prio_thread_start(void);
/** Set up a spawn from this thread: when it runs real-time, the child runs at PRIO_CHILD
 *  (below its parent thread) until its exec; returns the extra posix_spawn flags. */
short prio_spawnattr(posix_spawnattr_t *a);
/** After a spawn prio_spawnattr set up: the child back to SCHED_OTHER, nice 0 (what it
 *  would have had). 0, or -errno (the child must not run on then). */
int prio_child_settle(int pid);

#endif
