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
#include "herd/run.h"

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

/** Check Slurm services about to be added over the API against the configured clusters. */
int slurm_check_specs(struct daemon *d, struct spec **specs, size_t n, struct cfg_errors *errs);
/** Reload: a cluster still used by a Slurm service added over the API cannot go away. */
void slurm_check_reload(struct daemon *d, const struct spec_set *set, struct cfg_errors *errs);
/** The clusters: API version, auth kind (never the secret), last error, request counters. */
json_t *slurm_clusters_json(struct daemon *d);

#endif
