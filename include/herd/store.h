/*
 * The SQLite store: the one source of truth that survives the daemon. Writes go into
 * an open transaction that store_flush() commits once per loop turn, so a storm of
 * state changes costs one commit per turn, not one per change.
 */
#ifndef HERD_STORE_H
#define HERD_STORE_H

#include "herd/herd.h"

#include <jansson.h>

struct store;

struct store_service {
  const char *name, *source, *spec, *wanted;
  const char *state; /* the state the last daemon recorded, or NULL */
  unsigned restarts;
};

struct store_event {
  int64_t id;
  double ts;
  const char *service;
  int64_t instance;
  const char *from, *to, *reason;
};

struct store_instance {
  int64_t id;
  const char *service;
  unsigned attempt;
  int pid;
  uint64_t starttime; /* field 22 of /proc/PID/stat, in clock ticks since boot */
  double started_at, ended_at;
  const char *end_state, *reason, *cmdline;
  int exit_code, signal;
  int port;
  const char *cluster; /* slurm: the cluster and job of the instance (job_id 0 = none yet) */
  int64_t job_id;
};

/** Open (creating if needed) the store at path. On failure *err says why (caller frees). */
int store_open(const char *path, struct store **out, char **err);
/** Commit pending writes and close. */
void store_close(struct store *st);
/** Commit the open transaction, if any. Called once per loop turn. */
void store_flush(struct store *st);
/** Tests and fuzzing: commit, then empty every table, as a store just created (one costs
 *  ~1 ms to open: its schema is parsed). */
void store_reset(struct store *st);

typedef void (*store_service_cb)(void *arg, const struct store_service *row);
void store_each_service(struct store *st, store_service_cb cb, void *arg);
void store_put_service(struct store *st, const char *name, const char *source, const char *spec, const char *wanted);
void store_set_wanted(struct store *st, const char *name, const char *wanted);
/** Record the service's current state and restart count (what the next daemon resumes from). */
void store_set_state(struct store *st, const char *name, const char *state, unsigned restarts);
void store_del_service(struct store *st, const char *name);

/** Record a new instance; returns its id. */
int64_t store_instance_start(struct store *st, const char *service, unsigned attempt, int pid, uint64_t starttime,
                             double started_at, const char *cmdline, int port);
void store_instance_end(struct store *st, int64_t id, const char *end_state, int code, int sig, const char *reason,
                        double ended_at);
/** The instance's process, once the spawn (asynchronous) has started it. */
void store_instance_pid(struct store *st, int64_t id, int pid, uint64_t starttime);
/** Record the Slurm job of an instance (job_id 0: being submitted). */
void store_instance_job(struct store *st, int64_t id, const char *cluster, int64_t job_id);
/** A value of the meta table (malloc'd), or NULL. */
char *store_meta_get(struct store *st, const char *key);
void store_meta_put(struct store *st, const char *key, const char *value);
/** The newest instance of a service (any state); returns 0 when found. Strings valid until the next store call. */
int store_last_instance(struct store *st, const char *service, struct store_instance *out);

typedef void (*store_instance_cb)(void *arg, const struct store_instance *row);
/** Every instance of a service, oldest first (a job's attempts). Strings valid during the call. */
void store_each_instance(struct store *st, const char *service, store_instance_cb cb, void *arg);
/** Forget a service's instances (a job pruned). */
void store_del_instances(struct store *st, const char *service);

/** Append an event; returns its id (strictly increasing). */
int64_t store_event_add(struct store *st, double ts, const char *service, int64_t instance, const char *from,
                        const char *to, const char *reason);
typedef void (*store_event_cb)(void *arg, const struct store_event *ev);
/** Events with id > since, oldest first, at most limit; optional service filter.
 *  since < 0: the newest `limit` events (oldest first). */
void store_each_event(struct store *st, int64_t since, int limit, const char *service, store_event_cb cb, void *arg);
int64_t store_last_event_id(struct store *st);

/* For a module that keeps its own table in the store (work.c): the connection; the open
 * transaction its writes go into (false: the store is failing and nothing may be written
 * now); a failed write of its own (the transaction is rolled back at commit); the commit
 * (false: it failed and was rolled back: the module's own writes are not in the database,
 * the journaled ones are kept and written again). Such writes are not journaled: a module
 * answers its caller only after store_commit() said true. */
typedef struct sqlite3 sqlite3;
sqlite3 *store_db(struct store *st);
bool store_begin(struct store *st);
void store_note_error(struct store *st, const char *what);
bool store_commit(struct store *st);
/* A write of a module's own statement (prepared on store_db), journaled like the store's
 * own: in the open transaction, kept until committed, written again in order after a
 * failure. `types` says each value: 'i' int64_t, 'N' int64_t (null when negative),
 * 'r' double, 't' text (NULL: null), 'n' null (no argument); at most 12. */
typedef struct sqlite3_stmt sqlite3_stmt;
void store_write(struct store *st, sqlite3_stmt *stmt, const char *what, const char *types, ...);
/* A statement of a module's own on the store's connection, kept prepared for its life
 * (0, or -1: see sqlite3_errmsg(store_db(st))). */
int store_prepare(struct store *st, sqlite3_stmt **s, const char *sql);

/** Counters for metrics and health (since the store was opened). */
struct store_stats {
  uint64_t commits;                     /* transactions committed */
  uint64_t errors;                      /* failed statements and commits */
  bool failing;                         /* a write failed and no commit has succeeded since */
  size_t pending;                       /* writes held in memory, waiting for the store to write again */
  uint64_t dropped;                     /* events dropped while it failed (past the journal's bound) */
  double last_commit_at, last_error_at; /* monotonic; 0 = never */
};
const struct store_stats *store_stats(struct store *st);

/** Whether the last write failed (disk full, read-only): reported by /v1/daemon. */
const char *store_last_error(struct store *st);
/** Something about the store the user should know that is not a failure (the WAL index
 *  stopped taking writes and is private to this daemon now), or NULL: /v1/daemon. */
const char *store_warning(struct store *st);

#endif
