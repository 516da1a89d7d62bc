/* herd's own threads outrank its services' start-up work (see prio.c). */
#ifndef HERD_PRIO_H
#define HERD_PRIO_H

#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>

/** On the main thread (the loop), before any other thread exists: when `want`, permitted
 *  (tried once), and the daemon runs at the default policy (SCHED_OTHER, nice 0), turn the
 *  real-time priorities on. Returns whether that took (prio_why_not says why not). */
bool prio_setup(bool want);
/** Whether herd's threads run real-time (its spawner threads; its loop while spawning). */
bool prio_rt(void);
/** Why they do not (NULL when they do). */
const char *prio_why_not(void);
/** On the loop: real-time while spawns are under way (on), back to SCHED_OTHER (off). */
void prio_loop_boost(bool on);
/** A spawner thread's first call: the daemon's priority for it too (when on). */
void prio_thread_start(void);
/** Set up a spawn from this thread: when it runs real-time, the child runs SCHED_FIFO 1
 *  (below its parent thread) until its exec; returns the extra posix_spawn flags. */
short prio_spawnattr(posix_spawnattr_t *a);
/** After a spawn prio_spawnattr set up: the child back to SCHED_OTHER, nice 0 (what it
 *  would have had). 0, or -errno (the child must not run on then). */
int prio_child_settle(int pid);

#endif
