/* Config files and API bodies to validated specs, with errors that say where. */
#ifndef HERD_CFG_H
#define HERD_CFG_H

#include "herd/spec.h"

struct cfg_error {
  char *file; /* file path, or "request body" */
  int line, col;
  char *field; /* "services[1].backoff.initial", or "" for syntax errors */
  char *msg;
};

struct cfg_errors {
  struct cfg_error *v;
  size_t n, cap;
};

struct spec_set {
  struct spec **v;
  size_t n, cap;
  struct cluster_spec **clusters; /* from "clusters" in config files */
  size_t nclusters, ccap;
  struct host_spec **hosts; /* from "hosts" in config files */
  size_t nhosts, hcap;
  struct queue_spec *queues; /* from "queues" in config files (job_cfg.c) */
  size_t nqueues;
  size_t *byname, bcap, bn; /* name index of v (spec_set_find builds it) */
};

/** A config file is read whole: at most this many bytes (16 MiB) each; bigger is an error. */
#define CFG_FILE_MAX (16 << 20)
/** The longest duration any field accepts: 365 days (timers count milliseconds). */
#define CFG_DURATION_MAX (365 * 86400.0)
/** An instance must stay up this long in all (ready_after + backoff.reset_after; with a
 *  health check, reset_after alone) before a failure starts the backoff over: any less and
 *  a crash loop would reset its own backoff at every restart. A shorter reset_after is
 *  raised to this, with a warning naming the field. */
#define CFG_RESET_MIN 1.0

void cfg_errors_free(struct cfg_errors *e);
/** Append an error; line and col below 1 become 1 (the whole file). */
void cfg_error_add(struct cfg_errors *e, const char *file, int line, int col, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/** Format one error as "file:line:col: field: message". Caller frees. */
char *cfg_error_str(const struct cfg_error *e);
/** The errors as a JSON array of {file,line,column,field,message}. */
json_t *cfg_errors_json(const struct cfg_errors *e);

void spec_set_add(struct spec_set *s, struct spec *sp);
/** The index in s->v of the first spec named `name`, or -1; constant time (the index is
 *  rebuilt after specs are added). Every s->v[i] must be set. */
long spec_set_find(struct spec_set *s, const char *name);
void spec_set_free(struct spec_set *s);

/**
 * Load every *.json in dir (sorted by name). Each file holds one service object or
 * {"services":[...]}. Returns 0 when there were no errors; otherwise every error found
 * is in errs and `out` is left empty. Only regular files (or symlinks to them) of at most
 * CFG_FILE_MAX bytes are read; anything else (a directory, a FIFO, a device, a file that
 * cannot be opened) is an error naming its path, and nothing blocks on it. Linear in the
 * size of the config.
 */
int cfg_load_dir(const char *dir, struct spec_set *out, struct cfg_errors *errs);

/**
 * Parse JSON text (a file's contents or a request body) holding one service or
 * {"services":[...]} into `out`. `file` names it in errors. Returns the number of errors added.
 */
int cfg_parse_text(const char *file, const char *text, size_t len, struct spec_set *out, struct cfg_errors *errs);

/**
 * Check depends_on across a whole set of specs (config files and API-added services
 * together): every dependency exists, none is the service itself, and there is no cycle
 * (the error names it: "a -> b -> c -> a"). Returns the number of errors added.
 */
int cfg_validate_deps(struct spec *const *v, size_t n, struct cfg_errors *errs);

/** Check ssh hosts across a whole set: unique names, every service's "ssh" names a known
 *  host and has an endpoint with a port. Returns the number of errors added. */
/** Every cluster's "ssh" names a host; one with "api": "ssh" one libssh2 can use. */
int cfg_validate_cluster_hosts(struct cluster_spec *const *k, size_t nk, struct host_spec *const *h, size_t nh,
                               struct cfg_errors *errs);
int cfg_validate_hosts(struct spec *const *v, size_t n, struct host_spec *const *h, size_t nh, struct cfg_errors *errs);
/** Check clusters across a whole set: unique names, every Slurm service names a known
 *  cluster and has a working directory. Returns the number of errors added. */
int cfg_validate_clusters(struct spec *const *v, size_t n, struct cluster_spec *const *k, size_t nk,
                          struct cfg_errors *errs);

/** Where the values of one JSON document are: built in one pass over the text, then
 *  each lookup costs the length of its path (not of the text). */
struct jpos;
/** Index JSON text (text jansson accepted; anything else indexes what came before the fault). */
struct jpos *jpos_index(const char *text, size_t len);
void jpos_free(struct jpos *jp);
/** Find the 1-based line and column of the value at `path` ("a.b[2].c"), or of its key
 *  when at_key. Falls back to the deepest ancestor found. Returns 0 when the whole path
 *  was found. */
int jpos_lookup(const struct jpos *jp, const char *path, bool at_key, int *line, int *col);
/** jpos_lookup on a one-off index of text: linear in the text, for a single lookup. */
int jpos_find(const char *text, size_t len, const char *path, bool at_key, int *line, int *col);

#endif
