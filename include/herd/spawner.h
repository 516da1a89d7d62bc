/* Spawner threads: blocking spawn work off the loop, from small private descriptor tables. */
#ifndef HERD_SPAWNER_H
#define HERD_SPAWNER_H

#include "herd/herd.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/** One job: `work` runs on a spawner thread (no uv calls, no daemon state; descriptors it
 *  opens live in that thread's own table), then `done` on the loop. */
struct spawner_job {
  struct spawner_job *next;
  void (*work)(struct spawner_job *j);
  void (*done)(struct spawner_job *j, bool cancelled);
};

struct spawner;

/** Start the threads. Call before the daemon opens descriptors of its own. */
struct spawner *spawner_new(void);
/** Bind to the loop (the completions arrive through a uv_poll_t). Returns 0 or a UV_E* code. */
int spawner_attach(struct spawner *sp, uv_loop_t *loop);
void spawner_submit(struct spawner *sp, struct spawner_job *j);
/** Stop the threads: running jobs finish and come back, waiting ones come back cancelled;
 *  then the uv handle closes and the spawner is freed. */
void spawner_close(struct spawner *sp);

#endif
