/* The config's job settings: a service's "job" section and the top-level "queues" (see
 * README "Jobs"). */
#include "cfg_int.h"
#include "herd/cfg.h"
#include "herd/herd.h"
#include "herd/spec.h"

#include <stdlib.h>
#include <string.h>

static const char *const job_keys[] = {"queue", "priority", "retries", "timeout", NULL};
static const char *const queue_keys[] = {"name", "max_running", "retention", NULL};

void cfgp_parse_job(struct pctx *c, const char *field, json_t *v, struct spec *s, json_t *restart) {
  char f[300];
  if (!json_is_object(v)) {
    cfgp_err_at(c, field, "expected an object (queue, priority, retries, timeout), got %s", cfgp_type_name(v));
    return;
  }
  cfgp_check_keys(c, field, v, job_keys);
  struct job_spec *j = xcalloc(1, sizeof *j);
  s->job = j;
  j->priority = 3;
  json_t *x;
  if ((x = json_object_get(v, "queue")) && cfgp_get_string(c, FIELD(f, field, "queue"), x, &j->queue) == 0 &&
      !name_valid(j->queue))
    cfgp_err_at(c, FIELD(f, field, "queue"), "\"%s\" is not a valid queue name (letters, digits, . _ -)", j->queue);
  if (!j->queue) j->queue = xstrdup("default");
  if ((x = json_object_get(v, "priority"))) cfgp_get_int(c, FIELD(f, field, "priority"), x, 1, 5, &j->priority);
  if ((x = json_object_get(v, "retries"))) cfgp_get_int(c, FIELD(f, field, "retries"), x, 0, 1000, &j->retries);
  if ((x = json_object_get(v, "timeout"))) cfgp_get_duration(c, FIELD(f, field, "timeout"), x, &j->timeout);
  /* A job runs to completion: it is started again only to retry a failure. */
  if (!restart)
    s->restart = RESTART_ON_FAILURE;
  else if (s->restart == RESTART_ALWAYS)
    cfgp_err_at(c, field, "a job runs to completion: its restart is \"on-failure\" (the default) or \"never\"");
  if (s->restart == RESTART_NEVER) j->retries = 0;
  if (s->check) cfgp_err_at(c, field, "a job has no health check: it runs until it exits");
}

void cfgp_parse_queues(struct pctx *c, json_t *v, struct spec_set *out) {
  if (!json_is_array(v)) {
    cfgp_err_at(c, "queues", "expected an array of queues ({\"name\", \"max_running\"}), got %s", cfgp_type_name(v));
    return;
  }
  size_t i;
  json_t *o;
  json_array_foreach(v, i, o) {
    char prefix[64], f[300];
    snprintf(prefix, sizeof prefix, "queues[%zu]", i);
    if (!json_is_object(o)) {
      cfgp_err_at(c, prefix, "expected an object, got %s", cfgp_type_name(o));
      continue;
    }
    cfgp_check_keys(c, prefix, o, queue_keys);
    char *name = NULL;
    int max = 0;
    double retention = 0;
    json_t *x = json_object_get(o, "name");
    if (!x)
      cfgp_err_at(c, prefix, "missing required key \"name\"");
    else if (cfgp_get_string(c, FIELD(f, prefix, "name"), x, &name) == 0 && !name_valid(name))
      cfgp_err_at(c, FIELD(f, prefix, "name"), "\"%s\" is not a valid queue name", name);
    if ((x = json_object_get(o, "max_running"))) cfgp_get_int(c, FIELD(f, prefix, "max_running"), x, 0, 1000000, &max);
    if ((x = json_object_get(o, "retention"))) cfgp_get_duration(c, FIELD(f, prefix, "retention"), x, &retention);
    for (size_t k = 0; name && k < out->nqueues; k++)
      if (!strcmp(out->queues[k].name, name))
        cfgp_err_at(c, FIELD(f, prefix, "name"), "queue \"%s\" is defined twice", name);
    if (!name) continue;
    out->queues = xrealloc(out->queues, (out->nqueues + 1) * sizeof *out->queues);
    out->queues[out->nqueues++] =
        (struct queue_spec){.name = name, .max_running = (unsigned)max, .retention = retention};
  }
}
