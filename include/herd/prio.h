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
/** A spawner thread's first call: the daemon's priority for it too (when on), with
 *  reset-on-fork so that its children are born SCHED_OTHER, nice 0. */
void prio_thread_start(void);

#endif
