/* JWTs for slurmrestd. SHA-256 and HMAC are written out here so herd needs no crypto library for the one
 * signature it makes (HS256 over a token it minted itself); nothing here is constant-time or verifies. */
#include "herd/jwt.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct sha256 {
  uint32_t h[8];
  uint8_t buf[64];
  size_t n;       /* bytes waiting in buf */
  uint64_t total; /* bytes hashed so far */
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64], v[8];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(v, h, sizeof v);
  for (int i = 0; i < 64; i++) {
    uint32_t S1 = ror(v[4], 6) ^ ror(v[4], 11) ^ ror(v[4], 25);
    uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
    uint32_t t1 = v[7] + S1 + ch + K[i] + w[i];
    uint32_t S0 = ror(v[0], 2) ^ ror(v[0], 13) ^ ror(v[0], 22);
    uint32_t maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
    memmove(v + 1, v, 7 * sizeof v[0]);
    v[4] += t1; /* v[4] now holds the old d */
    v[0] = t1 + S0 + maj;
  }
  for (int i = 0; i < 8; i++) h[i] += v[i];
}

static void sha256_init(struct sha256 *c) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, iv, sizeof iv);
  c->n = 0;
  c->total = 0;
}

static void sha256_update(struct sha256 *c, const void *data, size_t len) {
  const uint8_t *p = data;
  c->total += len;
  while (len > 0) {
    if (c->n == 0 && len >= 64) {
      sha256_block(c->h, p);
      p += 64, len -= 64;
      continue;
    }
    size_t k = 64 - c->n < len ? 64 - c->n : len;
    memcpy(c->buf + c->n, p, k);
    c->n += k, p += k, len -= k;
    if (c->n == 64) sha256_block(c->h, c->buf), c->n = 0;
  }
}

static void sha256_final(struct sha256 *c, uint8_t out[32]) {
  uint64_t bits = c->total * 8;
  uint8_t pad[72] = {0x80}; /* 0x80, zeros up to 56 mod 64, then the 64-bit big-endian bit length */
  size_t padlen = (c->n < 56 ? 56 : 120) - c->n;
  for (int i = 0; i < 8; i++) pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
  sha256_update(c, pad, padlen + 8);
  for (int i = 0; i < 32; i++) out[i] = (uint8_t)(c->h[i / 4] >> (24 - 8 * (i % 4)));
}

void jwt_sha256(const void *data, size_t len, uint8_t out[32]) {
  struct sha256 c;
  sha256_init(&c);
  sha256_update(&c, data, len);
  sha256_final(&c, out);
}

void jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[32]) {
  uint8_t k[64] = {0}, pad[64], inner[32];
  if (keylen > sizeof k)
    jwt_sha256(key, keylen, k);
  else if (keylen > 0)
    memcpy(k, key, keylen);
  struct sha256 c;
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
  sha256_init(&c);
  sha256_update(&c, pad, sizeof pad);
  sha256_update(&c, data, len);
  sha256_final(&c, inner);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
  sha256_init(&c);
  sha256_update(&c, pad, sizeof pad);
  sha256_update(&c, inner, sizeof inner);
  sha256_final(&c, out);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *jwt_b64url_encode(const void *data, size_t len) {
  const uint8_t *p = data;
  if (len > SIZE_MAX / 2) return NULL;
  char *out = malloc(len / 3 * 4 + 4 + 1), *o = out;
  if (!out) return NULL;
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = b64url[v >> 18], *o++ = b64url[v >> 12 & 63], *o++ = b64url[v >> 6 & 63], *o++ = b64url[v & 63];
  }
  if (len - i == 1) {
    *o++ = b64url[p[i] >> 2], *o++ = b64url[(p[i] & 3) << 4];
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];
    *o++ = b64url[v >> 10], *o++ = b64url[v >> 4 & 63], *o++ = b64url[(v & 15) << 2];
  }
  *o = '\0';
  return out;
}

static int b64url_val(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '-') return 62;
  if (ch == '_') return 63;
  return -1;
}

void *jwt_b64url_decode(const char *s, size_t slen, size_t *outlen) {
  size_t pad = 0;
  while (slen > 0 && s[slen - 1] == '=') slen--, pad++;
  /* Padding, when present, must complete the last group; a lone leftover char encodes no whole byte. */
  if (pad > 2 || (pad > 0 && (slen + pad) % 4 != 0) || slen % 4 == 1) return NULL;
  uint8_t *out = malloc(slen / 4 * 3 + 3 + 1), *o = out;
  if (!out) return NULL;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < slen; i++) {
    int v = b64url_val(s[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = (acc << 6 | (uint32_t)v) & 0xffffff;
    if ((bits += 6) >= 8) bits -= 8, *o++ = (uint8_t)(acc >> bits);
  }
  *o = '\0';
  *outlen = (size_t)(o - out);
  return out;
}

char *jwt_mint_hs256(const void *key, size_t keylen, const char *user, int64_t iat, int64_t exp) {
  static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  char *h = NULL, *claims = NULL, *p = NULL, *sig = NULL, *token = NULL;
  uint8_t mac[32];
  /* JSON_SORT_KEYS gives exp, iat, sun whatever the insertion order, as libjwt under scontrol does. */
  json_t *obj = json_pack("{s:I,s:I,s:s}", "exp", (json_int_t)exp, "iat", (json_int_t)iat, "sun", user);
  if (!obj || !(claims = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS))) goto out;
  if (!(h = jwt_b64url_encode(header, strlen(header))) || !(p = jwt_b64url_encode(claims, strlen(claims)))) goto out;
  size_t hl = strlen(h), pl = strlen(p);
  if (!(token = malloc(hl + 1 + pl + 1 + 43 + 1))) goto out;
  memcpy(token, h, hl);
  token[hl] = '.';
  memcpy(token + hl + 1, p, pl + 1);
  jwt_hmac_sha256(key, keylen, token, hl + 1 + pl, mac);
  if (!(sig = jwt_b64url_encode(mac, sizeof mac))) {
    free(token);
    token = NULL;
    goto out;
  }
  token[hl + 1 + pl] = '.';
  memcpy(token + hl + 1 + pl + 1, sig, strlen(sig) + 1);
out:
  json_decref(obj);
  free(claims);
  free(h);
  free(p);
  free(sig);
  return token;
}

int jwt_exp(const char *token, int64_t *exp) {
  const char *d1 = token ? strchr(token, '.') : NULL;
  const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  if (!d2 || strchr(d2 + 1, '.')) return -1; /* exactly header.payload.signature */
  size_t n;
  char *payload = jwt_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &n);
  if (!payload) return -1;
  json_t *claims = json_loadb(payload, n, 0, NULL);
  free(payload);
  json_t *e = json_object_get(claims, "exp"); /* NULL-safe; NULL unless claims is an object */
  int rc = -1;
  if (json_is_integer(e)) {
    *exp = (int64_t)json_integer_value(e);
    rc = 0;
  }
  json_decref(claims);
  return rc;
}
