/* The unit tests' checks: CHECK(cond, fmt, ...) counts a check and prints a failure with
 * its file and line; with CHECK_VERBOSE defined to 1 before this include, passes too.
 * `checks` and `failures` are for the test's summary line and exit status. */
#ifndef HERD_TEST_CHECK_H
#define HERD_TEST_CHECK_H

#include <stdio.h>

#ifndef CHECK_VERBOSE
#define CHECK_VERBOSE 0
#endif

static int failures, checks;

#define CHECK(cond, ...)                                                                                               \
  do {                                                                                                                 \
    checks++;                                                                                                          \
    int ok_ = (cond);                                                                                                  \
    if (!ok_) failures++;                                                                                              \
    if (!ok_ || CHECK_VERBOSE) {                                                                                       \
      printf("%s %s:%d: ", ok_ ? "ok  " : "FAIL", __FILE__, __LINE__);                                                 \
      printf(__VA_ARGS__);                                                                                             \
      printf("\n");                                                                                                    \
    }                                                                                                                  \
  } while (0)

#endif
