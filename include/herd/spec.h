/* A service spec: what the user asked for, validated. */
#ifndef HERD_SPEC_H
#define HERD_SPEC_H

#include "herd/herd.h"
#include "herd/svc.h"

#include <jansson.h>

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
  json_t *json; /* the spec as given (owned reference) */
  char *canon;  /* canonical compact JSON with sorted keys: equal canon = same spec */
  char *source; /* the file it came from, or "api" */
};

void spec_free(struct spec *s);
/** The policy the state machine needs, derived from the spec. */
void spec_policy(const struct spec *s, struct svc_policy *p);
bool spec_has_tag(const struct spec *s, const char *tag);

#endif
