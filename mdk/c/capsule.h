/*
 * capsule.h — header-only C SDK for Capsule functions (Capsule ABI generation 2).
 *
 * Normative reference: capsule-abi.md §2 (common guest contract), §5 (generation 2),
 * §6 (writing a guest SDK), §8 (extensions). See README.md beside this file.
 *
 * Build (what scripts/build-guests.ts does):
 *   clang --target=wasm32-wasi --sysroot=/usr -O2 -I mdk/c -mexec-model=reactor -o m.wasm m.c
 *
 * The module is a WASI *reactor*: it exports `_initialize`, which the host calls once after
 * instantiation (§2.2); `_initialize` runs the C constructors, and a constructor registers the
 * handler:
 *
 *   #include "capsule.h"
 *   static capsule_result handle(const char *params, size_t len) {
 *     return capsule_ok_str("hello");
 *   }
 *   __attribute__((constructor)) static void init(void) { capsule_set_handle(handle); }
 *
 * Include this header in exactly one .c file of a module, or define CAPSULE_NO_EXPORTS before
 * including it in the others (it defines the exported functions).
 *
 * Memory: every buffer the SDK hands out (results of host functions, request fields) is
 * malloc'd, NUL-terminated, and freed by the caller with the matching *_free function.
 * Allocation failure aborts (traps), which the host reports as a failed call.
 */
#ifndef CAPSULE_H
#define CAPSULE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAPSULE_MDK_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Host functions (module "env", all parameters i32, result i32 = 0; §5.7 and §8).
 * Only the ones a module calls end up as imports.
 * ------------------------------------------------------------------------------------------- */

#define CAPSULE__IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

int32_t capsule__hostPrintString(const char *p, size_t n) CAPSULE__IMPORT(hostPrintString);
int32_t capsule__hostLogString(const char *p, size_t n) CAPSULE__IMPORT(hostLogString);
int32_t capsule__hostGetEnv(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostGetEnv);
int32_t capsule__hostTalk(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostTalk);
int32_t capsule__hostReadFile(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostReadFile);
int32_t capsule__hostWriteFile(const char *p1, size_t n1, const char *p2, size_t n2, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostWriteFile);
int32_t capsule__hostHTTP(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostHTTP);
int32_t capsule__hostCacheSet(const char *p1, size_t n1, const char *p2, size_t n2, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostCacheSet);
int32_t capsule__hostCacheGet(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostCacheGet);
int32_t capsule__hostCacheDel(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostCacheDel);
int32_t capsule__hostCacheKeys(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostCacheKeys);
int32_t capsule__hostRedisSet(const char *p1, size_t n1, const char *p2, size_t n2, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostRedisSet);
int32_t capsule__hostRedisGet(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostRedisGet);
int32_t capsule__hostRedisDel(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostRedisDel);
int32_t capsule__hostRedisKeys(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostRedisKeys);
int32_t capsule__hostCouchBaseQuery(const char *p, size_t n, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostCouchBaseQuery);
int32_t capsule__hostNatsPublish(const char *p1, size_t n1, const char *p2, size_t n2, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostNatsPublish);
int32_t capsule__hostNatsRequest(const char *p1, size_t n1, const char *p2, size_t n2, int32_t timeout_ms, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostNatsRequest);
int32_t capsule__hostMqttPublish(const char *p1, size_t n1, const char *p2, size_t n2, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostMqttPublish);
int32_t capsule__hostKvIncrement(const char *p1, size_t n1, const char *p2, size_t n2, uint32_t *rp, uint32_t *rl) CAPSULE__IMPORT(hostKvIncrement);

/* ---------------------------------------------------------------------------------------------
 * Growable byte buffer.
 * ------------------------------------------------------------------------------------------- */

/** A growable, always NUL-terminated byte buffer. Start with `capsule_buf b = {0};`. */
typedef struct capsule_buf {
  char *data; /* NULL until something is appended; data[len] == 0 afterwards */
  size_t len; /* bytes, without the NUL */
  size_t cap; /* allocated bytes */
} capsule_buf;

/** Makes room for `extra` more bytes (and the NUL). Aborts when out of memory. */
static inline void capsule_buf_reserve(capsule_buf *b, size_t extra) {
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  char *p = (char *)realloc(b->data, cap);
  if (!p) abort();
  b->data = p;
  b->cap = cap;
}

/** Appends `n` bytes. */
static inline void capsule_buf_append(capsule_buf *b, const void *p, size_t n) {
  capsule_buf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}

/** Appends a NUL-terminated string. */
static inline void capsule_buf_append_str(capsule_buf *b, const char *s) {
  capsule_buf_append(b, s, strlen(s));
}

/** Appends one byte. */
static inline void capsule_buf_append_byte(capsule_buf *b, char c) {
  capsule_buf_append(b, &c, 1);
}

/** Appends printf-formatted text. */
static inline void capsule_buf_vprintf(capsule_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return;
  capsule_buf_reserve(b, (size_t)n);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

/** Appends printf-formatted text. */
static inline void capsule_buf_printf(capsule_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void capsule_buf_printf(capsule_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  capsule_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

/** Frees the buffer's memory and empties it. */
static inline void capsule_buf_free(capsule_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/**
 * Decodes one UTF-8 sequence at `s` (WHATWG rules). Returns its length in bytes and stores the
 * code point, or returns the length of the maximal invalid subpart (>= 1) and stores -1.
 */
static inline size_t capsule__utf8_next(const unsigned char *s, size_t n, int32_t *cp) {
  unsigned char b0 = s[0];
  if (b0 < 0x80) { *cp = b0; return 1; }
  size_t need;
  uint32_t c;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) { need = 1; c = b0 & 0x1F; }
  else if (b0 >= 0xE0 && b0 <= 0xEF) { need = 2; c = b0 & 0x0F; if (b0 == 0xE0) lo = 0xA0; if (b0 == 0xED) hi = 0x9F; }
  else if (b0 >= 0xF0 && b0 <= 0xF4) { need = 3; c = b0 & 0x07; if (b0 == 0xF0) lo = 0x90; if (b0 == 0xF4) hi = 0x8F; }
  else { *cp = -1; return 1; }
  size_t i = 1;
  for (; i <= need; i++) {
    if (i >= n || s[i] < lo || s[i] > hi) { *cp = -1; return i; }
    lo = 0x80; hi = 0xBF;
    c = (c << 6) | (s[i] & 0x3F);
  }
  *cp = (int32_t)c;
  return i;
}

/** Appends a code point as UTF-8 (surrogates and values above U+10FFFF become U+FFFD). */
static inline void capsule_buf_append_codepoint(capsule_buf *b, uint32_t c) {
  char u[4];
  if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = 0xFFFD;
  if (c < 0x80) { u[0] = (char)c; capsule_buf_append(b, u, 1); }
  else if (c < 0x800) { u[0] = (char)(0xC0 | (c >> 6)); u[1] = (char)(0x80 | (c & 0x3F)); capsule_buf_append(b, u, 2); }
  else if (c < 0x10000) { u[0] = (char)(0xE0 | (c >> 12)); u[1] = (char)(0x80 | ((c >> 6) & 0x3F)); u[2] = (char)(0x80 | (c & 0x3F)); capsule_buf_append(b, u, 3); }
  else { u[0] = (char)(0xF0 | (c >> 18)); u[1] = (char)(0x80 | ((c >> 12) & 0x3F)); u[2] = (char)(0x80 | ((c >> 6) & 0x3F)); u[3] = (char)(0x80 | (c & 0x3F)); capsule_buf_append(b, u, 4); }
}

/**
 * Appends `n` bytes as a JSON string literal, quotes included. `"`, `\` and control characters
 * are escaped; invalid UTF-8 becomes U+FFFD; the output is always valid JSON and valid UTF-8.
 */
static inline void capsule_buf_append_json_string(capsule_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  capsule_buf_reserve(b, n + 2);
  capsule_buf_append_byte(b, '"');
  size_t i = 0, run = 0;
  while (i < n) {
    unsigned char c = u[i];
    const char *esc = NULL;
    char tmp[7];
    size_t step = 1;
    if (c == '"') esc = "\\\"";
    else if (c == '\\') esc = "\\\\";
    else if (c == '\n') esc = "\\n";
    else if (c == '\r') esc = "\\r";
    else if (c == '\t') esc = "\\t";
    else if (c == '\b') esc = "\\b";
    else if (c == '\f') esc = "\\f";
    else if (c < 0x20) {
      tmp[0] = '\\'; tmp[1] = 'u'; tmp[2] = '0'; tmp[3] = '0'; tmp[4] = hex[c >> 4]; tmp[5] = hex[c & 15]; tmp[6] = 0;
      esc = tmp;
    } else if (c >= 0x80) {
      int32_t cp;
      step = capsule__utf8_next(u + i, n - i, &cp);
      if (cp < 0) esc = "\xEF\xBF\xBD"; /* U+FFFD */
    }
    if (esc) {
      capsule_buf_append(b, s + run, i - run);
      capsule_buf_append_str(b, esc);
      i += step;
      run = i;
    } else {
      i += step;
    }
  }
  capsule_buf_append(b, s + run, n - run);
  capsule_buf_append_byte(b, '"');
}

/** Appends a NUL-terminated string as a JSON string literal (see capsule_buf_append_json_string). */
static inline void capsule_buf_append_json_str(capsule_buf *b, const char *s) {
  capsule_buf_append_json_string(b, s, strlen(s));
}

/** Appends `n` bytes as base64 (RFC 4648, standard alphabet, padded). */
static inline void capsule_buf_append_base64(capsule_buf *b, const void *data, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *p = (const unsigned char *)data;
  capsule_buf_reserve(b, (n + 2) / 3 * 4);
  char *o = b->data + b->len;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = t[v >> 18]; *o++ = t[(v >> 12) & 63]; *o++ = t[(v >> 6) & 63]; *o++ = t[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    *o++ = t[v >> 18]; *o++ = t[(v >> 12) & 63]; *o++ = '='; *o++ = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    *o++ = t[v >> 18]; *o++ = t[(v >> 12) & 63]; *o++ = t[(v >> 6) & 63]; *o++ = '=';
  }
  b->len = (size_t)(o - b->data);
  b->data[b->len] = 0;
}

/**
 * Appends the bytes of strict base64 text (standard alphabet, padded, length a multiple of 4).
 * Returns false (appending nothing) when `text` is not valid base64.
 */
static inline bool capsule_buf_append_base64_decoded(capsule_buf *b, const char *text, size_t n) {
  if (n % 4 != 0) return false;
  size_t start = b->len;
  capsule_buf_reserve(b, n / 4 * 3);
  for (size_t i = 0; i < n; i += 4) {
    int32_t v = 0;
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = text[i + (size_t)k];
      int32_t x;
      if (c >= 'A' && c <= 'Z') x = c - 'A';
      else if (c >= 'a' && c <= 'z') x = c - 'a' + 26;
      else if (c >= '0' && c <= '9') x = c - '0' + 52;
      else if (c == '+') x = 62;
      else if (c == '/') x = 63;
      else if (c == '=' && i + 4 == n && k >= 2 && (k == 3 || text[i + 3] == '=')) { x = 0; pad++; }
      else { b->len = start; b->data[start] = 0; return false; }
      if (pad && c != '=') { b->len = start; b->data[start] = 0; return false; }
      v = (v << 6) | x;
    }
    b->data[b->len++] = (char)(v >> 16);
    if (pad < 2) b->data[b->len++] = (char)(v >> 8);
    if (pad < 1) b->data[b->len++] = (char)v;
  }
  b->data[b->len] = 0;
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * Minimal JSON reading (RFC 8259): validation, string decoding, top-level member lookup.
 * ------------------------------------------------------------------------------------------- */

#define CAPSULE_JSON_MAX_DEPTH 256

static inline const char *capsule__json_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

static inline int capsule__hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static inline int32_t capsule__hex4(const char *p) {
  int32_t v = 0;
  for (int k = 0; k < 4; k++) {
    int h = capsule__hex(p[k]);
    if (h < 0) return -1;
    v = (v << 4) | h;
  }
  return v;
}

/**
 * Reads the JSON string literal at `p` (which must point at `"`). Appends its decoded UTF-8 to
 * `out` when not NULL (`\uXXXX` pairs become one code point, lone surrogates U+FFFD).
 * Returns the position after the closing quote, or NULL when the literal is invalid.
 */
static inline const char *capsule__json_string(const char *p, const char *end, capsule_buf *out) {
  if (p >= end || *p != '"') return NULL;
  p++;
  const char *run = p;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
      if (out) capsule_buf_append(out, run, (size_t)(p - run));
      return p + 1;
    }
    if (c < 0x20) return NULL;
    if (c != '\\') { p++; continue; }
    if (out) capsule_buf_append(out, run, (size_t)(p - run));
    if (p + 1 >= end) return NULL;
    char e = p[1];
    p += 2;
    char lit = 0;
    switch (e) {
      case '"': lit = '"'; break;
      case '\\': lit = '\\'; break;
      case '/': lit = '/'; break;
      case 'b': lit = '\b'; break;
      case 'f': lit = '\f'; break;
      case 'n': lit = '\n'; break;
      case 'r': lit = '\r'; break;
      case 't': lit = '\t'; break;
      case 'u': {
        if (end - p < 4) return NULL;
        int32_t u = capsule__hex4(p);
        if (u < 0) return NULL;
        p += 4;
        if (u >= 0xD800 && u <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
          int32_t lo = capsule__hex4(p + 2);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
          }
        }
        if (out) capsule_buf_append_codepoint(out, (uint32_t)u);
        break;
      }
      default: return NULL;
    }
    if (lit && out) capsule_buf_append_byte(out, lit);
    run = p;
  }
  return NULL;
}

/** Skips one JSON value at `p` (no leading space). Returns the position after it, or NULL. */
static inline const char *capsule__json_skip(const char *p, const char *end, int depth) {
  if (p >= end) return NULL;
  char c = *p;
  if (c == '"') return capsule__json_string(p, end, NULL);
  if (c == '{' || c == '[') {
    if (depth >= CAPSULE_JSON_MAX_DEPTH) return NULL;
    char close = c == '{' ? '}' : ']';
    p = capsule__json_ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
      if (c == '{') {
        p = capsule__json_string(p, end, NULL);
        if (!p) return NULL;
        p = capsule__json_ws(p, end);
        if (p >= end || *p != ':') return NULL;
        p = capsule__json_ws(p + 1, end);
      }
      p = capsule__json_skip(p, end, depth + 1);
      if (!p) return NULL;
      p = capsule__json_ws(p, end);
      if (p >= end) return NULL;
      if (*p == close) return p + 1;
      if (*p != ',') return NULL;
      p = capsule__json_ws(p + 1, end);
    }
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    if (*p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') { while (p < end && *p >= '0' && *p <= '9') p++; }
    else return NULL;
    if (p < end && *p == '.') {
      const char *d = ++p;
      while (p < end && *p >= '0' && *p <= '9') p++;
      if (p == d) return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
      p++;
      if (p < end && (*p == '+' || *p == '-')) p++;
      const char *d = p;
      while (p < end && *p >= '0' && *p <= '9') p++;
      if (p == d) return NULL;
    }
    return p;
  }
  static const char *const words[] = {"true", "false", "null"};
  for (int k = 0; k < 3; k++) {
    size_t n = strlen(words[k]);
    if ((size_t)(end - p) >= n && memcmp(p, words[k], n) == 0) return p + n;
  }
  return NULL;
}

/** Whether `json` (n bytes) is exactly one valid JSON value (surrounding spaces allowed). */
static inline bool capsule_json_valid(const char *json, size_t n) {
  const char *end = json + n;
  const char *p = capsule__json_skip(capsule__json_ws(json, end), end, 0);
  return p && capsule__json_ws(p, end) == end;
}

/**
 * Finds member `key` of the top-level JSON object in `json` (the last one if repeated, as in
 * JavaScript) and stores the raw text of its value in (*value, *value_len).
 * Returns false when `json` is not a valid object or has no such member.
 */
static inline bool capsule_json_get_raw(const char *json, size_t n, const char *key, const char **value, size_t *value_len) {
  const char *end = json + n;
  const char *p = capsule__json_ws(json, end);
  bool found = false;
  if (p >= end || *p != '{') return false;
  p = capsule__json_ws(p + 1, end);
  if (p < end && *p == '}') return false; /* an empty object has no member */
  capsule_buf k = {0};
  for (;;) {
    k.len = 0;
    p = capsule__json_string(p, end, &k);
    if (!p) break;
    p = capsule__json_ws(p, end);
    if (p >= end || *p != ':') { p = NULL; break; }
    p = capsule__json_ws(p + 1, end);
    const char *v = p;
    p = capsule__json_skip(p, end, 1);
    if (!p) break;
    if (k.len == strlen(key) && memcmp(k.data, key, k.len) == 0) {
      *value = v;
      *value_len = (size_t)(p - v);
      found = true;
    }
    p = capsule__json_ws(p, end);
    if (p >= end) { p = NULL; break; }
    if (*p == '}') { p = capsule__json_ws(p + 1, end); if (p != end) p = NULL; break; }
    if (*p != ',') { p = NULL; break; }
    p = capsule__json_ws(p + 1, end);
  }
  capsule_buf_free(&k);
  return p != NULL && found;
}

/**
 * Member `key` of the top-level JSON object in `json`, when it is a string: returns its decoded
 * value (malloc'd, NUL-terminated, length in *out_len when not NULL; free() it), else NULL.
 */
static inline char *capsule_json_get_string(const char *json, size_t n, const char *key, size_t *out_len) {
  const char *v;
  size_t vn;
  if (!capsule_json_get_raw(json, n, key, &v, &vn) || vn == 0 || *v != '"') return NULL;
  capsule_buf out = {0};
  capsule_buf_reserve(&out, vn);
  capsule__json_string(v, v + vn, &out);
  if (out_len) *out_len = out.len;
  return out.data;
}

/* ---------------------------------------------------------------------------------------------
 * Host-function wrappers. Results come through the return-buffer protocol (§2.4).
 * ------------------------------------------------------------------------------------------- */

/**
 * A result: success or failure, with bytes. `data` is malloc'd and NUL-terminated (never NULL
 * once returned by the SDK); release it with capsule_result_free.
 */
typedef struct capsule_result {
  bool ok;
  char *data; /* success: the value; failure: the error text */
  size_t len; /* bytes in data, without the NUL */
} capsule_result;

/** Frees a result's data. */
static inline void capsule_result_free(capsule_result *r) {
  free(r->data);
  r->data = NULL;
  r->len = 0;
}

static inline char *capsule__strndup(const char *p, size_t n) {
  char *s = (char *)malloc(n + 1);
  if (!s) abort();
  if (n) memcpy(s, p, n);
  s[n] = 0;
  return s;
}

/** A success result holding a copy of `n` bytes (for handlers: the `S` payload). */
static inline capsule_result capsule_ok(const char *data, size_t n) {
  capsule_result r = {true, capsule__strndup(data, n), n};
  return r;
}

/** A success result holding a copy of a NUL-terminated string. */
static inline capsule_result capsule_ok_str(const char *s) {
  return capsule_ok(s, strlen(s));
}

/** A success result that takes over a buffer's memory (no copy; `b` is left empty). */
static inline capsule_result capsule_ok_buf(capsule_buf *b) {
  capsule_result r = {true, b->data ? b->data : capsule__strndup("", 0), b->len};
  b->data = NULL;
  b->len = b->cap = 0;
  return r;
}

/** A failure result (for handlers: the `F` payload) with a copy of `message`. */
static inline capsule_result capsule_fail(const char *message) {
  capsule_result r = {false, capsule__strndup(message, strlen(message)), strlen(message)};
  return r;
}

/** A failure result with a printf-formatted message. */
static inline capsule_result capsule_failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline capsule_result capsule_failf(const char *fmt, ...) {
  capsule_buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  capsule_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  capsule_result r = capsule_ok_buf(&b);
  r.ok = false;
  return r;
}

/* The two u32 slots (retPtrAddr, retLenAddr) handed to host functions. */
static uint32_t capsule__ret[2];

static inline void capsule__ret_reset(void) {
  capsule__ret[0] = 0;
  capsule__ret[1] = 0;
}

/* Takes the host's buffer (from allocateBuffer) as a NUL-terminated string; never NULL. */
static inline char *capsule__ret_take(size_t *len) {
  char *p = (char *)(uintptr_t)capsule__ret[0];
  size_t n = capsule__ret[1];
  *len = n;
  if (!p) return capsule__strndup("", 0);
  p[n] = 0; /* allocateBuffer reserved one more byte */
  return p;
}

/* Reads an S/F frame from the return slots (§5.1). */
static inline capsule_result capsule__ret_frame(void) {
  size_t n;
  char *p = capsule__ret_take(&n);
  capsule_result r;
  if (n == 0) {
    free(p);
    return capsule_fail("the host returned an empty result (expected an S or F frame)");
  }
  if (p[0] != 'S' && p[0] != 'F') {
    r = capsule_failf("the host returned an unframed result: %s", p);
    free(p);
    return r;
  }
  r.ok = p[0] == 'S';
  memmove(p, p + 1, n); /* n - 1 bytes and the NUL */
  r.data = p;
  r.len = n - 1;
  return r;
}

/** Prints `n` bytes and a newline on the function's standard output (hostPrintString, §5.7). */
static inline void capsule_print(const char *text, size_t n) { capsule__hostPrintString(text, n); }

/** Prints a NUL-terminated string and a newline (hostPrintString). */
static inline void capsule_print_str(const char *text) { capsule__hostPrintString(text, strlen(text)); }

/** Prints printf-formatted text and a newline (hostPrintString). */
static inline void capsule_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void capsule_printf(const char *fmt, ...) {
  capsule_buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  capsule_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  capsule__hostPrintString(b.data ? b.data : "", b.len);
  capsule_buf_free(&b);
}

/** Writes `n` bytes as one line to the function log (hostLogString, §5.7). */
static inline void capsule_log(const char *text, size_t n) { capsule__hostLogString(text, n); }

/** Writes a NUL-terminated string as one line to the function log (hostLogString). */
static inline void capsule_log_str(const char *text) { capsule__hostLogString(text, strlen(text)); }

/**
 * The value of environment variable `name` (hostGetEnv, §5.7): the raw value, malloc'd and
 * NUL-terminated (free() it); "" when unset or empty. Length in *len when not NULL.
 */
static inline char *capsule_get_env(const char *name, size_t *len) {
  size_t n;
  capsule__ret_reset();
  capsule__hostGetEnv(name, strlen(name), &capsule__ret[0], &capsule__ret[1]);
  char *v = capsule__ret_take(&n);
  if (len) *len = n;
  return v;
}

/** Demo function hostTalk (§5.7): returns the host's greeting (free() it). */
static inline char *capsule_talk(const char *message) {
  size_t n;
  capsule__ret_reset();
  capsule__hostTalk(message, strlen(message), &capsule__ret[0], &capsule__ret[1]);
  return capsule__ret_take(&n);
}

#define CAPSULE__CALL1(fn, a) do { capsule__ret_reset(); fn(a, strlen(a), &capsule__ret[0], &capsule__ret[1]); } while (0)
#define CAPSULE__CALL2(fn, a, an, b, bn) do { capsule__ret_reset(); fn(a, an, b, bn, &capsule__ret[0], &capsule__ret[1]); } while (0)

/** Reads a file through the function's mounts (hostReadFile): S<content> / F<error>. */
static inline capsule_result capsule_read_file(const char *path) { CAPSULE__CALL1(capsule__hostReadFile, path); return capsule__ret_frame(); }
/** Writes `n` bytes to a file (mode 0644) (hostWriteFile): S<path> / F<error>. */
static inline capsule_result capsule_write_file(const char *path, const char *content, size_t n) { CAPSULE__CALL2(capsule__hostWriteFile, path, strlen(path), content, n); return capsule__ret_frame(); }
/** Memory cache set (hostCacheSet): S<key>. */
static inline capsule_result capsule_cache_set(const char *key, const char *value, size_t n) { CAPSULE__CALL2(capsule__hostCacheSet, key, strlen(key), value, n); return capsule__ret_frame(); }
/** Memory cache get (hostCacheGet): S<value> / "Fkey not found". */
static inline capsule_result capsule_cache_get(const char *key) { CAPSULE__CALL1(capsule__hostCacheGet, key); return capsule__ret_frame(); }
/** Memory cache delete (hostCacheDel): S<key>. */
static inline capsule_result capsule_cache_del(const char *key) { CAPSULE__CALL1(capsule__hostCacheDel, key); return capsule__ret_frame(); }
/** Memory cache keys matching a glob (hostCacheKeys): S{"keys":[…]}. */
static inline capsule_result capsule_cache_keys(const char *pattern) { CAPSULE__CALL1(capsule__hostCacheKeys, pattern); return capsule__ret_frame(); }
/** Redis SET (hostRedisSet): S<key> / F<error>. */
static inline capsule_result capsule_redis_set(const char *key, const char *value, size_t n) { CAPSULE__CALL2(capsule__hostRedisSet, key, strlen(key), value, n); return capsule__ret_frame(); }
/** Redis GET (hostRedisGet): S<value> / F<error> ("Fredis: nil" when missing). */
static inline capsule_result capsule_redis_get(const char *key) { CAPSULE__CALL1(capsule__hostRedisGet, key); return capsule__ret_frame(); }
/** Redis DEL (hostRedisDel): S<key> / F<error>. */
static inline capsule_result capsule_redis_del(const char *key) { CAPSULE__CALL1(capsule__hostRedisDel, key); return capsule__ret_frame(); }
/** Redis KEYS (hostRedisKeys): S{"keys":[…]} / F<error>. */
static inline capsule_result capsule_redis_keys(const char *pattern) { CAPSULE__CALL1(capsule__hostRedisKeys, pattern); return capsule__ret_frame(); }
/** CouchBase N1QL query (hostCouchBaseQuery): S<JSON array of rows> / F<error>. */
static inline capsule_result capsule_couchbase_query(const char *query) { CAPSULE__CALL1(capsule__hostCouchBaseQuery, query); return capsule__ret_frame(); }
/** Extension (§8): NATS publish (hostNatsPublish): S<subject> / F<error>. */
static inline capsule_result capsule_nats_publish(const char *subject, const char *data, size_t n) { CAPSULE__CALL2(capsule__hostNatsPublish, subject, strlen(subject), data, n); return capsule__ret_frame(); }
/** Extension (§8): MQTT publish (hostMqttPublish): S<topic> / F<error>. */
static inline capsule_result capsule_mqtt_publish(const char *topic, const char *data, size_t n) { CAPSULE__CALL2(capsule__hostMqttPublish, topic, strlen(topic), data, n); return capsule__ret_frame(); }

/** Extension (§8): NATS request/reply with a timeout in ms (hostNatsRequest): S<reply> / F<error>. */
static inline capsule_result capsule_nats_request(const char *subject, const char *data, size_t n, int32_t timeout_ms) {
  capsule__ret_reset();
  capsule__hostNatsRequest(subject, strlen(subject), data, n, timeout_ms, &capsule__ret[0], &capsule__ret[1]);
  return capsule__ret_frame();
}

/** Extension (§8): adds `delta` to the integer at `key` (hostKvIncrement): S<new value> / F<error>. */
static inline capsule_result capsule_kv_increment(const char *key, long long delta) {
  char d[24];
  int n = snprintf(d, sizeof d, "%lld", delta);
  CAPSULE__CALL2(capsule__hostKvIncrement, key, strlen(key), d, (size_t)n);
  return capsule__ret_frame();
}

/**
 * Outbound HTTP (hostHTTP, §5.7). `request_json` is the request object
 * `{"JSONBody":…,"TextBody":"…","URI":"…","Method":"…","Headers":{…}}` (build it with the
 * capsule_buf_append_json_* helpers). Success: the response JSON
 * `{"JSONBody":…|"TextBody":"…","Headers":{"Name":["v"]},"StatusCode":n}`; read it with
 * capsule_json_get_raw / capsule_json_get_string.
 */
static inline capsule_result capsule_http(const char *request_json, size_t n) {
  capsule__ret_reset();
  capsule__hostHTTP(request_json, n, &capsule__ret[0], &capsule__ret[1]);
  return capsule__ret_frame();
}

/* ---------------------------------------------------------------------------------------------
 * HTTP request and response (§5.3, §5.4).
 * ------------------------------------------------------------------------------------------- */

/** An incoming HTTP request. Fields are malloc'd, NUL-terminated; the SDK frees them. */
typedef struct capsule_request {
  char *body;       /* raw body as text (invalid UTF-8 arrives as U+FFFD) */
  size_t body_len;  /* bytes */
  char *uri;        /* full URL http[s]://<Host><path>[?<query>] */
  char *method;     /* upper-case */
  char *headers;    /* the Headers string as received: "Name":"value",… */
  size_t headers_len;
} capsule_request;

/**
 * The value of request header `name` (compared case-insensitively), malloc'd and
 * NUL-terminated (free() it), or NULL when absent or when the Headers string is malformed.
 */
static inline char *capsule_request_header(const capsule_request *req, const char *name) {
  const char *p = req->headers, *end = req->headers + req->headers_len;
  capsule_buf k = {0}, v = {0};
  char *found = NULL;
  p = capsule__json_ws(p, end);
  while (p && p < end) {
    k.len = 0;
    v.len = 0;
    p = capsule__json_string(p, end, &k);
    if (!p) break;
    p = capsule__json_ws(p, end);
    if (p >= end || *p != ':') break;
    p = capsule__json_string(capsule__json_ws(p + 1, end), end, &v);
    if (!p) break;
    size_t nl = strlen(name);
    if (k.len == nl) {
      size_t i = 0;
      for (; i < nl; i++) {
        char a = k.data[i], b = name[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
        if (a != b) break;
      }
      if (i == nl) {
        free(found);
        found = capsule__strndup(v.data, v.len);
      }
    }
    p = capsule__json_ws(p, end);
    if (p < end && *p == ',') p = capsule__json_ws(p + 1, end);
  }
  capsule_buf_free(&k);
  capsule_buf_free(&v);
  return found;
}

/**
 * An HTTP response. Build it with capsule_response_text / _json / _failure, then add headers
 * with capsule_response_set_header. The SDK frees it after serialising.
 */
typedef struct capsule_response {
  int status;            /* HTTP status (0 is read as 200) */
  bool json;             /* body is raw JSON text (JSONBody) rather than text (TextBody) */
  bool failed;           /* send F<body> instead of a response (host answers 500 text/plain) */
  capsule_buf body;      /* the body bytes */
  capsule_buf headers;   /* members "Name":"value" joined by ',' (escaped by set_header) */
} capsule_response;

/** Adds a response header (both strings are JSON-escaped). */
static inline void capsule_response_set_header(capsule_response *r, const char *name, const char *value) {
  if (r->headers.len) capsule_buf_append_byte(&r->headers, ',');
  capsule_buf_append_json_str(&r->headers, name);
  capsule_buf_append_byte(&r->headers, ':');
  capsule_buf_append_json_str(&r->headers, value);
}

/** A text (or any non-JSON) response: `n` bytes sent base64-encoded in TextBody. */
static inline capsule_response capsule_response_text(int status, const char *content_type, const char *body, size_t n) {
  capsule_response r;
  memset(&r, 0, sizeof r);
  r.status = status;
  capsule_buf_append(&r.body, body, n);
  if (content_type) capsule_response_set_header(&r, "Content-Type", content_type);
  return r;
}

/** A JSON response: `json` is raw JSON text (checked by the SDK; invalid → F frame). */
static inline capsule_response capsule_response_json(int status, const char *json, size_t n) {
  capsule_response r = capsule_response_text(status, "application/json; charset=utf-8", json, n);
  r.json = true;
  return r;
}

/** A handler failure: the SDK returns F<message>; hosts answer 500 text/plain (§5.4 step 1). */
static inline capsule_response capsule_response_failure(const char *message) {
  capsule_response r = capsule_response_text(500, NULL, message, strlen(message));
  r.failed = true;
  return r;
}

/** Frees a response's buffers. */
static inline void capsule_response_free(capsule_response *r) {
  capsule_buf_free(&r->body);
  capsule_buf_free(&r->headers);
}

/* ---------------------------------------------------------------------------------------------
 * Handlers and exports (§5.2).
 * ------------------------------------------------------------------------------------------- */

/** callHandle handler: params (NUL-terminated copy, `len` bytes) in, S/F payload out. */
typedef capsule_result (*capsule_handler)(const char *params, size_t len);
/** callHandleHTTP handler. */
typedef capsule_response (*capsule_http_handler)(const capsule_request *req);

/**
 * A message from a NATS or MQTT trigger (§8 extension `callHandleMessage`). Fields are
 * malloc'd, NUL-terminated; the SDK frees them.
 */
typedef struct capsule_message {
  char *subject;      /* NATS subject, "" for MQTT */
  char *topic;        /* MQTT topic, "" for NATS */
  char *data;         /* the payload (base64-decoded) */
  size_t data_len;
  char *headers;      /* JSON object text {"Name":"value",…}: read with capsule_json_get_string */
  size_t headers_len;
  char *reply_to;     /* where the S result is published; "" when none */
} capsule_message;

/** callHandleMessage handler: its S result is published to reply_to when set. */
typedef capsule_result (*capsule_message_handler)(const capsule_message *msg);

static capsule_message_handler capsule__message_handler;

/**
 * Registers the callHandleMessage handler. The export exists only when the file that includes
 * capsule.h defines CAPSULE_EXPORT_MESSAGE_HANDLER first (exporting it announces a handler).
 */
static inline void capsule_set_handle_message(capsule_message_handler fn) { capsule__message_handler = fn; }

static capsule_handler capsule__handler;
static capsule_handler capsule__json_handler;
static capsule_http_handler capsule__http_handler;

/** Registers the callHandle handler (call it from a constructor). */
static inline void capsule_set_handle(capsule_handler fn) { capsule__handler = fn; }
/** Registers the callHandleJSON handler: it receives the input text only when it is valid JSON. */
static inline void capsule_set_handle_json(capsule_handler fn) { capsule__json_handler = fn; }
/** Registers the callHandleHTTP handler. */
static inline void capsule_set_handle_http(capsule_http_handler fn) { capsule__http_handler = fn; }

#ifndef CAPSULE_NO_EXPORTS

/* The last result, kept alive until the next handler export is called (§2.3). */
static char *capsule__last_result;

/* A string member of the host's input JSON, decoded; "" when absent or not a string (free() it). */
static inline char *capsule__member(const char *json, size_t n, const char *key, size_t *out_len) {
  char *v = capsule_json_get_string(json, n, key, out_len);
  if (v) return v;
  if (out_len) *out_len = 0;
  return capsule__strndup("", 0);
}

/* Frees the previous result: every handler export starts with it (the host has read it). */
static inline void capsule__release_result(void) {
  free(capsule__last_result);
  capsule__last_result = NULL;
}

static inline uint64_t capsule__pack_frame(char tag, const char *payload, size_t n) {
  free(capsule__last_result);
  char *p = (char *)malloc(n + 1);
  if (!p) abort();
  p[0] = tag;
  if (n) memcpy(p + 1, payload, n);
  capsule__last_result = p;
  return (uint64_t)(uintptr_t)p << 32 | (uint64_t)(uint32_t)(n + 1);
}

static inline uint64_t capsule__pack_result(capsule_result r) {
  uint64_t packed = capsule__pack_frame(r.ok ? 'S' : 'F', r.data ? r.data : "", r.data ? r.len : 0);
  free(r.data);
  return packed;
}

/** Export malloc(size) -> ptr (§2.3): wasi-libc's malloc. */
__attribute__((export_name("malloc"))) void *capsule__export_malloc(size_t size) { return malloc(size); }

/** Export free(ptr) (§2.3). */
__attribute__((export_name("free"))) void capsule__export_free(void *ptr) { free(ptr); }

/**
 * Export allocateBuffer(size) -> ptr (§2.4, §6): one spare byte for the NUL the SDK adds;
 * accepts 0. The SDK hands the block to the caller, who frees it.
 */
__attribute__((export_name("allocateBuffer"))) void *capsule__export_allocate_buffer(size_t size) {
  void *p = malloc(size + 1);
  if (!p) abort();
  return p;
}

static inline char *capsule__input(const char *ptr, size_t len) {
  return capsule__strndup(len ? ptr : "", len);
}

/** Export callHandle(ptr, len) -> i64 (§5.2). */
__attribute__((export_name("callHandle"))) uint64_t capsule__export_call_handle(const char *ptr, size_t len) {
  capsule__release_result();
  if (!capsule__handler) return capsule__pack_result(capsule_fail("this module registered no handler: call capsule_set_handle() in a constructor"));
  char *params = capsule__input(ptr, len);
  capsule_result r = capsule__handler(params, len);
  free(params);
  return capsule__pack_result(r);
}

/** Export callHandleJSON(ptr, len) -> i64 (§5.2). */
__attribute__((export_name("callHandleJSON"))) uint64_t capsule__export_call_handle_json(const char *ptr, size_t len) {
  capsule__release_result();
  if (!capsule__json_handler) return capsule__pack_result(capsule_fail("this module registered no JSON handler: call capsule_set_handle_json() in a constructor"));
  if (!capsule_json_valid(ptr, len)) return capsule__pack_result(capsule_fail("the input is not valid JSON"));
  char *input = capsule__input(ptr, len);
  capsule_result r = capsule__json_handler(input, len);
  free(input);
  return capsule__pack_result(r);
}

/**
 * Serialises a response as the frame of §5.4 and frees it:
 * S{"JSONBody":…,"TextBody":"<base64>","Headers":{…},"StatusCode":n}, or F<…>.
 * Use it to implement OnHealthCheck / OnMetrics exports.
 */
static inline uint64_t capsule_http_result(capsule_response *res) {
  uint64_t packed;
  if (res->failed) {
    packed = capsule__pack_frame('F', res->body.data ? res->body.data : "", res->body.len);
  } else if (res->json && !capsule_json_valid(res->body.data ? res->body.data : "", res->body.len)) {
    packed = capsule__pack_result(capsule_fail("the response body is not valid JSON"));
  } else {
    capsule_buf out = {0};
    capsule_buf_append_str(&out, "{\"JSONBody\":");
    if (res->json && res->body.len) capsule_buf_append(&out, res->body.data, res->body.len);
    else capsule_buf_append_str(&out, "{}");
    capsule_buf_append_str(&out, ",\"TextBody\":\"");
    if (!res->json) capsule_buf_append_base64(&out, res->body.data, res->body.len);
    capsule_buf_append_str(&out, "\",\"Headers\":{");
    if (res->headers.len) capsule_buf_append(&out, res->headers.data, res->headers.len);
    capsule_buf_printf(&out, "},\"StatusCode\":%d}", res->status);
    packed = capsule__pack_frame('S', out.data, out.len);
    capsule_buf_free(&out);
  }
  capsule_response_free(res);
  return packed;
}

/** Export callHandleHTTP(ptr, len) -> i64 (§5.2–§5.4). */
__attribute__((export_name("callHandleHTTP"))) uint64_t capsule__export_call_handle_http(const char *ptr, size_t len) {
  capsule__release_result();
  if (!capsule__http_handler) return capsule__pack_result(capsule_fail("this module registered no HTTP handler: call capsule_set_handle_http() in a constructor"));
  const char *json = len ? ptr : "";
  if (!capsule_json_valid(json, len)) return capsule__pack_result(capsule_fail("the request is not valid JSON"));
  capsule_request req;
  memset(&req, 0, sizeof req);
  req.body = capsule__member(json, len, "Body", &req.body_len);
  req.uri = capsule__member(json, len, "URI", NULL);
  req.method = capsule__member(json, len, "Method", NULL);
  req.headers = capsule__member(json, len, "Headers", &req.headers_len);
  capsule_response res = capsule__http_handler(&req);
  free(req.body);
  free(req.uri);
  free(req.method);
  free(req.headers);
  return capsule_http_result(&res);
}

#ifdef CAPSULE_EXPORT_MESSAGE_HANDLER
/**
 * Export callHandleMessage(ptr, len) -> i64 (§8): input JSON
 * {"Subject"|"Topic":…,"Data":"<base64>","Headers":{…},"ReplyTo":…}; result S<payload> / F<err>.
 */
__attribute__((export_name("callHandleMessage"))) uint64_t capsule__export_call_handle_message(const char *ptr, size_t len) {
  capsule__release_result();
  if (!capsule__message_handler) return capsule__pack_result(capsule_fail("this module registered no message handler: call capsule_set_handle_message() in a constructor"));
  const char *json = len ? ptr : "";
  if (!capsule_json_valid(json, len)) return capsule__pack_result(capsule_fail("the message is not valid JSON"));
  capsule_message m;
  memset(&m, 0, sizeof m);
  size_t n;
  char *data64 = capsule_json_get_string(json, len, "Data", &n);
  capsule_buf data = {0};
  bool ok = capsule_buf_append_base64_decoded(&data, data64 ? data64 : "", data64 ? n : 0);
  free(data64);
  if (!ok) {
    capsule_buf_free(&data);
    return capsule__pack_result(capsule_fail("the message Data is not base64"));
  }
  m.data = data.data ? data.data : capsule__strndup("", 0);
  m.data_len = data.len;
  const char *hv;
  size_t hn;
  if (!capsule_json_get_raw(json, len, "Headers", &hv, &hn) || hn == 0 || *hv != '{') {
    hv = "{}";
    hn = 2;
  }
  m.headers = capsule__strndup(hv, hn);
  m.headers_len = hn;
  m.subject = capsule__member(json, len, "Subject", NULL);
  m.topic = capsule__member(json, len, "Topic", NULL);
  m.reply_to = capsule__member(json, len, "ReplyTo", NULL);
  capsule_result r = capsule__message_handler(&m);
  free(m.subject);
  free(m.topic);
  free(m.data);
  free(m.headers);
  free(m.reply_to);
  return capsule__pack_result(r);
}
#endif /* CAPSULE_EXPORT_MESSAGE_HANDLER */

#endif /* CAPSULE_NO_EXPORTS */

#ifdef __cplusplus
}
#endif

#endif /* CAPSULE_H */
