/*
 * slurmrestd replies to version-independent structs (see slurm_parse.h).
 *
 * Each field is read by the JSON type found, not by the version asked for: v0.0.38 and
 * v0.0.39 send job_state as one string, v0.0.40+ as [base, flags...]; times are ints
 * until v0.0.39 and {set,infinite,number} objects from v0.0.40 (time_limit and exit_code
 * already in v0.0.39); exit_code is a raw wait(2) status up to v0.0.39 and
 * {status,return_code,signal} from v0.0.40. Reading by type keeps one code path for all
 * versions and survives a server that mixes shapes. Anything of a type we do not expect
 * is absent, so a strange reply degrades to missing data, never to a crash or a failure.
 */
#include "herd/slurm_parse.h"
#include "herd/slurm_cmd.h"
#include "herd/herd.h" /* ARRAY_LEN */

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

struct base_info {
  const char *name;
  svc_state end; /* for terminal states; S_UNKNOWN otherwise */
  const char *why;
};

static const struct base_info base_info[] = {
    [SJ_PENDING] = {"PENDING", S_UNKNOWN, "queued"},
    [SJ_RUNNING] = {"RUNNING", S_UNKNOWN, "running"},
    [SJ_SUSPENDED] = {"SUSPENDED", S_UNKNOWN, "not a failure"},
    [SJ_COMPLETED] = {"COMPLETED", S_COMPLETED, "exit code 0"},
    [SJ_CANCELLED] = {"CANCELLED", S_STOPPED, "cancelled"},
    [SJ_FAILED] = {"FAILED", S_FAILED, "failed"},
    [SJ_TIMEOUT] = {"TIMEOUT", S_TIMEOUT, "time limit reached"},
    [SJ_NODE_FAIL] = {"NODE_FAIL", S_FAILED, "node failure"},
    [SJ_PREEMPTED] = {"PREEMPTED", S_FAILED, "preempted"},
    [SJ_BOOT_FAIL] = {"BOOT_FAIL", S_FAILED, "node boot or launch failure"},
    [SJ_DEADLINE] = {"DEADLINE", S_FAILED, "deadline reached"},
    [SJ_OUT_OF_MEMORY] = {"OUT_OF_MEMORY", S_FAILED, "out of memory"},
    [SJ_UNKNOWN] = {"UNKNOWN", S_UNKNOWN, "state not known"},
};
static_assert(ARRAY_LEN(base_info) == SJ__MAX, "base state table");

static const struct {
  uint32_t bit;
  const char *name;
} flag_table[] = {
    {SJF_COMPLETING, "COMPLETING"},       {SJF_CONFIGURING, "CONFIGURING"},
    {SJF_REQUEUED, "REQUEUED"},           {SJF_REQUEUE_HOLD, "REQUEUE_HOLD"},
    {SJF_SPECIAL_EXIT, "SPECIAL_EXIT"},   {SJF_REQUEUE_FED, "REQUEUE_FED"},
    {SJF_RESIZING, "RESIZING"},           {SJF_STOPPED, "STOPPED"},
    {SJF_SIGNALING, "SIGNALING"},         {SJF_STAGE_OUT, "STAGE_OUT"},
    {SJF_RESV_DEL_HOLD, "RESV_DEL_HOLD"}, {SJF_REVOKED, "REVOKED"},
    {SJF_LAUNCH_FAILED, "LAUNCH_FAILED"}, {SJF_RECONFIG_FAIL, "RECONFIG_FAIL"},
    {SJF_POWER_UP_NODE, "POWER_UP_NODE"}, {SJF_UPDATE_DB, "UPDATE_DB"},
    {SJF_EXPEDITING, "EXPEDITING"},
};
static_assert(ARRAY_LEN(flag_table) == SJF__COUNT, "state flag table");

const char *slurm_base_name(enum slurm_base b) { return (unsigned)b < SJ__MAX ? base_info[b].name : "?"; }

const char *slurm_flag_name(uint32_t flag) {
  for (size_t i = 0; i < ARRAY_LEN(flag_table); i++)
    if (flag_table[i].bit == flag) return flag_table[i].name;
  return NULL;
}

int slurm_api_version(const char *s) {
  if (!s) return -1;
  if (*s == 'v') s++;
  if (strncmp(s, "0.0.", 4)) return -1;
  s += 4;
  int v = 0, n = 0;
  for (; *s >= '0' && *s <= '9' && n < 6; s++, n++) v = v * 10 + (*s - '0');
  return n > 0 && *s == '\0' ? v : -1;
}

/* ---- small helpers ------------------------------------------------------------------ */

/* Copy at most n-1 bytes, never cutting a UTF-8 sequence: the result goes back into JSON. */
static void scopy(char *dst, size_t n, const char *s) {
  if (!n) return;
  size_t len = s ? strlen(s) : 0;
  if (len >= n) {
    len = n - 1;
    while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80) len--;
  }
  if (len) memcpy(dst, s, len);
  dst[len] = '\0';
}

/* Append `sep` (when dst is not empty) and `s`, truncating as scopy does. */
static void sappend(char *dst, size_t n, const char *sep, const char *s) {
  size_t used = strlen(dst);
  if (*dst && used < n) {
    scopy(dst + used, n - used, sep);
    used = strlen(dst);
  }
  if (used < n) scopy(dst + used, n - used, s);
}

static const char *str_of(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

/* A string field into a fixed buffer; "" when absent, null or not a string. */
static void sfield(char *dst, size_t n, json_t *o, const char *key) { scopy(dst, n, str_of(o, key)); }

/* A JSON integer, or a real with an integral value (see the overflow retry below). */
static bool int_of(json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
    return true;
  }
  double d = json_real_value(v);
  if (!json_is_real(v) || !(d > -9.2e18 && d < 9.2e18) || d != (double)(int64_t)d) return false;
  *out = (int64_t)d;
  return true;
}

/*
 * A number: a plain JSON integer, or v0.0.39+'s {"set":true,"infinite":false,"number":N}.
 * False when absent, unset, infinite or of another type.
 */
static bool num_of(json_t *v, int64_t *out) {
  if (!json_is_object(v)) return int_of(v, out);
  json_t *set = json_object_get(v, "set"), *inf = json_object_get(v, "infinite");
  if (json_is_true(inf) || json_is_false(set)) return false;
  return int_of(json_object_get(v, "number"), out);
}

static int64_t num_field(json_t *o, const char *key) {
  int64_t v = 0;
  return num_of(json_object_get(o, key), &v) ? v : 0;
}

/* job_id: a positive integer, or a string of digits (jobs/state sends strings). */
static bool job_id_of(json_t *v, uint64_t *out) {
  int64_t n;
  if (num_of(v, &n)) {
    if (n <= 0) return false;
    *out = (uint64_t)n;
    return true;
  }
  const char *s = json_string_value(v);
  if (!s || !*s || strlen(s) > 19 || strspn(s, "0123456789") != strlen(s)) return false;
  *out = strtoull(s, NULL, 10);
  return *out > 0;
}

/* Up to 200 bytes of a body, non-printable bytes as '?', for error messages. */
static void printable(char *dst, size_t n, const char *body, size_t len) {
  size_t k = 0;
  for (size_t i = 0; i < len && i < 200 && k + 1 < n; i++) {
    unsigned char c = (unsigned char)body[i];
    dst[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  if (n) dst[k] = '\0';
}

/* ---- job state and exit ------------------------------------------------------------- */

static void state_word(struct slurm_job *j, const char *w) {
  for (int b = 0; b < SJ_UNKNOWN; b++)
    if (!strcasecmp(w, base_info[b].name)) {
      if (j->base == SJ_UNKNOWN) j->base = (enum slurm_base)b;
      return;
    }
  for (size_t i = 0; i < ARRAY_LEN(flag_table); i++)
    if (!strcasecmp(w, flag_table[i].name)) {
      j->flags |= flag_table[i].bit;
      return;
    }
}

void slurm_job_set_state(struct slurm_job *j, const char *word) {
  j->base = SJ_UNKNOWN;
  j->flags = 0;
  scopy(j->state, sizeof j->state, word);
  state_word(j, word);
}

/* "RUNNING" (v0.0.38/39) or ["RUNNING","CONFIGURING"] (v0.0.40+); words we do not know are
 * kept in j->state but set nothing. */
static void parse_state(json_t *v, struct slurm_job *j) {
  j->base = SJ_UNKNOWN;
  if (json_is_string(v)) {
    scopy(j->state, sizeof j->state, json_string_value(v));
    state_word(j, json_string_value(v));
    return;
  }
  size_t i;
  json_t *w;
  json_array_foreach(v, i, w) {
    if (!json_is_string(w)) continue;
    sappend(j->state, sizeof j->state, "+", json_string_value(w));
    state_word(j, json_string_value(w));
  }
}

/* A raw wait(2) status, as v0.0.38 (and v0.0.39's number) report it: 256 = exit 1, 15 = SIGTERM. */
static void exit_raw(struct slurm_job *j, int64_t w) {
  if (w < 0 || w > 0xffff) return;
  int st = (int)w;
  if (WIFEXITED(st)) {
    j->exit_known = true;
    j->exit_code = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    j->exit_known = true;
    j->exit_code = -1;
    j->exit_signal = WTERMSIG(st);
  }
}

/* v0.0.40+: {"status":["ERROR"],"return_code":{...},"signal":{"id":{...},"name":"KILL"}}. */
static void exit_v40(struct slurm_job *j, json_t *v) {
  json_t *st = json_object_get(v, "status");
  const char *status = json_is_array(st) ? json_string_value(json_array_get(st, 0)) : json_string_value(st);
  int64_t rc = 0, sig = 0;
  bool has_rc = num_of(json_object_get(v, "return_code"), &rc);
  bool has_sig = num_of(json_object_get(json_object_get(v, "signal"), "id"), &sig) && sig > 0 && sig < 128;
  if (status && (!strcasecmp(status, "INVALID") || !strcasecmp(status, "PENDING"))) return;
  if (status && !strcasecmp(status, "SUCCESS")) {
    j->exit_known = true;
    j->exit_code = has_rc ? (int)rc : 0;
  } else if (has_sig && (!status || strcasecmp(status, "ERROR"))) {
    j->exit_known = true;
    j->exit_code = -1;
    j->exit_signal = (int)sig;
  } else if (has_rc && rc >= 0 && rc <= 255) {
    j->exit_known = true;
    j->exit_code = (int)rc;
  }
}

static void parse_exit(json_t *v, struct slurm_job *j) {
  int64_t n;
  j->exit_code = -1;
  if (json_is_object(v) &&
      (json_object_get(v, "status") || json_object_get(v, "return_code") || json_object_get(v, "signal")))
    exit_v40(j, v);
  else if (num_of(v, &n))
    exit_raw(j, n);
}

/* One element of jobs[]; false (skip it) when it is not an object with a usable job_id. */
static bool parse_job(json_t *o, struct slurm_job *j) {
  uint64_t id;
  memset(j, 0, sizeof *j);
  if (!json_is_object(o) || !job_id_of(json_object_get(o, "job_id"), &id)) return false;
  j->job_id = id;
  json_t *st = json_object_get(o, "job_state");
  parse_state(st ? st : json_object_get(o, "state"), j);
  sfield(j->reason, sizeof j->reason, o, "state_reason");
  if (!strcmp(j->reason, "None")) j->reason[0] = '\0';
  sfield(j->description, sizeof j->description, o, "state_description");
  sfield(j->batch_host, sizeof j->batch_host, o, "batch_host");
  sfield(j->nodes, sizeof j->nodes, o, "nodes");
  sfield(j->partition, sizeof j->partition, o, "partition");
  sfield(j->user, sizeof j->user, o, "user_name");
  sfield(j->name, sizeof j->name, o, "name");
  sfield(j->comment, sizeof j->comment, o, "comment");
  sfield(j->std_out, sizeof j->std_out, o, "stdout_expanded");
  if (!j->std_out[0]) sfield(j->std_out, sizeof j->std_out, o, "standard_output");
  j->submit_time = num_field(o, "submit_time");
  j->start_time = num_field(o, "start_time");
  j->end_time = num_field(o, "end_time");
  j->time_limit = num_field(o, "time_limit");
  parse_exit(json_object_get(o, "exit_code"), j);
  return true;
}

/* ---- reply -------------------------------------------------------------------------- */

static void add_error(struct slurm_reply *r, const char *error, const char *desc, const char *source, int64_t code) {
  char text[320] = "", num[32];
  if (error && *error) scopy(text, sizeof text, error);
  if (desc && *desc && (!error || strcmp(error, desc))) sappend(text, sizeof text, ": ", desc);
  if (!*text && source && *source) scopy(text, sizeof text, source);
  if (!*text && code) snprintf(num, sizeof num, "error %lld", (long long)code);
  if (!*text) scopy(text, sizeof text, code ? num : "unspecified error");
  sappend(r->error, sizeof r->error, "; ", text);
  r->nerrors++;
  if (!r->error_code && code) r->error_code = code < INT32_MIN || code > INT32_MAX ? -1 : (int)code;
}

static void parse_errors(json_t *root, struct slurm_reply *r) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(root, "errors"), i, e) {
    if (json_is_string(e)) {
      add_error(r, json_string_value(e), NULL, NULL, 0);
      continue;
    }
    if (!json_is_object(e)) continue;
    int64_t code = 0;
    if (!num_of(json_object_get(e, "error_code"), &code) || !code) num_of(json_object_get(e, "error_number"), &code);
    add_error(r, str_of(e, "error"), str_of(e, "description"), str_of(e, "source"), code);
  }
  /* v0.0.42+ DELETE on Slurm 24.11+: HTTP 200 with per-job results in status[].error. */
  json_t *s;
  json_array_foreach(json_object_get(root, "status"), i, s) {
    json_t *err = json_object_get(s, "error");
    int64_t code = 0;
    if (json_is_object(err) && num_of(json_object_get(err, "code"), &code) && code)
      add_error(r, str_of(err, "string"), str_of(err, "message"), NULL, code);
  }
  json_array_foreach(json_object_get(root, "warnings"), i, e) {
    const char *w = json_is_string(e) ? json_string_value(e) : str_of(e, "description");
    if (!w && !json_is_object(e)) continue;
    sappend(r->warning, sizeof r->warning, "; ", w && *w ? w : "warning");
    r->nwarnings++;
  }
}

/* meta.Slurm (v0.0.36-39, int numbers) or meta.slurm (v0.0.40+, string numbers). */
static void parse_meta(json_t *root, struct slurm_reply *r) {
  json_t *meta = json_object_get(root, "meta");
  json_t *sl = json_object_get(meta, "slurm");
  if (!json_is_object(sl)) sl = json_object_get(meta, "Slurm");
  sfield(r->release, sizeof r->release, sl, "release");
  if (r->release[0]) return;
  json_t *ver = json_object_get(sl, "version");
  const char *keys[] = {"major", "minor", "micro"};
  char part[24];
  for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
    json_t *v = json_object_get(ver, keys[i]);
    if (json_is_integer(v))
      snprintf(part, sizeof part, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v))
      scopy(part, sizeof part, json_string_value(v));
    else {
      r->release[0] = '\0';
      return;
    }
    sappend(r->release, sizeof r->release, ".", part);
  }
}

static int parse_jobs(json_t *root, struct slurm_reply *r) {
  json_t *jobs = json_object_get(root, "jobs"), *o;
  size_t n = json_array_size(jobs), i;
  if (n) {
    r->jobs = calloc(n, sizeof *r->jobs);
    if (!r->jobs) return -1;
  }
  json_array_foreach(jobs, i, o) {
    if (parse_job(o, &r->jobs[r->njobs])) r->njobs++;
  }
  json_t *lu = json_object_get(root, "last_update");
  bool has_lu = num_of(lu, &r->last_update);
  /* "Nothing changed since update_time": v0.0.39 says it in a warning only; v0.0.40+ also
   * set last_update to 0. An error reply with an empty list is not "unchanged". */
  bool ok = r->status / 100 == 2 && r->nerrors == 0 && n == 0;
  if (ok && (strstr(r->warning, "No job changes since update_time") || (has_lu && r->last_update == 0)))
    r->unchanged = true;
  return 0;
}

static void parse_submit(json_t *root, struct slurm_reply *r) {
  json_t *res = json_object_get(root, "result"); /* v0.0.39-41 only */
  if (!num_of(json_object_get(root, "job_id"), &r->job_id) || r->job_id < 0) r->job_id = 0;
  if (!r->job_id && (!num_of(json_object_get(res, "job_id"), &r->job_id) || r->job_id < 0)) r->job_id = 0;
  sfield(r->submit_msg, sizeof r->submit_msg, root, "job_submit_user_msg");
  if (!r->submit_msg[0]) sfield(r->submit_msg, sizeof r->submit_msg, res, "job_submit_user_msg");
  int64_t code = 0;
  if (r->nerrors == 0 && num_of(json_object_get(res, "error_code"), &code) && code)
    add_error(r, str_of(res, "error"), NULL, NULL, code);
}

/* v0.0.38 "ping":"UP"; v0.0.39-44 "pinged":"UP"; v0.0.42+ "responding":true (wins when present). */
static void parse_ping(json_t *root, struct slurm_reply *r) {
  size_t i;
  json_t *p;
  bool all = true;
  json_array_foreach(json_object_get(root, "pings"), i, p) {
    if (!json_is_object(p)) continue;
    json_t *resp = json_object_get(p, "responding");
    const char *word = str_of(p, "pinged");
    if (!word) word = str_of(p, "ping");
    bool up = json_is_boolean(resp) ? json_is_true(resp) : word && !strcasecmp(word, "UP");
    all = all && up;
    r->npings++;
  }
  r->ping_up = r->npings > 0 && all;
}

static void set_err(char *err, size_t errlen, struct slurm_reply *r, const char *what, const char *body, size_t len) {
  char quoted[208], msg[512];
  printable(quoted, sizeof quoted, body, len);
  if (len)
    snprintf(msg, sizeof msg, "%s (HTTP %d): \"%s%s\"", what, r->status, quoted, len > 200 ? "..." : "");
  else
    snprintf(msg, sizeof msg, "%s (HTTP %d)", what, r->status);
  scopy(r->error, sizeof r->error, msg);
  if (err) scopy(err, errlen, msg);
}

/* ---- slimming a job listing ------------------------------------------------------------
 * A job record has ~111 keys and herd reads 18 of them; building a jansson tree of all of
 * them was most of the CPU a 500-job listing costs (1.5 MB). One linear pass copies the
 * reply keeping, in each object of the top-level "jobs" array, only the keys parse_job
 * reads; everything else (meta, errors, warnings, last_update) is copied as it is. On
 * anything unexpected the pass gives up and the reply is parsed whole. */

static int slim_mode = 1;
void slurm_parse_set_slim(int mode) { slim_mode = mode; }

static const char *const job_keys[] = {
    "job_id",          "job_state",   "state",      "state_reason", "state_description", "batch_host",
    "nodes",           "partition",   "user_name",  "name",         "comment",           "stdout_expanded",
    "standard_output", "submit_time", "start_time", "end_time",     "time_limit",        "exit_code"};

static const char *skip_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* p at '"': the byte after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *e) {
  for (p++; p < e; p++) {
    if (*p == '\\') {
      p++;
      continue;
    }
    if (*p == '"') return p + 1;
  }
  return NULL;
}

/* The end of the value at p (string, number, literal, object or array), or NULL. */
static const char *skip_value(const char *p, const char *e) {
  if (p >= e) return NULL;
  if (*p == '"') return skip_string(p, e);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p < e) {
      char ch = *p;
      if (ch == '"') {
        if (!(p = skip_string(p, e))) return NULL;
        continue;
      }
      if (ch == '{' || ch == '[') depth++;
      if ((ch == '}' || ch == ']') && --depth == 0) return p + 1;
      p++;
    }
    return NULL;
  }
  while (p < e && !strchr(",}] \t\r\n", *p)) p++;
  return p;
}

static bool wanted_key(const char *k, size_t n) {
  for (size_t i = 0; i < ARRAY_LEN(job_keys); i++)
    if (strlen(job_keys[i]) == n && !memcmp(job_keys[i], k, n)) return true;
  return false;
}

/* One job object at p ('{'), copied to out with only the wanted keys. Returns its end. */
static const char *slim_object(const char *p, const char *e, struct buf *out) {
  buf_append(out, "{", 1);
  p = skip_ws(p + 1, e);
  bool first = true;
  if (p < e && *p == '}') {
    buf_append(out, "}", 1);
    return p + 1;
  }
  while (p < e) {
    if (*p != '"') return NULL;
    const char *k = p, *ke = skip_string(p, e);
    if (!ke) return NULL;
    p = skip_ws(ke, e);
    if (p >= e || *p != ':') return NULL;
    const char *v = skip_ws(p + 1, e), *ve = skip_value(v, e);
    if (!ve) return NULL;
    if (wanted_key(k + 1, (size_t)(ke - k - 2))) {
      if (!first) buf_append(out, ",", 1);
      first = false;
      buf_append(out, k, (size_t)(ke - k));
      buf_append(out, ":", 1);
      buf_append(out, v, (size_t)(ve - v));
    }
    p = skip_ws(ve, e);
    if (p < e && *p == ',') {
      p = skip_ws(p + 1, e);
      continue;
    }
    if (p < e && *p == '}') {
      buf_append(out, "}", 1);
      return p + 1;
    }
    return NULL;
  }
  return NULL;
}

/* The reply with its job records slimmed (malloc'd, length in *outlen), or NULL. */
static char *slim_jobs(const char *body, size_t len, size_t *outlen) {
  const char *p = body, *e = body + len;
  struct buf out = {0};
  p = skip_ws(p, e);
  if (p >= e || *p != '{') return NULL;
  const char *copied = p; /* everything up to here is copied verbatim when we get to jobs */
  p = skip_ws(p + 1, e);
  while (p < e && *p != '}') {
    if (*p != '"') goto fail;
    const char *k = p, *ke = skip_string(p, e);
    if (!ke) goto fail;
    p = skip_ws(ke, e);
    if (p >= e || *p != ':') goto fail;
    const char *v = skip_ws(p + 1, e);
    if ((size_t)(ke - k) == 6 && !memcmp(k, "\"jobs\"", 6) && v < e && *v == '[') {
      buf_append(&out, copied, (size_t)(v - copied) + 1);
      p = skip_ws(v + 1, e);
      while (p < e && *p != ']') {
        if (*p == '{') {
          if (!(p = slim_object(p, e, &out))) goto fail;
        } else {
          const char *x = skip_value(p, e);
          if (!x) goto fail;
          buf_append(&out, p, (size_t)(x - p));
          p = x;
        }
        p = skip_ws(p, e);
        if (p < e && *p == ',') {
          buf_append(&out, ",", 1);
          p = skip_ws(p + 1, e);
        } else if (p >= e || *p != ']') {
          goto fail;
        }
      }
      if (p >= e) goto fail;
      copied = p; /* the ']' onwards is copied verbatim */
      p++;
    } else {
      if (!(p = skip_value(v, e))) goto fail;
    }
    p = skip_ws(p, e);
    if (p < e && *p == ',') p = skip_ws(p + 1, e);
  }
  if (p >= e) goto fail;
  buf_append(&out, copied, (size_t)(e - copied));
  *outlen = out.len;
  return out.data;
fail:
  free(out.data);
  return NULL;
}

int slurm_parse_reply(int ver, enum slurm_req_kind kind, int http_status, const char *body, size_t len,
                      struct slurm_reply *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->status = http_status;
  if (err && errlen) err[0] = '\0';
  if (!body) len = 0;
  if (ver < SLURM_API_OLDEST || ver > SLURM_API_NEWEST) {
    char what[64];
    snprintf(what, sizeof what, "unsupported slurmrestd API version %d", ver);
    set_err(err, errlen, out, what, NULL, 0);
    return -1;
  }
  if (http_status == 304 && len == 0) { /* v0.0.38's "nothing changed since update_time" */
    out->unchanged = true;
    return 0;
  }
  if (len == 0) {
    set_err(err, errlen, out, "empty reply", NULL, 0);
    return -1;
  }
  json_error_t jerr;
  size_t slen = 0;
  char *slim =
      kind == SR_JOBS && (slim_mode == 2 || (slim_mode == 1 && len > 4096)) ? slim_jobs(body, len, &slen) : NULL;
  if (slim) {
    body = slim;
    len = slen;
  }
  json_t *root = json_loadb(body, len, 0, &jerr);
  /* An unsigned 64-bit value (NO_VAL64 in some field we do not even read) does not fit
   * jansson's json_int_t and fails the whole document: read numbers as doubles instead. */
  if (!root && json_error_code(&jerr) == json_error_numeric_overflow)
    root = json_loadb(body, len, JSON_DECODE_INT_AS_REAL, &jerr);
  if (!json_is_object(root)) {
    set_err(err, errlen, out, root ? "reply is not a JSON object" : "reply is not JSON", body, len);
    json_decref(root);
    free(slim);
    return -1;
  }
  parse_meta(root, out);
  parse_errors(root, out);
  int rc = 0;
  switch (kind) {
  case SR_JOBS: rc = parse_jobs(root, out); break;
  case SR_SUBMIT: parse_submit(root, out); break;
  case SR_PING: parse_ping(root, out); break;
  case SR_OTHER: break;
  }
  json_decref(root);
  free(slim);
  if (rc) {
    slurm_reply_free(out);
    out->status = http_status;
    set_err(err, errlen, out, "out of memory", NULL, 0);
  }
  return rc;
}

void slurm_reply_free(struct slurm_reply *r) {
  free(r->jobs);
  r->jobs = NULL;
  r->njobs = 0;
}

/* ---- herd's reading of a job -------------------------------------------------------- */

/* Flags that mean the job is going back to the queue: not an end, not a failure. */
#define REQUEUE_FLAGS                                                                                                  \
  (SJF_REQUEUED | SJF_REQUEUE_HOLD | SJF_SPECIAL_EXIT | SJF_RESV_DEL_HOLD | SJF_REQUEUE_FED | SJF_EXPEDITING)
/* Flags that, with the base hidden (v0.0.38/39), mean the job holds its allocation. */
#define RUNNING_FLAGS (SJF_CONFIGURING | SJF_RESIZING | SJF_STOPPED | SJF_SIGNALING | SJF_POWER_UP_NODE)

/* msg = head [" (" why [", " reason] ")"] [": " description] */
static void say(struct slurm_outcome *o, const struct slurm_job *j, const char *head, const char *why,
                bool with_reason) {
  char paren[128] = "";
  if (why) scopy(paren, sizeof paren, why);
  if (with_reason && j->reason[0]) sappend(paren, sizeof paren, ", ", j->reason);
  snprintf(o->msg, sizeof o->msg, "%s%s%s%s", head, paren[0] ? " (" : "", paren, paren[0] ? ")" : "");
  if (j->description[0]) sappend(o->msg, sizeof o->msg, ": ", j->description);
}

static const char *state_text(const struct slurm_job *j) { return j->state[0] ? j->state : slurm_base_name(j->base); }

static void say_ended(struct slurm_outcome *o, const struct slurm_job *j) {
  char head[96];
  /* The reason only repeats the state in these cases. */
  bool reason = strcmp(j->reason, "NonZeroExitCode") && strcmp(j->reason, "TimeLimit");
  switch (j->base) {
  case SJ_COMPLETED:
  case SJ_CANCELLED: say(o, j, slurm_base_name(j->base), NULL, reason); return;
  case SJ_TIMEOUT: say(o, j, "TIMEOUT: time limit reached", NULL, reason); return;
  case SJ_FAILED:
    if (!j->exit_known)
      snprintf(head, sizeof head, "FAILED");
    else if (j->exit_signal)
      snprintf(head, sizeof head, "FAILED: killed by signal %d", j->exit_signal);
    else
      snprintf(head, sizeof head, "FAILED: exit code %d", j->exit_code);
    say(o, j, head, NULL, reason);
    return;
  default:
    snprintf(head, sizeof head, "FAILED: %s", slurm_base_name(j->base));
    say(o, j, head, base_info[j->base].why, reason);
  }
}

void slurm_job_outcome(const struct slurm_job *j, struct slurm_outcome *o) {
  memset(o, 0, sizeof *o);
  o->end = S_UNKNOWN;
  o->code = -1;
  enum slurm_base b = (unsigned)j->base < SJ__MAX ? j->base : SJ_UNKNOWN;
  const char *st = state_text(j);
  if (j->flags & SJF_REVOKED) {
    /* Federation: another cluster runs the job, this one never will. */
    o->phase = SP_ENDED;
    o->end = S_FAILED;
    say(o, j, "FAILED: REVOKED", "the job runs on another cluster of the federation", false);
  } else if (j->flags & REQUEUE_FLAGS) {
    /* Before the base: PREEMPTED+REQUEUED or FAILED+SPECIAL_EXIT go back to the queue. */
    o->phase = SP_QUEUED;
    bool held = j->flags & (SJF_REQUEUE_HOLD | SJF_SPECIAL_EXIT | SJF_RESV_DEL_HOLD);
    say(o, j, st, held ? "requeued and held, not a failure" : "requeued, not a failure", true);
  } else if (b == SJ_PENDING) {
    o->phase = SP_QUEUED;
    say(o, j, st, NULL, true);
  } else if (b == SJ_RUNNING || b == SJ_SUSPENDED) {
    o->phase = SP_RUNNING;
    const char *why = b == SJ_SUSPENDED            ? "not a failure"
                      : j->flags & SJF_STOPPED     ? "stopped by SIGSTOP, not a failure"
                      : j->flags & SJF_CONFIGURING ? "nodes being configured, not a failure"
                                                   : NULL;
    say(o, j, st, why, true);
  } else if (b != SJ_UNKNOWN) {
    o->phase = SP_ENDED;
    o->end = base_info[b].end;
    if (j->exit_known) {
      o->code = j->exit_code;
      o->sig = j->exit_signal;
    } else if (b == SJ_COMPLETED) {
      o->code = 0; /* COMPLETED means exit 0 on every node */
    }
    say_ended(o, j);
  } else if (j->flags & (SJF_COMPLETING | SJF_STAGE_OUT)) {
    /* v0.0.38/39: the word hides the final state; it shows once the epilog is done. */
    o->phase = SP_ENDING;
    say(o, j, st, "ending, waiting for the final state", false);
  } else if (j->flags & RUNNING_FLAGS) {
    o->phase = SP_RUNNING;
    say(o, j, st, j->flags & SJF_CONFIGURING ? "nodes being configured, not a failure" : "not a failure", true);
  } else {
    o->phase = SP_UNKNOWN;
    char head[64];
    snprintf(head, sizeof head, "UNKNOWN state \"%s\"", j->state);
    say(o, j, head, NULL, true);
  }
}
