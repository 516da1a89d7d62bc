/* Spec lifetime and derived views. */
#include "herd/spec.h"

#include <stdlib.h>
#include <string.h>

static void strv_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

void spec_free(struct spec *s) {
  if (!s) return;
  free(s->name);
  strv_free(s->argv);
  strv_free(s->env);
  strv_free(s->tags);
  free(s->cwd);
  free(s->user);
  free(s->group);
  free(s->canon);
  free(s->source);
  json_decref(s->json);
  free(s);
}

void spec_policy(const struct spec *s, struct svc_policy *p) {
  memset(p, 0, sizeof *p);
  p->restart = s->restart;
  p->backoff = s->backoff;
  p->stop_signal = s->stop_signal;
  p->stop_grace = s->stop_grace;
  p->start_timeout = s->start_timeout;
  p->ready_after = s->ready_after;
  p->has_check = false;
  p->success_threshold = 1;
  p->failure_threshold = 1;
}

bool spec_has_tag(const struct spec *s, const char *tag) {
  for (char **t = s->tags; t && *t; t++)
    if (!strcmp(*t, tag)) return true;
  return false;
}
