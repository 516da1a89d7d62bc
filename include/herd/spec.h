/* A service spec: what the user asked for, validated. */
#ifndef HERD_SPEC_H
#define HERD_SPEC_H

#include "herd/herd.h"
#include "herd/svc.h"

#include <jansson.h>

enum check_type { CHECK_HTTP, CHECK_TCP, CHECK_EXEC, CHECK__MAX };
enum endpoint_proto { PROTO_TCP, PROTO_HTTP, PROTO_HTTPS };
enum dep_cond { DEP_STARTED, DEP_HEALTHY, DEP_COMPLETED, DEP__MAX };

/** A health check (see README "Health checks"). */
struct check_spec {
  enum check_type type;
  char *url;    /* http: absolute URL; or */
  char *path;   /* http: path relative to the endpoint */
  char *method; /* GET or HEAD */
  int status_lo, status_hi;
  char **headers; /* "Name: value", NULL-terminated */
  char *body_contains;
  char *ca_file;
  bool insecure;
  char *host;     /* tcp: default the endpoint's host */
  int port;       /* tcp: default the endpoint's port */
  char **command; /* exec: argv */
  double interval, timeout;
  unsigned failure_threshold, success_threshold;
  bool restart_on_unhealthy;
  double unhealthy_grace;
};

struct endpoint_spec {
  bool set;
  enum endpoint_proto protocol;
  char *host;
  int port;      /* 0: choose one from the range */
  bool allocate; /* if the port is busy, take another */
  int range_lo, range_hi;
};

struct dep_spec {
  char *service;
  enum dep_cond cond;
  int line, col; /* where it was written, for errors found across files */
};

struct spec {
  char *name;
  char **argv; /* NULL-terminated */
  char **env;  /* "K=V", NULL-terminated; added to herd's own environment */
  char *cwd;   /* NULL: the state dir */
  char *user, *group;
  uid_t uid;
  gid_t gid;
  bool set_uid, set_gid;
  restart_policy restart;
  struct svc_backoff backoff;
  int stop_signal;
  double stop_grace;
  double start_timeout;
  double ready_after;
  char **tags; /* NULL-terminated */
  uint64_t log_max_size;
  unsigned log_keep;
  double start_period;      /* with a check: STARTING may last this long (default start_timeout) */
  struct check_spec *check; /* NULL: no health check */
  struct endpoint_spec endpoint;
  struct dep_spec *deps;
  size_t ndeps;
  bool restart_with_dependency;
  json_t *json; /* the spec as given (owned reference) */
  char *canon;  /* canonical compact JSON with sorted keys: equal canon = same spec */
  char *source; /* the file it came from, or "api" */
};

void spec_free(struct spec *s);
/** The policy the state machine needs, derived from the spec. */
void spec_policy(const struct spec *s, struct svc_policy *p);
bool spec_has_tag(const struct spec *s, const char *tag);
const char *dep_cond_name(enum dep_cond c);
const char *check_type_name(enum check_type t);

#endif
