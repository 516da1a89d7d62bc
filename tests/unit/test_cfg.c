/* Config parsing: values, defaults, and errors that name line, column and field. */
#include "herd/cfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

/* Parse text; return the errors (caller frees) and the specs in *set. */
static struct cfg_errors parse(const char *text, struct spec_set *set) {
  struct cfg_errors e = {0};
  cfg_parse_text("t.json", text, strlen(text), set, &e);
  return e;
}

static void expect_error(const char *text, int line, int col, const char *field, const char *needle) {
  struct spec_set set = {0};
  struct cfg_errors e = parse(text, &set);
  CHECK(e.n >= 1, "expected an error for %s", text);
  if (e.n >= 1) {
    char *s = cfg_error_str(&e.v[0]);
    CHECK(e.v[0].line == line && e.v[0].col == col, "position %d:%d, want %d:%d (%s)", e.v[0].line, e.v[0].col, line,
          col, s);
    CHECK(!strcmp(e.v[0].field, field), "field \"%s\", want \"%s\" (%s)", e.v[0].field, field, s);
    CHECK(strstr(e.v[0].msg, needle) != NULL, "message \"%s\" lacks \"%s\"", e.v[0].msg, needle);
    CHECK(!strncmp(s, "t.json:", 7), "error names the file: %s", s);
    free(s);
  }
  CHECK(set.n == 0, "no spec from an invalid document");
  cfg_errors_free(&e);
  spec_set_free(&set);
}

static void test_errors(void) {
  expect_error("{\"name\": \"a\",\n \"command\": [\"x\"],\n \"comand\": 1}", 3, 2, "comand", "unknown key");
  expect_error("{\"name\": \"a\",\n \"command\": [\"x\"],\n \"stop\": {\"grace\": \"5 parsecs\"}}", 3, 20, "stop.grace",
               "expected a duration");
  expect_error("{\"services\": [\n  {\"name\": \"ok\", \"command\": [\"x\"]},\n  {\"name\": \"Bad Name\", \"command\": "
               "[\"x\"]}\n]}",
               3, 12, "services[1].name", "not a valid name");
  expect_error("{\"name\": \"a\", \"command\": \"sleep 1\"}", 1, 26, "command", "argv array");
  expect_error("{\"name\": \"a\"}", 1, 1, "", "missing required key \"command\"");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"restart\": \"sometimes\"}", 1, 44, "restart", "on-failure");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"],\n\"backoff\": {\"initial\": 5, \"max\": 1}}", 2, 34,
               "backoff.max", "less than initial");
  expect_error("{\"name\": \"a\", \"command\": [\"x\", 3]}", 1, 32, "command[1]", "expected a string");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"log\": {\"max_size\": \"lots\"}}", 1, 53, "log.max_size",
               "size");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"user\": \"no-such-user-herd\"}", 1, 41, "user",
               "no such user");
  /* Syntax errors: jansson's own position. */
  expect_error("{\"name\": \"a\",\n \"command\": [\"x\",]\n}", 2, 18, "", "invalid JSON");
  expect_error("{\"name\": \"a\", \"name\": \"b\", \"command\": [\"x\"]}", 1, 20, "", "duplicate");
}

static void test_all_errors_listed(void) {
  struct spec_set set = {0};
  struct cfg_errors e = parse("{\"services\": [{\"name\": \"a\", \"command\": [], \"ready_after\": -1},"
                              " {\"nme\": \"b\", \"command\": [\"x\"]}]}",
                              &set);
  CHECK(e.n == 4, "every error is listed, got %zu",
        e.n); /* empty command, negative duration, unknown key, missing name */
  cfg_errors_free(&e);
  spec_set_free(&set);
}

static void test_values(void) {
  struct spec_set set = {0};
  struct cfg_errors e =
      parse("{\"name\": \"web.1\", \"command\": [\"/bin/sleep\", \"5\"], \"env\": {\"A\": \"1\", \"N\": 2},"
            " \"restart\": \"on-failure\", \"backoff\": {\"initial\": \"250ms\", \"max\": \"2m\", \"jitter\": 0},"
            " \"stop\": {\"signal\": \"INT\", \"grace\": 1.5}, \"ready_after\": 0, \"tags\": [\"x\"],"
            " \"log\": {\"max_size\": \"1M\", \"keep\": 2}}",
            &set);
  CHECK(e.n == 0, "valid spec parses (%zu errors)", e.n);
  if (set.n == 1) {
    struct spec *s = set.v[0];
    CHECK(!strcmp(s->name, "web.1"), "name");
    CHECK(!strcmp(s->argv[0], "/bin/sleep") && !strcmp(s->argv[1], "5") && !s->argv[2], "argv");
    CHECK(!strcmp(s->env[0], "A=1") && !strcmp(s->env[1], "N=2"), "env");
    CHECK(s->restart == RESTART_ON_FAILURE, "restart");
    CHECK(s->backoff.initial == 0.25 && s->backoff.max == 120 && s->backoff.multiplier == 2, "backoff");
    CHECK(s->stop_signal == 2 && s->stop_grace == 1.5, "stop");
    CHECK(s->ready_after == 0 && s->start_timeout == 60, "durations and defaults");
    CHECK(spec_has_tag(s, "x") && !spec_has_tag(s, "y"), "tags");
    CHECK(s->log_max_size == 1024 * 1024 && s->log_keep == 2, "log");
    CHECK(s->canon && strstr(s->canon, "\"name\":\"web.1\""), "canonical form");
  } else {
    CHECK(0, "one spec expected, got %zu", set.n);
  }
  cfg_errors_free(&e);
  spec_set_free(&set);
}

static void test_scalars(void) {
  double d;
  CHECK(duration_parse("250ms", &d) == 0 && d == 0.25, "250ms");
  CHECK(duration_parse("2m", &d) == 0 && d == 120, "2m");
  CHECK(duration_parse("1.5", &d) == 0 && d == 1.5, "1.5");
  CHECK(duration_parse("1h", &d) == 0 && d == 3600, "1h");
  CHECK(duration_parse("-1s", &d) < 0, "negative");
  CHECK(duration_parse("5 parsecs", &d) < 0, "unit");
  CHECK(duration_parse("0x10", &d) < 0, "hex");
  CHECK(duration_parse("", &d) < 0, "empty");
  uint64_t z;
  CHECK(size_parse("10M", &z) == 0 && z == 10485760, "10M");
  CHECK(size_parse("512k", &z) == 0 && z == 524288, "512k");
  CHECK(size_parse("x", &z) < 0, "bad size");
  CHECK(name_valid("a") && name_valid("web-1.x_y") && !name_valid("") && !name_valid("A") && !name_valid("-a") &&
            !name_valid("a b") && !name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        "names");
  CHECK(signal_parse("TERM") == 15 && signal_parse("SIGKILL") == 9 && signal_parse("9") == 9 && signal_parse("FOO") < 0,
        "signals");
}

/* Slurm clusters and services: values, the generated script, and errors that say where. */
static void test_slurm(void) {
  const char *ok = "{\"clusters\": [{\"name\": \"c\", \"url\": \"unix:/run/slurmrestd.sock\", \"user\": \"svc\",\n"
                   "  \"auth\": {\"token\": \"abc\"}, \"api_version\": \"v0.0.39\", \"cwd\": \"/scratch\"}],\n"
                   " \"services\": [{\"name\": \"llm\", \"backend\": \"slurm\", \"cluster\": \"c\",\n"
                   "  \"command\": [\"vllm\", \"serve\", \"it's\"], \"time_limit\": \"90s\", \"memory\": \"4G\",\n"
                   "  \"container\": {\"runtime\": \"apptainer\", \"image\": \"/i.sif\", \"gpu\": true, \"binds\": "
                   "[\"/m\"]},\n"
                   "  \"endpoint\": {\"port\": 8000}, \"queue_timeout\": \"1h\"}]}";
  struct spec_set set = {0};
  struct cfg_errors e = parse(ok, &set);
  CHECK(e.n == 0, "valid slurm config: %zu errors (%s)", e.n, e.n ? e.v[0].msg : "");
  CHECK(set.n == 1 && set.nclusters == 1, "one service, one cluster");
  if (set.n == 1 && set.nclusters == 1) {
    const struct cluster_spec *k = set.clusters[0];
    CHECK(k->unix_path && !strcmp(k->unix_path, "/run/slurmrestd.sock") && !strcmp(k->base, "http://localhost"),
          "unix socket url");
    CHECK(k->api_version == 39 && k->auth == AUTH_TOKEN && !strcmp(k->token.value, "abc"), "version and token");
    CHECK(k->poll_interval == 1 && k->steady_interval == 10 && k->rate_limit == 100, "cluster defaults");
    const struct spec *sp = set.v[0];
    CHECK(sp->backend == BACKEND_SLURM && sp->slurm && sp->slurm->time_limit == 2, "90s rounds up to 2 minutes");
    CHECK(sp->slurm->memory_mb == 4096, "4G is 4096 MB");
    CHECK(sp->queue_timeout == 3600, "queue_timeout");
    CHECK(sp->endpoint.host && !sp->endpoint.host[0], "a Slurm endpoint's host is the job's node");
    const char *want = "exec apptainer exec --nv --bind '/m' '/i.sif' 'vllm' 'serve' 'it'\\''s'\n";
    CHECK(sp->slurm->script && !strncmp(sp->slurm->script, "#!/bin/sh\n", 10) && strstr(sp->slurm->script, want),
          "generated script: %s", sp->slurm->script);
    struct svc_policy p;
    spec_policy(sp, &p);
    CHECK(sp->backend == BACKEND_SLURM && p.queue_timeout == 3600, "a Slurm service, with its queue timeout");
    struct cfg_errors ve = {0};
    CHECK(cfg_validate_clusters(set.v, set.n, set.clusters, set.nclusters, &ve) == 0, "cluster reference resolves");
    cfg_errors_free(&ve);
    struct cfg_errors ve2 = {0};
    CHECK(cfg_validate_clusters(set.v, set.n, NULL, 0, &ve2) == 1 && strstr(ve2.v[0].msg, "no cluster named \"c\"") &&
              ve2.v[0].line == 3,
          "an unknown cluster is an error at the service's line");
    cfg_errors_free(&ve2);
  }
  cfg_errors_free(&e);
  spec_set_free(&set);

  expect_error("{\"name\": \"a\", \"backend\": \"slurm\", \"cluster\": \"c\", \"script\": \"echo hi\"}", 1, 61,
               "script", "must start with \"#!\"");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"partition\": \"gpu\"}", 1, 33, "partition",
               "only for \"backend\": \"slurm\"");
  expect_error("{\"name\": \"a\", \"backend\": \"slurm\", \"command\": [\"x\"]}", 1, 1, "",
               "missing required key \"cluster\"");
  expect_error(
      "{\"clusters\": [{\"name\": \"c\", \"url\": \"http://x\", \"user\": \"u\", \"auth\": {\"token\": \"t\"}, "
      "\"ssh\": \"Login Node\"}]}",
      1, 92, "clusters[0].ssh", "expected the name of a host");
  expect_error(
      "{\"name\": \"a\", \"backend\": \"slurm\", \"cluster\": \"c\", \"command\": [\"x\"], \"time_limit\": \"5s\"}", 1,
      83, "time_limit", "whole minutes");
  expect_error(
      "{\"clusters\": [{\"name\": \"c\", \"url\": \"ftp://x\", \"user\": \"u\", \"auth\": {\"token\": \"t\"}}]}", 1, 36,
      "clusters[0].url", "expected http://");
  expect_error("{\"clusters\": [{\"name\": \"c\", \"url\": \"http://x\", \"user\": \"u\", \"auth\": {}}]}", 1, 69,
               "clusters[0].auth", "exactly one of");
  expect_error(
      "{\"clusters\": [{\"name\": \"c\", \"url\": \"http://x\", \"user\": \"u\", \"auth\": {\"token\": {\"env\": "
      "\"HERD_NO_SUCH_VAR\"}}}]}",
      1, 87, "clusters[0].auth.token.env", "is not set");
  expect_error(
      "{\"clusters\": [{\"name\": \"c\", \"url\": \"http://x\", \"user\": \"u\", \"auth\": {\"token\": \"t\"}, "
      "\"api_version\": \"v0.0.12\"}]}",
      1, 100, "clusters[0].api_version", "v0.0.38");
}

/* Issue 11: every duration bounded, counts are integers, an argv has a program. */
static void test_bounds(void) {
  expect_error("{\"name\": \"a\", \"command\": [\"x\"],\n \"stop\": {\"grace\": 1e300}}", 2, 20, "stop.grace",
               "at most 365d (3.1536e+07 seconds)");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"start_timeout\": \"9000d\"}", 1, 50, "start_timeout",
               "at most 365d");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"backoff\": {\"max\": 31536001}}", 1, 52, "backoff.max",
               "at most 365d");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"check\": {\"type\": \"exec\", \"command\": [\"t\"], "
               "\"interval\": \"100000h\"}}",
               1, 89, "check.interval", "at most 365d");
  expect_error(
      "{\"clusters\": [{\"name\": \"c\", \"url\": \"http://x\", \"user\": \"u\", \"auth\": {\"token\": \"t\"}, "
      "\"poll_interval\": 1e20}]}",
      1, 102, "clusters[0].poll_interval", "at most 365d");
  expect_error("{\"name\": \"a\", \"command\": [\"\"]}", 1, 27, "command[0]", "the program to run is empty");
  expect_error("{\"name\": \"a\", \"command\": [\"\", \"-c\"]}", 1, 27, "command[0]", "empty");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"check\": {\"type\": \"exec\", \"command\": [\"\"]}}", 1, 71,
               "check.command[0]", "empty");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"log\": {\"keep\": 1.5}}", 1, 49, "log.keep",
               "expected an integer from 0 to 100");
  expect_error("{\"name\": \"a\", \"command\": [\"x\"], \"check\": {\"type\": \"exec\", \"command\": [\"t\"], "
               "\"failure_threshold\": 2.5}}",
               1, 98, "check.failure_threshold", "integer");

  /* The largest duration is accepted, and so are the documented forms. */
  struct spec_set set = {0};
  struct cfg_errors e = parse("{\"name\": \"a\", \"command\": [\"x\"], \"stop\": {\"grace\": 31536000},"
                              " \"start_timeout\": \"365d\", \"log\": {\"keep\": 100}}",
                              &set);
  CHECK(e.n == 0 && set.n == 1 && set.v[0]->stop_grace == CFG_DURATION_MAX && set.v[0]->log_keep == 100,
        "365 days is the longest duration (%zu errors)", e.n);
  cfg_errors_free(&e);
  spec_set_free(&set);
}

/* ready_after 0 + reset_after 0 would let `false` reset its own backoff at every restart. */
static void test_reset_after_floor(void) {
  struct {
    const char *text;
    double want;
  } cases[] = {
      {"{\"name\": \"a\", \"command\": [\"false\"], \"ready_after\": 0, \"backoff\": {\"initial\": 0, \"reset_after\": "
       "0}}",
       1.0},
      {"{\"name\": \"a\", \"command\": [\"false\"], \"ready_after\": \"400ms\", \"backoff\": {\"reset_after\": 0}}",
       0.6},
      {"{\"name\": \"a\", \"command\": [\"x\"], \"backoff\": {\"reset_after\": \"500ms\"}, \"check\": {\"type\": "
       "\"exec\", \"command\": [\"t\"]}}",
       1.0},
      {"{\"name\": \"a\", \"command\": [\"x\"], \"ready_after\": 0, \"backoff\": {\"reset_after\": \"2s\"}}", 2.0},
      {"{\"name\": \"a\", \"command\": [\"x\"], \"ready_after\": \"5s\", \"backoff\": {\"reset_after\": 0}}", 0.0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct spec_set set = {0};
    struct cfg_errors e = parse(cases[i].text, &set);
    CHECK(e.n == 0 && set.n == 1, "case %zu parses", i);
    if (set.n == 1) {
      struct svc_policy p;
      spec_policy(set.v[0], &p);
      CHECK(p.backoff.reset_after > cases[i].want - 1e-9 && p.backoff.reset_after < cases[i].want + 1e-9,
            "case %zu: reset_after %g, want %g", i, p.backoff.reset_after, cases[i].want);
    }
    cfg_errors_free(&e);
    spec_set_free(&set);
  }
}

/* Positions of keys written with escapes, and of values deep in a document. */
static void test_positions(void) {
  expect_error("{\"name\": \"a\", \"command\": [\"x\"],\n \"env\": {\"OK\": \"1\", \"A\\u003dB\": \"x\"}}", 2, 33,
               "env.A=B", "not a valid environment variable name");
  expect_error("{\"services\": [{\"name\": \"a\", \"command\": [\"x\"]}, {\"name\": \"b\", \"command\": [\"x\"],\n"
               " \"check\": {\"type\": \"http\", \"url\": \"http://x\", \"headers\": {\"X-\\u00e9\": 1}}}]}",
               2, 71, "services[1].check.headers.X-\xc3\xa9", "header value");
  int line, col;
  const char *t = "[1, {\"a\": [0, {\"b\": true}]}, \"x\"]";
  CHECK(jpos_find(t, strlen(t), "[1].a[1].b", false, &line, &col) == 0 && line == 1 && col == 21, "deep value %d:%d",
        line, col);
  CHECK(jpos_find(t, strlen(t), "[1].a[1].b", true, &line, &col) == 0 && col == 16, "deep key %d:%d", line, col);
  CHECK(jpos_find(t, strlen(t), "[1].a[7]", false, &line, &col) < 0 && col == 11, "missing: its parent, %d:%d", line,
        col);
  CHECK(jpos_find(t, strlen(t), "[2]", false, &line, &col) == 0 && col == 30, "after a nested value %d:%d", line, col);
}

/* A config of n services in one chain of depends_on (service i depends on i-1), plus extra. */
static char *chain_text(size_t n, const char *extra_dep) {
  struct buf b = {0};
  buf_lit(&b, "{\"services\": [\n");
  for (size_t i = 0; i < n; i++) {
    buf_printf(&b, "  {\"name\": \"s%zu\", \"command\": [\"sleep\", \"1\"], \"ready_after\": 0", i);
    if (i || extra_dep) buf_lit(&b, ", \"depends_on\": [");
    if (i) buf_printf(&b, "\"s%zu\"", i - 1);
    if (!i && extra_dep) buf_printf(&b, "\"%s\"", extra_dep);
    if (i || extra_dep) buf_lit(&b, "]");
    buf_printf(&b, "}%s\n", i + 1 < n ? "," : "");
  }
  buf_lit(&b, "]}\n");
  return b.data;
}

/* Issue 11: loading was quadratic in depends_on (10,000 services: 13.8 s; 20,000 would take
 * about a minute). A 20,000-service chain loads in a fraction of a second now; the 5 s bound
 * leaves room for sanitizer builds on a busy machine. The cycle search (once recursive) goes
 * 20,000 deep and still names the cycle. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_linear_load(void) {
  size_t n = 20000;
  char *text = chain_text(n, "s19999"); /* s0 depends on the last: one cycle through all */
  struct spec_set set = {0};
  struct cfg_errors e = {0};
  /* CPU time, not wall time: a machine busy with another build must not fail this; a
   * quadratic load (what this guards against) costs a minute of CPU whatever the load. */
  double t0 = cpu_now();
  cfg_parse_text("big.json", text, strlen(text), &set, &e);
  double parsed = cpu_now() - t0;
  CHECK(e.n == 0 && set.n == n, "%zu services parse (%zu errors)", n, e.n);
  if (set.n == n) {
    CHECK(set.v[n - 1]->deps[0].line == (int)n + 1 && set.v[n - 1]->deps[0].col > 1, "the last dependency at %d:%d",
          set.v[n - 1]->deps[0].line, set.v[n - 1]->deps[0].col);
    cfg_validate_deps(set.v, set.n, &e);
    CHECK(e.n == 1 && strstr(e.v[0].msg, "dependency cycle: s0 -> s19999 -> s19998") && e.v[0].line == 3,
          "the cycle is named: %.80s at %d", e.n ? e.v[0].msg : "", e.n ? e.v[0].line : 0);
  }
  if (set.n == n) {
    CHECK(spec_set_find(&set, "s0") == 0 && spec_set_find(&set, "s19999") == (long)n - 1 &&
              spec_set_find(&set, "s20000") < 0,
          "spec_set_find by name");
    const char *late = "{\"name\": \"late\", \"command\": [\"x\"]}";
    struct cfg_errors e2 = {0};
    cfg_parse_text("more.json", late, strlen(late), &set, &e2);
    CHECK(e2.n == 0 && spec_set_find(&set, "late") == (long)n, "spec_set_find sees a spec added later");
    cfg_errors_free(&e2);
  }
  double total = cpu_now() - t0;
  CHECK(total < 5.0, "%zu chained services load and validate in %.3fs of CPU (parse %.3fs)", n, total, parsed);
  cfg_errors_free(&e);
  spec_set_free(&set);
  free(text);
}

/* A cluster's "ssh": its services with an endpoint are reached through that host (a port
 * drawn by herd when none is given); an unknown host is named where the cluster says it. */
static void test_cluster_ssh(void) {
  const char *head =
      "{\"clusters\": [{\"name\": \"c\", \"url\": \"http://x\", \"user\": \"u\", \"cwd\": \"/tmp\",\n"
      "  \"auth\": {\"token\": \"t\"}, \"ssh\": \"%s\"}],\n"
      " \"hosts\": [{\"name\": \"login\", \"destination\": \"me@login\", \"known_hosts\": \"/k\"}],\n"
      " \"services\": [{\"name\": \"web\", \"backend\": \"slurm\", \"cluster\": \"c\", \"command\": [\"x\"],\n"
      "   \"endpoint\": {\"local_port\": 8800}},\n"
      "  {\"name\": \"batch\", \"backend\": \"slurm\", \"cluster\": \"c\", \"command\": [\"x\"]}]}";
  char text[1024];
  for (int bad = 0; bad < 2; bad++) {
    snprintf(text, sizeof text, head, bad ? "nohost" : "login");
    struct spec_set set = {0};
    struct cfg_errors e = parse(text, &set);
    CHECK(e.n == 0 && set.n == 2, "cluster ssh parses (%zu errors)", e.n);
    cfg_validate_clusters(set.v, set.n, set.clusters, set.nclusters, &e);
    cfg_validate_hosts(set.v, set.n, set.hosts, set.nhosts, &e);
    const struct spec *web = set.v[0], *batch = set.v[1];
    CHECK(web->ssh && !strcmp(web->ssh, bad ? "nohost" : "login"), "web inherits the cluster's ssh host");
    CHECK(!batch->ssh, "a service without an endpoint has nothing to reach: no ssh");
    CHECK(web->endpoint.port == 0 && web->endpoint.local_port == 8800, "no port: herd draws one for the job");
    if (bad) {
      CHECK(e.n == 1 && e.v[0].line == 2 && e.v[0].col == 34 && !strcmp(e.v[0].field, "web.ssh") &&
                strstr(e.v[0].msg, "no host named \"nohost\""),
            "unknown host named at the cluster's key: %zu errors, %d:%d %s %s", e.n, e.n ? e.v[0].line : 0,
            e.n ? e.v[0].col : 0, e.n ? e.v[0].field : "", e.n ? e.v[0].msg : "");
    } else {
      CHECK(e.n == 0, "valid (%zu errors)", e.n);
    }
    cfg_errors_free(&e);
    spec_set_free(&set);
  }
}

int main(void) {
  test_cluster_ssh();
  test_errors();
  test_all_errors_listed();
  test_values();
  test_scalars();
  test_slurm();
  test_bounds();
  test_reset_after_floor();
  test_positions();
  test_linear_load();
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
