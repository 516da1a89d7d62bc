/* The command-line client: each command is one or a few requests to the daemon. */
#include "herd/cfg.h"
#include "herd/cmd.h"
#include "herd/ctl.h"
#include "herd/http.h"
#include "herd/table.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct cli {
  const char *socket;
  const char *state_dir;
  bool tty;   /* stdout is a terminal: progress lines */
  bool color; /* ...and NO_COLOR is not set (https://no-color.org): colours */
};

/* Why the daemon could not be reached, naming the socket, and what to do about it. */
static void no_daemon(struct cli *cli, int rc) {
  if (rc == -ENOENT || rc == -ECONNREFUSED) {
    /* The hint starts a daemon on this very socket: name it unless it is the default. */
    char def[4096];
    snprintf(def, sizeof def, "%s/herd.sock", cli->state_dir);
    bool other = strcmp(cli->socket, def) != 0;
    fprintf(stderr,
            "herd: no daemon answers on %s (%s).\nStart one with: herd daemon --state-dir %s%s%s [--config DIR]\n",
            cli->socket, strerror(-rc), cli->state_dir, other ? " --socket " : "", other ? cli->socket : "");
  } else if (rc == -EACCES || rc == -EPERM) {
    struct stat st;
    if (stat(cli->socket, &st) == 0)
      fprintf(stderr,
              "herd: permission denied connecting to %s (owner uid %u, group %u, mode %04o; you are uid %u, gid "
              "%u): the daemon's own uid and root may connect, and with --read-group, that group's members\n",
              cli->socket, (unsigned)st.st_uid, (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777),
              (unsigned)geteuid(), (unsigned)getegid());
    else
      fprintf(stderr, "herd: permission denied connecting to %s: %s (a directory on the way is closed to uid %u)\n",
              cli->socket, strerror(errno), (unsigned)geteuid());
  } else if (rc == -ENAMETOOLONG) {
    fprintf(stderr, "herd: the socket path %s is %zu bytes long; a Unix socket path has at most %zu\n", cli->socket,
            strlen(cli->socket), sizeof((struct sockaddr_un *)0)->sun_path - 1);
  } else if (rc == -EPIPE || rc == -ECONNRESET || rc == -EPROTO) {
    fprintf(stderr, "herd: the daemon on %s closed the connection without a complete answer (%s)\n", cli->socket,
            strerror(-rc));
  } else {
    fprintf(stderr, "herd: talking to the daemon on %s: %s\n", cli->socket, strerror(-rc));
  }
}

/* The request line's target for table entry id: its route with {name} filled in (cmd_path),
 * then ?query unless query is NULL or empty. Caller frees. */
static char *target_of(enum cmd_id id, const char *name, const char *query) {
  struct buf t = {0};
  cmd_path(&t, &cmd_table[id], name);
  if (query && *query) buf_printf(&t, "?%s", query);
  return t.data;
}

/* One request to table entry id, with its method (see target_of for name and query); prints
 * the problem and returns NULL on failure. *status gets the HTTP status. */
static json_t *call(struct cli *cli, enum cmd_id id, const char *name, const char *query, const char *body, size_t len,
                    int *status, int *exit_code) {
  struct http_resp r;
  char *target = target_of(id, name, query);
  int rc = http_request(cli->socket, cmd_table[id].method, target, body, len, &r, NULL, NULL);
  free(target);
  if (rc < 0) {
    no_daemon(cli, rc);
    *exit_code = HERD_EXIT_NO_DAEMON;
    http_resp_free(&r);
    return NULL;
  }
  *status = r.status;
  json_error_t je;
  json_t *o = r.body.len ? json_loadb(r.body.data, r.body.len, 0, &je) : NULL;
  http_resp_free(&r);
  if (!o) {
    fprintf(stderr, "herd: the daemon sent a reply that is not JSON (HTTP %d)\n", *status);
    *exit_code = HERD_EXIT_FAIL;
    return NULL;
  }
  json_t *api = json_object_get(o, "api");
  if (!json_is_integer(api) || json_integer_value(api) != HERD_API_VERSION) {
    fprintf(stderr,
            "herd: the daemon on %s speaks API %lld; this herd speaks API %d. Use the herd binary that matches the "
            "daemon.\n",
            cli->socket, api ? (long long)json_integer_value(api) : 0LL, HERD_API_VERSION);
    json_decref(o);
    *exit_code = HERD_EXIT_FAIL;
    return NULL;
  }
  *exit_code = (*status >= 200 && *status < 300) ? HERD_EXIT_OK : HERD_EXIT_FAIL;
  return o;
}

static void print_error(json_t *o, const char *file) {
  json_t *e = json_object_get(o, "error");
  json_t *list = json_object_get(e, "errors");
  if (json_is_array(list) && json_array_size(list)) {
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) {
      const char *f = json_string_value(json_object_get(x, "file"));
      if (file && f && !strcmp(f, "request body")) f = file;
      const char *field = json_string_value(json_object_get(x, "field"));
      fprintf(stderr, "%s:%lld:%lld: %s%s%s\n", f ? f : "?", (long long)json_integer_value(json_object_get(x, "line")),
              (long long)json_integer_value(json_object_get(x, "column")), field && *field ? field : "",
              field && *field ? ": " : "", json_string_value(json_object_get(x, "message")));
    }
    return;
  }
  fprintf(stderr, "herd: %s\n", json_string_value(json_object_get(e, "message")));
}

static char *read_all(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    fprintf(stderr, "herd: cannot read %s: %s\n", path, strerror(errno));
    return NULL;
  }
  struct buf b = {0};
  char tmp[8192];
  size_t n;
  /* No more than a config file may hold: /dev/zero or a runaway pipe end here. (Between
   * that and the request limit the daemon's own 413 says what is wrong.) */
  while (b.len <= CFG_FILE_MAX && (n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
  if (f != stdin) fclose(f);
  if (b.len > CFG_FILE_MAX) {
    fprintf(stderr, "herd: %s is larger than %d MiB; a request may carry %d bytes\n", path, CFG_FILE_MAX >> 20,
            CTL_MAX_BODY);
    buf_free(&b);
    return NULL;
  }
  if (!b.data) buf_append(&b, "", 0);
  *len = b.len;
  return b.data;
}

/* ---- status ---- */

static void print_table(struct cli *cli, json_t *services) {
  size_t n = json_array_size(services), i;
  struct status_row *rows = xcalloc(n + 1, sizeof *rows);
  json_t *s;
  json_array_foreach(services, i, s) {
    struct status_row *r = &rows[i];
    r->name = json_string_value(json_object_get(s, "name"));
    r->state = json_string_value(json_object_get(s, "state"));
    r->pid = (int)json_integer_value(json_object_get(s, "pid"));
    r->job_id = (long long)json_integer_value(json_object_get(json_object_get(s, "slurm"), "job_id"));
    json_t *u = json_object_get(s, "uptime");
    r->uptime = json_is_number(u) ? json_number_value(u) : -1;
    r->restarts = (unsigned)json_integer_value(json_object_get(s, "restarts"));
    r->last_error = json_string_value(json_object_get(s, "last_error"));
    r->reason = json_string_value(json_object_get(s, "reason"));
    json_t *last = json_object_get(json_object_get(s, "check"), "last");
    r->check_ok = json_is_boolean(json_object_get(last, "ok")) ? json_is_true(json_object_get(last, "ok")) : -1;
    r->check_msg = json_string_value(json_object_get(last, "message"));
    r->notify_status = json_string_value(json_object_get(s, "notify_status"));
  }
  struct buf out = {0};
  status_table(&out, rows, n, cli->color);
  fwrite(out.data, 1, out.len, stdout);
  buf_free(&out);
  free(rows);
}

static int stream(struct cli *cli, enum cmd_id id, const char *name, const char *query, http_data_cb cb, void *arg);

/* Print the table as it arrives, counting its lines (the header is one). */
static void table_out(void *arg, const char *data, size_t n) {
  for (size_t i = 0; i < n; i++) *(size_t *)arg += data[i] == '\n';
  fwrite(data, 1, n, stdout);
}

/* herd status --watch: the table again at every state change, driven by the daemon's event
 * stream (GET /v1/events?follow=1). Nothing is polled: between changes the CLI sleeps in
 * read() on the stream. Events that arrive while a table is fetched are read together
 * afterwards, so a burst costs one redraw, not one per event. */
struct watch {
  struct cli *cli;
  char *table_target; /* GET /v1/services?...format=table */
  const char *pattern;
  struct buf line;
  unsigned redraws;
  int rc;
};

static void watch_draw(struct watch *w) {
  struct http_resp r;
  int rc = http_request(w->cli->socket, "GET", w->table_target, NULL, 0, &r, NULL, NULL);
  if (rc < 0 || r.status != 200) {
    w->rc = rc < 0 ? HERD_EXIT_NO_DAEMON : HERD_EXIT_FAIL;
    http_resp_free(&r);
    return;
  }
  time_t now = time(NULL);
  struct tm tm;
  char tbuf[32];
  localtime_r(&now, &tm);
  strftime(tbuf, sizeof tbuf, "%H:%M:%S", &tm);
  struct buf out = {0};
  /* On a terminal, home and clear; elsewhere (a pipe, a log) one table after another. */
  if (w->cli->tty) buf_lit(&out, "\033[H\033[2J");
  buf_printf(&out, "herd status --watch%s%s  (redrawn at each state change; %s)\n\n", w->pattern ? " " : "",
             w->pattern ? w->pattern : "", tbuf);
  buf_append(&out, r.body.data ? r.body.data : "", r.body.len);
  if (!w->cli->tty) buf_lit(&out, "\n");
  fwrite(out.data, 1, out.len, stdout);
  fflush(stdout);
  buf_free(&out);
  http_resp_free(&r);
  w->redraws++;
}

static void watch_events(void *arg, const char *data, size_t n) {
  struct watch *w = arg;
  buf_append(&w->line, data, n);
  bool changed = false;
  char *start = w->line.data, *nl;
  while ((nl = memchr(start, '\n', w->line.len - (size_t)(start - w->line.data)))) {
    *nl = '\0';
    json_t *o = json_loads(start, 0, NULL);
    const char *svc = json_string_value(json_object_get(o, "service"));
    if (svc && (!w->pattern || glob_match(w->pattern, svc))) changed = true;
    json_decref(o);
    start = nl + 1;
  }
  size_t rest = w->line.len - (size_t)(start - w->line.data);
  memmove(w->line.data, start, rest);
  w->line.len = rest;
  if (changed && w->rc == HERD_EXIT_OK) watch_draw(w);
}

static int status_watch(struct cli *cli, const char *query, const char *pattern) {
  /* The newest event first, then the table, then the stream from that event on: a change
   * between the table and the stream's start is not missed. */
  struct http_resp r;
  int rc = http_request(cli->socket, "GET", "/v1/events?limit=1", NULL, 0, &r, NULL, NULL);
  if (rc < 0) {
    no_daemon(cli, rc);
    http_resp_free(&r);
    return HERD_EXIT_NO_DAEMON;
  }
  long long since = 0;
  json_t *last =
      r.status == 200 && r.body.len ? json_loadb(r.body.data, r.body.len, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
  if (last) since = json_integer_value(json_object_get(last, "id"));
  json_decref(last);
  http_resp_free(&r);
  struct watch w = {.cli = cli, .pattern = pattern, .rc = HERD_EXIT_OK};
  w.table_target = xasprintf("%s?%s", cmd_table[CMD_STATUS].route, query);
  watch_draw(&w);
  char q[64];
  snprintf(q, sizeof q, "since=%lld&follow=1", since);
  int code = w.rc == HERD_EXIT_OK ? stream(cli, CMD_EVENTS, NULL, q, watch_events, &w) : w.rc;
  if (code == HERD_EXIT_OK) code = w.rc;
  if (code == HERD_EXIT_OK) { /* the stream ended: the daemon went away */
    fprintf(stderr, "herd: the daemon closed the event stream\n");
    code = HERD_EXIT_NO_DAEMON;
  }
  free(w.table_target);
  buf_free(&w.line);
  return code;
}

int cli_status(struct cli *cli, int argc, char **argv) {
  bool as_json = false, watch = false;
  const char *state = NULL, *tag = NULL;
  static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                       {"state", required_argument, 0, 's'},
                                       {"tag", required_argument, 0, 't'},
                                       {"watch", no_argument, 0, 'w'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "js:t:w", opts, NULL)) != -1) {
    if (ch == 'j')
      as_json = true;
    else if (ch == 'w')
      watch = true;
    else if (ch == 's')
      state = optarg;
    else if (ch == 't')
      tag = optarg;
    else
      return HERD_EXIT_USAGE;
  }
  struct buf query = {0};
  if (!as_json) buf_printf(&query, "view=summary&");
  if (state) {
    char *e = url_encode(state);
    buf_printf(&query, "state=%s&", e);
    free(e);
  }
  if (tag) {
    char *e = url_encode(tag);
    buf_printf(&query, "tag=%s&", e);
    free(e);
  }
  int npat = argc - optind;
  if (watch && (as_json || npat > 1)) {
    fprintf(stderr, "herd: status --watch takes at most one PATTERN, and no --json\n");
    buf_free(&query);
    return HERD_EXIT_USAGE;
  }
  if (npat == 1) {
    char *e = url_encode(argv[optind]);
    buf_printf(&query, "match=%s", e);
    free(e);
  }
  if (watch) {
    buf_printf(&query, "%sformat=table%s", npat == 1 ? "&" : "", cli->color ? "&color=1" : "");
    int code = status_watch(cli, query.data, npat == 1 ? argv[optind] : NULL);
    buf_free(&query);
    return code;
  }
  if (!as_json && npat <= 1) {
    /* The daemon renders the table: no JSON to build or parse for a thousand services. */
    buf_printf(&query, "%sformat=table%s", npat == 1 ? "&" : "", cli->color ? "&color=1" : "");
    size_t lines = 0;
    int code = stream(cli, CMD_STATUS, NULL, query.data, table_out, &lines);
    buf_free(&query);
    if (code == HERD_EXIT_OK && npat && lines <= 1) {
      fprintf(stderr, "herd: no service matches\n");
      code = HERD_EXIT_FAIL;
    }
    return code;
  }
  int status, code;
  json_t *o = call(cli, CMD_STATUS, NULL, query.data, NULL, 0, &status, &code);
  buf_free(&query);
  if (!o) return code;
  if (code) {
    print_error(o, NULL);
    json_decref(o);
    return code;
  }
  json_t *list = json_object_get(o, "services");
  if (npat > 1) { /* several patterns: filter here */
    json_t *keep = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s) {
      for (int k = optind; k < argc; k++)
        if (glob_match(argv[k], json_string_value(json_object_get(s, "name")))) {
          json_array_append(keep, s);
          break;
        }
    }
    list = keep;
  } else {
    json_incref(list);
  }
  if (as_json) {
    char *s = json_dumps(list, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
  } else {
    print_table(cli, list);
  }
  int rc = (npat > 0 && json_array_size(list) == 0) ? HERD_EXIT_FAIL : HERD_EXIT_OK;
  if (rc) fprintf(stderr, "herd: no service matches\n");
  json_decref(list);
  json_decref(o);
  return rc;
}

int cli_show(struct cli *cli, int argc, char **argv) {
  if (argc != 2) return HERD_EXIT_USAGE;
  int status, code;
  json_t *o = call(cli, CMD_SHOW, argv[1], NULL, NULL, 0, &status, &code);
  if (!o) return code;
  if (code)
    print_error(o, NULL);
  else {
    char *s = json_dumps(json_object_get(o, "service"), JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
  }
  json_decref(o);
  return code;
}

int cli_add(struct cli *cli, int argc, char **argv) {
  if (argc != 2) return HERD_EXIT_USAGE;
  size_t len;
  char *body = read_all(argv[1], &len);
  if (!body) return HERD_EXIT_FAIL;
  int status, code;
  json_t *o = call(cli, CMD_ADD, NULL, NULL, body, len, &status, &code);
  free(body);
  if (!o) return code;
  if (code)
    print_error(o, argv[1]);
  else {
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(o, "services"), i, s)
        printf("added %s (%s)\n", json_string_value(json_object_get(s, "name")),
               json_string_value(json_object_get(s, "state")));
  }
  json_decref(o);
  return code;
}

int cli_replace(struct cli *cli, int argc, char **argv) {
  if (argc != 3) return HERD_EXIT_USAGE;
  size_t len;
  char *body = read_all(argv[2], &len);
  if (!body) return HERD_EXIT_FAIL;
  int status, code;
  json_t *o = call(cli, CMD_REPLACE, argv[1], NULL, body, len, &status, &code);
  free(body);
  if (!o) return code;
  if (code)
    print_error(o, argv[2]);
  else
    printf("%s %s\n", argv[1], json_is_true(json_object_get(o, "changed")) ? "replaced" : "unchanged");
  json_decref(o);
  return code;
}

int cli_rm(struct cli *cli, int argc, char **argv) {
  if (argc < 2) return HERD_EXIT_USAGE;
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    int status, code;
    json_t *o = call(cli, CMD_RM, argv[i], NULL, NULL, 0, &status, &code);
    if (!o) return code;
    if (code)
      print_error(o, NULL), rc = code;
    else
      printf("removed %s\n", argv[i]);
    json_decref(o);
  }
  return rc;
}

/* ---- start / stop / restart ---- */

/* Expand names and glob patterns into service names. Returns NULL after printing why. */
static json_t *expand(struct cli *cli, int argc, char **argv, int *code) {
  json_t *names = json_array();
  for (int i = 0; i < argc; i++) {
    if (!strpbrk(argv[i], "*?[")) {
      json_array_append_new(names, json_string(argv[i]));
      continue;
    }
    char *e = url_encode(argv[i]);
    char *q = xasprintf("match=%s", e);
    free(e);
    int status;
    json_t *o = call(cli, CMD_STATUS, NULL, q, NULL, 0, &status, code);
    free(q);
    if (!o || *code) {
      if (o) print_error(o, NULL);
      json_decref(o);
      json_decref(names);
      return NULL;
    }
    size_t k;
    json_t *s;
    json_t *list = json_object_get(o, "services");
    if (json_array_size(list) == 0) fprintf(stderr, "herd: no service matches %s\n", argv[i]);
    json_array_foreach(list, k, s) json_array_append(names, json_object_get(s, "name"));
    json_decref(o);
  }
  return names;
}

/* start, stop or restart (id), then with --wait, wait until each is `until`. */
static int act(struct cli *cli, int argc, char **argv, enum cmd_id id, const char *until) {
  bool wait = false;
  double timeout = 60;
  const char *delay = NULL;
  static const struct option opts[] = {{"wait", no_argument, 0, 'w'},
                                       {"timeout", required_argument, 0, 't'},
                                       {"delay", required_argument, 0, 'd'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "wt:d:", opts, NULL)) != -1) {
    if (ch == 'd') {
      double secs;
      if (id != CMD_STOP || duration_parse(optarg, &secs) < 0) {
        fprintf(stderr, "herd: --delay takes a duration, with stop only\n");
        return HERD_EXIT_USAGE;
      }
      delay = optarg;
    } else if (ch == 'w')
      wait = true;
    else if (ch == 't') {
      if (duration_parse(optarg, &timeout) < 0) {
        fprintf(stderr, "herd: --timeout %s is not a duration\n", optarg);
        return HERD_EXIT_USAGE;
      }
      wait = true;
    } else
      return HERD_EXIT_USAGE;
  }
  if (optind >= argc) return HERD_EXIT_USAGE;
  int code = 0;
  json_t *names = expand(cli, argc - optind, argv + optind, &code);
  if (!names) return code ? code : HERD_EXIT_FAIL;
  if (json_array_size(names) == 0) {
    json_decref(names);
    return HERD_EXIT_FAIL;
  }
  int rc = 0;
  size_t i;
  json_t *n;
  /* Act on all first, so they proceed in parallel; then wait for each. */
  json_array_foreach(names, i, n) {
    char *q = delay ? xasprintf("delay=%s", delay) : NULL;
    int status;
    json_t *o = call(cli, id, json_string_value(n), q, NULL, 0, &status, &code);
    free(q);
    if (!o) {
      json_decref(names);
      return code;
    }
    if (code)
      print_error(o, NULL), rc = code;
    else if (delay)
      printf("%s: stopping in %s\n", json_string_value(n), delay);
    else if (!wait)
      printf("%s: %s\n", json_string_value(n),
             json_string_value(json_object_get(json_object_get(o, "service"), "state")));
    json_decref(o);
  }
  if (wait) {
    double deadline = now_mono() + timeout;
    json_array_foreach(names, i, n) {
      double left = deadline - now_mono();
      if (left < 0.001) left = 0.001;
      if (cli->tty) fprintf(stderr, "waiting for %s to be %s...\r", json_string_value(n), until);
      char *q = xasprintf("wait=%s&timeout=%.3f", until, left);
      int status;
      json_t *o = call(cli, CMD_SHOW, json_string_value(n), q, NULL, 0, &status, &code);
      free(q);
      if (!o) {
        json_decref(names);
        return code;
      }
      if (cli->tty) fprintf(stderr, "\033[K");
      json_t *svc = json_object_get(o, "service");
      if (!svc) svc = json_object_get(json_object_get(o, "error"), "service");
      const char *st = json_string_value(json_object_get(svc, "state"));
      if (status == 200) {
        printf("%s: %s\n", json_string_value(n), st ? st : "?");
      } else {
        print_error(o, NULL);
        rc = status == 504 ? HERD_EXIT_TIMEOUT : (rc ? rc : HERD_EXIT_FAIL);
      }
      json_decref(o);
    }
  }
  json_decref(names);
  return rc;
}

int cli_start(struct cli *cli, int argc, char **argv) { return act(cli, argc, argv, CMD_START, "healthy"); }
int cli_stop(struct cli *cli, int argc, char **argv) { return act(cli, argc, argv, CMD_STOP, "stopped"); }
int cli_restart(struct cli *cli, int argc, char **argv) { return act(cli, argc, argv, CMD_RESTART, "healthy"); }

/* ---- streams ---- */

static void write_out(void *arg, const char *data, size_t n) {
  fwrite(data, 1, n, stdout);
  fflush(stdout);
}

/* A request whose reply body goes to cb as it arrives (see call for the rest). */
static int stream(struct cli *cli, enum cmd_id id, const char *name, const char *query, http_data_cb cb, void *arg) {
  struct http_resp r;
  char *target = target_of(id, name, query);
  int rc = http_request(cli->socket, cmd_table[id].method, target, NULL, 0, &r, cb, arg);
  free(target);
  if (rc < 0) {
    no_daemon(cli, rc);
    http_resp_free(&r);
    return HERD_EXIT_NO_DAEMON;
  }
  int code = HERD_EXIT_OK;
  if (r.status >= 300) {
    json_t *o = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    if (o)
      print_error(o, NULL);
    else
      fprintf(stderr, "herd: HTTP %d\n", r.status);
    json_decref(o);
    code = HERD_EXIT_FAIL;
  }
  http_resp_free(&r);
  return code;
}

int cli_logs(struct cli *cli, int argc, char **argv) {
  bool follow = false, job = false;
  long n = -1, attempt = 0;
  int ch;
  optind = 1;
  static const struct option opts[] = {{"follow", no_argument, 0, 'f'},
                                       {"lines", required_argument, 0, 'n'},
                                       {"job", no_argument, 0, 'j'},
                                       {"attempt", required_argument, 0, 'a'},
                                       {0, 0, 0, 0}};
  while ((ch = getopt_long(argc, argv, "fn:ja:", opts, NULL)) != -1) {
    if (ch == 'a') {
      char *end;
      attempt = strtol(optarg, &end, 10);
      if (!*optarg || *end || attempt < 1) {
        fprintf(stderr, "herd: --attempt takes an attempt number, 1 or more\n");
        return HERD_EXIT_USAGE;
      }
    } else if (ch == 'j')
      job = true;
    else if (ch == 'f')
      follow = true;
    else if (ch == 'n') {
      char *end;
      n = strtol(optarg, &end, 10);
      if (!*optarg || *end || n < 0) {
        fprintf(stderr, "herd: -n takes a whole number of lines, 0 or more\n");
        return HERD_EXIT_USAGE;
      }
    } else
      return HERD_EXIT_USAGE;
  }
  if (optind != argc - 1) return HERD_EXIT_USAGE;
  struct buf q = {0};
  if (n >= 0) buf_printf(&q, "tail=%ld&", n);
  if (follow) buf_printf(&q, "follow=1&");
  if (job) buf_printf(&q, "job=1&");
  if (attempt) buf_printf(&q, "attempt=%ld", attempt);
  int rc = stream(cli, CMD_LOGS, argv[optind], q.data, write_out, NULL);
  buf_free(&q);
  return rc;
}

struct ev_printer {
  bool json;
  struct buf line;
};

static void print_events(void *arg, const char *data, size_t n) {
  struct ev_printer *p = arg;
  buf_append(&p->line, data, n);
  char *start = p->line.data, *nl;
  while ((nl = memchr(start, '\n', p->line.len - (size_t)(start - p->line.data)))) {
    *nl = '\0';
    if (p->json) {
      printf("%s\n", start);
    } else {
      json_t *o = json_loads(start, 0, NULL);
      if (o) {
        double ts = json_number_value(json_object_get(o, "time"));
        time_t t = (time_t)ts;
        struct tm tm;
        localtime_r(&t, &tm);
        char tbuf[32];
        strftime(tbuf, sizeof tbuf, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%6lld %s.%03d %s %s -> %s: %s\n", (long long)json_integer_value(json_object_get(o, "id")), tbuf,
               (int)(fmod(ts, 1.0) * 1000), json_string_value(json_object_get(o, "service")),
               json_string_value(json_object_get(o, "from")), json_string_value(json_object_get(o, "to")),
               json_string_value(json_object_get(o, "reason")));
        json_decref(o);
      }
    }
    start = nl + 1;
  }
  size_t rest = p->line.len - (size_t)(start - p->line.data);
  memmove(p->line.data, start, rest);
  p->line.len = rest;
  fflush(stdout);
}

int cli_events(struct cli *cli, int argc, char **argv) {
  bool follow = false;
  struct ev_printer p = {0};
  const char *since = NULL, *svc = NULL;
  int ch;
  optind = 1;
  static const struct option opts[] = {{"follow", no_argument, 0, 'f'},
                                       {"since", required_argument, 0, 's'},
                                       {"service", required_argument, 0, 'S'},
                                       {"json", no_argument, 0, 'j'},
                                       {0, 0, 0, 0}};
  while ((ch = getopt_long(argc, argv, "fs:S:j", opts, NULL)) != -1) {
    if (ch == 'f')
      follow = true;
    else if (ch == 's')
      since = optarg;
    else if (ch == 'S')
      svc = optarg;
    else if (ch == 'j')
      p.json = true;
    else
      return HERD_EXIT_USAGE;
  }
  struct buf q = {0};
  if (since) buf_printf(&q, "since=%s&", since);
  if (svc) buf_printf(&q, "service=%s&", svc);
  if (follow) buf_printf(&q, "follow=1");
  int rc = stream(cli, CMD_EVENTS, NULL, q.data, print_events, &p);
  buf_free(&q);
  buf_free(&p.line);
  return rc;
}

/* ---- daemon-wide ---- */

int cli_reload(struct cli *cli, int argc, char **argv) {
  int status, code;
  json_t *o = call(cli, CMD_RELOAD, NULL, NULL, "", 0, &status, &code);
  if (!o) return code;
  if (code)
    print_error(o, NULL);
  else
    printf("reloaded: %zu added, %zu changed, %zu removed, %lld unchanged\n",
           json_array_size(json_object_get(o, "added")), json_array_size(json_object_get(o, "changed")),
           json_array_size(json_object_get(o, "removed")),
           (long long)json_integer_value(json_object_get(o, "unchanged")));
  json_decref(o);
  return code;
}

static int print_get(struct cli *cli, enum cmd_id id) {
  int status, code;
  json_t *o = call(cli, id, NULL, NULL, NULL, 0, &status, &code);
  if (!o) return code;
  char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
  printf("%s\n", s);
  free(s);
  json_decref(o);
  return code;
}

int cli_info(struct cli *cli, int argc, char **argv) { return print_get(cli, CMD_INFO); }
int cli_clusters(struct cli *cli, int argc, char **argv) { return print_get(cli, CMD_CLUSTERS); }

int cli_hosts(struct cli *cli, int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--json")) return print_get(cli, CMD_HOSTS);
  if (argc > 1) return HERD_EXIT_USAGE;
  int status, code;
  json_t *o = call(cli, CMD_HOSTS, NULL, NULL, NULL, 0, &status, &code);
  if (!o) return code;
  if (code) {
    print_error(o, NULL);
    json_decref(o);
    return code;
  }
  json_t *a = json_object_get(o, "hosts");
  if (!json_array_size(a))
    printf("no ssh hosts are configured\n");
  else
    printf("%-16s %-11s %-8s %-9s %-10s %s\n", "HOST", "STATE", "PID", "FORWARDS", "RECONNECTS", "REASON");
  size_t i;
  json_t *h;
  json_array_foreach(a, i, h) {
    json_t *fw = json_object_get(h, "forwards");
    size_t up = 0, j;
    json_t *f;
    json_array_foreach(fw, j, f) up += !strcmp(json_string_value(json_object_get(f, "state")) ?: "", "up");
    char pid[16] = "-", fwd[24];
    if (json_is_integer(json_object_get(h, "pid")))
      snprintf(pid, sizeof pid, "%lld", (long long)json_integer_value(json_object_get(h, "pid")));
    snprintf(fwd, sizeof fwd, "%zu/%zu", up, json_array_size(fw));
    printf("%-16s %-11s %-8s %-9s %-10lld %s\n", json_string_value(json_object_get(h, "name")),
           json_string_value(json_object_get(h, "state")), pid, fwd,
           (long long)json_integer_value(json_object_get(h, "reconnects")),
           json_string_value(json_object_get(h, "reason")));
  }
  json_decref(o);
  return 0;
}

int cli_shutdown(struct cli *cli, int argc, char **argv) {
  bool leave = argc == 2 && !strcmp(argv[1], "--leave-running");
  if (argc > 1 && !leave) return HERD_EXIT_USAGE;
  int status, code;
  json_t *o = call(cli, CMD_SHUTDOWN, NULL, leave ? "leave_running=1" : NULL, "", 0, &status, &code);
  if (!o) return code;
  if (code)
    print_error(o, NULL);
  else if (leave)
    printf("daemon is exiting and leaving its services running\n");
  else
    printf("daemon is stopping every service and exiting\n");
  json_decref(o);
  return code;
}

int cli_help(struct cli *cli, int argc, char **argv) {
  if (argc > 1) {
    const struct cmd_entry *e = cmd_find(argv[1]);
    if (!e) {
      fprintf(stderr, "herd: no command \"%s\"\n", argv[1]);
      return HERD_EXIT_USAGE;
    }
    cmd_usage(e, stdout);
    printf("  %s\n", e->summary);
    if (e->route) printf("  API: %s %s\n", e->method, e->route);
    return 0;
  }
  printf("herd %s: a supervisor for long-lived services\n\n"
         "usage: herd [--socket PATH] [--state-dir DIR] COMMAND [ARGS]\n\ncommands:\n",
         HERD_VERSION);
  for (size_t i = 0; i < cmd_count; i++)
    if (cmd_table[i].name) printf("  %-9s %s\n", cmd_table[i].name, cmd_table[i].summary);
  printf("\nThe socket is --socket, else $HERD_SOCKET, else <state-dir>/herd.sock; the state dir is\n"
         "--state-dir, else $HERD_STATE_DIR, else %s. `herd help CMD` shows a command's usage.\n",
         cmd_default_state_dir());
  return 0;
}

int cli_main(const struct cmd_globals *g, int argc, char **argv) {
  struct cli cli = {.socket = g->socket, .state_dir = g->state_dir, .tty = isatty(STDOUT_FILENO)};
  const char *nc = getenv("NO_COLOR");
  cli.color = cli.tty && !(nc && *nc);
  if (argc < 1) {
    cli_help(&cli, 0, NULL);
    return HERD_EXIT_USAGE;
  }
  const struct cmd_entry *e = cmd_find(argv[0]);
  if (!e) {
    fprintf(stderr, "herd: unknown command \"%s\" (see herd help)\n", argv[0]);
    return HERD_EXIT_USAGE;
  }
  assert(e->cli); /* `daemon`, the one command without, is main()'s */
  int rc = e->cli(&cli, argc, argv);
  if (rc == HERD_EXIT_USAGE) cmd_usage(e, stderr);
  return rc;
}

/* ---- jobs ---- */

/* Patterns as one query value: globs joined by commas (no name has one), percent-encoded. */
static char *patterns_query(int argc, char **argv) {
  struct buf b = {0};
  for (int i = 0; i < argc; i++) {
    if (i) buf_lit(&b, ",");
    buf_printf(&b, "%s", argv[i]);
  }
  if (!b.data) return NULL;
  char *e = url_encode(b.data);
  buf_free(&b);
  return e;
}

/* The exit code a finished job stands for: its own code, 128+signal, 124 for a timeout (as
 * timeout(1)), 1 otherwise (stopped, could not start). */
static int job_exit_code(json_t *svc) {
  const char *st = json_string_value(json_object_get(svc, "state"));
  json_t *e = json_object_get(svc, "last_exit");
  if (st && !strcmp(st, "COMPLETED")) return 0;
  if (st && !strcmp(st, "TIMEOUT")) return 124;
  if (st && !strcmp(st, "FAILED") && json_is_object(e)) {
    json_t *code = json_object_get(e, "code"), *sig = json_object_get(e, "signal");
    if (json_is_integer(sig)) return 128 + (int)json_integer_value(sig);
    if (json_is_integer(code) && json_integer_value(code) > 0) return (int)(json_integer_value(code) & 255);
  }
  return 1;
}

struct waitp {
  struct cli *cli;
  bool quiet, shown;
  struct buf line;
  double t_first, n_first; /* the first line's elapsed time and finished count: the rate's base */
  bool have_first;
  json_t *last;
};

static void fmt_secs(char *buf, size_t len, double s) {
  if (s < 0 || !isfinite(s))
    snprintf(buf, len, "?");
  else if (s < 90)
    snprintf(buf, len, "%.0fs", s);
  else if (s < 5400)
    snprintf(buf, len, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
  else
    snprintf(buf, len, "%.0fh%02.0fm", floor(s / 3600), fmod(s / 60, 60));
}

static void wait_line(struct waitp *w, json_t *o) {
  json_decref(w->last);
  w->last = json_incref(o);
  if (w->quiet || !w->cli->tty) return;
  double done = (double)json_integer_value(json_object_get(o, "done"));
  double failed = (double)json_integer_value(json_object_get(o, "failed"));
  double running = (double)json_integer_value(json_object_get(o, "running"));
  double queued = (double)json_integer_value(json_object_get(o, "queued"));
  double t = json_real_value(json_object_get(o, "elapsed"));
  if (!w->have_first) {
    w->have_first = true;
    w->t_first = t;
    w->n_first = done + failed;
  }
  double dt = t - w->t_first, dn = done + failed - w->n_first;
  double rate = dt > 0.2 && dn > 0 ? dn / dt : 0;
  char eta[32] = "?";
  if (rate > 0) fmt_secs(eta, sizeof eta, (running + queued) / rate);
  const char *g = w->cli->color ? "\033[32m" : "", *r = w->cli->color ? "\033[31m" : "",
             *z = w->cli->color ? "\033[0m" : "";
  printf("\r\033[Kdone %s%.0f%s  failed %s%.0f%s  running %.0f  queued %.0f  |  %.1f jobs/s  ETA %s", g, done, z,
         failed > 0 ? r : "", failed, failed > 0 ? z : "", running, queued, rate, eta);
  fflush(stdout);
  w->shown = true;
}

static void wait_data(void *arg, const char *data, size_t n) {
  struct waitp *w = arg;
  buf_append(&w->line, data, n);
  char *start = w->line.data, *nl;
  while ((nl = memchr(start, '\n', w->line.len - (size_t)(start - w->line.data)))) {
    json_t *o = json_loadb(start, (size_t)(nl - start), 0, NULL);
    if (json_is_object(o)) wait_line(w, o);
    json_decref(o);
    start = nl + 1;
  }
  size_t rest = w->line.len - (size_t)(start - w->line.data);
  memmove(w->line.data, start, rest);
  w->line.len = rest;
}

/* Wait for the jobs matching `q` (an encoded match value); prints the summary unless
 * quiet. Returns the stream's exit code; *last gets the final line (caller frees). */
static int wait_jobs(struct cli *cli, const char *q, bool quiet, json_t **last) {
  struct waitp w = {.cli = cli, .quiet = quiet};
  char *query = xasprintf("match=%s", q);
  int rc = stream(cli, CMD_WAIT, NULL, query, wait_data, &w);
  free(query);
  buf_free(&w.line);
  if (w.shown) printf("\n");
  *last = w.last;
  if (rc != HERD_EXIT_OK) return rc;
  if (!w.last || !json_is_true(json_object_get(w.last, "finished"))) {
    fprintf(stderr, "herd: the daemon ended the wait before the jobs finished\n");
    return HERD_EXIT_FAIL;
  }
  return HERD_EXIT_OK;
}

int cli_wait(struct cli *cli, int argc, char **argv) {
  bool quiet = false;
  int ch;
  optind = 1;
  static const struct option opts[] = {{"quiet", no_argument, 0, 'q'}, {0, 0, 0, 0}};
  while ((ch = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
    if (ch == 'q')
      quiet = true;
    else
      return HERD_EXIT_USAGE;
  }
  if (optind >= argc) return HERD_EXIT_USAGE;
  char *q = patterns_query(argc - optind, argv + optind);
  json_t *last = NULL;
  int rc = wait_jobs(cli, q, quiet, &last);
  free(q);
  if (rc != HERD_EXIT_OK) {
    json_decref(last);
    return rc;
  }
  long long done = json_integer_value(json_object_get(last, "done"));
  long long failed = json_integer_value(json_object_get(last, "failed"));
  char took[32];
  fmt_secs(took, sizeof took, json_real_value(json_object_get(last, "elapsed")));
  if (!quiet) {
    printf("%lld job%s: %lld done, %lld failed (waited %s)\n", done + failed, done + failed == 1 ? "" : "s", done,
           failed, took);
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(last, "failed_jobs"), i, f) {
      printf("  %-24s %-9s %s\n", json_string_value(json_object_get(f, "name")),
             json_string_value(json_object_get(f, "state")), json_string_value(json_object_get(f, "reason")));
    }
    if (failed > (long long)json_array_size(json_object_get(last, "failed_jobs")))
      printf("  ... (herd jobs --state FAILED shows them all)\n");
  }
  json_decref(last);
  return failed ? HERD_EXIT_FAIL : HERD_EXIT_OK;
}

int cli_run(struct cli *cli, int argc, char **argv) {
  json_t *body = json_object(), *tags = json_array();
  bool wait = false;
  int ch, code = HERD_EXIT_USAGE;
  optind = 1;
  static const struct option opts[] = {{"name", required_argument, 0, 'N'},     {"queue", required_argument, 0, 'q'},
                                       {"priority", required_argument, 0, 'p'}, {"retries", required_argument, 0, 'r'},
                                       {"timeout", required_argument, 0, 't'},  {"tag", required_argument, 0, 'T'},
                                       {"wait", no_argument, 0, 'w'},           {0, 0, 0, 0}};
  while ((ch = getopt_long(argc, argv, "+N:q:p:r:t:T:w", opts, NULL)) != -1) {
    char *end;
    long v;
    switch (ch) {
    case 'N': json_object_set_new(body, "name", json_string(optarg)); break;
    case 'q': json_object_set_new(body, "queue", json_string(optarg)); break;
    case 'p':
    case 'r':
      v = strtol(optarg, &end, 10);
      if (!*optarg || *end) {
        fprintf(stderr, "herd: --%s takes a whole number\n", ch == 'p' ? "priority" : "retries");
        goto out;
      }
      json_object_set_new(body, ch == 'p' ? "priority" : "retries", json_integer(v));
      break;
    case 't': json_object_set_new(body, "timeout", json_string(optarg)); break;
    case 'T': json_array_append_new(tags, json_string(optarg)); break;
    case 'w': wait = true; break;
    default: goto out;
    }
  }
  if (optind >= argc) goto out;
  json_t *cmd = json_array();
  for (int i = optind; i < argc; i++) json_array_append_new(cmd, json_string(argv[i]));
  json_object_set_new(body, "command", cmd);
  if (json_array_size(tags)) json_object_set(body, "tags", tags);
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd)) json_object_set_new(body, "cwd", json_string(cwd)); /* where it was asked for */
  char *text = json_dumps(body, JSON_COMPACT);
  int status = 0;
  json_t *o = call(cli, CMD_RUN, NULL, NULL, text, strlen(text), &status, &code);
  free(text);
  if (!o) goto out;
  if (status != 201) {
    print_error(o, "herd run");
    json_decref(o);
    code = HERD_EXIT_FAIL;
    goto out;
  }
  const char *name = json_string_value(json_object_get(json_object_get(o, "job"), "name"));
  char *nm = xstrdup(name ? name : "");
  json_decref(o);
  printf("%s\n", nm);
  fflush(stdout);
  code = HERD_EXIT_OK;
  if (wait) {
    char *q = url_encode(nm);
    json_t *last = NULL;
    code = wait_jobs(cli, q, true, &last);
    free(q);
    json_decref(last);
    if (code == HERD_EXIT_OK) {
      json_t *svc = call(cli, CMD_SHOW, nm, NULL, NULL, 0, &status, &code);
      if (svc && status == 200) code = job_exit_code(json_object_get(svc, "service"));
      json_decref(svc);
    }
  }
  free(nm);
out:
  json_decref(tags);
  json_decref(body);
  return code;
}

int cli_jobs(struct cli *cli, int argc, char **argv) {
  const char *state = NULL, *limit = NULL, *offset = NULL, *after = NULL;
  bool as_json = false;
  int ch;
  optind = 1;
  static const struct option opts[] = {{"state", required_argument, 0, 's'},  {"limit", required_argument, 0, 'l'},
                                       {"offset", required_argument, 0, 'o'}, {"after", required_argument, 0, 'a'},
                                       {"json", no_argument, 0, 'j'},         {0, 0, 0, 0}};
  while ((ch = getopt_long(argc, argv, "s:l:o:a:j", opts, NULL)) != -1) {
    if (ch == 's')
      state = optarg;
    else if (ch == 'l')
      limit = optarg;
    else if (ch == 'o')
      offset = optarg;
    else if (ch == 'a')
      after = optarg;
    else if (ch == 'j')
      as_json = true;
    else
      return HERD_EXIT_USAGE;
  }
  struct buf q = {0};
  char *m = optind < argc ? patterns_query(argc - optind, argv + optind) : NULL;
  if (m) buf_printf(&q, "match=%s&", m);
  free(m);
  if (state) {
    char *e = url_encode(state);
    buf_printf(&q, "state=%s&", e);
    free(e);
  }
  if (limit) buf_printf(&q, "limit=%s&", limit);
  if (offset) buf_printf(&q, "offset=%s&", offset);
  if (after) {
    char *e = url_encode(after);
    buf_printf(&q, "after=%s&", e);
    free(e);
  }
  int status = 0, code = 0;
  json_t *o = call(cli, CMD_JOBS, NULL, q.data, NULL, 0, &status, &code);
  buf_free(&q);
  if (!o) return code;
  if (status != 200) {
    print_error(o, NULL);
    json_decref(o);
    return HERD_EXIT_FAIL;
  }
  if (as_json) {
    char *s = json_dumps(o, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return HERD_EXIT_OK;
  }
  json_t *jobs = json_object_get(o, "jobs");
  size_t i, w = 4;
  json_t *j;
  json_array_foreach(jobs, i, j) {
    size_t l = strlen(json_string_value(json_object_get(j, "name")));
    if (l > w) w = l;
  }
  printf("%-*s  %-9s  %-7s  %-12s  %-4s  %-5s  %s\n", (int)w, "NAME", "STATE", "ATTEMPT", "QUEUE", "PRIO", "EXIT",
         "REASON");
  json_array_foreach(jobs, i, j) {
    char exitb[16] = "-", queue[64];
    json_t *ec = json_object_get(j, "exit_code"), *sig = json_object_get(j, "signal"),
           *pos = json_object_get(j, "position");
    if (json_is_integer(ec)) snprintf(exitb, sizeof exitb, "%lld", (long long)json_integer_value(ec));
    if (json_is_integer(sig)) snprintf(exitb, sizeof exitb, "sig%lld", (long long)json_integer_value(sig));
    if (json_is_integer(pos))
      snprintf(queue, sizeof queue, "%s #%lld", json_string_value(json_object_get(j, "queue")),
               (long long)json_integer_value(pos));
    else
      snprintf(queue, sizeof queue, "%s", json_string_value(json_object_get(j, "queue")));
    printf("%-*s  %-9s  %-7lld  %-12s  %-4lld  %-5s  %s\n", (int)w, json_string_value(json_object_get(j, "name")),
           json_string_value(json_object_get(j, "state")), (long long)json_integer_value(json_object_get(j, "attempt")),
           queue, (long long)json_integer_value(json_object_get(j, "priority")), exitb,
           json_string_value(json_object_get(j, "reason")));
  }
  if (json_is_true(json_object_get(o, "more")))
    fprintf(stderr, "(%lld matched; more with --offset %lld)\n",
            (long long)json_integer_value(json_object_get(o, "matched")),
            (long long)(offset ? atoll(offset) : 0) + (long long)json_array_size(jobs));
  json_decref(o);
  return HERD_EXIT_OK;
}

int cli_kill(struct cli *cli, int argc, char **argv) {
  bool failed = false;
  int ch;
  optind = 1;
  static const struct option opts[] = {{"failed", no_argument, 0, 'F'}, {0, 0, 0, 0}};
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (ch == 'F')
      failed = true;
    else
      return HERD_EXIT_USAGE;
  }
  if (optind >= argc && !failed) return HERD_EXIT_USAGE;
  struct buf q = {0};
  char *m = optind < argc ? patterns_query(argc - optind, argv + optind) : NULL;
  if (m) buf_printf(&q, "match=%s&", m);
  free(m);
  if (failed) buf_lit(&q, "failed=1");
  int status = 0, code = 0;
  json_t *o = call(cli, CMD_KILL, NULL, q.data, "", 0, &status, &code);
  buf_free(&q);
  if (!o) return code;
  if (status != 200) {
    print_error(o, NULL);
    json_decref(o);
    return HERD_EXIT_FAIL;
  }
  size_t i;
  json_t *n;
  json_array_foreach(json_object_get(o, "killed"), i, n) printf("%s\n", json_string_value(n));
  json_decref(o);
  return HERD_EXIT_OK;
}

int cli_prune(struct cli *cli, int argc, char **argv) {
  const char *older = NULL, *state = NULL;
  int ch;
  optind = 1;
  static const struct option opts[] = {
      {"older-than", required_argument, 0, 'o'}, {"state", required_argument, 0, 's'}, {0, 0, 0, 0}};
  while ((ch = getopt_long(argc, argv, "o:s:", opts, NULL)) != -1) {
    if (ch == 'o')
      older = optarg;
    else if (ch == 's')
      state = optarg;
    else
      return HERD_EXIT_USAGE;
  }
  struct buf q = {0};
  char *m = optind < argc ? patterns_query(argc - optind, argv + optind) : NULL;
  if (m) buf_printf(&q, "match=%s&", m);
  free(m);
  if (older) {
    char *e = url_encode(older);
    buf_printf(&q, "older_than=%s&", e);
    free(e);
  }
  if (state) {
    char *e = url_encode(state);
    buf_printf(&q, "state=%s&", e);
    free(e);
  }
  int status = 0, code = 0;
  json_t *o = call(cli, CMD_PRUNE, NULL, q.data, "", 0, &status, &code);
  buf_free(&q);
  if (!o) return code;
  if (status != 200) {
    print_error(o, NULL);
    json_decref(o);
    return HERD_EXIT_FAIL;
  }
  printf("pruned %lld job%s\n", (long long)json_integer_value(json_object_get(o, "pruned")),
         json_integer_value(json_object_get(o, "pruned")) == 1 ? "" : "s");
  json_decref(o);
  return HERD_EXIT_OK;
}
