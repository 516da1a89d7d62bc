/* The command table (see cmd.h). */
#include "herd/cmd.h"
#include "herd/job.h"
#include "herd/work.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct cmd_entry cmd_table[] = {
    [CMD_DAEMON] =
        {"daemon",
         "[--config DIR] [--state-dir DIR] [--socket PATH] [--log-level L] [--log-format text|json] [--read-group G] "
         "[--leave-running] [--priority realtime|normal] [--liveness-file PATH] [--http ADDR] [--http-token-file PATH] "
         "[--finished-jobs N]",
         "run the daemon in the foreground", NULL, NULL, false, NULL,
         NULL /* main() runs it: the client never sees it */},
    [CMD_CONFIG] = {"config", "check DIR",
                    "check a config directory without a daemon: every error as file:line:col, exit 100 if any", NULL,
                    NULL, false, NULL, NULL /* main() runs it: no daemon is asked */},
    [CMD_STATUS] = {"status", "[PATTERN...] [--json] [--state S] [--tag T] [--watch]",
                    "show services (table, or the API's objects with --json; --watch: redraw at each change)", "GET",
                    "/v1/services", false, api_list, cli_status},
    [CMD_SHOW] = {"show", "NAME", "show one service as JSON", "GET", "/v1/services/{name}", false, api_get, cli_show},
    [CMD_ADD] = {"add", "FILE", "add the service(s) in a JSON file; they persist in the store", "POST", "/v1/services",
                 true, api_add, cli_add},
    [CMD_REPLACE] = {"replace", "NAME FILE", "replace a service's spec (restarts it only if the spec changed)", "PUT",
                     "/v1/services/{name}", true, api_replace, cli_replace},
    [CMD_RM] = {"rm", "NAME...", "stop and remove services added with add", "DELETE", "/v1/services/{name}", true,
                api_delete, cli_rm},
    [CMD_START] = {"start", "NAME|PATTERN... [--wait] [--timeout S]", "start services (--wait: until HEALTHY)", "POST",
                   "/v1/services/{name}/start", true, api_start, cli_start},
    [CMD_STOP] = {"stop", "NAME|PATTERN... [--wait] [--timeout S] [--delay S]",
                  "stop services (--wait: until stopped; --delay: in S, unless started again first)", "POST",
                  "/v1/services/{name}/stop", true, api_stop, cli_stop},
    [CMD_RESTART] = {"restart", "NAME|PATTERN... [--wait] [--timeout S]", "restart services (--wait: until HEALTHY)",
                     "POST", "/v1/services/{name}/restart", true, api_restart, cli_restart},
    [CMD_LOGS] = {"logs", "NAME [-f] [-n N] [--job]",
                  "print a service's log (-f: follow; --job: a Slurm job's own output)", "GET",
                  "/v1/services/{name}/logs", false, api_logs, cli_logs},
    [CMD_EVENTS] = {"events", "[-f] [--since ID] [--service NAME] [--json]", "print state changes (-f: follow)", "GET",
                    "/v1/events", false, api_events, cli_events},
    [CMD_RELOAD] = {"reload", "", "re-read the config directory", "POST", "/v1/reload", true, api_reload, cli_reload},
    [CMD_INFO] = {"info", "", "show the daemon's version, uptime and counts by state", "GET", "/v1/daemon", false,
                  api_info, cli_info},
    [CMD_LAG] = {NULL, NULL, "measure the loop's lag for ?seconds=S (default 5): a 1 ms repeating timer's lateness",
                 "GET", "/v1/daemon/lag", false, api_lag, NULL},
    [CMD_METRICS] = {NULL, NULL, "Prometheus metrics (text exposition format 0.0.4)", "GET", "/metrics", false,
                     api_metrics, NULL},
    [CMD_HEALTH] = {NULL, NULL, "200 while the loop turns and the store writes, else 503 naming why", "GET",
                    "/v1/health", false, api_health, NULL},
    [CMD_CLUSTERS] = {"clusters", "",
                      "show the Slurm clusters: API version, reachability, last error, request counters", "GET",
                      "/v1/clusters", false, api_clusters, cli_clusters},
    [CMD_HOSTS] = {"hosts", "[--json]", "show the ssh hosts: state, master pid, forwards, reconnects, last error",
                   "GET", "/v1/hosts", false, api_hosts, cli_hosts},
    [CMD_SHUTDOWN] = {"shutdown", "[--leave-running]", "stop every service and exit the daemon (or leave them running)",
                      "POST", "/v1/shutdown", true, api_shutdown, cli_shutdown},
    [CMD_HELP] = {"help", "[CMD]", "show help", NULL, NULL, false, NULL, cli_help},
    [CMD_RUN] = {"run",
                 "[--name N] [--queue Q] [--priority 1-5] [--retries K] [--timeout T] [--tag T]... [--wait] -- CMD "
                 "ARGS...",
                 "run a job: it waits its turn in its queue, runs to completion (prints its name; --wait: exits with "
                 "its code)",
                 "POST", "/v1/jobs", true, api_job_run, cli_run},
    [CMD_JOBS] = {"jobs", "[PATTERN...] [--state S] [--limit N] [--offset N | --after NAME] [--json]",
                  "show jobs (state, attempt, queue and place, exit code), oldest first, a page at a time", "GET",
                  "/v1/jobs", false, api_jobs, cli_jobs},
    [CMD_WAIT] = {"wait", "PATTERN... [--quiet]",
                  "wait until every matching job is finished (progress on a terminal); exit 1 if any failed", "GET",
                  "/v1/jobs/wait", false, api_jobs_wait, cli_wait},
    [CMD_KILL] = {"kill", "PATTERN... | --failed",
                  "stop jobs (queued, running or retrying): they end STOPPED; --failed: those retrying a failure",
                  "POST", "/v1/jobs/kill", true, api_jobs_kill, cli_kill},
    [CMD_PRUNE] = {"prune", "[PATTERN...] [--older-than D] [--state S]",
                   "forget finished jobs (their attempts and logs)", "POST", "/v1/jobs/prune", true, api_jobs_prune,
                   cli_prune},
    [CMD_WORK_DEPOSIT] = {NULL, NULL,
                          "deposit work items ({\"payload\": any, \"priority\", \"retries\", \"timeout\", "
                          "\"tags\"} or {\"items\": [...]}) in queue {name}",
                          "POST", "/v1/queues/{name}/work", true, api_work_deposit, NULL},
    [CMD_WORK_WITHDRAW] = {NULL, NULL,
                           "lease the best queued item of queue {name} (?wait=S: until one comes); {\"work\": null} if "
                           "none",
                           "POST", "/v1/queues/{name}/withdraw", true, api_work_withdraw, NULL},
    [CMD_WORK_LIST] = {NULL, NULL, "the items of queue {name} (?state=, ?limit=, ?offset=) and counts by state", "GET",
                       "/v1/queues/{name}/work", false, api_work_list, NULL},
    [CMD_WORK_PRUNE] = {NULL, NULL, "forget finished items of queue {name} (?older_than=D, ?state=success|failure)",
                        "POST", "/v1/queues/{name}/prune", true, api_work_prune, NULL},
    [CMD_WORK_GET] = {NULL, NULL, "one work item by id", "GET", "/v1/work/{name}", false, api_work_get, NULL},
    [CMD_WORK_DONE] = {NULL, NULL,
                       "report a leased item: {\"lease\", \"status\": \"success\"|\"failure\", \"result\", "
                       "\"error\"}",
                       "POST", "/v1/work/{name}/done", true, api_work_done, NULL},
};
static_assert(sizeof cmd_table / sizeof cmd_table[0] == CMD_MAX, "one entry per cmd_id");
const size_t cmd_count = CMD_MAX;

const struct cmd_entry *cmd_find(const char *name) {
  for (size_t i = 0; i < cmd_count; i++)
    if (cmd_table[i].name && !strcmp(cmd_table[i].name, name)) return &cmd_table[i];
  return NULL;
}

void cmd_path(struct buf *out, const struct cmd_entry *e, const char *name) {
  assert(e->route);
  for (const char *p = e->route; *p;) {
    if (strncmp(p, "{name}", 6)) {
      size_t n = strcspn(p + 1, "{") + 1;
      buf_append(out, p, n);
      p += n;
      continue;
    }
    assert(name);
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
      if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || strchr("-._~", *c))
        buf_append(out, (const char *)c, 1);
      else
        buf_printf(out, "%%%02X", *c);
    }
    p += 6;
  }
  if (!out->data) buf_append(out, "", 0);
}

void cmd_usage(const struct cmd_entry *e, FILE *f) { fprintf(f, "usage: herd %s %s\n", e->name, e->usage); }

const char *cmd_default_state_dir(void) {
  static char buf[4096];
  const char *e = getenv("HERD_STATE_DIR");
  if (e && *e) return e;
  if (geteuid() == 0) return "/var/lib/herd";
  const char *x = getenv("XDG_STATE_HOME");
  if (x && *x)
    snprintf(buf, sizeof buf, "%s/herd", x);
  else
    snprintf(buf, sizeof buf, "%s/.local/state/herd", getenv("HOME") ? getenv("HOME") : "/tmp");
  return buf;
}
