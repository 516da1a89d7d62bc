/* JWT module: RFC 4231 HMAC-SHA256 vectors (through libcrypto), base64url round trips and rejections, a minted token
 * compared byte for byte with one made by Python's standard library, and reading `exp`. */
#include "herd/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_VERBOSE 1
#include "check.h"

static void hex(const uint8_t *d, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

/* `want` may be a prefix of the MAC's hex (RFC 4231 #5 gives only the first 128 bits). */
static void check_hmac(const char *what, const void *key, size_t keylen, const char *data, const char *want) {
  uint8_t md[32];
  char got[65] = "";
  int rc = jwt_hmac_sha256(key, keylen, data, strlen(data), md);
  if (rc == 0) hex(md, sizeof md, got);
  CHECK(rc == 0 && !strncmp(got, want, strlen(want)), "hmac-sha256 %s = %s (rc %d)", what, got, rc);
}

static void test_hmac(void) {
  uint8_t key[131];
  memset(key, 0x0b, 20);
  check_hmac("RFC 4231 #1", key, 20, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  check_hmac("RFC 4231 #2", "Jefe", 4, "what do ya want for nothing?",
             "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  char data[51];
  memset(key, 0xaa, 20);
  memset(data, 0xdd, 50), data[50] = '\0';
  check_hmac("RFC 4231 #3", key, 20, data, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  for (int i = 0; i < 25; i++) key[i] = (uint8_t)(i + 1);
  memset(data, 0xcd, 50);
  check_hmac("RFC 4231 #4", key, 25, data, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  memset(key, 0x0c, 20);
  check_hmac("RFC 4231 #5 (truncated to 128 bits)", key, 20, "Test With Truncation",
             "a3b6167473100ee06e0c796c2955552b");
  memset(key, 0xaa, 131);
  check_hmac("RFC 4231 #6 (131-byte key)", key, 131, "Test Using Larger Than Block-Size Key - Hash Key First",
             "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  check_hmac("RFC 4231 #7 (131-byte key and data)", key, 131,
             "This is a test using a larger than block-size key and a larger than block-size data. The key needs to "
             "be hashed before being used by the HMAC algorithm.",
             "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");

  /* From Python's hmac module: the empty key (OpenSSL 3.0's HMAC() refuses a NULL one), and keys either side
   * of the 64-byte block, bytes(i*7+1 & 255 for i in range(n)), over "boundary". */
  check_hmac("empty key, empty data", NULL, 0, "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  static const struct {
    size_t n;
    const char *mac;
  } edges[] = {
      {63, "f17dad1eca7c842deade32979b0c215f58523ee5c75a4880ee00ad2ca438f771"},
      {64, "e99e380e874773777f82cf60ebcacc3eec4414e192260c8ed2803a4fcdb1a3b1"},
      {65, "e5e301744da754353056a142ebdbf7501813d7e55a36e1a082d4bead910471c0"},
  };
  for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 7 + 1);
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
    char what[32];
    snprintf(what, sizeof what, "%zu-byte key", edges[i].n);
    check_hmac(what, key, edges[i].n, "boundary", edges[i].mac);
  }
}

static void check_decode(const char *in, const char *want) {
  size_t n = 12345;
  char *got = jwt_b64url_decode(in, strlen(in), &n);
  CHECK(got && n == strlen(want) && !memcmp(got, want, n) && got[n] == '\0', "decode \"%s\" to the expected %zu bytes",
        in, strlen(want));
  free(got);
}

static void check_reject(const char *in) {
  size_t n = 0;
  char *got = jwt_b64url_decode(in, strlen(in), &n);
  CHECK(got == NULL, "decode rejects \"%s\"", in);
  free(got);
}

static void test_b64url(void) {
  uint32_t x = 2463534242u; /* xorshift32: the same "random" bytes on every run */
  uint8_t data[70];
  int round_trips = 1;
  for (size_t len = 0; len <= sizeof data; len++) {
    for (size_t i = 0; i < len; i++) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      data[i] = (uint8_t)x;
    }
    char *enc = jwt_b64url_encode(data, len);
    size_t n = 0;
    uint8_t *dec = enc ? jwt_b64url_decode(enc, strlen(enc), &n) : NULL;
    int ok = enc && strlen(enc) == (len * 4 + 2) / 3 && !strpbrk(enc, "+/=") && dec && n == len &&
             (len == 0 || !memcmp(dec, data, len));
    if (!ok) printf("  round trip of %zu bytes failed: %s\n", len, enc ? enc : "(null)");
    round_trips &= ok;
    free(enc);
    free(dec);
  }
  CHECK(round_trips, "round trips of 0..70 random bytes, unpadded, no '+' '/' '='");

  char *enc = jwt_b64url_encode("\xfb\xff", 2);
  CHECK(enc && !strcmp(enc, "-_8"), "0xfb 0xff encodes as \"-_8\" (got %s)", enc ? enc : "(null)");
  free(enc);
  check_decode("-_8", "\xfb\xff");
  check_decode("", "");
  check_decode("YQ", "a");
  check_decode("YQ==", "a");
  check_decode("YWI", "ab");
  check_decode("YWI=", "ab");
  check_decode("YWJj", "abc");
  check_decode("YWJjZA", "abcd");
  check_decode("YWJjZA==", "abcd");
  check_reject("+_8");
  check_reject("-/8");
  check_reject("YW*j");
  check_reject("Y");
  check_reject("YWJjZ");
  check_reject("YQ=");
  check_reject("YQ===");
  check_reject("YWJj=");
  check_reject("Y=Q=");
  check_reject("YW J");
}

/* Made with Python 3's standard library:
 *   b = lambda x: base64.urlsafe_b64encode(x).rstrip(b'=').decode()
 *   h = b(json.dumps({"alg":"HS256","typ":"JWT"}, separators=(',',':')).encode())
 *   p = b(json.dumps({"exp":exp,"iat":iat,"sun":user}, separators=(',',':')).encode())
 *   token = h + "." + p + "." + b(hmac.new(key, (h+"."+p).encode(), hashlib.sha256).digest())
 * TOKEN1: key = b"herd-test-key\x00\x01\xff" + bytes(range(32)), user "alice", iat 1700000000, exp 1700003600.
 * TOKEN2: key = b"k", user 'we"ird\\user/x', iat -5, exp 9007199254740993 (2^53 + 1, not a double). */
static const char TOKEN1[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                             "eyJleHAiOjE3MDAwMDM2MDAsImlhdCI6MTcwMDAwMDAwMCwic3VuIjoiYWxpY2UifQ."
                             "TKCSbXUfhsS08HPyI8VNbXp2PEAPY_nRfjlMoAu983w";
static const char TOKEN2[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                             "eyJleHAiOjkwMDcxOTkyNTQ3NDA5OTMsImlhdCI6LTUsInN1biI6IndlXCJpcmRcXHVzZXIveCJ9."
                             "oPtrAvJwAORLYXT16mOb6eT7_V90C8yxTuFnpt0Og20";

static void test_mint(void) {
  uint8_t key[48];
  memcpy(key, "herd-test-key\x00\x01\xff", 16);
  for (int i = 0; i < 32; i++) key[16 + i] = (uint8_t)i;
  char *t = jwt_mint_hs256(key, sizeof key, "alice", 1700000000, 1700003600);
  CHECK(t && !strcmp(t, TOKEN1), "mint matches Python for alice (got %s)", t ? t : "(null)");
  free(t);
  t = jwt_mint_hs256("k", 1, "we\"ird\\user/x", -5, 9007199254740993LL);
  CHECK(t && !strcmp(t, TOKEN2), "mint escapes the user and keeps a 2^53+1 exp (got %s)", t ? t : "(null)");
  free(t);
  t = jwt_mint_hs256("k", 1, "bad\xff", 1, 2);
  CHECK(t == NULL, "mint refuses a user that is not UTF-8");
  free(t);
}

/* "header.<base64url of payload>.sig" for payloads the minter would never write. */
static char *token_with(const char *payload) {
  char *p = jwt_b64url_encode(payload, strlen(payload));
  size_t n = strlen("eyJhbGciOiJub25lIn0..sig") + strlen(p) + 1;
  char *t = malloc(n);
  snprintf(t, n, "eyJhbGciOiJub25lIn0.%s.sig", p);
  free(p);
  return t;
}

static void check_exp(const char *what, const char *token, int want_rc, int64_t want) {
  int64_t exp = -777;
  int rc = jwt_exp(token, &exp);
  CHECK(rc == want_rc && exp == (rc == 0 ? want : -777), "jwt_exp %s: rc %d exp %lld", what, rc, (long long)exp);
}

static void check_exp_payload(const char *what, const char *payload, int want_rc, int64_t want) {
  char *t = token_with(payload);
  check_exp(what, t, want_rc, want);
  free(t);
}

static void test_exp(void) {
  check_exp("of the minted token", TOKEN1, 0, 1700003600);
  check_exp("beyond double precision", TOKEN2, 0, 9007199254740993LL);
  check_exp("with an empty signature (alg none)", "eyJhbGciOiJub25lIn0.eyJleHAiOjQyfQ.", 0, 42);
  check_exp_payload("negative", "{\"exp\":-1}", 0, -1);
  check_exp_payload("with exp missing", "{\"iat\":1700000000}", -1, 0);
  check_exp_payload("with exp a string", "{\"exp\":\"1700003600\"}", -1, 0);
  check_exp_payload("with exp a real", "{\"exp\":1700003600.5}", -1, 0);
  check_exp_payload("with exp null", "{\"exp\":null}", -1, 0);
  check_exp_payload("with a non-object payload", "[1700003600]", -1, 0);
  check_exp_payload("with a non-JSON payload", "exp=1700003600", -1, 0);
  check_exp("with bad base64", "eyJhbGciOiJub25lIn0.eyJleHAiOj*yfQ.sig", -1, 0);
  check_exp("with an impossible base64 length", "eyJhbGciOiJub25lIn0.eyJleHAiOjQyf.sig", -1, 0);
  check_exp("with only one dot", "eyJhbGciOiJub25lIn0.eyJleHAiOjQyfQ", -1, 0);
  check_exp("with four parts", "eyJhbGciOiJub25lIn0.eyJleHAiOjQyfQ.sig.more", -1, 0);
  check_exp("of \"..\"", "..", -1, 0);
  check_exp("of the empty string", "", -1, 0);
  check_exp("of NULL", NULL, -1, 0);
}

int main(void) {
  test_hmac();
  test_b64url();
  test_mint();
  test_exp();
  printf("test_jwt: %d checks, %d failed\n", checks, failures);
  return failures != 0;
}
