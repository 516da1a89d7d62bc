/* JWTs for slurmrestd. The one signature herd makes (HS256 over a token it minted itself) comes from
 * OpenSSL's libcrypto: no crypto is written out here. Nothing here verifies a signature, so nothing needs
 * to be constant-time.
 *
 * libcrypto is dlopen()ed at the first signature, as libcurl is (src/curlx.c): linked into the binary its
 * relocations added ~3.3 ms of CPU to every CLI command (`herd --version` 4.2 -> 7.5 ms, /bin/true 3.6 ms,
 * on the 2-core test VM), for a library only a daemon with a jwt_key cluster uses. The daemon's libcurl
 * loads the same libcrypto.so.3 anyway, so it is mapped once. */
#include "herd/jwt.h"

#include <dlfcn.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static struct {
  __typeof__(HMAC) *hmac;
  __typeof__(EVP_sha256) *sha256;
} C;
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;

static void crypto_load(void) {
  /* Never dlclose()d: OpenSSL cleans up after itself at exit, and stays loaded for libcurl anyway. */
  void *so = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
  if (!so) return;
  *(void **)&C.hmac = dlsym(so, "HMAC");
  *(void **)&C.sha256 = dlsym(so, "EVP_sha256");
}

int jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[32]) {
  static const uint8_t nokey[1];
  unsigned int outlen = 0;
  pthread_once(&crypto_once, crypto_load);
  if (!C.hmac || !C.sha256 || keylen > INT_MAX) return -1;
  /* OpenSSL 3.0's HMAC() refuses a NULL key even of length 0; an empty key is a valid HMAC key. */
  if (!C.hmac(C.sha256(), keylen ? key : nokey, (int)keylen, data, len, out, &outlen) || outlen != 32) return -1;
  return 0;
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
  if (jwt_hmac_sha256(key, keylen, token, hl + 1 + pl, mac) < 0 || !(sig = jwt_b64url_encode(mac, sizeof mac))) {
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

char *jwt_word(const char *text) {
  const char *p = text;
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  if (!strncmp(p, "SLURM_JWT=", 10)) p += 10; /* scontrol token's output */
  size_t l = strcspn(p, " \r\n\t");
  return l ? strndup(p, l) : NULL;
}

int jwt_from_oauth(const char *body, size_t len, char **token, int64_t *expires_in, char *err, size_t errlen) {
  *token = NULL;
  *expires_in = -1;
  json_t *j = json_loadb(body, len, 0, NULL);
  const char *tok = json_string_value(json_object_get(j, "access_token"));
  const char *why = NULL;
  if (!tok) {
    const char *e = json_string_value(json_object_get(j, "error"));
    why = e ? e : "no access_token in the reply";
  } else {
    /* It goes into a request header as it is: a CR or LF would add headers of its own. */
    for (const unsigned char *p = (const unsigned char *)tok; *p && !why; p++)
      if (*p < 0x21 || *p > 0x7E) why = "the access_token holds a character that cannot go in an HTTP header";
    if (!*tok) why = "the access_token is empty";
  }
  if (why) {
    snprintf(err, errlen, "%s", why);
    json_decref(j);
    return -1;
  }
  if (!(*token = strdup(tok))) snprintf(err, errlen, "out of memory");
  json_t *ein = json_object_get(j, "expires_in");
  if (json_is_integer(ein) && json_integer_value(ein) >= 0) *expires_in = json_integer_value(ein);
  json_decref(j);
  return *token ? 0 : -1;
}
