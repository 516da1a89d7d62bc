/*
 * slurm_parse on captured slurmrestd 22.05.8 replies (v0.0.36-38, copied unchanged from the
 * reference samples) and on hand-written replies of v0.0.39-45 built from the documented
 * shapes, plus robustness cases and a table of slurm_job_outcome.
 *
 * Usage: test_slurm_parse [fixture-dir]; the default is HERD_FIXTURES when it is defined.
 * A fixture is {"request":..., "response":{"status","content_type","body": obj-or-text}}:
 * the body is re-serialized (escaping '/' as slurmrestd does) and parsed with the status.
 */
#include "herd/slurm_parse.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_VERBOSE 1
#include "check.h"
static const char *fixdir;

#define CHECK_INT(what, got, want)                                                                                     \
  do {                                                                                                                 \
    long long g_ = (long long)(got), w_ = (long long)(want);                                                           \
    CHECK(g_ == w_, "%s: %s = %lld (want %lld)", what, #got, g_, w_);                                                  \
  } while (0)

#define CHECK_STR(what, got, want)                                                                                     \
  do {                                                                                                                 \
    const char *g_ = (got), *w_ = (want);                                                                              \
    CHECK(g_ && !strcmp(g_, w_), "%s: %s = \"%s\" (want \"%s\")", what, #got, g_ ? g_ : "(null)", w_);                 \
  } while (0)

#define CHECK_HAS(what, got, part)                                                                                     \
  do {                                                                                                                 \
    const char *g_ = (got), *p_ = (part);                                                                              \
    CHECK(g_ &&strstr(g_, p_), "%s: %s = \"%s\" contains \"%s\"", what, #got, g_ ? g_ : "(null)", p_);                 \
  } while (0)

/* ---- fixtures ----------------------------------------------------------------------- */

/* The version in a fixture name: "v0.0.38-get-failed.json" -> 38. */
static int name_version(const char *name) {
  char v[16];
  size_t n = strcspn(name, "-");
  if (n >= sizeof v) return -1;
  memcpy(v, name, n);
  v[n] = '\0';
  return slurm_api_version(v);
}

static json_t *load_fixture(const char *name) {
  char path[1024];
  json_error_t e;
  snprintf(path, sizeof path, "%s/%s", fixdir, name);
  json_t *f = json_load_file(path, 0, &e);
  if (!f) printf("cannot load %s: %s line %d\n", path, e.text, e.line);
  return f;
}

/* Parse a response body (object or text) as slurmrestd would have sent it. */
static int parse_body(int ver, enum slurm_req_kind kind, int status, json_t *body, struct slurm_reply *r, char *err,
                      size_t errlen) {
  if (json_is_string(body))
    return slurm_parse_reply(ver, kind, status, json_string_value(body), json_string_length(body), r, err, errlen);
  char *s = json_dumps(body, JSON_COMPACT | JSON_ESCAPE_SLASH);
  int rc = slurm_parse_reply(ver, kind, status, s, s ? strlen(s) : 0, r, err, errlen);
  free(s);
  return rc;
}

/* Parse fixture `name`; `patch` (a JSON object, may be NULL) is merged into body.jobs[0]. */
static int parse_fixture_patched(const char *name, enum slurm_req_kind kind, const char *patch, struct slurm_reply *r,
                                 char *err, size_t errlen) {
  json_t *f = load_fixture(name);
  json_t *resp = json_object_get(f, "response");
  int status = (int)json_integer_value(json_object_get(resp, "status"));
  json_t *body = json_object_get(resp, "body");
  if (patch) {
    json_t *p = json_loads(patch, 0, NULL);
    json_object_update(json_array_get(json_object_get(body, "jobs"), 0), p);
    json_decref(p);
  }
  int rc = f ? parse_body(name_version(name), kind, status, body, r, err, errlen) : -2;
  if (!f) memset(r, 0, sizeof *r);
  json_decref(f);
  return rc;
}

static char err[512];

static int parse_fixture(const char *name, enum slurm_req_kind kind, struct slurm_reply *r) {
  return parse_fixture_patched(name, kind, NULL, r, err, sizeof err);
}

/* Parse a fixture that must be a JSON reply: checks rc 0, status and release. */
static void must_parse(const char *name, enum slurm_req_kind kind, struct slurm_reply *r, int status,
                       const char *release) {
  int rc = parse_fixture(name, kind, r);
  CHECK(rc == 0, "%s: parses (rc %d, err \"%s\")", name, rc, err);
  CHECK_INT(name, r->status, status);
  CHECK_STR(name, r->release, release);
}

static const struct slurm_job *job_by_id(const struct slurm_reply *r, uint64_t id) {
  for (size_t i = 0; i < r->njobs; i++)
    if (r->jobs[i].job_id == id) return &r->jobs[i];
  return NULL;
}

/* Check one job's state and herd's reading of it. */
static void check_job(const char *what, const struct slurm_job *j, enum slurm_base base, uint32_t flags,
                      enum slurm_phase phase, svc_state end, int code, int sig, const char *msg) {
  CHECK(j != NULL, "%s: job present", what);
  if (!j) return;
  struct slurm_outcome o;
  slurm_job_outcome(j, &o);
  CHECK(j->base == base, "%s: base %s (want %s)", what, slurm_base_name(j->base), slurm_base_name(base));
  CHECK_INT(what, j->flags, flags);
  CHECK_INT(what, o.phase, phase);
  CHECK(o.end == end, "%s: end %s (want %s)", what, svc_state_name(o.end), svc_state_name(end));
  CHECK_INT(what, o.code, code);
  CHECK_INT(what, o.sig, sig);
  if (msg) CHECK_STR(what, o.msg, msg);
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_api_version(void) {
  CHECK_INT("version", slurm_api_version("v0.0.38"), 38);
  CHECK_INT("version", slurm_api_version("0.0.42"), 42);
  CHECK_INT("version", slurm_api_version("v0.0.46"), 46);
  CHECK_INT("version", slurm_api_version("v0.1.38"), -1);
  CHECK_INT("version", slurm_api_version("v0.0."), -1);
  CHECK_INT("version", slurm_api_version("v0.0.38x"), -1);
  CHECK_INT("version", slurm_api_version("data_parser/v0.0.42"), -1);
  CHECK_INT("version", slurm_api_version(""), -1);
  CHECK_INT("version", slurm_api_version(NULL), -1);
}

/* Every fixture: JSON bodies parse, text bodies fail cleanly and quote the text. */
/* The same reply parsed whole and slimmed: identical results. */
static void same_both_ways(const char *what, int ver, int status, const char *text) {
  struct slurm_reply a, b;
  char ea[512], eb[512];
  slurm_parse_set_slim(0);
  int ra = slurm_parse_reply(ver, SR_JOBS, status, text, strlen(text), &a, ea, sizeof ea);
  slurm_parse_set_slim(2);
  int rb = slurm_parse_reply(ver, SR_JOBS, status, text, strlen(text), &b, eb, sizeof eb);
  slurm_parse_set_slim(1);
  bool same = ra == rb && a.njobs == b.njobs && a.nerrors == b.nerrors && a.error_code == b.error_code &&
              a.unchanged == b.unchanged && a.last_update == b.last_update && !strcmp(a.error, b.error) &&
              !strcmp(a.warning, b.warning) && !strcmp(a.release, b.release);
  for (size_t i = 0; same && i < a.njobs; i++) same = !memcmp(&a.jobs[i], &b.jobs[i], sizeof a.jobs[i]);
  CHECK(same, "%s: slimmed and whole parses agree (rc %d/%d, jobs %zu/%zu)", what, ra, rb, a.njobs, b.njobs);
  slurm_reply_free(&a);
  slurm_reply_free(&b);
}

static void test_slim(void) {
  /* Whitespace everywhere, escapes in strings, a "jobs" key nested inside a job, unwanted
   * keys holding objects and arrays, a non-object in the array. */
  const char *tricky =
      "{ \"meta\" : {\"Slurm\":{\"release\":\"22.05.8\"}} ,\n \"errors\" : [ ] ,\n \"jobs\" : [\n"
      "  { \"account\" : \"a\\\"}]b\" , \"job_id\" : 7 ,\n \"details\" : {\"jobs\": [1, {\"x\": \"]}\"}]} ,"
      " \"job_state\" : \"RUNNING\", \"comment\": \"herd:x:a\\\\b:1\", \"flags\": [\"A\", \"B\"],"
      " \"exit_code\": 256, \"batch_host\" : \"vm\" } ,\n"
      "  {} , 3 , {\"job_id\": 8, \"job_state\": \"PENDING\", \"state_reason\": \"Priority\"}\n ] ,"
      " \"tail\" : true }";
  same_both_ways("tricky", 38, 200, tricky);
  struct slurm_reply r;
  char e[256];
  slurm_parse_set_slim(2);
  CHECK(slurm_parse_reply(38, SR_JOBS, 200, tricky, strlen(tricky), &r, e, sizeof e) == 0 && r.njobs == 2 &&
            r.jobs[0].job_id == 7 && !strcmp(r.jobs[0].comment, "herd:x:a\\b:1") && r.jobs[1].job_id == 8 &&
            !strcmp(r.jobs[1].reason, "Priority"),
        "tricky listing: the jobs come through the slimming intact");
  slurm_reply_free(&r);
  /* Truncated or broken text: the slimming gives up and the whole parse reports it. */
  const char *broken[] = {"{\"jobs\": [{\"job_id\": 1, \"name\": \"x", "{\"jobs\": [{\"job_id\" 1}]}", "[1,2]",
                          "{\"jobs\": [{\"job_id\": 1}"};
  for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
    int rc = slurm_parse_reply(38, SR_JOBS, 200, broken[i], strlen(broken[i]), &r, e, sizeof e);
    CHECK(rc == -1, "broken listing %zu fails cleanly (rc %d)", i, rc);
    slurm_reply_free(&r);
  }
  slurm_parse_set_slim(1);
}

static void test_all_fixtures(void) {
  DIR *d = opendir(fixdir);
  CHECK(d != NULL, "open fixture dir %s", fixdir);
  if (!d) return;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) {
    const char *name = e->d_name;
    if (strncmp(name, "v0.0.", 5) || !strstr(name, ".json")) continue;
    json_t *f = load_fixture(name);
    json_t *resp = json_object_get(f, "response"), *body = json_object_get(resp, "body");
    enum slurm_req_kind kind = strstr(name, "ping")                                                         ? SR_PING
                               : strstr(name, "submit")                                                     ? SR_SUBMIT
                               : strstr(name, "cancel") || strstr(name, "delete") || strstr(name, "signal") ? SR_OTHER
                                                                                                            : SR_JOBS;
    struct slurm_reply r;
    int rc = parse_body(name_version(name), kind, (int)json_integer_value(json_object_get(resp, "status")), body, &r,
                        err, sizeof err);
    if (json_is_string(body)) {
      CHECK(rc == -1, "%s: text body fails (rc %d)", name, rc);
      CHECK_HAS(name, err, json_string_value(body));
    } else {
      CHECK(rc == 0 && !err[0], "%s: parses (rc %d, err \"%s\")", name, rc, err);
      CHECK(r.status / 100 == 2 || r.nerrors > 0, "%s: error status %d has errors", name, r.status);
      if (kind == SR_JOBS) {
        char *text = json_dumps(body, JSON_INDENT(1) | JSON_ESCAPE_SLASH);
        same_both_ways(name, name_version(name), r.status, text);
        free(text);
      }
    }
    slurm_reply_free(&r);
    json_decref(f);
    n++;
  }
  closedir(d);
  CHECK(n >= 60, "fixture count %d", n);
}

static void test_v38_jobs(void) {
  struct slurm_reply r;
  const struct slurm_job *j;

  must_parse("v0.0.38-get-running.json", SR_JOBS, &r, 200, "22.05.8");
  CHECK_INT("get-running", r.njobs, 1);
  CHECK_INT("get-running", r.nerrors, 0);
  CHECK_STR("get-running", r.error, "");
  CHECK(!r.unchanged, "get-running: not unchanged");
  j = job_by_id(&r, 1);
  check_job("get-running", j, SJ_RUNNING, 0, SP_RUNNING, S_UNKNOWN, -1, 0, "RUNNING");
  if (j) {
    CHECK_STR("get-running", j->state, "RUNNING");
    CHECK_STR("get-running", j->reason, "");
    CHECK_STR("get-running", j->batch_host, "vm");
    CHECK_STR("get-running", j->nodes, "vm");
    CHECK_STR("get-running", j->comment, "supervisor:unit=hello");
    CHECK_STR("get-running", j->name, "test-hello");
    CHECK_STR("get-running", j->partition, "debug");
    CHECK_STR("get-running", j->user, "root");
    CHECK_STR("get-running", j->std_out, "/srv/run/jobs/%j.out");
    CHECK_INT("get-running", j->submit_time, 1795250601);
    CHECK_INT("get-running", j->start_time, 1795250602);
    CHECK_INT("get-running", j->end_time, 1795250902);
    CHECK_INT("get-running", j->time_limit, 5);
  }
  slurm_reply_free(&r);

  must_parse("v0.0.38-get-running-http.json", SR_JOBS, &r, 200, "22.05.8");
  j = job_by_id(&r, 253);
  check_job("get-running-http", j, SJ_RUNNING, 0, SP_RUNNING, S_UNKNOWN, -1, 0, "RUNNING");
  if (j) CHECK_STR("get-running-http", j->comment, "supervisor:unit=http");
  if (j) CHECK_INT("get-running-http: projected end", j->end_time, 1795251520);
  slurm_reply_free(&r);

  must_parse("v0.0.38-get-completed.json", SR_JOBS, &r, 200, "22.05.8");
  j = job_by_id(&r, 1);
  check_job("get-completed", j, SJ_COMPLETED, 0, SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED");
  if (j) CHECK(j->exit_known && j->exit_code == 0 && j->exit_signal == 0, "get-completed: exit 0 known");
  slurm_reply_free(&r);

  must_parse("v0.0.38-get-failed.json", SR_JOBS, &r, 200, "22.05.8");
  j = job_by_id(&r, 40);
  check_job("get-failed", j, SJ_FAILED, 0, SP_ENDED, S_FAILED, 1, 0, "FAILED: exit code 1");
  if (j) CHECK_STR("get-failed", j->reason, "NonZeroExitCode");
  if (j) CHECK_STR("get-failed", j->comment, "");
  slurm_reply_free(&r);

  must_parse("v0.0.38-get-timeout.json", SR_JOBS, &r, 200, "22.05.8");
  j = job_by_id(&r, 39);
  check_job("get-timeout", j, SJ_TIMEOUT, 0, SP_ENDED, S_TIMEOUT, -1, 15, "TIMEOUT: time limit reached");
  if (j) CHECK_STR("get-timeout", j->reason, "TimeLimit");
  if (j) CHECK(j->exit_known && j->exit_code == -1 && j->exit_signal == 15, "get-timeout: raw 15 = SIGTERM");
  slurm_reply_free(&r);

  must_parse("v0.0.38-get-cancelled.json", SR_JOBS, &r, 200, "22.05.8");
  j = job_by_id(&r, 253);
  check_job("get-cancelled", j, SJ_CANCELLED, 0, SP_ENDED, S_STOPPED, -1, 15, "CANCELLED");
  slurm_reply_free(&r);

  must_parse("v0.0.36-get-completed.json", SR_JOBS, &r, 200, "22.05.8");
  j = job_by_id(&r, 1);
  check_job("v36 completed", j, SJ_COMPLETED, 0, SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED");
  if (j) CHECK_STR("v36 completed: empty user_name", j->user, "");
  if (j) CHECK_STR("v36 completed", j->comment, "supervisor:unit=hello");
  slurm_reply_free(&r);

  must_parse("v0.0.37-get-completed.json", SR_JOBS, &r, 200, "22.05.8");
  j = job_by_id(&r, 1);
  check_job("v37 completed", j, SJ_COMPLETED, 0, SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED");
  if (j) CHECK_STR("v37 completed", j->user, "root");
  slurm_reply_free(&r);

  const char *lists[] = {"v0.0.38-nonroot-jobs.json", "v0.0.38-err-user-mismatch.json"};
  for (size_t i = 0; i < 2; i++) {
    must_parse(lists[i], SR_JOBS, &r, 200, "22.05.8");
    CHECK_INT(lists[i], r.njobs, 2);
    check_job(lists[i], job_by_id(&r, 1), SJ_COMPLETED, 0, SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED");
    check_job(lists[i], job_by_id(&r, 2), SJ_CANCELLED, 0, SP_ENDED, S_STOPPED, -1, 15, "CANCELLED");
    slurm_reply_free(&r);
  }

  must_parse("v0.0.38-jobs-empty.json", SR_JOBS, &r, 200, "22.05.8");
  CHECK_INT("jobs-empty", r.njobs, 0);
  CHECK(!r.unchanged, "jobs-empty: an empty list is not 'unchanged'");
  slurm_reply_free(&r);
}

/* The captured failed job with other raw wait statuses and states (v0.0.38 semantics). */
static void test_v38_variants(void) {
  static const struct {
    const char *patch;
    enum slurm_base base;
    uint32_t flags;
    enum slurm_phase phase;
    svc_state end;
    int code, sig;
    const char *msg;
  } rows[] = {
      {"{\"exit_code\": 768}", SJ_FAILED, 0, SP_ENDED, S_FAILED, 3, 0, "FAILED: exit code 3"},
      {"{\"exit_code\": 1792}", SJ_FAILED, 0, SP_ENDED, S_FAILED, 7, 0, "FAILED: exit code 7"},
      {"{\"exit_code\": 2048}", SJ_FAILED, 0, SP_ENDED, S_FAILED, 8, 0, "FAILED: exit code 8"},
      {"{\"exit_code\": 9, \"state_reason\": \"JobLaunchFailure\"}", SJ_FAILED, 0, SP_ENDED, S_FAILED, -1, 9,
       "FAILED: killed by signal 9 (JobLaunchFailure)"},
      {"{\"exit_code\": 139}", SJ_FAILED, 0, SP_ENDED, S_FAILED, -1, 11, "FAILED: killed by signal 11"},
      {"{\"exit_code\": null}", SJ_FAILED, 0, SP_ENDED, S_FAILED, -1, 0, "FAILED"},
      {"{\"exit_code\": 256, \"state_description\": \"bad things\"}", SJ_FAILED, 0, SP_ENDED, S_FAILED, 1, 0,
       "FAILED: exit code 1: bad things"},
      {"{\"job_state\": \"COMPLETING\", \"state_reason\": \"None\"}", SJ_UNKNOWN, SJF_COMPLETING, SP_ENDING, S_UNKNOWN,
       -1, 0, "COMPLETING (ending, waiting for the final state)"},
      {"{\"job_state\": \"PENDING\", \"state_reason\": \"Priority\"}", SJ_PENDING, 0, SP_QUEUED, S_UNKNOWN, -1, 0,
       "PENDING (Priority)"},
      {"{\"job_state\": \"PENDING\", \"state_reason\": \"PartitionConfig\"}", SJ_PENDING, 0, SP_QUEUED, S_UNKNOWN, -1,
       0, "PENDING (PartitionConfig)"},
      {"{\"job_state\": \"?\", \"state_reason\": \"None\"}", SJ_UNKNOWN, 0, SP_UNKNOWN, S_UNKNOWN, -1, 0,
       "UNKNOWN state \"?\""},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    struct slurm_reply r;
    char what[128];
    snprintf(what, sizeof what, "get-failed + %s", rows[i].patch);
    int rc = parse_fixture_patched("v0.0.38-get-failed.json", SR_JOBS, rows[i].patch, &r, err, sizeof err);
    CHECK(rc == 0 && r.njobs == 1, "%s: parses", what);
    if (r.njobs == 1)
      check_job(what, &r.jobs[0], rows[i].base, rows[i].flags, rows[i].phase, rows[i].end, rows[i].code, rows[i].sig,
                rows[i].msg);
    slurm_reply_free(&r);
  }
}

static void test_v38_submit_ping(void) {
  static const struct {
    const char *name;
    int64_t job_id;
  } subs[] = {
      {"v0.0.38-submit.json", 1},
      {"v0.0.38-submit-fail.json", 40},
      {"v0.0.38-submit-http.json", 253},
      {"v0.0.38-submit-mcs-label.json", 249},
      {"v0.0.38-submit-nodes-array.json", 250},
      {"v0.0.38-submit-timeout.json", 39},
      {"v0.0.38-nonroot-submit.json", 45},
      {"v0.0.38-impersonate-submit.json", 46},
      {"v0.0.38-err-no-shebang.json", 43},
  };
  struct slurm_reply r;
  for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
    must_parse(subs[i].name, SR_SUBMIT, &r, 200, "22.05.8");
    CHECK_INT(subs[i].name, r.job_id, subs[i].job_id);
    CHECK_INT(subs[i].name, r.nerrors, 0);
    CHECK_STR(subs[i].name, r.submit_msg, "");
    slurm_reply_free(&r);
  }

  /* 200 with a job id AND an error: the job exists (PENDING, PartitionConfig). */
  must_parse("v0.0.38-err-too-many-cpus.json", SR_SUBMIT, &r, 200, "22.05.8");
  CHECK_INT("too-many-cpus", r.job_id, 44);
  CHECK_INT("too-many-cpus", r.nerrors, 1);
  CHECK_INT("too-many-cpus", r.error_code, 2015);
  CHECK_STR("too-many-cpus", r.error, "Requested partition configuration not available now");
  slurm_reply_free(&r);

  const char *pings[] = {"v0.0.36-ping.json", "v0.0.37-ping.json", "v0.0.38-ping.json", "v0.0.38-nonroot-ping.json"};
  for (size_t i = 0; i < 4; i++) {
    must_parse(pings[i], SR_PING, &r, 200, "22.05.8");
    CHECK(r.ping_up && r.npings == 1, "%s: ping up (npings %d)", pings[i], r.npings);
    slurm_reply_free(&r);
  }
  const char *down[] = {"v0.0.38-err-bad-signature-ping.json", "v0.0.38-ctld-down-ping.json"};
  for (size_t i = 0; i < 2; i++) {
    must_parse(down[i], SR_PING, &r, 500, "22.05.8");
    CHECK(!r.ping_up, "%s: not up", down[i]);
    CHECK_INT(down[i], r.error_code, -1);
    CHECK_STR(down[i], r.error, "Unspecified error: slurmctld config is unable to load");
    slurm_reply_free(&r);
  }
}

static void test_v38_errors(void) {
  static const struct {
    const char *name;
    enum slurm_req_kind kind;
    int status, nerrors, code;
    const char *error;
  } rows[] = {
      {"v0.0.38-err-wrong-type.json", SR_SUBMIT, 400, 3, -1,
       "Invalid time specification; Unspecified error: Unable to process key \"time_limit\"; Failure during parsing"},
      {"v0.0.38-err-unknown-field.json", SR_SUBMIT, 400, 2, 9001,
       "Unknown key \"bogus_field\"; Failure during parsing"},
      {"v0.0.38-err-no-environment.json", SR_SUBMIT, 400, 2, 2127, "environment must be set; Failure during parsing"},
      {"v0.0.38-err-bad-partition.json", SR_SUBMIT, 500, 1, 2000, "Invalid partition name specified"},
      {"v0.0.38-err-empty-body.json", SR_SUBMIT, 500, 1, 2009, "Job script not specified"},
      {"v0.0.38-err-missing-script.json", SR_SUBMIT, 500, 1, 2009, "Job script not specified"},
      {"v0.0.38-err-unknown-job-get.json", SR_JOBS, 500, 1, 2017,
       "Invalid job id specified: Unable to find JobId=999999"},
      {"v0.0.38-err-unknown-job-delete.json", SR_OTHER, 500, 1, 2017,
       "Invalid job id specified: unable to kill JobId=999999 with signal 9: Invalid job id specified"},
      {"v0.0.38-err-nonnumeric-job.json", SR_JOBS, 400, 1, 9002,
       "Jobs description entry not found, empty or not dictionary or list: Unable to find JobId=abc"},
      {"v0.0.38-err-nonroot-cancel-other.json", SR_OTHER, 500, 1, 2002,
       "Access/permission denied: unable to kill JobId=39 with signal 9: Access/permission denied"},
      {"v0.0.38-err-bad-token.json", SR_JOBS, 500, 1, -1, "Unspecified error: Failed while looking for jobs"},
      {"v0.0.38-err-bad-signature.json", SR_JOBS, 500, 1, -1, "Unspecified error: Failed while looking for jobs"},
      {"v0.0.38-err-expired-token-jobs.json", SR_JOBS, 500, 1, -1, "Unspecified error: Failed while looking for jobs"},
      {"v0.0.38-err-nonroot-token-as-root.json", SR_JOBS, 500, 1, -1,
       "Unspecified error: Failed while looking for jobs"},
      {"v0.0.38-ctld-down-jobs.json", SR_JOBS, 500, 1, -1, "Unspecified error: Failed while looking for jobs"},
      {"v0.0.38-cancel.json", SR_OTHER, 200, 0, 0, ""},
      {"v0.0.38-signal-usr1.json", SR_OTHER, 200, 0, 0, ""},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    struct slurm_reply r;
    must_parse(rows[i].name, rows[i].kind, &r, rows[i].status, "22.05.8");
    CHECK_INT(rows[i].name, r.nerrors, rows[i].nerrors);
    CHECK_INT(rows[i].name, r.error_code, rows[i].code);
    CHECK_STR(rows[i].name, r.error, rows[i].error);
    CHECK(r.njobs == 0 && !r.unchanged && r.job_id == 0, "%s: no jobs, not unchanged, no job id", rows[i].name);
    slurm_reply_free(&r);
  }

  static const struct {
    const char *name;
    int status;
    const char *text;
  } texts[] = {
      {"v0.0.38-err-no-token.json", 401, "reply is not JSON (HTTP 401): \"Authentication failure\""},
      {"v0.0.38-err-unknown-path.json", 404,
       "reply is not JSON (HTTP 404): \"Unable find requested URL. Please view /openapi/v3 for API reference.\""},
      {"v0.0.38-err-malformed-json.json", 400, "reply is not JSON (HTTP 400): \"Unable to parse query.\""},
      {"v0.0.39-ping.json", 404,
       "reply is not JSON (HTTP 404): \"Unable find requested URL. Please view /openapi/v3 for API reference.\""},
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    struct slurm_reply r;
    int rc = parse_fixture(texts[i].name, SR_PING, &r);
    CHECK_INT(texts[i].name, rc, -1);
    CHECK_STR(texts[i].name, err, texts[i].text);
    CHECK_STR(texts[i].name, r.error, texts[i].text);
    CHECK_INT(texts[i].name, r.status, texts[i].status);
    slurm_reply_free(&r);
  }
}

static void test_v39(void) {
  struct slurm_reply r;
  must_parse("v0.0.39-jobs.json", SR_JOBS, &r, 200, "23.02.7");
  CHECK_INT("v39 jobs", r.njobs, 8);
  CHECK(!r.unchanged && r.last_update == 0 && r.nwarnings == 0, "v39 jobs: changed, no last_update, no warnings");
  const struct slurm_job *j = job_by_id(&r, 101);
  check_job("v39 101", j, SJ_COMPLETED, 0, SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED");
  if (j) CHECK_INT("v39 101: time_limit object", j->time_limit, 30);
  if (j) CHECK_INT("v39 101: int times", j->end_time, 1718000100);
  check_job("v39 102", job_by_id(&r, 102), SJ_FAILED, 0, SP_ENDED, S_FAILED, 1, 0, "FAILED: exit code 1");
  check_job("v39 103", job_by_id(&r, 103), SJ_UNKNOWN, SJF_COMPLETING, SP_ENDING, S_UNKNOWN, -1, 0, NULL);
  j = job_by_id(&r, 104);
  check_job("v39 104", j, SJ_PENDING, 0, SP_QUEUED, S_UNKNOWN, -1, 0, "PENDING (Priority)");
  if (j) CHECK(!j->exit_known && j->time_limit == 0 && j->start_time == 0, "v39 104: exit unset, time_limit infinite");
  if (j) CHECK_STR("v39 104", j->batch_host, "");
  check_job("v39 105: int exit_code", job_by_id(&r, 105), SJ_TIMEOUT, 0, SP_ENDED, S_TIMEOUT, -1, 15, NULL);
  check_job("v39 106", job_by_id(&r, 106), SJ_UNKNOWN, SJF_REQUEUED, SP_QUEUED, S_UNKNOWN, -1, 0,
            "REQUEUED (requeued, not a failure)");
  check_job("v39 107", job_by_id(&r, 107), SJ_CANCELLED, 0, SP_ENDED, S_STOPPED, -1, 9, "CANCELLED");
  check_job("v39 108", job_by_id(&r, 108), SJ_UNKNOWN, SJF_CONFIGURING, SP_RUNNING, S_UNKNOWN, -1, 0,
            "CONFIGURING (nodes being configured, not a failure)");
  slurm_reply_free(&r);

  must_parse("v0.0.39-jobs-unchanged.json", SR_JOBS, &r, 200, "23.02.7");
  CHECK(r.unchanged, "v39 unchanged: warning says no changes");
  CHECK_INT("v39 unchanged", r.njobs, 0);
  CHECK_INT("v39 unchanged", r.nwarnings, 1);
  CHECK_STR("v39 unchanged", r.warning, "No job changes since update_time=1718000000");
  slurm_reply_free(&r);

  must_parse("v0.0.39-submit.json", SR_SUBMIT, &r, 200, "23.02.7");
  CHECK_INT("v39 submit", r.job_id, 11);
  CHECK_INT("v39 submit: result error_code 0 is no error", r.nerrors, 0);
  slurm_reply_free(&r);
}

static void test_v40_v41(void) {
  struct slurm_reply r;
  must_parse("v0.0.40-jobs.json", SR_JOBS, &r, 200, "23.11.10");
  CHECK_INT("v40 jobs", r.njobs, 6);
  CHECK_INT("v40 jobs", r.last_update, 1718000200);
  CHECK(!r.unchanged, "v40 jobs: changed");
  const struct slurm_job *j = job_by_id(&r, 201);
  check_job("v40 201", j, SJ_RUNNING, SJF_CONFIGURING, SP_RUNNING, S_UNKNOWN, -1, 0,
            "RUNNING+CONFIGURING (nodes being configured, not a failure)");
  if (j) CHECK_STR("v40 201", j->state, "RUNNING+CONFIGURING");
  if (j) CHECK(!j->exit_known, "v40 201: exit status PENDING = unknown");
  if (j) CHECK(j->start_time == 1718000003 && j->end_time == 1718001803, "v40 201: object times");
  check_job("v40 202", job_by_id(&r, 202), SJ_PREEMPTED, SJF_REQUEUED, SP_QUEUED, S_UNKNOWN, -1, 0,
            "PREEMPTED+REQUEUED (requeued, not a failure)");
  check_job("v40 203", job_by_id(&r, 203), SJ_COMPLETED, SJF_COMPLETING, SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED");
  check_job("v40 204", job_by_id(&r, 204), SJ_FAILED, 0, SP_ENDED, S_FAILED, 3, 0, "FAILED: exit code 3");
  check_job("v40 205", job_by_id(&r, 205), SJ_CANCELLED, 0, SP_ENDED, S_STOPPED, -1, 15, "CANCELLED");
  j = job_by_id(&r, 206);
  check_job("v40 206", j, SJ_PENDING, 0, SP_QUEUED, S_UNKNOWN, -1, 0, "PENDING (Resources)");
  if (j) CHECK(j->start_time == 0 && j->time_limit == 0, "v40 206: start 0, infinite limit 0");
  slurm_reply_free(&r);

  must_parse("v0.0.40-jobs-unchanged.json", SR_JOBS, &r, 200, "23.11.10");
  CHECK(r.unchanged && r.last_update == 0 && r.njobs == 0, "v40 unchanged: last_update 0, jobs []");
  CHECK_HAS("v40 unchanged", r.warning, "No job changes since update_time[1718000200]");
  slurm_reply_free(&r);

  must_parse("v0.0.41-jobs.json", SR_JOBS, &r, 200, "24.05.4");
  CHECK_INT("v41 jobs", r.njobs, 9);
  check_job("v41 301", job_by_id(&r, 301), SJ_OUT_OF_MEMORY, 0, SP_ENDED, S_FAILED, 0, 0,
            "FAILED: OUT_OF_MEMORY (out of memory, OutOfMemory)");
  check_job("v41 302", job_by_id(&r, 302), SJ_NODE_FAIL, 0, SP_ENDED, S_FAILED, -1, 9,
            "FAILED: NODE_FAIL (node failure, NodeDown): node01 not responding");
  check_job("v41 303", job_by_id(&r, 303), SJ_TIMEOUT, 0, SP_ENDED, S_TIMEOUT, -1, 15, "TIMEOUT: time limit reached");
  check_job("v41 304", job_by_id(&r, 304), SJ_RUNNING, SJF_STOPPED, SP_RUNNING, S_UNKNOWN, -1, 0,
            "RUNNING+STOPPED (stopped by SIGSTOP, not a failure)");
  check_job("v41 305", job_by_id(&r, 305), SJ_SUSPENDED, 0, SP_RUNNING, S_UNKNOWN, -1, 0, "SUSPENDED (not a failure)");
  check_job("v41 306", job_by_id(&r, 306), SJ_PENDING, SJF_REQUEUE_HOLD, SP_QUEUED, S_UNKNOWN, -1, 0,
            "PENDING+REQUEUE_HOLD (requeued and held, not a failure, JobHeldAdmin)");
  check_job("v41 307", job_by_id(&r, 307), SJ_FAILED, SJF_LAUNCH_FAILED, SP_ENDED, S_FAILED, -1, 11,
            "FAILED: killed by signal 11 (JobLaunchFailure)");
  check_job("v41 308", job_by_id(&r, 308), SJ_BOOT_FAIL, 0, SP_ENDED, S_FAILED, -1, 0,
            "FAILED: BOOT_FAIL (node boot or launch failure)");
  check_job("v41 309", job_by_id(&r, 309), SJ_DEADLINE, 0, SP_ENDED, S_FAILED, -1, 0,
            "FAILED: DEADLINE (deadline reached, DeadLine)");
  slurm_reply_free(&r);

  must_parse("v0.0.41-submit.json", SR_SUBMIT, &r, 200, "24.05.4");
  CHECK_INT("v41 submit", r.job_id, 12);
  CHECK_STR("v41 submit", r.submit_msg, "welcome");
  CHECK_INT("v41 submit", r.nerrors, 0);
  CHECK_INT("v41 submit", r.nwarnings, 1);
  CHECK_STR("v41 submit", r.warning, "Ignoring unknown field \"bogus\"");
  slurm_reply_free(&r);

  must_parse("v0.0.41-ping.json", SR_PING, &r, 200, "24.05.4");
  CHECK(r.npings == 2 && !r.ping_up, "v41 ping: 2 controllers, backup DOWN -> not all up");
  slurm_reply_free(&r);
}

static void test_v42_plus(void) {
  struct slurm_reply r;
  must_parse("v0.0.42-submit.json", SR_SUBMIT, &r, 200, "24.11.5");
  CHECK_INT("v42 submit without result", r.job_id, 9);
  CHECK_INT("v42 submit", r.nerrors, 0);
  slurm_reply_free(&r);

  must_parse("v0.0.42-err-unknown-job.json", SR_JOBS, &r, 404, "24.11.5");
  CHECK_INT("v42 unknown job", r.error_code, 2017);
  CHECK_STR("v42 unknown job", r.error, "Invalid job id specified: Unable to query JobId=999");
  CHECK(!r.unchanged && r.njobs == 0, "v42 unknown job: an error with last_update 0 is not 'unchanged'");
  slurm_reply_free(&r);

  must_parse("v0.0.42-ping.json", SR_PING, &r, 200, "24.11.5");
  CHECK(r.ping_up && r.npings == 1, "v42 ping: responding");
  slurm_reply_free(&r);

  must_parse("v0.0.42-cancel-gone.json", SR_OTHER, &r, 200, "24.11.5");
  CHECK_INT("v42 cancel status[]", r.nerrors, 1);
  CHECK_INT("v42 cancel status[]", r.error_code, 2017);
  CHECK_STR("v42 cancel status[]", r.error, "Invalid job id specified: unable to kill JobId=999");
  slurm_reply_free(&r);

  must_parse("v0.0.44-jobs.json", SR_JOBS, &r, 200, "25.11.1");
  CHECK_INT("v44 jobs: the job without job_id is skipped", r.njobs, 3);
  CHECK_INT("v44 jobs", r.last_update, 1718000400);
  const struct slurm_job *j = job_by_id(&r, 401);
  check_job("v44 401", j, SJ_PENDING, SJF_EXPEDITING, SP_QUEUED, S_UNKNOWN, -1, 0,
            "PENDING+EXPEDITING+FUTURE_FLAG (requeued, not a failure, Priority)");
  j = job_by_id(&r, 402);
  check_job("v44 402", j, SJ_COMPLETED, 0, SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED");
  if (j) CHECK_STR("v44 402: stdout_expanded wins", j->std_out, "/var/lib/herd/402.out");
  if (j) CHECK_INT("v44 402: time object with an extra key", j->end_time, 1718000100);
  if (j) CHECK_STR("v44 402: UTF-8 comment", j->comment, "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93");
  j = job_by_id(&r, 403);
  check_job("v44 403: unknown base word", j, SJ_UNKNOWN, 0, SP_UNKNOWN, S_UNKNOWN, -1, 0,
            "UNKNOWN state \"FUTURE_BASE\"");
  if (j) CHECK(j->exit_known && j->exit_code == 0, "v44 403: unknown exit status with return_code 0");
  slurm_reply_free(&r);

  must_parse("v0.0.44-err-auth.json", SR_JOBS, &r, 511, "25.11.1");
  CHECK_INT("v44 auth", r.error_code, 1007);
  CHECK_STR("v44 auth", r.error, "Protocol authentication error: Failed while looking for jobs");
  CHECK(!r.unchanged, "v44 auth: not unchanged");
  slurm_reply_free(&r);

  must_parse("v0.0.45-ping.json", SR_PING, &r, 200, "26.05.0");
  CHECK(r.ping_up && r.npings == 1, "v45 ping: responding");
  slurm_reply_free(&r);
}

static int parse_str(int ver, enum slurm_req_kind kind, int status, const char *s, struct slurm_reply *r) {
  return slurm_parse_reply(ver, kind, status, s, s ? strlen(s) : 0, r, err, sizeof err);
}

static void test_robustness(void) {
  struct slurm_reply r;
  int rc;

  rc = parse_str(40, SR_JOBS, 200,
                 "{\"jobs\":[{\"job_id\":\"abc\",\"job_state\":[\"RUNNING\"]},{\"job_id\":\"77\",\"job_state\":42},"
                 "{\"job_id\":-5},{\"job_id\":1.5},{\"job_id\":0},{\"job_id\":true},{\"job_id\":{\"set\":false}},"
                 "{\"job_id\":3.0,\"job_state\":\"RUNNING\"},null,7,\"x\",[],"
                 "{\"job_id\":{\"set\":true,\"infinite\":false,\"number\":9},\"exit_code\":\"bad\","
                 "\"start_time\":\"soon\",\"end_time\":{\"set\":true,\"number\":\"x\"},\"name\":42,"
                 "\"state_reason\":null,\"batch_host\":{},\"time_limit\":[1],\"job_state\":[1,null,\"FAILED\",{}]}],"
                 "\"last_update\":\"x\",\"meta\":[1],\"errors\":{\"x\":1},\"warnings\":\"w\"}",
                 &r);
  CHECK(rc == 0, "wrong types: parses (rc %d, %s)", rc, err);
  CHECK_INT("wrong types: only jobs 77, 3 and 9 kept", r.njobs, 3);
  const struct slurm_job *j = job_by_id(&r, 77);
  check_job("job_id \"77\", job_state 42", j, SJ_UNKNOWN, 0, SP_UNKNOWN, S_UNKNOWN, -1, 0, NULL);
  if (j) CHECK_STR("job_state 42", j->state, "");
  check_job("job_id 3.0", job_by_id(&r, 3), SJ_RUNNING, 0, SP_RUNNING, S_UNKNOWN, -1, 0, "RUNNING");
  j = job_by_id(&r, 9);
  check_job("job 9 of odd types", j, SJ_FAILED, 0, SP_ENDED, S_FAILED, -1, 0, "FAILED");
  if (j) CHECK(!j->exit_known && j->start_time == 0 && j->end_time == 0 && j->time_limit == 0, "job 9: absent");
  if (j) CHECK(!j->name[0] && !j->reason[0] && !j->batch_host[0] && !strcmp(j->state, "FAILED"), "job 9: strings");
  CHECK(r.nerrors == 0 && r.nwarnings == 0 && !r.release[0] && r.last_update == 0, "wrong types: nothing else");
  slurm_reply_free(&r);
  slurm_reply_free(&r); /* twice is harmless */

  rc = parse_str(41, SR_JOBS, 200, "{\"jobs\":{\"a\":1}}", &r);
  CHECK(rc == 0 && r.njobs == 0 && !r.unchanged, "jobs as an object: no jobs");
  slurm_reply_free(&r);

  rc = parse_str(42, SR_OTHER, 500, "{\"errors\":[\"plain text\",5,{\"error_code\":\"12\",\"error\":\"E\"},{}]}", &r);
  CHECK(rc == 0 && r.nerrors == 3 && r.error_code == 0, "odd errors[]: 3 entries, no code (%d)", r.nerrors);
  CHECK_STR("odd errors[]", r.error, "plain text; E; unspecified error");
  slurm_reply_free(&r);

  rc = parse_str(38, SR_OTHER, 500, "{\"errors\":[{\"error_code\":0,\"error_number\":2017,\"source\":\"x\"}]}", &r);
  CHECK(rc == 0 && r.error_code == 2017, "error_code 0 falls back to error_number");
  CHECK_STR("source only", r.error, "x");
  slurm_reply_free(&r);

  rc = parse_str(42, SR_PING, 200,
                 "{\"meta\":{\"slurm\":{\"version\":{\"major\":\"24\",\"minor\":\"05\",\"micro\":\"1\"}}},"
                 "\"pings\":[{\"hostname\":\"a\"},5]}",
                 &r);
  CHECK(rc == 0 && !r.ping_up && r.npings == 1, "ping entry without a word: down");
  CHECK_STR("release from version", r.release, "24.05.1");
  slurm_reply_free(&r);

  rc = parse_str(42, SR_PING, 200, "{\"pings\":[]}", &r);
  CHECK(rc == 0 && !r.ping_up, "no pings: not up");
  slurm_reply_free(&r);

  /* A uint64 (NO_VAL64) in a field we do not read must not lose the document. */
  rc = parse_str(41, SR_JOBS, 200,
                 "{\"jobs\":[{\"job_id\":5,\"job_state\":[\"RUNNING\"],\"future\":18446744073709551614,"
                 "\"start_time\":{\"set\":true,\"infinite\":false,\"number\":1718000003}}],"
                 "\"last_update\":{\"set\":true,\"infinite\":false,\"number\":1718000400}}",
                 &r);
  CHECK(rc == 0 && r.njobs == 1 && r.jobs[0].job_id == 5 && r.jobs[0].start_time == 1718000003 &&
            r.last_update == 1718000400,
        "uint64 overflow: read as doubles (rc %d, %s)", rc, err);
  slurm_reply_free(&r);

  /* v0.0.40+ exit_code variants: status as a string, return_code a plain int. */
  rc =
      parse_str(40, SR_JOBS, 200,
                "{\"jobs\":[{\"job_id\":6,\"job_state\":[\"FAILED\"],\"exit_code\":{\"status\":\"ERROR\","
                "\"return_code\":4}},{\"job_id\":7,\"job_state\":[\"FAILED\"],\"exit_code\":{\"status\":[\"SIGNALED\"],"
                "\"signal\":{\"id\":6,\"name\":\"ABRT\"}}},{\"job_id\":8,\"job_state\":[\"FAILED\"],"
                "\"exit_code\":{\"status\":[\"INVALID\"],\"return_code\":{\"set\":true,\"number\":1}}}]}",
                &r);
  CHECK(rc == 0 && r.njobs == 3, "exit variants parse");
  check_job("exit status string", job_by_id(&r, 6), SJ_FAILED, 0, SP_ENDED, S_FAILED, 4, 0, "FAILED: exit code 4");
  check_job("exit signal id int", job_by_id(&r, 7), SJ_FAILED, 0, SP_ENDED, S_FAILED, -1, 6,
            "FAILED: killed by signal 6");
  check_job("exit INVALID", job_by_id(&r, 8), SJ_FAILED, 0, SP_ENDED, S_FAILED, -1, 0, "FAILED");
  slurm_reply_free(&r);

  /* jobs/state (v0.0.41+): job_id strings, "state" array; array tasks are not plain ids. */
  rc = parse_str(
      41, SR_JOBS, 200,
      "{\"jobs\":[{\"job_id\":\"123\",\"state\":[\"RUNNING\"]},{\"job_id\":\"123_4\",\"state\":[\"PENDING\"]}]}", &r);
  CHECK(rc == 0 && r.njobs == 1 && r.jobs[0].job_id == 123 && r.jobs[0].base == SJ_RUNNING, "jobs/state shape");
  slurm_reply_free(&r);

  /* "unchanged" needs a 2xx, no errors and an empty list. */
  rc = parse_str(40, SR_JOBS, 200, "{\"jobs\":[],\"last_update\":{\"set\":true,\"infinite\":false,\"number\":0}}", &r);
  CHECK(rc == 0 && r.unchanged, "last_update 0 without a warning: unchanged");
  slurm_reply_free(&r);
  rc = parse_str(40, SR_JOBS, 200,
                 "{\"jobs\":[],\"last_update\":{\"set\":true,\"infinite\":false,\"number\":0},"
                 "\"errors\":[{\"error_number\":-1,\"error\":\"Unspecified error\"}]}",
                 &r);
  CHECK(rc == 0 && !r.unchanged && r.error_code == -1, "last_update 0 with an error: not unchanged");
  slurm_reply_free(&r);
  rc = parse_str(40, SR_JOBS, 200,
                 "{\"jobs\":[{\"job_id\":1,\"job_state\":[\"RUNNING\"]}],\"last_update\":{\"set\":true,\"number\":0}}",
                 &r);
  CHECK(rc == 0 && !r.unchanged, "last_update 0 with jobs: not unchanged");
  slurm_reply_free(&r);
  rc = parse_str(40, SR_SUBMIT, 200, "{\"jobs\":[],\"last_update\":{\"set\":true,\"number\":0}}", &r);
  CHECK(rc == 0 && !r.unchanged, "unchanged is only read for SR_JOBS");
  slurm_reply_free(&r);

  /* submit: job_id only in result; a non-zero result code becomes an error. */
  rc = parse_str(39, SR_SUBMIT, 200,
                 "{\"result\":{\"job_id\":15,\"error_code\":2015,\"error\":\"Busy\"},\"job_id\":\"15\"}", &r);
  CHECK(rc == 0 && r.job_id == 15 && r.error_code == 2015 && r.nerrors == 1, "submit result{} only");
  CHECK_STR("submit result error", r.error, "Busy");
  slurm_reply_free(&r);

  /* Truncation: long strings are cut, never inside a UTF-8 sequence. */
  char body[2048], name[400], comment[600];
  memset(name, 'a', 300);
  name[300] = '\0';
  memset(comment, 'b', 510);
  strcpy(comment + 510, "\xc3\xa9xyz");
  snprintf(body, sizeof body, "{\"jobs\":[{\"job_id\":1,\"name\":\"%s\",\"comment\":\"%s\",\"job_state\":\"%s\"}]}",
           name, comment, "REQUEUED_AND_SOME_VERY_LONG_FUTURE_STATE_WORD");
  rc = parse_str(38, SR_JOBS, 200, body, &r);
  CHECK(rc == 0 && r.njobs == 1, "long strings parse");
  if (r.njobs == 1) {
    CHECK_INT("name truncated", strlen(r.jobs[0].name), 255);
    CHECK_INT("comment truncated before the 2-byte character", strlen(r.jobs[0].comment), 510);
    CHECK_INT("state truncated", strlen(r.jobs[0].state), 31);
  }
  slurm_reply_free(&r);

  /* Bodies that are not JSON objects. */
  rc = parse_str(38, SR_JOBS, 304, "", &r);
  CHECK(rc == 0 && r.unchanged && r.status == 304, "HTTP 304, empty body: unchanged");
  slurm_reply_free(&r);
  rc = parse_str(38, SR_JOBS, 500, "", &r);
  CHECK(rc == -1, "empty body fails");
  CHECK_STR("empty body", err, "empty reply (HTTP 500)");
  rc = slurm_parse_reply(38, SR_JOBS, 200, NULL, 5, &r, err, sizeof err);
  CHECK(rc == -1 && !r.jobs, "NULL body fails");
  rc = parse_str(38, SR_JOBS, 200, "[1,2]", &r);
  CHECK(rc == -1, "array body fails");
  CHECK_STR("array body", err, "reply is not a JSON object (HTTP 200): \"[1,2]\"");
  rc = parse_str(38, SR_JOBS, 200, "null", &r);
  CHECK(rc == -1, "null body fails");
  rc = parse_str(38, SR_JOBS, 502, "\x01\x02\xff<html>\n\t", &r);
  CHECK(rc == -1, "binary body fails");
  CHECK_STR("binary body made printable", err, "reply is not JSON (HTTP 502): \"??\?<html>??\"");
  char big[1100];
  memset(big, 'x', 1000);
  big[1000] = '\0';
  rc = parse_str(38, SR_JOBS, 500, big, &r);
  CHECK(rc == -1 && strlen(err) < 260 && strstr(err, "xxx...\""), "long text: 200 bytes quoted (%zu)", strlen(err));
  rc = slurm_parse_reply(38, SR_JOBS, 500, "Authentication failure", 22, &r, NULL, 0);
  CHECK(rc == -1 && strstr(r.error, "Authentication failure"), "err NULL: message still in out->error");
  rc = slurm_parse_reply(38, SR_JOBS, 500, "Authentication failure", 22, &r, err, 8);
  CHECK(rc == -1 && strlen(err) == 7, "short err buffer truncates");
  rc = parse_str(35, SR_JOBS, 200, "{}", &r);
  CHECK(rc == -1 && strstr(err, "version 35"), "version 35 unsupported");
  rc = parse_str(47, SR_JOBS, 200, "{}", &r);
  CHECK(rc == -1, "version 47 unsupported");
  const char *tail = "{\"jobs\":[{\"job_id\":2,\"job_state\":\"PENDING\"}]}garbage";
  rc = slurm_parse_reply(38, SR_JOBS, 200, tail, strlen(tail) - 7, &r, err, sizeof err);
  CHECK(rc == 0 && r.njobs == 1, "body length is honoured (no NUL needed)");
  slurm_reply_free(&r);
}

/* slurm_job_outcome over every base state and the notable flags. */
static void test_outcome_table(void) {
  static const struct {
    enum slurm_base base;
    uint32_t flags;
    bool known;
    int code, sig;
    const char *reason;
    enum slurm_phase phase;
    svc_state end;
    int ocode, osig;
    const char *msg;
  } rows[] = {
      {SJ_PENDING, 0, false, 0, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, "PENDING"},
      {SJ_PENDING, 0, false, 0, 0, "Priority", SP_QUEUED, S_UNKNOWN, -1, 0, "PENDING (Priority)"},
      {SJ_RUNNING, 0, true, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, "RUNNING"},
      {SJ_SUSPENDED, 0, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, "SUSPENDED (not a failure)"},
      {SJ_COMPLETED, 0, true, 0, 0, "", SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED"},
      {SJ_COMPLETED, 0, false, 0, 0, "", SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED"},
      {SJ_CANCELLED, 0, true, -1, 15, "", SP_ENDED, S_STOPPED, -1, 15, "CANCELLED"},
      {SJ_FAILED, 0, true, 3, 0, "NonZeroExitCode", SP_ENDED, S_FAILED, 3, 0, "FAILED: exit code 3"},
      {SJ_FAILED, 0, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, "FAILED"},
      {SJ_TIMEOUT, 0, true, -1, 15, "TimeLimit", SP_ENDED, S_TIMEOUT, -1, 15, "TIMEOUT: time limit reached"},
      {SJ_NODE_FAIL, 0, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, "FAILED: NODE_FAIL (node failure)"},
      {SJ_PREEMPTED, 0, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, "FAILED: PREEMPTED (preempted)"},
      {SJ_BOOT_FAIL, 0, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, "FAILED: BOOT_FAIL (node boot or launch failure)"},
      {SJ_DEADLINE, 0, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, "FAILED: DEADLINE (deadline reached)"},
      {SJ_OUT_OF_MEMORY, 0, true, 0, 0, "", SP_ENDED, S_FAILED, 0, 0, "FAILED: OUT_OF_MEMORY (out of memory)"},
      {SJ_UNKNOWN, 0, false, 0, 0, "", SP_UNKNOWN, S_UNKNOWN, -1, 0, "UNKNOWN state \"\""},
      /* requeue: back to the queue, whatever the base */
      {SJ_PREEMPTED, SJF_REQUEUED, true, -1, 15, "", SP_QUEUED, S_UNKNOWN, -1, 0,
       "PREEMPTED (requeued, not a failure)"},
      {SJ_UNKNOWN, SJF_REQUEUED, false, 0, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, NULL},
      {SJ_FAILED, SJF_SPECIAL_EXIT, true, 3, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_SPECIAL_EXIT, false, 0, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, NULL},
      {SJ_PENDING, SJF_REQUEUE_HOLD, false, 0, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_RESV_DEL_HOLD, false, 0, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_REQUEUE_FED, false, 0, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, NULL},
      {SJ_PENDING, SJF_EXPEDITING, false, 0, 0, "", SP_QUEUED, S_UNKNOWN, -1, 0, NULL},
      /* running-ish flags */
      {SJ_RUNNING, SJF_CONFIGURING, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0,
       "RUNNING (nodes being configured, not a failure)"},
      {SJ_UNKNOWN, SJF_CONFIGURING, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      {SJ_RUNNING, SJF_STOPPED, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_STOPPED, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_RESIZING, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_SIGNALING, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      {SJ_RUNNING, SJF_COMPLETING, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      {SJ_SUSPENDED, SJF_STOPPED, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      /* ending */
      {SJ_UNKNOWN, SJF_COMPLETING, false, 0, 0, "", SP_ENDING, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_STAGE_OUT, false, 0, 0, "", SP_ENDING, S_UNKNOWN, -1, 0, NULL},
      {SJ_COMPLETED, SJF_COMPLETING, true, 0, 0, "", SP_ENDED, S_COMPLETED, 0, 0, "COMPLETED"},
      {SJ_FAILED, SJF_COMPLETING, true, 1, 0, "", SP_ENDED, S_FAILED, 1, 0, "FAILED: exit code 1"},
      {SJ_TIMEOUT, SJF_COMPLETING, true, -1, 15, "", SP_ENDED, S_TIMEOUT, -1, 15, NULL},
      {SJ_CANCELLED, SJF_COMPLETING | SJF_STAGE_OUT, true, -1, 9, "", SP_ENDED, S_STOPPED, -1, 9, NULL},
      {SJ_FAILED, SJF_LAUNCH_FAILED, true, 1, 0, "JobLaunchFailure", SP_ENDED, S_FAILED, 1, 0,
       "FAILED: exit code 1 (JobLaunchFailure)"},
      {SJ_COMPLETED, SJF_UPDATE_DB, true, 0, 0, "", SP_ENDED, S_COMPLETED, 0, 0, NULL},
      {SJ_NODE_FAIL, SJF_RECONFIG_FAIL | SJF_POWER_UP_NODE, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, NULL},
      /* federation */
      {SJ_UNKNOWN, SJF_REVOKED, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, NULL},
      {SJ_CANCELLED, SJF_REVOKED, false, 0, 0, "", SP_ENDED, S_FAILED, -1, 0, NULL},
      /* flags we do not read alone */
      {SJ_UNKNOWN, SJF_LAUNCH_FAILED | SJF_UPDATE_DB, false, 0, 0, "", SP_UNKNOWN, S_UNKNOWN, -1, 0, NULL},
      {SJ_UNKNOWN, SJF_POWER_UP_NODE, false, 0, 0, "", SP_RUNNING, S_UNKNOWN, -1, 0, NULL},
      {(enum slurm_base)99, 0, false, 0, 0, "", SP_UNKNOWN, S_UNKNOWN, -1, 0, NULL},
  };
  bool seen[SJ__MAX] = {false};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    struct slurm_job j = {.job_id = 1, .base = rows[i].base, .flags = rows[i].flags, .exit_known = rows[i].known};
    j.exit_code = rows[i].known ? rows[i].code : -1;
    j.exit_signal = rows[i].known ? rows[i].sig : 0;
    snprintf(j.reason, sizeof j.reason, "%s", rows[i].reason);
    char what[96];
    snprintf(what, sizeof what, "outcome row %zu (%s flags 0x%x)", i, slurm_base_name(rows[i].base),
             (unsigned)rows[i].flags);
    check_job(what, &j, rows[i].base, rows[i].flags, rows[i].phase, rows[i].end, rows[i].ocode, rows[i].osig,
              rows[i].msg);
    if ((unsigned)rows[i].base < SJ__MAX) seen[rows[i].base] = true;
  }
  for (int b = 0; b < SJ__MAX; b++) CHECK(seen[b], "outcome table covers %s", slurm_base_name(b));

  struct slurm_job j = {.base = SJ_FAILED, .exit_known = true, .exit_code = 2};
  struct slurm_outcome o;
  memset(j.description, 'd', sizeof j.description - 1);
  slurm_job_outcome(&j, &o);
  CHECK(strlen(o.msg) == sizeof o.msg - 1 && !strncmp(o.msg, "FAILED: exit code 2: ddd", 24), "long description cut");
}

static void test_names(void) {
  for (int b = 0; b < SJ__MAX; b++) {
    struct slurm_job j = {.job_id = 1};
    char body[128];
    struct slurm_reply r;
    snprintf(body, sizeof body, "{\"jobs\":[{\"job_id\":1,\"job_state\":[\"%s\"]}]}", slurm_base_name(b));
    int rc = parse_str(40, SR_JOBS, 200, body, &r);
    j.base = rc == 0 && r.njobs == 1 ? r.jobs[0].base : SJ__MAX;
    CHECK(j.base == (enum slurm_base)b, "base name round trip %s", slurm_base_name(b));
    slurm_reply_free(&r);
  }
  CHECK_STR("base name out of range", slurm_base_name(SJ__MAX), "?");
  uint32_t all = 0;
  for (int i = 0; i < SJF__COUNT; i++) {
    const char *n = slurm_flag_name(1u << i);
    CHECK(n != NULL, "flag bit %d has a name (%s)", i, n ? n : "-");
    if (!n) continue;
    char body[128];
    struct slurm_reply r;
    snprintf(body, sizeof body, "{\"jobs\":[{\"job_id\":1,\"job_state\":[\"RUNNING\",\"%s\"]}]}", n);
    int rc = parse_str(40, SR_JOBS, 200, body, &r);
    CHECK(rc == 0 && r.njobs == 1 && r.jobs[0].flags == 1u << i, "flag name round trip %s", n);
    if (r.njobs == 1) all |= r.jobs[0].flags;
    slurm_reply_free(&r);
  }
  CHECK(all == (1u << SJF__COUNT) - 1, "every flag bit parsed once");
  CHECK(slurm_flag_name(1u << SJF__COUNT) == NULL && slurm_flag_name(3) == NULL && slurm_flag_name(0) == NULL,
        "no name for unknown or combined flags");
}

int main(int argc, char **argv) {
#ifdef HERD_FIXTURES
  fixdir = HERD_FIXTURES;
#endif
  if (argc > 1) fixdir = argv[1];
  if (!fixdir) {
    fprintf(stderr, "usage: %s FIXTURE_DIR (tests/fixtures/slurm)\n", argv[0]);
    return 2;
  }
  test_api_version();
  test_all_fixtures();
  test_slim();
  test_v38_jobs();
  test_v38_variants();
  test_v38_submit_ping();
  test_v38_errors();
  test_v39();
  test_v40_v41();
  test_v42_plus();
  test_robustness();
  test_outcome_table();
  test_names();
  printf("test_slurm_parse: %d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
