/*
 * Jobs: services of kind job (a spec with a "job" section), created at run time, that run to
 * completion. A job waits in its queue (PENDING, with its place) until the queue lets it
 * start (at most max_running of its jobs at once, higher priority first, FIFO within a
 * priority); from there the state machine runs it like any one-shot service: its timeout
 * per attempt (TIMEOUT), its retries (the backoff, attempt numbers), COMPLETED or FAILED.
 * The queue's order is queue.c (pure); this is the runner's glue and the job API.
 */
#ifndef HERD_JOB_H
#define HERD_JOB_H

#include "herd/herd.h"
#include "herd/spec.h"

#include <jansson.h>

struct daemon;
struct service;
struct conn;
struct request;
struct buf;

/** The daemon's queues, from the config's "queues" (the rest: max_running = CPUs). */
void jobs_init(struct daemon *d, const struct queue_spec *q, size_t n);
/** A reload: the queues' limits change; jobs already running keep their slots. */
void jobs_configure(struct daemon *d, const struct queue_spec *q, size_t n);
/** Close the retention sweep's timer (shutdown). */
void jobs_close(struct daemon *d);
void jobs_free(struct daemon *d);
/** Once per loop turn: start the jobs whose turn came (slots freed meanwhile). */
void jobs_reconcile(struct daemon *d);

/** A job service is created: its place in its queue. A daemon restarting finds some running
 *  (stored_state): those hold a slot. */
void job_attach(struct service *s, const char *stored_state);
/** The service is freed. */
void job_detach(struct service *s);
/** May the job start now? If not, it waits in its queue and `why` says where. */
bool job_admit(struct service *s, char *why, size_t len);
/** After a state change: a job at rest gives its slot back (or leaves its queue). */
void job_settle(struct service *s);
/** The job's own keys for its JSON view. */
json_t *job_json(struct service *s, bool full);
/** For metrics: {"QUEUE": {"max_running": N, "slots": N, "states": {"STATE": N, ...}}, ...}
 *  with every job state of every queue (0 included), in the jobs' words (RUNNING). */
json_t *jobs_counts(struct daemon *d);
/** Whether NAME is a finished job kept in the history (out of memory). */
bool job_archived(struct daemon *d, const char *name);
/** A job in the history as GET /v1/services/NAME shows it ("archived": true), or NULL. */
json_t *job_archived_json(struct daemon *d, const char *name);
/** The lines of one attempt in a log (from herd's "started pid ... attempt N" note to the
 *  next attempt's): [*start, *start + *len) of data. Returns false when there is none. */
bool job_log_slice(const char *data, size_t n, unsigned attempt, size_t *start, size_t *len);

void api_job_run(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_jobs(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_jobs_wait(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_jobs_kill(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_jobs_prune(struct daemon *d, struct conn *c, struct request *r, const char *name);

#endif
