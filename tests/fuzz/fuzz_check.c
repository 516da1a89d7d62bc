/*
 * The HTTP check client's answer framing (check.c: check_answer_*): status, chunked and
 * length-delimited bodies, HEAD, keep-alive, an answer followed by stray bytes, an answer
 * ended by the server closing. Input: one byte of flags (bit 0: the request was HEAD, bit 1:
 * the body is kept, bit 2: the server closes after the bytes, bits 3-7: where to cut them
 * in two reads), then the bytes the server sends.
 */
#include "herd/check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t flags = data[0];
  const char *in = (const char *)data + 1;
  size_t n = size - 1;
  size_t cut = (size_t)(flags >> 3) * n / 32;
  struct buf body = {0};
  struct check_answer a;
  check_answer_begin(&a, flags & 1, flags & 2 ? &body : NULL);
  int rc = 0;
  if (cut) rc = check_answer_read(&a, in, cut);
  if (rc == 0 && n > cut) rc = check_answer_read(&a, in + cut, n - cut);
  if (rc == 0 && (flags & 4)) rc = check_answer_eof(&a);
  if (rc > 0 && (!a.complete || a.status < 0 || a.status > 999)) abort(); /* llhttp: at most 3 digits */
  if (rc < 0 && !a.error[0]) abort();                                     /* a broken one says why */
  if (body.len > CHECK_BODY_MAX || ((flags & 1) && body.len)) abort();
  buf_free(&body);
  return 0;
}
