/*
 * jpos (jpos.c): the index of where each value of a JSON text is, for error positions.
 * It is meant for text jansson accepted, but must be safe on any bytes: the first line of
 * the input is a path to look up ("services[0].name"), the rest the text.
 */
#include "herd/cfg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *nl = memchr(data, '\n', size);
  size_t plen = nl ? (size_t)(nl - (const char *)data) : 0;
  char *path = malloc(plen + 1);
  memcpy(path, data, plen);
  path[plen] = '\0';
  const char *text = nl ? nl + 1 : (const char *)data;
  size_t len = size - (size_t)(text - (const char *)data);
  struct jpos *jp = jpos_index(text, len);
  int line, col;
  for (int at_key = 0; at_key < 2; at_key++) {
    jpos_lookup(jp, path, at_key, &line, &col);
    if (line < 1 || col < 1) abort();
  }
  jpos_free(jp);
  free(path);
  return 0;
}
