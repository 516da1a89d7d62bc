/* The command table (see cmd.h). */
#include "herd/cmd.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct cmd_entry cmd_table[] = {
    {"daemon",
     "[--config DIR] [--state-dir DIR] [--socket PATH] [--log-level L] [--log-format text|json] [--read-group G] "
     "[--leave-running] [--priority realtime|normal]",
     "run the daemon in the foreground", NULL, NULL, false, NULL, NULL /* main() runs it: the client never sees it */},
    {"status", "[PATTERN...] [--json] [--state S] [--tag T]", "show services (table, or the API's objects with --json)",
     "GET", "/v1/services", false, api_list, cli_status},
    {"show", "NAME", "show one service as JSON", "GET", "/v1/services/{name}", false, api_get, cli_show},
    {"add", "FILE", "add the service(s) in a JSON file; they persist in the store", "POST", "/v1/services", true,
     api_add, cli_add},
    {"replace", "NAME FILE", "replace a service's spec (restarts it only if the spec changed)", "PUT",
     "/v1/services/{name}", true, api_replace, cli_replace},
    {"rm", "NAME...", "stop and remove services added with add", "DELETE", "/v1/services/{name}", true, api_delete,
     cli_rm},
    {"start", "NAME|PATTERN... [--wait] [--timeout S]", "start services (--wait: until HEALTHY)", "POST",
     "/v1/services/{name}/start", true, api_start, cli_start},
    {"stop", "NAME|PATTERN... [--wait] [--timeout S] [--delay S]",
     "stop services (--wait: until stopped; --delay: in S, unless started again first)", "POST",
     "/v1/services/{name}/stop", true, api_stop, cli_stop},
    {"restart", "NAME|PATTERN... [--wait] [--timeout S]", "restart services (--wait: until HEALTHY)", "POST",
     "/v1/services/{name}/restart", true, api_restart, cli_restart},
    {"logs", "NAME [-f] [-n N] [--job]", "print a service's log (-f: follow; --job: a Slurm job's own output)", "GET",
     "/v1/services/{name}/logs", false, api_logs, cli_logs},
    {"events", "[-f] [--since ID] [--service NAME]", "print state changes (-f: follow)", "GET", "/v1/events", false,
     api_events, cli_events},
    {"reload", "", "re-read the config directory", "POST", "/v1/reload", true, api_reload, cli_reload},
    {"info", "", "show the daemon's version, uptime and counts by state", "GET", "/v1/daemon", false, api_info,
     cli_info},
    {NULL, NULL, "measure the loop's lag for ?seconds=S (default 5): a 1 ms repeating timer's lateness", "GET",
     "/v1/daemon/lag", false, api_lag, NULL},
    {"clusters", "", "show the Slurm clusters: API version, reachability, last error, request counters", "GET",
     "/v1/clusters", false, api_clusters, cli_clusters},
    {"shutdown", "[--leave-running] [--priority realtime|normal]",
     "stop every service and exit the daemon (or leave them running)", "POST", "/v1/shutdown", true, api_shutdown,
     cli_shutdown},
    {"help", "[CMD]", "show help", NULL, NULL, false, NULL, cli_help},
};
const size_t cmd_count = sizeof cmd_table / sizeof cmd_table[0];

const struct cmd_entry *cmd_find(const char *name) {
  for (size_t i = 0; i < cmd_count; i++)
    if (cmd_table[i].name && !strcmp(cmd_table[i].name, name)) return &cmd_table[i];
  return NULL;
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
