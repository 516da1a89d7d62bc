/* Label values in the Prometheus text format: backslash, double quote and newline escaped,
 * everything else (UTF-8 included) as it is. No service or cluster name can hold them
 * (name_valid), but a Slurm job state comes from the cluster. */
#include "herd/metrics.h"

#include <string.h>

#include "check.h"

static void check_label(const char *in, const char *want) {
  struct buf b = {0};
  metrics_label(&b, in);
  buf_append(&b, "", 0);
  CHECK(!strcmp(b.data, want), "metrics_label(%s) = %s, want %s", in, b.data, want);
  buf_free(&b);
}

int main(void) {
  check_label("web-1", "web-1");
  check_label("", "");
  check_label("a\"b", "a\\\"b");
  check_label("a\\b", "a\\\\b");
  check_label("line\nnext", "line\\nnext");
  check_label("\\\"\n", "\\\\\\\"\\n");
  check_label("tab\there", "tab\there");
  check_label("caf\xc3\xa9", "caf\xc3\xa9");
  check_label("end\\", "end\\\\");
  printf("test_metrics: %d checks, %d failures\n", checks, failures);
  return failures != 0;
}
