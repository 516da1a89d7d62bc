/* The command table: each cmd_id names the entry it indexes (the CLI finds its routes by
 * them), every entry is complete, and cmd_path fills in {name} as one percent-encoded
 * path segment: any name makes a valid request line, and none starts the query. */
#include "herd/cmd.h"

#include <string.h>

#include "check.h"

static void check_path(enum cmd_id id, const char *name, const char *want) {
  struct buf b = {0};
  cmd_path(&b, &cmd_table[id], name);
  CHECK(b.data && !strcmp(b.data, want), "cmd_path(%s, %s) = %s, want %s", cmd_table[id].route, name ? name : "NULL",
        b.data ? b.data : "NULL", want);
  buf_free(&b);
}

int main(void) {
  static const char *const names[CMD_MAX] = {
      [CMD_DAEMON] = "daemon", [CMD_CONFIG] = "config",     [CMD_STATUS] = "status", [CMD_SHOW] = "show",
      [CMD_ADD] = "add",       [CMD_REPLACE] = "replace",   [CMD_RM] = "rm",         [CMD_START] = "start",
      [CMD_STOP] = "stop",     [CMD_RESTART] = "restart",   [CMD_LOGS] = "logs",     [CMD_EVENTS] = "events",
      [CMD_RELOAD] = "reload", [CMD_INFO] = "info",         [CMD_LAG] = NULL,        [CMD_METRICS] = NULL,
      [CMD_HEALTH] = NULL,     [CMD_CLUSTERS] = "clusters", [CMD_HOSTS] = "hosts",   [CMD_SHUTDOWN] = "shutdown",
      [CMD_HELP] = "help",     [CMD_RUN] = "run",           [CMD_JOBS] = "jobs",     [CMD_WAIT] = "wait",
      [CMD_KILL] = "kill",     [CMD_PRUNE] = "prune"};
  CHECK(cmd_count == CMD_MAX, "cmd_count %zu", cmd_count);
  for (int i = 0; i < CMD_MAX; i++) {
    const struct cmd_entry *e = &cmd_table[i];
    CHECK(e->summary != NULL, "entry %d is filled in", i);
    if (names[i]) {
      CHECK(e->name && !strcmp(e->name, names[i]), "entry %d is %s, not %s", i, names[i], e->name ? e->name : "NULL");
      CHECK(cmd_find(names[i]) == e, "cmd_find(%s)", names[i]);
      CHECK(e->usage != NULL, "%s has a usage", names[i]);
      CHECK((e->cli != NULL) == (i != CMD_DAEMON && i != CMD_CONFIG), "%s: the client runs it (all but daemon, config)",
            names[i]);
    } else {
      CHECK(e->name == NULL, "entry %d is API-only", i);
    }
    CHECK(!e->route == !e->method && !e->route == !e->api, "entry %d: route, method and handler go together", i);
    /* All but /metrics, where a Prometheus scraper looks by default (its format is versioned
     * by its Content-Type, not by the path). */
    if (e->route && i != CMD_METRICS) CHECK(!strncmp(e->route, "/v1/", 4), "%s is under /v1/", e->route);
  }
  CHECK(cmd_table[CMD_LAG].route && !strcmp(cmd_table[CMD_LAG].route, "/v1/daemon/lag"), "the lag route");

  check_path(CMD_STATUS, NULL, "/v1/services");
  check_path(CMD_ADD, "ignored", "/v1/services");
  check_path(CMD_SHOW, "web-1", "/v1/services/web-1");
  check_path(CMD_START, "web-1", "/v1/services/web-1/start");
  check_path(CMD_STOP, "a.b_c~d-e", "/v1/services/a.b_c~d-e/stop");
  check_path(CMD_LOGS, "Web 1", "/v1/services/Web%201/logs");
  check_path(CMD_RESTART, "../x", "/v1/services/..%2Fx/restart");
  check_path(CMD_SHOW, "a?b#c%d&e", "/v1/services/a%3Fb%23c%25d%26e");
  check_path(CMD_SHOW, "w*[1]", "/v1/services/w%2A%5B1%5D");
  check_path(CMD_RM, "caf\xc3\xa9", "/v1/services/caf%C3%A9");
  check_path(CMD_SHOW, "", "/v1/services/");
  check_path(CMD_LAG, NULL, "/v1/daemon/lag");
  check_path(CMD_SHUTDOWN, NULL, "/v1/shutdown");
  check_path(CMD_METRICS, NULL, "/metrics");
  check_path(CMD_HEALTH, NULL, "/v1/health");

  /* It appends: the caller's query goes after it. */
  struct buf b = {0};
  buf_printf(&b, "GET ");
  cmd_path(&b, &cmd_table[CMD_SHOW], "db");
  buf_printf(&b, "?wait=%s", "healthy");
  CHECK(!strcmp(b.data, "GET /v1/services/db?wait=healthy"), "appended: %s", b.data);
  buf_free(&b);

  printf("test_cmd: %d checks, %d failures\n", checks, failures);
  return failures != 0;
}
