/*
 * JWTs (jwt.c): reading a token's exp (any bytes), base64url decoding and its round trip,
 * and minting with a key and user taken from the input (the user must be valid UTF-8 or
 * the mint refuses it); the token answers slurm.c takes: a token file's or a token_command's
 * output (jwt_word) and an OAuth token endpoint's JSON (jwt_from_oauth).
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
  /* Token answers: a token file's or token_command's word, an OAuth endpoint's JSON. */
  char *w = jwt_word(s);
  if (w && (!*w || strpbrk(w, " \t\r\n"))) abort();
  free(w);
  char *atok, err[256];
  int64_t expires_in;
  if (jwt_from_oauth((const char *)data, size, &atok, &expires_in, err, sizeof err) == 0) {
    for (const unsigned char *p = (const unsigned char *)atok; *p; p++)
      if (*p < 0x21 || *p > 0x7E) abort(); /* it goes into a request header */
    if (!*atok || expires_in < -1) abort();
    free(atok);
  } else if (!memchr(err, '\0', sizeof err)) {
    abort();
  }
  free(s);
  return 0;
}
