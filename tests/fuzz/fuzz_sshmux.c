/*
 * What a ControlMaster answers on its control socket (sshmux.c's sshmux_parse), as a stream
 * of packets the way the client reads them: each parsed packet lies within the bytes given,
 * a refusal's reason is printable UTF-8 (it goes into JSON and the log), and a stream is
 * consumed packet by packet to its end or to the first malformed one.
 */
#include "herd/sshmux.h"

#include <jansson.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    struct sshmux_msg g;
    long k = sshmux_parse(data + off, size - off, &g);
    if (k <= 0) break;
    if ((size_t)k > size - off || k < 8) abort();
    size_t n = strnlen(g.text, sizeof g.text);
    if (n == sizeof g.text) abort(); /* NUL-terminated */
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)g.text[i] < 0x20) abort();
    json_t *j = json_string(g.text);
    if (!j) abort(); /* valid UTF-8 */
    json_decref(j);
    off += (size_t)k;
  }
  return 0;
}
