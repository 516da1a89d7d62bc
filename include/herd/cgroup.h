/*
 * A cgroup (v2) per local service, where herd may make them: the service is every process
 * in its cgroup, not only its process group. A child that calls setsid or double-forks
 * stays inside; a stop signals them all; when the main process ends the ones left are
 * killed; and a daemon that starts after a crash finds whatever the group still holds.
 *
 * The tree lives under herd's own cgroup, as <own>/herd-<herd id>/svc-<name>, with no
 * controller enabled (herd only tracks: it never sets limits unasked). The path is kept in
 * the store, so a daemon restarted from another cgroup finds the same tree. Where cgroup2
 * is not mounted or not writable (a container, systemd without Delegate=yes), services
 * fall back to their process group and /v1/daemon says why.
 *
 * No descriptor is held: each operation opens, acts and closes.
 */
#ifndef HERD_CGROUP_H
#define HERD_CGROUP_H

#include "herd/herd.h"

/** The root of herd's tree: `stored` when it still exists, else a new one made under
 *  herd's own cgroup. NULL (with *why, static or in whybuf) when cgroups cannot be used. */
char *cg_root(const char *stored, const char *herd_id, char *whybuf, size_t whylen);
/** The cgroup of a service under root (malloc'd). */
char *cg_service_path(const char *root, const char *name);
/** Make the service's cgroup (it may exist). 0 or -errno. */
int cg_make(const char *path);
/** Move pid into the cgroup. 0 or -errno. Async-signal-safe use is not needed: threads call it. */
int cg_attach(const char *path, int pid);
/** Send sig to every process in the cgroup (SIGKILL: through cgroup.kill, all at once).
 *  Returns how many processes were signalled (SIGKILL: how many were there), or -errno. */
int cg_signal(const char *path, int sig);
/** How many processes are in the cgroup (0 when it is empty or gone). When `first` is
 *  non-NULL it receives the lowest pid found other than `except` (0 if none). */
int cg_count(const char *path, int except, int *first);
/** Remove the cgroup if it is empty. 0 or -errno (EBUSY while processes remain). */
int cg_remove(const char *path);
/** Kill what is in every svc-* cgroup under root that `keep` rejects (a name no service
 *  has), then remove those cgroups. Returns how many processes were killed. */
int cg_sweep(const char *root, bool (*keep)(void *arg, const char *name), void *arg);

#endif
