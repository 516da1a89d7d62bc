/*
 * The run boundary, loop tier: a real daemon object (store, loop, runner) with a mock
 * backend in place of a real one, to pin down what the boundary promises: a backend's
 * reports are fed after the effects being applied (never re-entrantly, in order), the
 * runner records the facts they carry, and nothing is signalled before its start is
 * answered. Ends with uv_loop_close() == 0.
 */
#include "herd/cfg.h"
#include "herd/daemon.h"
#include "herd/run.h"
#include "herd/store.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* ---- the mock backend ---- */

enum mock_mode { ANSWER_NONE, FAIL_AT_ONCE, RUN_AT_ONCE };
static enum mock_mode mode;
static int starts, signals, last_sig, attached, detached;

static void m_attach(struct service *s) { attached++; }
static void m_detach(struct service *s) { detached++; }
static int m_start(struct service *s, char *err, size_t len) {
  starts++;
  if (mode == FAIL_AT_ONCE) {
    /* Reported from inside the effect list that asked for the start. */
    run_post_event(s, EV_SPAWN_FAILED, -1, 0, "refused at once");
  } else if (mode == RUN_AT_ONCE) {
    struct run_event ev = {.type = EV_STARTED, .msg = "job 42", .facts = RUN_JOB, .job_id = 42, .job_where = "c"};
    run_post(s, &ev);
    struct run_event run = {
        .type = EV_RUNNING, .msg = "running", .facts = RUN_HOST | RUN_RUNNING, .host = "node1", .since = now_wall()};
    run_post(s, &run);
  }
  return 0;
}
static void m_signal(struct service *s, int sig) {
  signals++;
  last_sig = sig;
}
static void m_resume(struct service *s, const struct store_instance *last, struct run_resume *out) {}
static void m_release(struct service *s) {}
static bool m_busy(struct service *s) { return false; }

static const struct backend_ops mock = {
    .name = "mock",
    .batch = true,
    .attach = m_attach,
    .detach = m_detach,
    .start = m_start,
    .signal = m_signal,
    .resume = m_resume,
    .release = m_release,
    .busy = m_busy,
};

/* ---- the transitions published, in order ---- */

static char seen[2048];
static void on_transition(struct svc_watch *w, struct service *s, svc_state from, svc_state to, const char *reason,
                          int64_t id, double ts) {
  size_t n = strlen(seen);
  snprintf(seen + n, sizeof seen - n, "%s%s>%s", n ? " " : "", svc_state_name(from), svc_state_name(to));
}

static struct daemon *daemon_new(const char *dir) {
  struct daemon *d = xcalloc(1, sizeof *d);
  d->loop = uv_default_loop();
  d->state_dir = xstrdup(dir);
  d->log_dir = xasprintf("%s/logs", dir);
  d->run_dir = xasprintf("%s/run", dir);
  mkdir(d->log_dir, 0700);
  mkdir(d->run_dir, 0700);
  list_init(&d->services);
  list_init(&d->dying);
  list_init(&d->watches);
  list_init(&d->clusters);
  list_init(&d->runq);
  list_init(&d->logfds);
  list_init(&d->polled);
  list_init(&d->delayed);
  d->seed = 1;
  char *db = xasprintf("%s/herd.db", dir), *err = NULL;
  if (store_open(db, &d->store, &err) < 0) {
    printf("store: %s\n", err ? err : "?");
    exit(1);
  }
  free(db);
  return d;
}

static struct service *mock_service(struct daemon *d, const char *name) {
  char text[256];
  snprintf(text, sizeof text, "{\"name\": \"%s\", \"command\": [\"true\"], \"stop\": {\"grace\": \"5s\"}}", name);
  struct spec_set set = {0};
  struct cfg_errors e = {0};
  cfg_parse_text("t.json", text, strlen(text), &set, &e);
  CHECK(e.n == 0 && set.n == 1, "spec parses: %s", e.n ? e.v[0].msg : "");
  if (set.n != 1) exit(1);
  struct spec *sp = set.v[0];
  set.v[0] = NULL;
  set.n = 0;
  spec_set_free(&set);
  cfg_errors_free(&e);
  struct service *s = service_create(d, sp, false, NULL, 0);
  /* In place of its real backend (the table's rows are for the config's kinds). */
  s->be->detach(s);
  s->be = &mock;
  s->pol.batch = mock.batch;
  s->be->attach(s);
  return s;
}

static void test_posted_after_the_effects(struct daemon *d) {
  struct service *s = mock_service(d, "a");
  seen[0] = '\0';
  mode = FAIL_AT_ONCE;
  service_start(s);
  /* The start's own transition first, then what the backend reported from inside it. */
  CHECK(!strcmp(seen, "STOPPED>PENDING PENDING>FAILED FAILED>BACKOFF"), "in order: %s", seen);
  CHECK(starts == 1 && list_empty(&d->runq), "one start, nothing left queued");
  service_stop(s);
}

static void test_facts_recorded(struct daemon *d) {
  struct service *s = mock_service(d, "b");
  seen[0] = '\0';
  mode = RUN_AT_ONCE;
  service_start(s);
  CHECK(!strcmp(seen, "STOPPED>PENDING PENDING>SUBMITTED SUBMITTED>STARTING"), "in order: %s", seen);
  CHECK(s->job_id == 42 && !strcmp(s->host, "node1"), "the runner recorded job %lld on \"%s\"", (long long)s->job_id,
        s->host);
  CHECK(service_uptime(s) >= 0 && service_uptime(s) < 5, "uptime counts from the job's start");
  struct store_instance last;
  CHECK(store_last_instance(d->store, "b", &last) == 0 && last.job_id == 42 && last.cluster &&
            !strcmp(last.cluster, "c"),
        "the instance row has its job");
  signals = 0;
  service_stop(s);
  CHECK(signals == 1 && last_sig == SIGTERM && s->fsm.state == S_STOPPING, "stop: one signal (%d)", signals);
  run_post_event(s, EV_EXIT, -1, SIGTERM, "cancelled");
  CHECK(s->fsm.state == S_STOPPED && s->pid == 0, "its end: STOPPED");
}

static void test_no_signal_before_the_answer(struct daemon *d) {
  struct service *s = mock_service(d, "c");
  mode = ANSWER_NONE;
  signals = 0;
  service_start(s);
  service_stop(s);
  CHECK(s->fsm.state == S_STOPPING && signals == 0, "stop while the start is in flight: STOPPING, no signal yet");
  struct run_event ev = {.type = EV_STARTED, .msg = "job 7", .facts = RUN_JOB, .job_id = 7, .job_where = "c"};
  run_post(s, &ev);
  CHECK(signals == 1 && s->fsm.deadline > 0, "answered: signalled, grace armed (%d)", signals);
  run_post_event(s, EV_EXIT, -1, SIGTERM, "cancelled");
  CHECK(s->fsm.state == S_STOPPED, "then STOPPED");
  /* A report about a service whose handles are closed changes nothing. */
  service_close_handles(s);
  run_post_event(s, EV_START, 0, 0, NULL);
  CHECK(s->fsm.state == S_STOPPED && starts == 3, "closed: ignored");
}

int main(void) {
  char dir[] = "/tmp/herd-test-run-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  struct daemon *d = daemon_new(dir);
  struct svc_watch w = {.on_transition = on_transition};
  list_add_tail(&d->watches, &w.link);
  test_posted_after_the_effects(d);
  test_facts_recorded(d);
  test_no_signal_before_the_answer(d);
  list_del(&w.link);
  /* Teardown as the daemon's own: every service lets go, and is freed once closed. */
  while (!list_empty(&d->services)) {
    struct service *s = container_of(d->services.next, struct service, link);
    list_del(&s->link);
    list_add_tail(&d->dying, &s->link);
    if (!s->closed) service_close_handles(s);
  }
  uv_run(d->loop, UV_RUN_DEFAULT);
  CHECK(list_empty(&d->dying) && detached == attached, "every service freed, its backend state too");
  CHECK(uv_loop_close(d->loop) == 0, "no handle left at loop close");
  store_close(d->store);
  char *cmd = xasprintf("rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("could not remove %s\n", dir);
  free(cmd);
  free(d->state_dir);
  free(d->log_dir);
  free(d->run_dir);
  free(d->htab);
  free(d);
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
