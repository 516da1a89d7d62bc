/* Spec lifetime and derived views. */
#include "herd/spec.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static void strv_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

static void check_free(struct check_spec *c) {
  if (!c) return;
  free(c->url);
  free(c->path);
  free(c->method);
  strv_free(c->headers);
  free(c->body_contains);
  free(c->ca_file);
  free(c->host);
  strv_free(c->command);
  free(c->ssh_host);
  free(c);
}

const char *dep_cond_name(enum dep_cond c) {
  static const char *const names[] = {
      [DEP_STARTED] = "started", [DEP_HEALTHY] = "healthy", [DEP_COMPLETED] = "completed"};
  static_assert(sizeof names / sizeof names[0] == DEP__MAX, "dep names");
  return (unsigned)c < DEP__MAX ? names[c] : "?";
}

const char *check_type_name(enum check_type t) {
  static const char *const names[] = {[CHECK_HTTP] = "http", [CHECK_TCP] = "tcp", [CHECK_EXEC] = "exec"};
  static_assert(sizeof names / sizeof names[0] == CHECK__MAX, "check names");
  return (unsigned)t < CHECK__MAX ? names[t] : "?";
}

static void slurm_free(struct slurm_spec *j) {
  if (!j) return;
  free(j->cluster);
  free(j->script);
  free(j->partition);
  free(j->nodes);
  free(j->gres);
  free(j->account);
  free(j->qos);
  free(j->output);
  free(j->error);
  free(j->container.runtime);
  free(j->container.image);
  strv_free(j->container.binds);
  free(j);
}

void host_spec_free(struct host_spec *h) {
  if (!h) return;
  free(h->name);
  free(h->destination);
  free(h->identity_file);
  free(h->identity_agent);
  free(h->known_hosts);
  free(h->host_key_alias);
  free(h->proxy_jump);
  for (char **o = h->options; o && *o; o++) free(*o);
  free(h->options);
  free(h->source);
  free(h);
}

void cluster_spec_free(struct cluster_spec *c) {
  if (!c) return;
  free(c->name);
  free(c->url);
  free(c->base);
  free(c->unix_path);
  free(c->user);
  free(c->token.value);
  free(c->token.file);
  strv_free(c->token_command);
  free(c->jwt_key);
  free(c->ssh);
  free(c->oauth_url);
  free(c->oauth_client_id);
  free(c->oauth_scope);
  free(c->oauth_secret.value);
  free(c->oauth_secret.file);
  free(c->job_prefix);
  free(c->cwd);
  free(c->canon);
  free(c->source);
  free(c);
}

const char *backend_name(enum backend b) {
  static const char *const names[] = {[BACKEND_LOCAL] = "local", [BACKEND_SLURM] = "slurm"};
  static_assert(sizeof names / sizeof names[0] == BACKEND__MAX, "backend names");
  return (unsigned)b < BACKEND__MAX ? names[b] : "?";
}

void spec_free(struct spec *s) {
  if (!s) return;
  slurm_free(s->slurm);
  check_free(s->check);
  free(s->endpoint.host);
  for (size_t i = 0; i < s->ndeps; i++) free(s->deps[i].service);
  free(s->deps);
  free(s->name);
  strv_free(s->argv);
  strv_free(s->env);
  strv_free(s->tags);
  free(s->cwd);
  free(s->ssh);
  free(s->user);
  free(s->group);
  if (s->job) free(s->job->queue);
  free(s->job);
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
  p->has_check = s->check != NULL;
  p->success_threshold = 1;
  p->failure_threshold = 1;
  if (s->check) {
    p->start_timeout = s->start_period > 0 ? s->start_period : s->start_timeout;
    p->success_threshold = s->check->success_threshold;
    p->failure_threshold = s->check->failure_threshold;
    p->restart_on_unhealthy = s->check->restart_on_unhealthy;
    p->unhealthy_grace = s->check->unhealthy_grace;
  }
  p->queue_timeout = s->queue_timeout; /* (batch is the backend's: set by the runner) */
  p->notify_ready = s->notify_ready;
  p->watchdog = s->watchdog;
  if (s->job) {
    p->job = true;
    p->run_timeout = s->job->timeout;
    p->max_attempts = (unsigned)s->job->retries + 1;
  }
}

bool spec_has_tag(const struct spec *s, const char *tag) {
  for (char **t = s->tags; t && *t; t++)
    if (!strcmp(*t, tag)) return true;
  return false;
}
