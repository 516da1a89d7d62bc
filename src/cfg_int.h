/*
 * Inside the config parser (cfg.c and its sections: cfg_slurm.c, cfg_hosts.c): where we
 * are in one document, and the typed getters that report errors at file:line:column.
 */
#ifndef HERD_CFG_INT_H
#define HERD_CFG_INT_H

#include "herd/cfg.h"

#include <jansson.h>

struct pctx {
  const char *file, *text;
  size_t len;
  struct cfg_errors *errs;
  int nerr;
  struct jpos *jp; /* built on the first lookup: one pass over the text per document */
};

/* Where `field` is in this document (see jpos_lookup). */
void cfgp_pos(struct pctx *c, const char *field, bool at_key, int *line, int *col);
/* "prefix.key" (or "key") in buf, for error fields. */
char *cfgp_field_join(char *buf, size_t len, const char *prefix, const char *key);
#define FIELD(buf, prefix, key) cfgp_field_join(buf, sizeof buf, prefix, key)

void cfgp_err_at(struct pctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void cfgp_err_at_key(struct pctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *cfgp_type_name(const json_t *v);
int cfgp_duration_in_range(struct pctx *c, const char *field, double d, double *out);
int cfgp_get_duration(struct pctx *c, const char *field, json_t *v, double *out);
int cfgp_get_string(struct pctx *c, const char *field, json_t *v, char **out);
int cfgp_get_enum(struct pctx *c, const char *field, json_t *v, const char *const *names, int n);
void cfgp_get_bool(struct pctx *c, const char *field, json_t *v, bool *out);
int cfgp_get_number(struct pctx *c, const char *field, json_t *v, double lo, double hi, double *out);
int cfgp_get_int(struct pctx *c, const char *field, json_t *v, int lo, int hi, int *out);
char **cfgp_get_strv(struct pctx *c, const char *field, json_t *v, bool nonempty);
char **cfgp_get_argv(struct pctx *c, const char *field, json_t *v);
int cfgp_get_port(struct pctx *c, const char *field, json_t *v, int *out);
/* Unknown keys of obj (not in the NULL-terminated allowed list) are errors. */
void cfgp_check_keys(struct pctx *c, const char *prefix, json_t *obj, const char *const *allowed);

/* cfg_slurm.c: a service's Slurm keys, and a cluster of "clusters". */
void cfgp_parse_slurm(struct pctx *c, const char *prefix, json_t *o, struct spec *s);
struct cluster_spec *cfgp_parse_cluster(struct pctx *c, const char *prefix, json_t *o);
/* The batch script of a Slurm service given a "command" (and maybe a container). */
char *cfgp_script_for(const struct spec *s);

/* cfg_hosts.c: a host of "hosts", and a service's "ssh". */
struct host_spec *cfgp_parse_host(struct pctx *c, const char *prefix, json_t *o);
/* job_cfg.c: a service's "job" section (restart defaults to on-failure) */
void cfgp_parse_job(struct pctx *c, const char *field, json_t *v, struct spec *s, json_t *restart);
/* job_cfg.c: the top-level "queues" array */
struct spec_set;
void cfgp_parse_queues(struct pctx *c, json_t *v, struct spec_set *out);
void cfgp_parse_ssh(struct pctx *c, const char *field, json_t *v, struct spec *s);

#endif
