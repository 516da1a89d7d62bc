/*
 * JWTs (jwt.c): reading a token's exp (any bytes), base64url decoding and its round trip,
 * and minting with a key and user taken from the input (the user must be valid UTF-8 or
 * the mint refuses it).
 */
#include "herd/jwt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  int64_t exp = 0;
  (void)jwt_exp(s, &exp);
  size_t n;
  void *raw = jwt_b64url_decode(s, size, &n);
  if (raw) {
    /* What decodes encodes to text that decodes back to the same bytes. */
    char *again = jwt_b64url_encode(raw, n);
    size_t m;
    void *back = again ? jwt_b64url_decode(again, strlen(again), &m) : NULL;
    if (!back || m != n || memcmp(back, raw, n)) abort();
    free(back);
    free(again);
    free(raw);
  }
  /* key \0 user: mint, then read back the exp it was given */
  const char *user = memchr(s, '\0', size) ? s + strlen(s) + 1 : "";
  char *tok = jwt_mint_hs256(s, strlen(s), user, 1700000000, 1700000000 + (int64_t)size);
  if (tok) {
    if (jwt_exp(tok, &exp) != 0 || exp != 1700000000 + (int64_t)size) abort();
    free(tok);
  }
  free(s);
  return 0;
}
