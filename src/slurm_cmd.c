/* Slurm's commands over ssh: command lines and the reading of their output (see slurm_cmd.h). */
#include "herd/slurm_cmd.h"

#include "herd/herd.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* squeue's fields: job id, extended state, reason, batch host, submit, start and end time,
 * comment (last: it is free text and may hold the separator). */
#define LIST_FMT "%i|%T|%r|%B|%V|%S|%e|%k"
#define LIST_FIELDS 8
#define TIMES "SLURM_TIME_FORMAT=%s "
#define SACCT_FIELDS "JobIDRaw,State,NodeList,Submit,Start,End,ExitCode"

/* ---- command lines ---- */

char *slurm_cmd_list(void) { return xstrdup(TIMES "squeue --me --noheader --states=all --format='" LIST_FMT "'"); }

/* scontrol knows a job until MinJobAge after its end; sacct after that (when accounting is on). */
char *slurm_cmd_job(int64_t id) {
  return xasprintf("export SLURM_TIME_FORMAT=%%s; scontrol --oneliner show job %lld || sacct --noheader --parsable2 "
                   "--allocations --jobs=%lld --format=" SACCT_FIELDS,
                   (long long)id, (long long)id);
}

char *slurm_cmd_cancel(int64_t id) { return xasprintf("scancel %lld", (long long)id); }

char *slurm_cmd_node(const char *node) {
  struct buf b = {0};
  buf_lit(&b, "sinfo --noheader --Node --format='%N|%o' --nodes=");
  buf_shquote(&b, node);
  buf_append(&b, "", 1);
  return b.data;
}

static bool env_name_ok(const char *kv, size_t n) {
  if (!n || !(isalpha((unsigned char)kv[0]) || kv[0] == '_')) return false;
  for (size_t i = 1; i < n; i++)
    if (!(isalnum((unsigned char)kv[i]) || kv[i] == '_')) return false;
  return true;
}

static void opt(struct buf *b, const char *name, const char *v) {
  if (!v) return;
  buf_printf(b, " --%s=", name);
  buf_shquote(b, v);
}

char *slurm_cmd_submit(const struct slurm_cmd_submit *k, char *err, size_t errlen) {
  struct buf b = {0}, names = {0};
  /* NAME='value' ... sbatch --export=NAME,...: the named variables reach the job (with the
   * login user's environment, which Slurm loads for a list without ALL). */
  for (const char **e = k->env; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    size_t n = eq ? (size_t)(eq - *e) : 0;
    if (!env_name_ok(*e, n)) {
      snprintf(err, errlen, "environment variable %.*s: not a name a shell can export", (int)(n ? n : strlen(*e)), *e);
      buf_free(&b);
      buf_free(&names);
      return NULL;
    }
    buf_append(&b, *e, n + 1);
    buf_shquote(&b, eq + 1);
    buf_lit(&b, " ");
    if (names.len) buf_lit(&names, ",");
    buf_append(&names, *e, n);
  }
  buf_lit(&b, "sbatch --parsable");
  if (names.len) {
    buf_lit(&b, " --export=");
    buf_append(&b, names.data, names.len);
  }
  opt(&b, "job-name", k->name);
  opt(&b, "comment", k->comment);
  if (k->mcs_label) opt(&b, "mcs-label", k->comment);
  opt(&b, "chdir", k->cwd);
  opt(&b, "output", k->output);
  opt(&b, "error", k->error);
  opt(&b, "partition", k->partition);
  opt(&b, "nodes", k->nodes ? k->nodes : "1");
  buf_lit(&b, " --ntasks=1");
  if (k->time_limit > 0) buf_printf(&b, " --time=%d", k->time_limit);
  if (k->cpus_per_task > 0) buf_printf(&b, " --cpus-per-task=%d", k->cpus_per_task);
  if (k->memory_mb) buf_printf(&b, " --mem=%lluM", (unsigned long long)k->memory_mb);
  opt(&b, "gres", k->gres);
  opt(&b, "account", k->account);
  opt(&b, "qos", k->qos);
  buf_append(&b, "", 1);
  buf_free(&names);
  return b.data;
}

/* ---- reading output ---- */

/* Copy one field, printable (control bytes become spaces) and valid UTF-8. */
static void field(char *dst, size_t n, const char *s, size_t len) {
  if (!n) return;
  if (len >= n) {
    len = n - 1;
    while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80) len--;
  }
  for (size_t i = 0; i < len; i++) dst[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
  dst[len] = '\0';
  utf8_sanitize(dst);
}

/* Slurm's words for "nothing here". */
static bool none_word(const char *s, size_t n) {
  static const char *const w[] = {"", "n/a", "N/A", "(null)", "None", "NONE", "Unknown", "None assigned"};
  for (size_t i = 0; i < ARRAY_LEN(w); i++)
    if (strlen(w[i]) == n && !memcmp(s, w[i], n)) return true;
  return false;
}

static void text_field(char *dst, size_t n, const char *s, size_t len) {
  if (none_word(s, len)) len = 0;
  field(dst, n, s, len);
}

/* A time printed with SLURM_TIME_FORMAT=%s; 0 for NONE, Unknown, N/A. */
static int64_t time_field(const char *s, size_t len) {
  char tmp[32];
  if (!len || len >= sizeof tmp) return 0;
  memcpy(tmp, s, len);
  tmp[len] = '\0';
  char *end;
  long long v = strtoll(tmp, &end, 10);
  return *end || v < 0 ? 0 : (int64_t)v;
}

static bool id_field(const char *s, size_t len, uint64_t *out) {
  if (!len || len > 19) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (!isdigit((unsigned char)s[i])) return false;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return v > 0;
}

/* "1:0" (exit 1), "0:15" (signal 15): Slurm's ExitCode. */
static void exit_field(struct slurm_job *j, const char *s, size_t len) {
  char tmp[32];
  if (!len || len >= sizeof tmp) return;
  memcpy(tmp, s, len);
  tmp[len] = '\0';
  int code, sig;
  if (sscanf(tmp, "%d:%d", &code, &sig) != 2 || code < 0 || code > 255 || sig < 0 || sig > 127) return;
  j->exit_known = true;
  j->exit_code = sig ? -1 : code;
  j->exit_signal = sig;
}

static void add_job(struct slurm_reply *rep, const struct slurm_job *j) {
  if (rep->njobs % 64 == 0) rep->jobs = xrealloc(rep->jobs, (rep->njobs + 64) * sizeof *rep->jobs);
  rep->jobs[rep->njobs++] = *j;
}

/* Split s[0..len) at '|' into at most max fields (the last takes the rest). */
static size_t split(const char *s, size_t len, const char **f, size_t *fl, size_t max) {
  size_t n = 0;
  const char *p = s, *e = s + len;
  while (n < max) {
    const char *bar = n + 1 < max ? memchr(p, '|', (size_t)(e - p)) : NULL;
    f[n] = p;
    fl[n] = (size_t)((bar ? bar : e) - p);
    n++;
    if (!bar) break;
    p = bar + 1;
  }
  return n;
}

static void state_field(struct slurm_job *j, const char *s, size_t len) {
  char w[32];
  /* sacct: "CANCELLED by 1000" */
  const char *sp = memchr(s, ' ', len);
  if (sp) len = (size_t)(sp - s);
  field(w, sizeof w, s, len);
  slurm_job_set_state(j, w);
}

static void parse_list_line(struct slurm_reply *rep, const char *s, size_t len) {
  const char *f[LIST_FIELDS];
  size_t fl[LIST_FIELDS];
  struct slurm_job j;
  memset(&j, 0, sizeof j);
  j.exit_code = -1;
  if (split(s, len, f, fl, LIST_FIELDS) != LIST_FIELDS || !id_field(f[0], fl[0], &j.job_id)) return;
  state_field(&j, f[1], fl[1]);
  text_field(j.reason, sizeof j.reason, f[2], fl[2]);
  text_field(j.batch_host, sizeof j.batch_host, f[3], fl[3]);
  j.submit_time = time_field(f[4], fl[4]);
  j.start_time = time_field(f[5], fl[5]);
  j.end_time = time_field(f[6], fl[6]);
  text_field(j.comment, sizeof j.comment, f[7], fl[7]);
  add_job(rep, &j);
}

/* sacct --parsable2: JobIDRaw|State|NodeList|Submit|Start|End|ExitCode */
static void parse_sacct_line(struct slurm_reply *rep, const char *s, size_t len) {
  const char *f[7];
  size_t fl[7];
  struct slurm_job j;
  memset(&j, 0, sizeof j);
  j.exit_code = -1;
  if (split(s, len, f, fl, 7) != 7 || !id_field(f[0], fl[0], &j.job_id)) return;
  state_field(&j, f[1], fl[1]);
  text_field(j.nodes, sizeof j.nodes, f[2], fl[2]);
  /* one node for herd's jobs: the batch host */
  if (!memchr(f[2], ',', fl[2]) && !memchr(f[2], '[', fl[2]))
    text_field(j.batch_host, sizeof j.batch_host, f[2], fl[2]);
  j.submit_time = time_field(f[3], fl[3]);
  j.start_time = time_field(f[4], fl[4]);
  j.end_time = time_field(f[5], fl[5]);
  exit_field(&j, f[6], fl[6]);
  add_job(rep, &j);
}

/* The value of `key` in one `scontrol --oneliner` line: from after "Key=" to the space before
 * the next " Word=" (values may hold spaces: a comment, a path). */
static bool kv(const char *s, size_t len, const char *key, const char **v, size_t *vl) {
  size_t kl = strlen(key);
  const char *e = s + len;
  for (const char *p = s; p + kl < e; p++) {
    if ((p != s && p[-1] != ' ') || memcmp(p, key, kl) || p[kl] != '=') continue;
    const char *start = p + kl + 1, *q = start;
    while (q < e) {
      const char *sp = memchr(q, ' ', (size_t)(e - q));
      if (!sp) {
        q = e;
        break;
      }
      /* the next key: letters, digits, ':', '/', '_' then '=' */
      const char *w = sp + 1;
      while (w < e && (isalnum((unsigned char)*w) || *w == ':' || *w == '/' || *w == '_')) w++;
      if (w < e && *w == '=' && w > sp + 1) {
        q = sp;
        break;
      }
      q = sp + 1;
    }
    *v = start;
    *vl = (size_t)(q - start);
    while (*vl && start[*vl - 1] == ' ') (*vl)--;
    return true;
  }
  return false;
}

static void parse_scontrol_line(struct slurm_reply *rep, const char *s, size_t len) {
  const char *v;
  size_t vl;
  struct slurm_job j;
  memset(&j, 0, sizeof j);
  j.exit_code = -1;
  if (!kv(s, len, "JobId", &v, &vl) || !id_field(v, vl, &j.job_id)) return;
  if (kv(s, len, "JobState", &v, &vl)) state_field(&j, v, vl);
  if (kv(s, len, "Reason", &v, &vl)) text_field(j.reason, sizeof j.reason, v, vl);
  if (kv(s, len, "BatchHost", &v, &vl)) text_field(j.batch_host, sizeof j.batch_host, v, vl);
  if (kv(s, len, "NodeList", &v, &vl)) text_field(j.nodes, sizeof j.nodes, v, vl);
  if (kv(s, len, "Partition", &v, &vl)) text_field(j.partition, sizeof j.partition, v, vl);
  if (kv(s, len, "JobName", &v, &vl)) text_field(j.name, sizeof j.name, v, vl);
  if (kv(s, len, "Comment", &v, &vl)) text_field(j.comment, sizeof j.comment, v, vl);
  if (kv(s, len, "StdOut", &v, &vl)) text_field(j.std_out, sizeof j.std_out, v, vl);
  if (kv(s, len, "SubmitTime", &v, &vl)) j.submit_time = time_field(v, vl);
  if (kv(s, len, "StartTime", &v, &vl)) j.start_time = time_field(v, vl);
  if (kv(s, len, "EndTime", &v, &vl)) j.end_time = time_field(v, vl);
  if (kv(s, len, "ExitCode", &v, &vl)) exit_field(&j, v, vl);
  add_job(rep, &j);
}

static void set_error(struct slurm_reply *rep, int code, const char *text, size_t len) {
  rep->nerrors = 1;
  rep->error_code = code;
  /* the last non-empty line says most (sbatch: "error: Batch job submission failed: ...") */
  const char *e = text + len, *best = text;
  size_t bl = len;
  for (const char *p = text; p < e;) {
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    size_t l = (size_t)((nl ? nl : e) - p);
    if (l) {
      best = p;
      bl = l;
    }
    p = nl ? nl + 1 : e;
  }
  field(rep->error, sizeof rep->error, best, bl);
}

static bool has(const char *s, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (!memcmp(s + i, needle, n)) return true;
  return false;
}

/* Words of Slurm's that mean the request never got to a decision. */
static bool trouble_words(const char *s, size_t len) {
  static const char *const w[] = {
      "Unable to contact slurm controller",
      "Socket timed out",
      "Zero Bytes were transmitted",
      "Connection refused",
      "Communication connection failure",
      "Protocol authentication error",
      "Munge",
      "munge",
      "Transport endpoint",
      "Could not establish a configuration source",
      "command not found",
      "No such file or directory",
      "Slurmctld not responding",
      "slurm_load_jobs error: Unexpected message",
  };
  for (size_t i = 0; i < ARRAY_LEN(w); i++)
    if (has(s, len, w[i])) return true;
  return false;
}

static enum slurm_verdict trouble(struct slurm_reply *rep, int status, const char *err, size_t errlen,
                                  const char *what) {
  if (errlen) {
    set_error(rep, -1, err, errlen);
  } else {
    char msg[160];
    int n = snprintf(msg, sizeof msg, "%s (exit status %d, nothing on stderr)", what, status);
    set_error(rep, -1, msg, (size_t)n);
  }
  return SCV_TROUBLE;
}

typedef void (*line_fn)(struct slurm_reply *rep, const char *s, size_t len);

static void each_line(struct slurm_reply *rep, const char *out, size_t len, line_fn fn) {
  const char *e = out + len;
  for (const char *p = out; p < e;) {
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    size_t l = (size_t)((nl ? nl : e) - p);
    if (l && p[l - 1] == '\r') l--;
    if (l) fn(rep, p, l);
    p = nl ? nl + 1 : e;
  }
}

enum slurm_verdict slurm_cmd_parse(enum slurm_cmd_kind kind, int status, const char *out, size_t outlen,
                                   const char *err, size_t errlen, struct slurm_reply *rep) {
  memset(rep, 0, sizeof *rep);
  if (!out) outlen = 0;
  if (!err) errlen = 0;
  switch (kind) {
  case SC_LIST:
    if (status != 0) return trouble(rep, status, err, errlen, "squeue failed");
    each_line(rep, out, outlen, parse_list_line);
    return SCV_OK;
  case SC_JOB:
    if (outlen >= 6 && !memcmp(out, "JobId=", 6)) {
      each_line(rep, out, outlen, parse_scontrol_line);
      return rep->njobs ? SCV_OK : trouble(rep, status, "scontrol: output not understood", 30, "");
    }
    /* scontrol did not know it: sacct's answer (rows, or none) */
    if (status == 0) {
      each_line(rep, out, outlen, parse_sacct_line);
      if (rep->njobs) return SCV_OK;
      /* no row: gone, unless scontrol could not ask (the database may lag behind slurmctld) */
      if (trouble_words(err, errlen)) return trouble(rep, status, err, errlen, "scontrol failed");
      set_error(rep, 2017, "Invalid job id specified (not in squeue, scontrol or sacct)", 59);
      return SCV_GONE;
    }
    if (has(err, errlen, "Invalid job id specified") && !trouble_words(err, errlen)) {
      set_error(rep, 2017, err, errlen); /* and sacct has no accounting to ask */
      return SCV_GONE;
    }
    return trouble(rep, status, err, errlen, "scontrol/sacct failed");
  case SC_SUBMIT: {
    if (status == 0) {
      uint64_t id;
      const char *semi = memchr(out, ';', outlen), *nl = memchr(out, '\n', outlen);
      size_t l = (size_t)((semi && (!nl || semi < nl) ? semi : nl ? nl : out + outlen) - out);
      if (outlen && id_field(out, l, &id)) {
        rep->job_id = (int64_t)id;
        return SCV_OK;
      }
      return trouble(rep, status, "sbatch --parsable printed no job id", 35, "");
    }
    if (has(err, errlen, "Batch job submission failed") && !trouble_words(err, errlen)) {
      set_error(rep, 1, err, errlen);
      return SCV_REFUSED;
    }
    return trouble(rep, status, err, errlen, "sbatch failed");
  }
  case SC_CANCEL:
    if (status == 0) return SCV_OK;
    if (has(err, errlen, "Invalid job id specified") && !trouble_words(err, errlen)) {
      set_error(rep, 2017, err, errlen);
      return SCV_GONE;
    }
    if (has(err, errlen, "already completing or completed")) return SCV_OK;
    return trouble(rep, status, err, errlen, "scancel failed");
  case SC_NODE:
    if (status == 0) return SCV_OK;
    return trouble(rep, status, err, errlen, "sinfo failed");
  case SC__MAX: break;
  }
  return trouble(rep, status, err, errlen, "unknown command");
}

bool slurm_cmd_node_addr(const char *out, size_t len, const char *node, char *addr, size_t addrlen) {
  size_t nl = strlen(node);
  const char *e = out ? out + len : out;
  for (const char *p = out; p && p < e;) {
    const char *eol = memchr(p, '\n', (size_t)(e - p));
    size_t l = (size_t)((eol ? eol : e) - p);
    while (l && (p[l - 1] == '\r' || p[l - 1] == ' ')) l--;
    if (l > nl + 1 && !memcmp(p, node, nl) && p[nl] == '|') {
      const char *a = p + nl + 1;
      size_t al = l - nl - 1;
      if (!none_word(a, al) && !memchr(a, ' ', al)) {
        field(addr, addrlen, a, al);
        return true;
      }
    }
    p = eol ? eol + 1 : e;
  }
  return false;
}
