/* JSON Web Tokens for slurmrestd: HMAC-SHA256 (OpenSSL's libcrypto), base64url, HS256 minting and
 * reading `exp`. No I/O; the only state is libcrypto, loaded once. */
#ifndef HERD_JWT_H
#define HERD_JWT_H

#include <stddef.h>
#include <stdint.h>

/// HMAC-SHA256 (RFC 2104) of `data` keyed with `key` (any length, 0 included), by libcrypto (libcrypto.so.3,
/// loaded at the first call; thread-safe). Returns 0, or -1 when libcrypto cannot be loaded or fails (out of
/// memory, a key over INT_MAX bytes, SHA-256 refused by its configuration).
int jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[32]);

/// base64url (RFC 4648 §5) without '=' padding; a malloc'd NUL-terminated string, NULL on OOM.
char *jwt_b64url_encode(const void *data, size_t len);

/// Decode `slen` chars of base64url; trailing '=' padding is optional but, when present, must complete a
/// 4-char group. Returns a malloc'd buffer (with a NUL after the data, for convenience) and its length in
/// *outlen, or NULL on a character outside the alphabet, an impossible length, or OOM.
void *jwt_b64url_decode(const char *s, size_t slen, size_t *outlen);

/// Mint an HS256 token as `scontrol token` does: header {"alg":"HS256","typ":"JWT"}, compact claims in
/// the order exp, iat, sun (`user` JSON-escaped), signed with the raw key bytes. Returns a malloc'd
/// "header.payload.signature", or NULL on OOM, when `user` is not valid UTF-8 or when libcrypto fails.
char *jwt_mint_hs256(const void *key, size_t keylen, const char *user, int64_t iat, int64_t exp);

/// The token in a token file or a token_command's output (or a secret in a secret file): the first word after
/// any whitespace, without the "SLURM_JWT=" that `scontrol token` prints before it. A malloc'd string, or NULL
/// when there is no word.
char *jwt_word(const char *text);

/// An OAuth 2.0 token endpoint's JSON answer (RFC 6749 §5.1, §5.2). Returns 0 with *token (malloc'd) and
/// *expires_in (seconds; -1 when absent, not an integer or negative) set, or -1 with `err` saying why: the
/// answer's "error", no access_token, or a token that could not go in an HTTP header (any byte outside
/// visible ASCII, as RFC 6750's b64token).
int jwt_from_oauth(const char *body, size_t len, char **token, int64_t *expires_in, char *err, size_t errlen);

/// Read the integer `exp` claim of a three-part JWT of any alg, without verifying the signature.
/// Returns 0 and sets *exp, or -1 (leaving *exp alone) when the token is malformed or has no integer exp.
int jwt_exp(const char *token, int64_t *exp);

#endif
