/* The status table: columns widen to the longest name and to a Slurm job's "job N", and
 * the last column says why a service is where it is (its reason in PENDING, BACKOFF,
 * UNKNOWN and UNHEALTHY; a failing check while STARTING; else its last error). */
#include "herd/table.h"

#include <string.h>

#include "check.h"

int main(void) {
  const struct status_row rows[] = {
      {.name = "web", .state = "HEALTHY", .pid = 1234, .uptime = 12.5, .check_ok = 1, .check_msg = "200"},
      {.name = "batch-job",
       .state = "STARTING",
       .job_id = 123456789,
       .uptime = -1,
       .restarts = 2,
       .last_error = "exit 1",
       .check_ok = 0,
       .check_msg = "connection refused"},
      {.name = "db",
       .state = "BACKOFF",
       .uptime = -1,
       .restarts = 5,
       .last_error = "exit 1",
       .reason = "exited 1; retry in 2s",
       .check_ok = -1},
      {.name = "idle", .state = "STOPPED", .uptime = -1, .restarts = 1, .last_error = "killed by TERM", .check_ok = -1},
  };
  struct buf out = {0};
  status_table(&out, rows, 4, false);
  const char *want = "NAME       STATE       PID            UPTIME    RESTARTS  LAST-ERROR\n"
                     "web        HEALTHY     1234           12s       0         \n"
                     "batch-job  STARTING    job 123456789  -         2         check: connection refused\n"
                     "db         BACKOFF     -              -         5         exited 1; retry in 2s\n"
                     "idle       STOPPED     -              -         1         killed by TERM\n";
  CHECK(out.data && !strcmp(out.data, want), "plain table:\n%s", out.data ? out.data : "(nothing)");
  buf_free(&out);

  /* No rows: the header alone, at its narrowest. */
  status_table(&out, NULL, 0, false);
  CHECK(out.data && !strcmp(out.data, "NAME  STATE       PID       UPTIME    RESTARTS  LAST-ERROR\n"), "empty:\n%s",
        out.data ? out.data : "(nothing)");
  buf_free(&out);

  /* Colour wraps the state column only, padded inside the colour. */
  status_table(&out, rows, 1, true);
  CHECK(out.data && strstr(out.data, "\nweb   \033[32mHEALTHY   \033[0m  1234    "), "colour:\n%s",
        out.data ? out.data : "(nothing)");
  buf_free(&out);

  printf("test_table: %d checks, %d failures\n", checks, failures);
  return failures != 0;
}
