/* Small helpers: time, durations, sizes, signals, names, memory, buffers. */
#include "herd/herd.h"
#include "herd/loop.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

double now_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int addr_from_literal(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (!strcmp(host, "localhost")) host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0 || uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  memset(ss, 0, sizeof *ss);
  return -1;
}

double now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int duration_parse(const char *s, double *out) {
  if (!s || !*s) return -1;
  errno = 0;
  char *end;
  double v = strtod(s, &end);
  if (errno || end == s || !isfinite(v) || v < 0) return -1;
  while (*end == ' ') end++;
  double mult;
  if (*end == '\0' || !strcmp(end, "s"))
    mult = 1;
  else if (!strcmp(end, "ms"))
    mult = 1e-3;
  else if (!strcmp(end, "us"))
    mult = 1e-6;
  else if (!strcmp(end, "m"))
    mult = 60;
  else if (!strcmp(end, "h"))
    mult = 3600;
  else if (!strcmp(end, "d"))
    mult = 86400;
  else
    return -1;
  /* Reject text like "0x10" or "1e400" that strtod accepts but nobody means. */
  for (const char *p = s; p < end; p++)
    if (!(isdigit((unsigned char)*p) || *p == '.' || *p == ' ')) return -1;
  /* "99...9d" (309 digits) is a finite number of days but no finite number of seconds. */
  if (!isfinite(v * mult)) return -1;
  *out = v * mult;
  return 0;
}

int size_parse(const char *s, uint64_t *out) {
  if (!s || !*s || !isdigit((unsigned char)*s)) return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return -1;
  uint64_t mult = 1;
  if (!strcasecmp(end, "") || !strcasecmp(end, "b"))
    mult = 1;
  else if (!strcasecmp(end, "k") || !strcasecmp(end, "kb") || !strcasecmp(end, "kib"))
    mult = 1024;
  else if (!strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib"))
    mult = 1024 * 1024;
  else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib"))
    mult = 1024ULL * 1024 * 1024;
  else
    return -1;
  if (v > UINT64_MAX / mult) return -1;
  *out = (uint64_t)v * mult;
  return 0;
}

void duration_fmt(double secs, char *buf, size_t len) {
  if (!(secs >= 0)) secs = 0; /* NaN too */
  if (secs < 1) {
    snprintf(buf, len, "%dms", (int)(secs * 1000));
    return;
  }
  /* Total over every double: past 2^64 s (infinity too) the count stops at its most. */
  uint64_t s = secs < 18446744073709549568.0 ? (uint64_t)secs : UINT64_MAX;
  if (s < 60)
    snprintf(buf, len, "%us", (unsigned)s);
  else if (s < 3600)
    snprintf(buf, len, "%um%02us", (unsigned)(s / 60), (unsigned)(s % 60));
  else if (s < 86400)
    snprintf(buf, len, "%uh%02um", (unsigned)(s / 3600), (unsigned)(s % 3600 / 60));
  else
    snprintf(buf, len, "%llud%02uh", (unsigned long long)(s / 86400), (unsigned)(s % 86400 / 3600));
}

static const struct {
  int num;
  const char *name;
} signals[] = {
    {SIGHUP, "HUP"},   {SIGINT, "INT"},     {SIGQUIT, "QUIT"}, {SIGILL, "ILL"},   {SIGTRAP, "TRAP"},
    {SIGABRT, "ABRT"}, {SIGBUS, "BUS"},     {SIGFPE, "FPE"},   {SIGKILL, "KILL"}, {SIGUSR1, "USR1"},
    {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"},   {SIGPIPE, "PIPE"}, {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},
    {SIGCHLD, "CHLD"}, {SIGCONT, "CONT"},   {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"}, {SIGTTIN, "TTIN"},
    {SIGTTOU, "TTOU"}, {SIGURG, "URG"},     {SIGXCPU, "XCPU"}, {SIGXFSZ, "XFSZ"}, {SIGVTALRM, "VTALRM"},
    {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"}, {SIGIO, "IO"},     {SIGSYS, "SYS"},
};

int signal_parse(const char *s) {
  if (!s || !*s) return -1;
  if (isdigit((unsigned char)*s)) {
    char *end;
    long v = strtol(s, &end, 10);
    return (*end || v <= 0 || v >= 65) ? -1 : (int)v;
  }
  if (!strncasecmp(s, "SIG", 3)) s += 3;
  for (size_t i = 0; i < ARRAY_LEN(signals); i++)
    if (!strcasecmp(s, signals[i].name)) return signals[i].num;
  return -1;
}

const char *signal_name(int sig) {
  for (size_t i = 0; i < ARRAY_LEN(signals); i++)
    if (signals[i].num == sig) return signals[i].name;
  return "?";
}

bool name_valid(const char *s) {
  if (!s) return false;
  size_t n = strlen(s);
  if (n < 1 || n > 63) return false;
  if (!(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0]))) return false;
  for (size_t i = 1; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(islower(c) || isdigit(c) || c == '.' || c == '_' || c == '-')) return false;
  }
  return true;
}

bool glob_match(const char *pattern, const char *s) { return fnmatch(pattern, s, 0) == 0; }

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

void *xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) abort();
  return p;
}

void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) abort();
  return p;
}

char *xstrdup(const char *s) {
  char *p = strdup(s ? s : "");
  if (!p) abort();
  return p;
}

char *xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *p;
  if (vasprintf(&p, fmt, ap) < 0) abort();
  va_end(ap);
  return p;
}

void buf_append(struct buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[512];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    buf_append(b, tmp, (size_t)n);
    return;
  }
  char *big = xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  buf_append(b, big, (size_t)n);
  free(big);
}

void utf8_sanitize(char *s) {
  unsigned char *p = (unsigned char *)s;
  while (*p) {
    int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t cp = n == 1 ? *p : *p & (0x7Fu >> n);
    bool ok = n > 0;
    for (int i = 1; ok && i < n; i++) {
      ok = (p[i] & 0xC0) == 0x80; /* a NUL ends the sequence too */
      cp = cp << 6 | (p[i] & 0x3Fu);
    }
    /* What jansson accepts (RFC 3629): no overlong form, no surrogate, nothing past U+10FFFF. */
    if (ok && n > 1) ok = cp >= least[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) {
      *p++ = '?';
      continue;
    }
    p += n;
  }
}

void buf_shquote(struct buf *b, const char *w) {
  buf_lit(b, "'");
  for (; *w; w++) {
    if (*w == '\'')
      buf_lit(b, "'\\''");
    else
      buf_append(b, w, 1);
  }
  buf_lit(b, "'");
}

void buf_json_string(struct buf *b, const char *s) {
  buf_lit(b, "\"");
  const char *run = s;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    buf_append(b, run, (size_t)(s - run));
    if (ch == '"')
      buf_lit(b, "\\\"");
    else if (ch == '\\')
      buf_lit(b, "\\\\");
    else if (ch == '\n')
      buf_lit(b, "\\n");
    else
      buf_printf(b, "\\u%04x", ch);
    run = s + 1;
  }
  buf_append(b, run, (size_t)(s - run));
  buf_lit(b, "\"");
}

void buf_free(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *file_read(const char *path, size_t max, size_t *len, int *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *err = errno;
    return NULL;
  }
  struct buf b = {0};
  char tmp[8192];
  size_t n;
  while ((!max || b.len < max) && (n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
  *err = ferror(f) ? EIO : 0;
  fclose(f);
  if (*err) {
    buf_free(&b);
    return NULL;
  }
  if (max && b.len > max) b.len = max;
  buf_append(&b, "", 1);
  *len = b.len - 1;
  return b.data;
}

/* ---- loop helpers (loop.h) ---- */

char loop_readbuf[LOOP_READBUF];

void loop_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  b->base = loop_readbuf;
  b->len = sizeof loop_readbuf;
}

void timer_arm(uv_loop_t *loop, uv_timer_t *t, uv_timer_cb cb, double at) {
  /* libuv adds the timeout to its cached loop time, which is stale while we create many
   * services in one callback: refresh it, or later timers fire early. The +1 ms covers
   * libuv's coarse clock trailing CLOCK_MONOTONIC. */
  uv_update_time(loop);
  double ms = ceil((at - now_mono()) * 1000.0);
  /* Saturate: a deadline centuries away (or not a number) is "never", not an overflow
   * into "now" (converting a double past 2^64 to an integer is undefined). */
  if (!(ms < 1e15)) ms = 1e15;
  uv_timer_start(t, cb, ms > 0 ? (uint64_t)ms + 1 : 1, 0);
}

/* ---- /proc ---- */

/* The state letter of /proc/PID/stat (after the last ')'), or 0 when there is no such process. */
/* Read /proc/PID/stat once: the state letter (field 3; 0 when there is no such process)
 * and the start time (field 22, clock ticks since boot). */
char proc_stat(int pid, uint64_t *starttime) {
  char path[64], buf[1024];
  *starttime = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* comm (field 2) may hold spaces and parentheses: fields resume after the last ')'. */
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ') return 0;
  char state = p[2];
  p++;
  for (int field = 3; field < 22 && p; field++) p = strchr(p + 1, ' ');
  if (p) *starttime = strtoull(p + 1, NULL, 10);
  return state;
}

uint64_t proc_starttime(int pid) {
  uint64_t st;
  proc_stat(pid, &st);
  return st;
}

char *file_tail(const char *path, long lines, int64_t *size, size_t *len) {
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    close(fd);
    return NULL;
  }
  off_t end = st.st_size, start = end;
  if (size) *size = (int64_t)st.st_size;
  const off_t cap = 8 * 1024 * 1024;
  char *data = NULL;
  size_t have = 0;
  long nl = 0;
  while (start > 0 && end - start < cap) {
    off_t step = start > 65536 ? 65536 : start;
    start -= step;
    char *nd = xmalloc(have + (size_t)step);
    if (pread(fd, nd, (size_t)step, start) != (ssize_t)step) {
      free(nd);
      break;
    }
    if (have) memcpy(nd + step, data, have);
    free(data);
    data = nd;
    have += (size_t)step;
    nl = 0;
    for (size_t i = 0; i < have; i++)
      if (data[i] == '\n') nl++;
    if (lines >= 0 && nl > lines) break;
  }
  close(fd);
  if (!data) return NULL;
  size_t off = 0;
  if (lines >= 0) {
    /* Skip to the start of the last `lines` lines (a final line may lack its newline). */
    long skip = nl - lines + (have && data[have - 1] != '\n' ? 1 : 0);
    for (size_t i = 0; i < have && skip > 0; i++)
      if (data[i] == '\n' && --skip == 0) off = i + 1;
    if (skip > 0) off = have;
  }
  memmove(data, data + off, have - off);
  *len = have - off;
  return data;
}
