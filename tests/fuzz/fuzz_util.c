/*
 * Durations and sizes (util.c): duration_parse, size_parse, signal_parse and duration_fmt;
 * utf8_sanitize, which makes any text a JSON string.
 * Whatever parses must format: duration_fmt is total over every double (NaN and infinity
 * included) and always writes a NUL-terminated string that fits.
 */
#include "herd/herd.h"

#include <jansson.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  double d;
  char out[32];
  if (duration_parse(s, &d) == 0) {
    if (!(d >= 0) || !isfinite(d)) abort(); /* a duration is a finite number of seconds */
    duration_fmt(d, out, sizeof out);
    if (strlen(out) >= sizeof out) abort();
  }
  /* Sanitized text is what jansson takes as a JSON string (replies carry such text). */
  char *t = strdup(s);
  utf8_sanitize(t);
  json_t *j = json_string(t);
  if (!j) abort();
  json_decref(j);
  free(t);
  uint64_t sz;
  (void)size_parse(s, &sz);
  (void)signal_parse(s);
  /* The raw bytes as a double too: duration_fmt takes what any caller computed. */
  if (size >= sizeof d) {
    memcpy(&d, data, sizeof d);
    duration_fmt(d, out, sizeof out);
    duration_fmt(d, out, 4); /* a short buffer truncates, never overflows */
  }
  free(s);
  return 0;
}
