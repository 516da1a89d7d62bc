/* The status table (see table.h). */
#include "herd/table.h"

#include <stdio.h>
#include <string.h>

static const char *state_colour(const char *st) {
  if (!strcmp(st, "HEALTHY")) return "\033[32m";
  if (!strcmp(st, "FAILED") || !strcmp(st, "TIMEOUT") || !strcmp(st, "UNHEALTHY")) return "\033[31m";
  if (!strcmp(st, "STOPPED") || !strcmp(st, "COMPLETED")) return "\033[2m";
  if (!strcmp(st, "UNKNOWN")) return "\033[35m";
  return "\033[33m";
}

void status_table(struct buf *out, const struct status_row *rows, size_t n, bool colour) {
  size_t w = 4, pw = 8;
  for (size_t i = 0; i < n; i++) {
    if (strlen(rows[i].name) > w) w = strlen(rows[i].name);
    char tmp[32];
    if (rows[i].pid <= 0 && rows[i].job_id > 0 && (size_t)snprintf(tmp, sizeof tmp, "job %lld", rows[i].job_id) > pw)
      pw = strlen(tmp);
  }
  buf_printf(out, "%-*s  %-10s  %-*s  %-8s  %-8s  %s\n", (int)w, "NAME", "STATE", (int)pw, "PID", "UPTIME", "RESTARTS",
             "LAST-ERROR");
  for (size_t i = 0; i < n; i++) {
    const struct status_row *r = &rows[i];
    const char *st = r->state;
    char pid[24] = "-", up[24] = "-";
    if (r->pid > 0)
      snprintf(pid, sizeof pid, "%d", r->pid);
    else if (r->job_id > 0)
      snprintf(pid, sizeof pid, "job %lld", r->job_id); /* a Slurm service: its job instead */
    if (r->uptime >= 0) duration_fmt(r->uptime, up, sizeof up);
    /* In a state that needs explaining, say why; otherwise the last error, if any. */
    const char *why = r->last_error ? r->last_error : "";
    if (!strcmp(st, "PENDING") || !strcmp(st, "BACKOFF") || !strcmp(st, "UNKNOWN") || !strcmp(st, "UNHEALTHY"))
      why = r->reason ? r->reason : why;
    /* Running and it says how it is (STATUS=): its own words. */
    if ((!strcmp(st, "STARTING") || !strcmp(st, "HEALTHY")) && r->notify_status) why = r->notify_status;
    /* Starting and its check fails: that is the news. */
    char checkmsg[300];
    if (!strcmp(st, "STARTING") && r->check_ok == 0 && r->check_msg) {
      snprintf(checkmsg, sizeof checkmsg, "check: %s", r->check_msg);
      why = checkmsg;
    }
    buf_printf(out, "%-*s  %s%-10s%s  %-*s  %-8s  %-8u  %s\n", (int)w, r->name, colour ? state_colour(st) : "", st,
               colour ? "\033[0m" : "", (int)pw, pid, up, r->restarts, why);
  }
}
