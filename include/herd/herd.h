/* herd: common definitions shared by every module. */
#ifndef HERD_HERD_H
#define HERD_HERD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifndef HERD_VERSION
#define HERD_VERSION "0.0.0"
#endif

/* Version of the control API; the CLI refuses to talk to a daemon with another. */
#define HERD_API_VERSION 1

/** Recover the owning struct from a pointer to one of its members. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Exit codes shared by the daemon and the CLI (documented in README.md). */
enum {
  HERD_EXIT_OK = 0,
  HERD_EXIT_FAIL = 1,      /* the request failed (4xx/5xx, state not reached) */
  HERD_EXIT_USAGE = 2,     /* bad command line */
  HERD_EXIT_NO_DAEMON = 3, /* no daemon answers on the socket */
  HERD_EXIT_TIMEOUT = 4,   /* --wait timed out */
  HERD_EXIT_CONFIG = 100,  /* daemon: configuration errors at start-up */
  HERD_EXIT_STARTUP = 101, /* daemon: state dir, store, socket or lock problem */
};

/** Wall-clock time in seconds (CLOCK_REALTIME), for records shown to people. */
double now_wall(void);
/** Monotonic time in seconds, for deadlines and durations. */
double now_mono(void);
/** Read /proc/PID/stat once: the state letter (0 when there is no such process) and the
 *  start time (field 22, clock ticks since boot). */
char proc_stat(int pid, uint64_t *starttime);
/** Field 22 (starttime) of /proc/PID/stat; 0 when unavailable. */
uint64_t proc_starttime(int pid);
struct sockaddr_storage;
/** host:port as a socket address when host is an IPv4 or IPv6 literal or "localhost"
 *  (127.0.0.1): 0, or -1 when it is a name to resolve. */
int addr_from_literal(const char *host, int port, struct sockaddr_storage *ss);

/**
 * Parse a duration: a JSON number of seconds (fractions allowed) given as text, or a
 * number with a unit: ms, s, m, h (e.g. "250ms", "1.5s", "2m"). Returns 0 and sets *out,
 * or -1 when the text is not a duration or is negative.
 */
int duration_parse(const char *s, double *out);

/** Parse a byte size: "1048576", "512K", "10M", "1G" (binary units). 0 on success. */
int size_parse(const char *s, uint64_t *out);

/** Format a duration for people: "850ms", "12s", "3m04s", "2h05m", "3d04h". */
void duration_fmt(double secs, char *buf, size_t len);

/** Signal name (without "SIG") to number, or -1. Accepts "TERM", "SIGTERM", "15". */
int signal_parse(const char *s);
/** Signal number to its name without "SIG" ("TERM"), or "?" when unknown. */
const char *signal_name(int sig);

/** A service name is [a-z0-9][a-z0-9._-]{0,62}. */
bool name_valid(const char *s);

/** Shell-style glob match (*, ?, [...]) via fnmatch(3). */
bool glob_match(const char *pattern, const char *s);

/** malloc that aborts on exhaustion: allocation failure is not a recoverable state here. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Read a whole file (at most max bytes when max > 0) into a NUL-terminated malloc'd buffer;
 *  its length in *len. NULL with *err set (errno) when it cannot be read. */
char *file_read(const char *path, size_t max, size_t *len, int *err);

/** The last `lines` lines (all: -1) of a file, at most 8 MiB of them (malloc'd; NULL with errno
 *  when it cannot be read, or is empty); *size (may be NULL) gets the size it was read at. */
char *file_tail(const char *path, long lines, int64_t *size, size_t *len);

/** A growable byte buffer. */
struct buf {
  char *data;
  size_t len, cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);
/** Append a string literal (its length known at compile time). */
#define buf_lit(b, lit) buf_append((b), (lit), sizeof(lit) - 1)
/** Append s as a JSON string literal (s must be valid UTF-8: see utf8_sanitize). */
void buf_json_string(struct buf *b, const char *s);
/** Append one word quoted for a POSIX shell (single quotes; ' becomes '\\''). */
void buf_shquote(struct buf *b, const char *word);
/** Replace every byte that is not part of valid UTF-8 with '?', in place. */
void utf8_sanitize(char *s);

/** Intrusive doubly linked list (as in the Linux kernel and libuv's queue). */
struct list {
  struct list *prev, *next;
};
static inline void list_init(struct list *l) { l->prev = l->next = l; }
static inline bool list_empty(const struct list *l) { return l->next == l; }
static inline void list_add_tail(struct list *head, struct list *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}
static inline void list_del(struct list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}
#define list_for_each_safe(pos, tmp, head)                                                                             \
  for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

#endif
