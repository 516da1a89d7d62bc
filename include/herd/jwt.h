/* JSON Web Tokens for slurmrestd: SHA-256, HMAC-SHA256, base64url, HS256 minting and reading `exp`.
 * Pure: no I/O, no global state, no OpenSSL. */
#ifndef HERD_JWT_H
#define HERD_JWT_H

#include <stddef.h>
#include <stdint.h>

/// SHA-256 (FIPS 180-4) of `len` bytes at `data` into `out`. Never fails.
void jwt_sha256(const void *data, size_t len, uint8_t out[32]);

/// HMAC-SHA256 (RFC 2104) of `data` keyed with `key`; keys longer than the 64-byte block are hashed first.
void jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[32]);

/// base64url (RFC 4648 §5) without '=' padding; a malloc'd NUL-terminated string, NULL on OOM.
char *jwt_b64url_encode(const void *data, size_t len);

/// Decode `slen` chars of base64url; trailing '=' padding is optional but, when present, must complete a
/// 4-char group. Returns a malloc'd buffer (with a NUL after the data, for convenience) and its length in
/// *outlen, or NULL on a character outside the alphabet, an impossible length, or OOM.
void *jwt_b64url_decode(const char *s, size_t slen, size_t *outlen);

/// Mint an HS256 token as `scontrol token` does: header {"alg":"HS256","typ":"JWT"}, compact claims in
/// the order exp, iat, sun (`user` JSON-escaped), signed with the raw key bytes. Returns a malloc'd
/// "header.payload.signature", or NULL on OOM or when `user` is not valid UTF-8.
char *jwt_mint_hs256(const void *key, size_t keylen, const char *user, int64_t iat, int64_t exp);

/// Read the integer `exp` claim of a three-part JWT of any alg, without verifying the signature.
/// Returns 0 and sets *exp, or -1 (leaving *exp alone) when the token is malformed or has no integer exp.
int jwt_exp(const char *token, int64_t *exp);

#endif
