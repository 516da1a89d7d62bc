/*
 * Locate a value in JSON text by path, for error messages. jansson reports positions
 * only for syntax errors; a semantic error ("backoff.initial: not a duration") must
 * name its line and column too, so we rescan the (already valid) text.
 *
 * The scan is done once per document: it records every value (its parent, its key or
 * index, where the value and its key start) in a table hashed on (parent, key), so each
 * lookup afterwards costs the length of its path. Rescanning from the top for each lookup
 * (as this file once did) is quadratic: a 10,000-service file whose services each name a
 * dependency took 13.8 s to load.
 */
#include "herd/cfg.h"

#include <stdlib.h>
#include <string.h>

/* Deeper than jansson's own limit (2048), so text jansson accepted is indexed whole. The
 * scan recurses once per level: deeper text is a fault (what came before it stays indexed),
 * never a stack overflow, whatever text is given. */
#define JPOS_MAX_DEPTH 4096
#define NONE UINT32_MAX

struct jpos_node {
  uint32_t parent;
  uint32_t key_off, key_len; /* object member: its decoded key in the arena */
  uint32_t index;            /* array element */
  bool is_index;
  int line, col;   /* the value */
  int kline, kcol; /* its key (an element: the value) */
};

struct jpos {
  struct jpos_node *v;
  size_t n, cap;
  char *keys; /* decoded keys, back to back */
  size_t klen, kcap;
  uint32_t *tab; /* open addressing: node index + 1, 0 = empty */
  size_t tcap;
};

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

static bool at(const struct scan *sc, char c) { return sc->i < sc->n && sc->s[sc->i] == c; }

static void ws(struct scan *sc) {
  /* JSON's whitespace only (isspace would also skip \v and \f, which JSON rejects). */
  while (sc->i < sc->n && strchr(" \t\r\n", sc->s[sc->i]) && sc->s[sc->i]) adv(sc);
}

static uint64_t hash_seg(uint32_t parent, bool is_index, uint32_t index, const char *key, size_t klen) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  uint8_t head[9];
  memcpy(head, &parent, 4);
  memcpy(head + 4, &index, 4);
  head[8] = is_index;
  for (size_t i = 0; i < sizeof head; i++) h = (h ^ head[i]) * 1099511628211ULL;
  for (size_t i = 0; i < klen; i++) h = (h ^ (uint8_t)key[i]) * 1099511628211ULL;
  return h;
}

static bool node_is(const struct jpos *jp, const struct jpos_node *x, uint32_t parent, bool is_index, uint32_t index,
                    const char *key, size_t klen) {
  if (x->parent != parent || x->is_index != is_index) return false;
  if (is_index) return x->index == index;
  return x->key_len == klen && !memcmp(jp->keys + x->key_off, key, klen);
}

static void tab_put(struct jpos *jp, uint32_t id) {
  const struct jpos_node *x = &jp->v[id];
  size_t m = jp->tcap - 1;
  size_t i = hash_seg(x->parent, x->is_index, x->index, jp->keys + x->key_off, x->key_len) & m;
  while (jp->tab[i]) i = (i + 1) & m;
  jp->tab[i] = id + 1;
}

static void tab_build(struct jpos *jp) {
  jp->tcap = 16;
  while (jp->tcap < jp->n * 2) jp->tcap *= 2;
  jp->tab = xcalloc(jp->tcap, sizeof *jp->tab);
  /* In document order, so that of two equal keys (jansson rejects them) the first wins. */
  for (size_t i = 0; i < jp->n; i++) tab_put(jp, (uint32_t)i);
}

static uint32_t tab_get(const struct jpos *jp, uint32_t parent, bool is_index, uint32_t index, const char *key,
                        size_t klen) {
  if (!jp->tcap) return NONE;
  size_t m = jp->tcap - 1;
  for (size_t i = hash_seg(parent, is_index, index, key, klen) & m; jp->tab[i]; i = (i + 1) & m) {
    uint32_t id = jp->tab[i] - 1;
    if (node_is(jp, &jp->v[id], parent, is_index, index, key, klen)) return id;
  }
  return NONE;
}

static void key_putc(struct jpos *jp, char c) {
  if (jp->klen == jp->kcap) jp->keys = xrealloc(jp->keys, jp->kcap = jp->kcap ? jp->kcap * 2 : 256);
  jp->keys[jp->klen++] = c;
}

static void key_put_utf8(struct jpos *jp, uint32_t cp) {
  if (cp < 0x80) {
    key_putc(jp, (char)cp);
  } else if (cp < 0x800) {
    key_putc(jp, (char)(0xC0 | cp >> 6));
    key_putc(jp, (char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    key_putc(jp, (char)(0xE0 | cp >> 12));
    key_putc(jp, (char)(0x80 | (cp >> 6 & 0x3F)));
    key_putc(jp, (char)(0x80 | (cp & 0x3F)));
  } else {
    key_putc(jp, (char)(0xF0 | cp >> 18));
    key_putc(jp, (char)(0x80 | (cp >> 12 & 0x3F)));
    key_putc(jp, (char)(0x80 | (cp >> 6 & 0x3F)));
    key_putc(jp, (char)(0x80 | (cp & 0x3F)));
  }
}

static int hex4(struct scan *sc, uint32_t *out) {
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) {
    if (sc->i >= sc->n) return -1;
    char c = sc->s[sc->i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v << 4 | (uint32_t)d;
    adv(sc);
  }
  *out = v;
  return 0;
}

/* Skip a string starting at '"'; with jp, append its decoded content to the key arena
 * (as jansson decodes it, so that a key written with escapes is found by its name). */
static int scan_string(struct scan *sc, struct jpos *jp) {
  if (!at(sc, '"')) return -1;
  adv(sc);
  while (sc->i < sc->n && sc->s[sc->i] != '"') {
    char c = sc->s[sc->i];
    adv(sc);
    if (c != '\\') {
      if (jp) key_putc(jp, c);
      continue;
    }
    if (sc->i >= sc->n) return -1;
    char e = sc->s[sc->i];
    adv(sc);
    if (e != 'u') {
      static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
      const char *p = strchr(from, e);
      if (jp) key_putc(jp, p && e ? to[p - from] : e);
      continue;
    }
    uint32_t cp;
    if (hex4(sc, &cp)) return -1;
    if (cp >= 0xD800 && cp < 0xDC00 && sc->i + 1 < sc->n && sc->s[sc->i] == '\\' && sc->s[sc->i + 1] == 'u') {
      uint32_t lo;
      adv(sc);
      adv(sc);
      if (hex4(sc, &lo)) return -1;
      if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (jp) key_put_utf8(jp, cp);
  }
  if (sc->i >= sc->n) return -1;
  adv(sc);
  return 0;
}

static uint32_t add_node(struct jpos *jp, uint32_t parent, const struct scan *sc) {
  if (jp->n == jp->cap) jp->v = xrealloc(jp->v, (jp->cap = jp->cap ? jp->cap * 2 : 64) * sizeof *jp->v);
  struct jpos_node *x = &jp->v[jp->n];
  memset(x, 0, sizeof *x);
  x->parent = parent;
  x->line = x->kline = sc->line;
  x->col = x->kcol = sc->col;
  return (uint32_t)jp->n++;
}

/* Scan one value (leading whitespace skipped by the caller), indexing its members when
 * jp is given. `self` is this value's node, or NONE when not indexed. */
static int scan_value(struct scan *sc, struct jpos *jp, uint32_t self, int depth) {
  if (sc->i >= sc->n) return -1;
  char open = sc->s[sc->i];
  if (open == '"') return scan_string(sc, NULL);
  if (open != '{' && open != '[') {
    /* strchr finds the terminating NUL too: a NUL byte is part of the token, not its end. */
    while (sc->i < sc->n && !(sc->s[sc->i] && strchr(",]} \t\r\n", sc->s[sc->i]))) adv(sc);
    return 0;
  }
  if (depth >= JPOS_MAX_DEPTH) return -1;
  char close = open == '{' ? '}' : ']';
  bool index = jp && self != NONE;
  adv(sc);
  ws(sc);
  if (at(sc, close)) {
    adv(sc);
    return 0;
  }
  for (uint32_t k = 0;; k++) {
    int kline = sc->line, kcol = sc->col;
    size_t koff = jp ? jp->klen : 0;
    if (open == '{') {
      if (scan_string(sc, index ? jp : NULL)) return -1;
      ws(sc);
      if (!at(sc, ':')) return -1;
      adv(sc);
    }
    ws(sc);
    uint32_t child = NONE;
    if (index) {
      child = add_node(jp, self, sc);
      struct jpos_node *x = &jp->v[child];
      if (open == '{') {
        x->key_off = (uint32_t)koff;
        x->key_len = (uint32_t)(jp->klen - koff);
        x->kline = kline;
        x->kcol = kcol;
      } else {
        x->is_index = true;
        x->index = k;
      }
    }
    if (scan_value(sc, jp, child, depth + 1)) return -1;
    ws(sc);
    if (at(sc, ',')) {
      adv(sc);
      ws(sc);
      continue;
    }
    if (at(sc, close)) {
      adv(sc);
      return 0;
    }
    return -1;
  }
}

struct jpos *jpos_index(const char *text, size_t len) {
  struct jpos *jp = xcalloc(1, sizeof *jp);
  jp->keys = xmalloc(jp->kcap = 256); /* never NULL: keys are read at jp->keys + offset */
  struct scan sc = {text, 0, len, 1, 1};
  ws(&sc);
  uint32_t root = add_node(jp, NONE, &sc);
  /* Text jansson refused is not expected here; what was indexed before a fault stays. */
  (void)scan_value(&sc, jp, root, 0);
  tab_build(jp);
  return jp;
}

void jpos_free(struct jpos *jp) {
  if (!jp) return;
  free(jp->v);
  free(jp->keys);
  free(jp->tab);
  free(jp);
}

/* Next path segment: a key (is_index false) or an index. Returns 0 at the end of path. */
static int next_seg(const char **pp, const char **key, size_t *klen, long *index, bool *is_index) {
  const char *p = *pp;
  if (*p == '.') p++;
  if (!*p) return 0;
  if (*p == '[') {
    *index = strtol(p + 1, (char **)&p, 10);
    if (*p == ']') p++;
    *is_index = true;
  } else {
    *key = p;
    while (*p && *p != '.' && *p != '[') p++;
    *klen = (size_t)(p - *key);
    *is_index = false;
  }
  *pp = p;
  return 1;
}

int jpos_lookup(const struct jpos *jp, const char *path, bool at_key, int *line, int *col) {
  uint32_t cur = 0;
  *line = jp->v[0].line;
  *col = jp->v[0].col;
  const char *p = path ? path : "";
  const char *key = "";
  size_t klen = 0;
  long index = 0;
  bool is_index = false;
  while (next_seg(&p, &key, &klen, &index, &is_index)) {
    if (is_index && (index < 0 || index >= (long)NONE)) return -1;
    uint32_t id = tab_get(jp, cur, is_index, is_index ? (uint32_t)index : 0, key, is_index ? 0 : klen);
    if (id == NONE) return -1;
    const struct jpos_node *x = &jp->v[id];
    /* An unknown key is best shown at the key itself; a bad value at the value. */
    bool last = !*p;
    *line = last && at_key ? x->kline : x->line;
    *col = last && at_key ? x->kcol : x->col;
    cur = id;
  }
  return 0;
}

int jpos_find(const char *text, size_t len, const char *path, bool at_key, int *line, int *col) {
  struct jpos *jp = jpos_index(text, len);
  int r = jpos_lookup(jp, path, at_key, line, col);
  jpos_free(jp);
  return r;
}
