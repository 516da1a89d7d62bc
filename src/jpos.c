/*
 * Locate a value in JSON text by path, for error messages. jansson reports positions
 * only for syntax errors; a semantic error ("backoff.initial: not a duration") must
 * name its line and column too, so we rescan the (already valid) text.
 */
#include "herd/cfg.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct scan {
  const char *s;
  size_t i, n;
  int line, col;
};

static void adv(struct scan *sc) {
  if (sc->i >= sc->n) return;
  if (sc->s[sc->i] == '\n') {
    sc->line++;
    sc->col = 1;
  } else if (((unsigned char)sc->s[sc->i] & 0xC0) != 0x80) {
    sc->col++; /* count characters, not UTF-8 continuation bytes */
  }
  sc->i++;
}

static void ws(struct scan *sc) {
  while (sc->i < sc->n && isspace((unsigned char)sc->s[sc->i])) adv(sc);
}

/* Skip a string starting at '"'; copy up to cap-1 raw bytes of its content into out. */
static int skip_string(struct scan *sc, char *out, size_t cap) {
  size_t k = 0;
  if (sc->i >= sc->n || sc->s[sc->i] != '"') return -1;
  adv(sc);
  while (sc->i < sc->n && sc->s[sc->i] != '"') {
    if (sc->s[sc->i] == '\\') {
      adv(sc);
      if (sc->i >= sc->n) return -1;
    }
    if (out && k + 1 < cap) out[k++] = sc->s[sc->i];
    adv(sc);
  }
  if (out) out[k] = '\0';
  if (sc->i >= sc->n) return -1;
  adv(sc);
  return 0;
}

static int skip_value(struct scan *sc) {
  ws(sc);
  if (sc->i >= sc->n) return -1;
  char c = sc->s[sc->i];
  if (c == '"') return skip_string(sc, NULL, 0);
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    adv(sc);
    ws(sc);
    if (sc->i < sc->n && sc->s[sc->i] == close) {
      adv(sc);
      return 0;
    }
    for (;;) {
      if (c == '{') {
        ws(sc);
        if (skip_string(sc, NULL, 0)) return -1;
        ws(sc);
        if (sc->i >= sc->n || sc->s[sc->i] != ':') return -1;
        adv(sc);
      }
      if (skip_value(sc)) return -1;
      ws(sc);
      if (sc->i >= sc->n) return -1;
      if (sc->s[sc->i] == ',') {
        adv(sc);
        continue;
      }
      if (sc->s[sc->i] == close) {
        adv(sc);
        return 0;
      }
      return -1;
    }
  }
  while (sc->i < sc->n && !strchr(",]} \t\r\n", sc->s[sc->i])) adv(sc);
  return 0;
}

/* Next path segment: a key (is_index false) or an index. Returns 0 at the end of path. */
static int next_seg(const char **pp, char *key, size_t cap, long *index, bool *is_index) {
  const char *p = *pp;
  if (*p == '.') p++;
  if (!*p) return 0;
  if (*p == '[') {
    *index = strtol(p + 1, (char **)&p, 10);
    if (*p == ']') p++;
    *is_index = true;
  } else {
    size_t k = 0;
    while (*p && *p != '.' && *p != '[') {
      if (k + 1 < cap) key[k++] = *p;
      p++;
    }
    key[k] = '\0';
    *is_index = false;
  }
  *pp = p;
  return 1;
}

int jpos_find(const char *text, size_t len, const char *path, bool at_key, int *line, int *col) {
  struct scan sc = {text, 0, len, 1, 1};
  ws(&sc);
  *line = sc.line;
  *col = sc.col;
  const char *p = path ? path : "";
  char key[256], got[256];
  long index = 0;
  bool is_index = false;
  while (next_seg(&p, key, sizeof key, &index, &is_index)) {
    ws(&sc);
    if (sc.i >= sc.n) return -1;
    char c = sc.s[sc.i];
    bool found = false;
    if (c == '{' && !is_index) {
      adv(&sc);
      for (;;) {
        ws(&sc);
        if (sc.i >= sc.n || sc.s[sc.i] == '}') break;
        int kl = sc.line, kc = sc.col;
        if (skip_string(&sc, got, sizeof got)) return -1;
        ws(&sc);
        if (sc.i >= sc.n || sc.s[sc.i] != ':') return -1;
        adv(&sc);
        ws(&sc);
        if (!strcmp(got, key)) {
          /* An unknown key is best shown at the key itself; a bad value at the value. */
          bool last = !*p;
          *line = last && at_key ? kl : sc.line;
          *col = last && at_key ? kc : sc.col;
          found = true;
          break;
        }
        if (skip_value(&sc)) return -1;
        ws(&sc);
        if (sc.i < sc.n && sc.s[sc.i] == ',') adv(&sc);
      }
    } else if (c == '[' && is_index) {
      adv(&sc);
      for (long k = 0;; k++) {
        ws(&sc);
        if (sc.i >= sc.n || sc.s[sc.i] == ']') break;
        if (k == index) {
          *line = sc.line;
          *col = sc.col;
          found = true;
          break;
        }
        if (skip_value(&sc)) return -1;
        ws(&sc);
        if (sc.i < sc.n && sc.s[sc.i] == ',') adv(&sc);
      }
    }
    if (!found) return -1;
  }
  return 0;
}
