/*
 * herd's priority over its services.
 *
 * Each service runs in a session of its own, and with the kernel's autogroups (Debian's
 * default) each session is one scheduling entity, weighted like the whole daemon. 1,000
 * services starting at once are 1,000 entities, each as heavy as herd: the loop that
 * records their starts and the threads that spawn them get a thousandth of the CPU, and
 * every spawn waits for its child's exec, which queues behind the start-up work
 * (dynamic loading, libc set-up) of the children already running. Measured on 2 cores:
 * 1,000 `sleep` services took 0.7-0.8 s to come up, of which herd's own work was
 * 0.25 CPU-seconds; the rest was the children's start-up competing with it.
 *
 * So when it may (root or CAP_SYS_NICE) and was started at the default policy, herd
 * runs its spawner threads SCHED_FIFO at priority 2 (of 99: any other real-time work on
 * the machine still comes first), and its loop too while spawns are under way (from the
 * first spawn handed to the threads until 2 s after the last one has come back, while the
 * programs just started initialise; see spawner.c); its services never inherit that:
 *  - while real-time the loop thread carries SCHED_RESET_ON_FORK, so whatever it forks or
 *    clones starts SCHED_OTHER at nice 0 (exec checks, the uv_spawn path, library threads);
 *  - the spawner threads carry SCHED_RESET_ON_FORK too: a service's process is born
 *    SCHED_OTHER at nice 0, before its exec (an earlier design let the child exec at
 *    SCHED_FIFO 1 and demoted it after posix_spawn returned: on two cores the new program
 *    could already run real-time on the other core, and a herd killed in that window left
 *    it there; a general-purpose supervisor must not change its services' scheduling).
 * Only around spawns, because that is where it pays: in steady state (1,000 HTTP checks a
 * second) a real-time loop cost 20-30 % more CPU per check here (it is woken, and switched
 * to, for every answer instead of taking several per wake-up), for nothing the checks
 * needed.
 * herd's work is short and event-driven, so this costs the services nothing but the
 * order: herd's bookkeeping first, their own start-up right after.
 * It is opt-in: `herd daemon --priority realtime`; the default is normal (no real-time
 * anywhere), which is what the README's figures are for.
 */
#include "herd/prio.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#define PRIO_DAEMON 2
#define PRIO_CHILD 1

static bool rt, loop_boosted;
static char why_not[160]; /* when not rt */

static int set_loop(bool boost) {
  struct sched_param p = {.sched_priority = boost ? PRIO_DAEMON : 0};
  return sched_setscheduler(0, boost ? SCHED_FIFO | SCHED_RESET_ON_FORK : SCHED_OTHER, &p);
}

bool prio_setup(bool want) {
  rt = false;
  if (!want) {
    snprintf(why_not, sizeof why_not, "the default; --priority realtime to opt in");
    return false;
  }
  int pol = sched_getscheduler(0);
  int nice = getpriority(PRIO_PROCESS, 0);
  if (pol != SCHED_OTHER || nice != 0) {
    snprintf(why_not, sizeof why_not, "started with %s, nice %d: left as it is",
             pol == SCHED_OTHER   ? "SCHED_OTHER"
             : pol == SCHED_BATCH ? "SCHED_BATCH"
             : pol == SCHED_IDLE  ? "SCHED_IDLE"
                                  : "a real-time policy",
             nice);
    return false;
  }
  /* May we? Asked once; the loop runs real-time only while spawns are under way. */
  if (set_loop(true) < 0) {
    snprintf(why_not, sizeof why_not, "%s (real-time needs root or CAP_SYS_NICE)", strerror(errno));
    return false;
  }
  set_loop(false);
  rt = true;
  return true;
}

void prio_loop_boost(bool on) {
  if (!rt || on == loop_boosted) return;
  if (set_loop(on) == 0) loop_boosted = on;
}

bool prio_rt(void) { return rt; }

const char *prio_why_not(void) { return rt ? NULL : why_not; }

void prio_thread_start(void) {
  /* Reset-on-fork: a spawn's child is born SCHED_OTHER at nice 0 (the kernel resets it in
   * the clone, before the child runs a single instruction), so no service ever runs
   * real-time, not even between its birth and its exec. */
  struct sched_param p = {.sched_priority = PRIO_DAEMON};
  if (rt) sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &p);
}
