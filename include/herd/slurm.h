/*
 * The Slurm backend: services whose instances are batch jobs on a cluster reached
 * through slurmrestd. One poll per cluster per tick reads every job (GET jobs, with
 * update_time so an unchanged cluster answers 304) and turns what it sees into events
 * for the services' state machines; submit and cancel are REST calls through the same
 * rate-limited queue. Jobs carry herd's tag in their comment
 * ("herd:<herd id>:<service>:<attempt>"), so a restarted daemon finds its own jobs and
 * never submits a duplicate, and never touches anyone else's.
 */
#ifndef HERD_SLURM_H
#define HERD_SLURM_H

#include "herd/daemon.h"

struct cluster;
struct sjob;

/** Set up the clusters of the config (taking ownership of the specs). */
void slurm_init(struct daemon *d, struct cluster_spec **specs, size_t n);
/** Apply a reloaded set of clusters: changed ones take the new spec, new ones start;
 *  one still used by a service stays until nothing uses it. Takes ownership. */
void slurm_reload(struct daemon *d, struct cluster_spec **specs, size_t n);
/** The spec of the cluster of that name, or NULL. */
const struct cluster_spec *slurm_cluster_find(struct daemon *d, const char *name);
/** Up to max cluster specs into out; returns how many. */
size_t slurm_cluster_specs(struct daemon *d, struct cluster_spec **out, size_t max);
/** Close every cluster's handles and abandon requests in flight (daemon exit). */
void slurm_close(struct daemon *d);

/** Bind a Slurm service to its cluster (at creation, and after a spec swap). */
void slurm_attach(struct service *s);
/** The service goes away: forget it (requests in flight are dropped on arrival). */
void slurm_detach(struct service *s);
/** FX_SPAWN: submit a new job for the current attempt. */
void slurm_submit(struct service *s);
/** FX_SIGNAL: cancel the current job (at once, or as soon as its id is known). */
void slurm_cancel(struct service *s);
/** After a daemon restart: the last instance was job `job_id` (0: its submission was in
 *  flight). The next poll confirms it, or finds the tagged job, or reports it gone. */
void slurm_resume(struct service *s, int64_t job_id);
/** Shutdown: whether the daemon may exit without this service's job confirmed cancelled
 *  (its cluster cannot be reached and its stop grace is over; the store keeps it STOPPING
 *  with its job id, and the next daemon cancels it). */
bool slurm_shutdown_may_leave(struct service *s);
/** The current job's id, 0 when none (or not a Slurm service). */
int64_t slurm_job_id(struct service *s);
/** The host a check reaches the service on: the job's node address, else its name. */
const char *slurm_endpoint_host(struct service *s);
/** The current job's stdout path with %j and %x expanded (malloc'd), or NULL. */
char *slurm_output_path(struct service *s);
/** The job as status shows it, or NULL when the service has none. */
json_t *slurm_service_json(struct service *s);
/** The clusters: API version, auth kind (never the secret), last error, request counters. */
json_t *slurm_clusters_json(struct daemon *d);

#endif
