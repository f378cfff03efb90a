/**
 * A small, strict JSON (RFC 8259) parser and serializer for guests.
 *
 * - `JSON.parse(text)` returns a `JSONValue` tree or null; `JSON.tryParse(text)` also tells why
 *   and where it failed. Strings support every escape, `\uXXXX` included (surrogate pairs come
 *   out as one code point, lone surrogates are kept as in JavaScript); numbers keep their source
 *   text so large integers survive; nesting is limited to `JSON.MAX_DEPTH` levels.
 * - `JSON.stringify(value)` / `value.toString()` and `JSON.quote(s)` escape every string they
 *   emit (`"`, `\`, control characters, lone surrogates as `\uXXXX`), so the output is always
 *   valid JSON whatever the input text holds.
 *
 * AssemblyScript has no exceptions a guest could catch, hence results instead of throws.
 */

/** Kinds of JSON values. */
export enum JSONKind {
  NULL = 0,
  BOOL = 1,
  NUMBER = 2,
  STRING = 3,
  ARRAY = 4,
  OBJECT = 5,
}

/**
 * One JSON value. Objects keep their members in source (or insertion) order; when a key appears
 * twice, lookups see the last one (as JavaScript's `JSON.parse` does).
 */
export class JSONValue {
  kind: JSONKind = JSONKind.NULL;
  /** BOOL value. */
  bool: bool = false;
  /** NUMBER value as f64. */
  num: f64 = 0;
  /** NUMBER: its JSON text (kept to serialise exactly and read integers above 2^53). STRING: the text. */
  str: string = "";
  /** ARRAY items. */
  items: JSONValue[] = [];
  /** OBJECT keys, in order (parallel to `values`). */
  keys: string[] = [];
  /** OBJECT values, in order (parallel to `keys`). */
  values: JSONValue[] = [];

  // --- constructors -----------------------------------------------------------------------

  /** The JSON `null`. */
  static null(): JSONValue {
    return new JSONValue();
  }

  /** `true` or `false`. */
  static bool(b: bool): JSONValue {
    let v = new JSONValue();
    v.kind = JSONKind.BOOL;
    v.bool = b;
    return v;
  }

  /** A number. NaN and infinities are serialised as `null` (as `JSON.stringify` does). */
  static number(n: f64): JSONValue {
    let v = new JSONValue();
    v.kind = JSONKind.NUMBER;
    v.num = n;
    v.str = formatNumber(n);
    return v;
  }

  /** An integer, serialised exactly (even above 2^53). */
  static integer(n: i64): JSONValue {
    let v = new JSONValue();
    v.kind = JSONKind.NUMBER;
    v.num = <f64>n;
    v.str = n.toString();
    return v;
  }

  /** A string. */
  static string(s: string): JSONValue {
    let v = new JSONValue();
    v.kind = JSONKind.STRING;
    v.str = s;
    return v;
  }

  /** An empty array; add items with `push`. */
  static array(): JSONValue {
    let v = new JSONValue();
    v.kind = JSONKind.ARRAY;
    return v;
  }

  /** An empty object; add members with `set`. */
  static object(): JSONValue {
    let v = new JSONValue();
    v.kind = JSONKind.OBJECT;
    return v;
  }

  // --- kind tests -------------------------------------------------------------------------

  /** Whether this is `null`. */
  get isNull(): bool { return this.kind == JSONKind.NULL; }
  /** Whether this is `true` or `false` (read it with `asBool` or `bool`). */
  get isBool(): bool { return this.kind == JSONKind.BOOL; }
  /** Whether this is a number (read it with `asNumber`, `asInteger` or `num`). */
  get isNumber(): bool { return this.kind == JSONKind.NUMBER; }
  /** Whether this is a string (read it with `asString` or `str`). */
  get isString(): bool { return this.kind == JSONKind.STRING; }
  /** Whether this is an array (read it with `at`, `length` or `items`). */
  get isArray(): bool { return this.kind == JSONKind.ARRAY; }
  /** Whether this is an object (read it with `get`, `has`, `keys`/`values`). */
  get isObject(): bool { return this.kind == JSONKind.OBJECT; }

  /** Whether this number is an integer that fits an i64 exactly. */
  get isInteger(): bool {
    if (this.kind != JSONKind.NUMBER) return false;
    return isIntegerText(this.str);
  }

  // --- reading ----------------------------------------------------------------------------

  /** Number of array items or object members (0 for other kinds). */
  get length(): i32 {
    if (this.kind == JSONKind.ARRAY) return this.items.length;
    if (this.kind == JSONKind.OBJECT) return this.keys.length;
    return 0;
  }

  /** Whether this object has member `key`. */
  has(key: string): bool {
    return this.indexOfKey(key) >= 0;
  }

  /** Object member `key` (the last one if repeated), or null (also when this is not an object). */
  get(key: string): JSONValue | null {
    let i = this.indexOfKey(key);
    return i < 0 ? null : unchecked(this.values[i]);
  }

  /** Array item `index`, or null when out of range or not an array. */
  at(index: i32): JSONValue | null {
    if (this.kind != JSONKind.ARRAY || index < 0 || index >= this.items.length) return null;
    return unchecked(this.items[index]);
  }

  /** STRING: its text; any other kind: `fallback`. */
  asString(fallback: string = ""): string {
    return this.kind == JSONKind.STRING ? this.str : fallback;
  }

  /** NUMBER: its value; any other kind: `fallback`. */
  asNumber(fallback: f64 = 0): f64 {
    return this.kind == JSONKind.NUMBER ? this.num : fallback;
  }

  /**
   * NUMBER: its value as an i64 (exact for integer text in the i64 range, else truncated toward
   * zero, saturating); any other kind: `fallback`.
   */
  asInteger(fallback: i64 = 0): i64 {
    if (this.kind != JSONKind.NUMBER) return fallback;
    if (isIntegerText(this.str)) return I64.parseInt(this.str, 10);
    let n = this.num;
    if (isNaN(n)) return fallback;
    if (n >= 9.2233720368547758e18) return i64.MAX_VALUE;
    if (n <= -9.2233720368547758e18) return i64.MIN_VALUE;
    return <i64>n;
  }

  /** BOOL: its value; any other kind: `fallback`. */
  asBool(fallback: bool = false): bool {
    return this.kind == JSONKind.BOOL ? this.bool : fallback;
  }

  /** Member `key` as a string, or `fallback` when missing or not a string. */
  getString(key: string, fallback: string = ""): string {
    let v = this.get(key);
    return v === null ? fallback : v.asString(fallback);
  }

  /** Member `key` as a number, or `fallback` when missing or not a number. */
  getNumber(key: string, fallback: f64 = 0): f64 {
    let v = this.get(key);
    return v === null ? fallback : v.asNumber(fallback);
  }

  /** Member `key` as an integer (see `asInteger`), or `fallback`. */
  getInteger(key: string, fallback: i64 = 0): i64 {
    let v = this.get(key);
    return v === null ? fallback : v.asInteger(fallback);
  }

  /** Member `key` as a bool, or `fallback` when missing or not a bool. */
  getBool(key: string, fallback: bool = false): bool {
    let v = this.get(key);
    return v === null ? fallback : v.asBool(fallback);
  }

  // --- building ---------------------------------------------------------------------------

  /** OBJECT: sets member `key` (replacing an existing one in place). Returns this, for chaining. */
  set(key: string, value: JSONValue): JSONValue {
    assert(this.kind == JSONKind.OBJECT, "JSONValue.set on a non-object");
    let i = this.indexOfKey(key);
    if (i >= 0) {
      unchecked(this.values[i] = value);
    } else {
      this.keys.push(key);
      this.values.push(value);
    }
    return this;
  }

  /** OBJECT: sets a string member. */
  setString(key: string, value: string): JSONValue { return this.set(key, JSONValue.string(value)); }
  /** OBJECT: sets a number member. */
  setNumber(key: string, value: f64): JSONValue { return this.set(key, JSONValue.number(value)); }
  /** OBJECT: sets an integer member. */
  setInteger(key: string, value: i64): JSONValue { return this.set(key, JSONValue.integer(value)); }
  /** OBJECT: sets a bool member. */
  setBool(key: string, value: bool): JSONValue { return this.set(key, JSONValue.bool(value)); }
  /** OBJECT: sets a null member. */
  setNull(key: string): JSONValue { return this.set(key, JSONValue.null()); }

  /** ARRAY: appends an item. Returns this, for chaining. */
  push(value: JSONValue): JSONValue {
    assert(this.kind == JSONKind.ARRAY, "JSONValue.push on a non-array");
    this.items.push(value);
    return this;
  }

  /** OBJECT: removes member `key` (every occurrence). Returns whether it was there. */
  delete(key: string): bool {
    let found = false;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (unchecked(this.keys[i]) == key) {
        this.keys.splice(i, 1);
        this.values.splice(i, 1);
        found = true;
      }
    }
    return found;
  }

  /** Compact JSON text of this value. */
  toString(): string {
    let parts = new Array<string>();
    writeValue(parts, this);
    return parts.join("");
  }

  private indexOfKey(key: string): i32 {
    if (this.kind != JSONKind.OBJECT) return -1;
    let keys = this.keys;
    for (let i = keys.length - 1; i >= 0; i--) {
      if (unchecked(keys[i]) == key) return i;
    }
    return -1;
  }
}

/** Outcome of `JSON.tryParse`: a value, or an error message and the UTF-16 offset it refers to. */
export class JSONParseResult {
  constructor(
    /** The parsed value; null on error. */
    public value: JSONValue | null,
    /** Empty on success, else e.g. `unexpected character 'x' at offset 12`. */
    public error: string = "",
    /** Offset (UTF-16 units) of the error; -1 on success. */
    public offset: i32 = -1,
  ) {}

  /** Whether parsing succeeded. */
  get ok(): bool { return this.value !== null; }
}

/** Entry points, named after JavaScript's. */
export namespace JSON {
  /** Deepest nesting of arrays and objects `parse` accepts. */
  export const MAX_DEPTH: i32 = 256;

  /** Parses JSON text. Returns null when it is not exactly one valid JSON value. */
  export function parse(text: string): JSONValue | null {
    return tryParse(text).value;
  }

  /** Parses JSON text, telling what went wrong on failure (see `JSONParseResult`). */
  export function tryParse(text: string): JSONParseResult {
    let p = new Parser(text);
    p.skipSpace();
    let v = p.value(0);
    if (v !== null) {
      p.skipSpace();
      if (p.pos < text.length) {
        p.fail("unexpected " + describe(text, p.pos) + " after the JSON value");
        v = null;
      }
    }
    if (v === null) return new JSONParseResult(null, p.error + " at offset " + p.errorAt.toString(), p.errorAt);
    return new JSONParseResult(v, "", -1);
  }

  /** Compact JSON text of a value. */
  export function stringify(value: JSONValue): string {
    return value.toString();
  }

  /** `s` as a JSON string literal, quotes included: `a"b` → `"a\"b"`. */
  export function quote(s: string): string {
    let parts = new Array<string>();
    writeString(parts, s);
    return parts.join("");
  }

  /** Whether `text` is exactly one valid JSON value. */
  export function isValid(text: string): bool {
    return tryParse(text).ok;
  }
}

// --- serializer ---------------------------------------------------------------------------

const HEX = "0123456789abcdef";

function writeValue(out: string[], v: JSONValue): void {
  switch (v.kind) {
    case JSONKind.NULL: out.push("null"); break;
    case JSONKind.BOOL: out.push(v.bool ? "true" : "false"); break;
    case JSONKind.NUMBER: out.push(v.str.length > 0 ? v.str : formatNumber(v.num)); break;
    case JSONKind.STRING: writeString(out, v.str); break;
    case JSONKind.ARRAY: {
      out.push("[");
      let items = v.items;
      for (let i = 0; i < items.length; i++) {
        if (i > 0) out.push(",");
        writeValue(out, unchecked(items[i]));
      }
      out.push("]");
      break;
    }
    case JSONKind.OBJECT: {
      out.push("{");
      let keys = v.keys;
      let values = v.values;
      for (let i = 0; i < keys.length; i++) {
        if (i > 0) out.push(",");
        writeString(out, unchecked(keys[i]));
        out.push(":");
        writeValue(out, unchecked(values[i]));
      }
      out.push("}");
      break;
    }
  }
}

function unicodeEscape(c: u32): string {
  return "\\u" + HEX.charAt((c >> 12) & 15) + HEX.charAt((c >> 8) & 15) + HEX.charAt((c >> 4) & 15) + HEX.charAt(c & 15);
}

/** Appends `s` as a JSON string literal; runs without escapes are copied as one substring. */
function writeString(out: string[], s: string): void {
  out.push("\"");
  let n = s.length;
  let start = 0;
  for (let i = 0; i < n; i++) {
    let c = <u32>s.charCodeAt(i);
    let esc: string | null = null;
    if (c == 0x22) esc = "\\\"";
    else if (c == 0x5C) esc = "\\\\";
    else if (c < 0x20) {
      if (c == 0x0A) esc = "\\n";
      else if (c == 0x0D) esc = "\\r";
      else if (c == 0x09) esc = "\\t";
      else if (c == 0x08) esc = "\\b";
      else if (c == 0x0C) esc = "\\f";
      else esc = unicodeEscape(c);
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      // a well-formed pair is copied; a lone surrogate is escaped (ES2019 JSON.stringify)
      if (c <= 0xDBFF && i + 1 < n) {
        let d = <u32>s.charCodeAt(i + 1);
        if (d >= 0xDC00 && d <= 0xDFFF) { i++; continue; }
      }
      esc = unicodeEscape(c);
    }
    if (esc !== null) {
      if (i > start) out.push(s.substring(start, i));
      out.push(esc);
      start = i + 1;
    }
  }
  if (start == 0) out.push(s);
  else if (start < n) out.push(s.substring(start, n));
  out.push("\"");
}

/** JSON text of a number: integers without a fraction, NaN/infinities as `null`. */
function formatNumber(n: f64): string {
  if (!isFinite(n)) return "null";
  if (n == Math.floor(n) && Math.abs(n) < 9007199254740992.0) {
    if (n == 0) return "0"; // also -0, as JSON.stringify
    return (<i64>n).toString();
  }
  return n.toString();
}

/** Whether a JSON number text is an integer within the i64 range. */
function isIntegerText(s: string): bool {
  let n = s.length;
  if (n == 0) return false;
  let i = s.charCodeAt(0) == 0x2D ? 1 : 0;
  if (i >= n) return false;
  for (let k = i; k < n; k++) {
    let c = s.charCodeAt(k);
    if (c < 0x30 || c > 0x39) return false;
  }
  let digits = n - i;
  if (digits < 19) return true;
  if (digits > 19) return false;
  // 19 digits: compare with the bounds
  let bound = i == 1 ? "9223372036854775808" : "9223372036854775807";
  return s.substring(i) <= bound;
}

// --- parser -------------------------------------------------------------------------------

function describe(text: string, pos: i32): string {
  if (pos >= text.length) return "end of input";
  let c = text.charCodeAt(pos);
  if (c < 0x20 || c == 0x7F) return "control character U+" + c.toString(16).padStart(4, "0").toUpperCase();
  return "character '" + text.charAt(pos) + "'";
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

class Parser {
  text: string;
  pos: i32 = 0;
  error: string = "";
  errorAt: i32 = -1;

  constructor(text: string) {
    this.text = text;
  }

  fail(message: string): void {
    if (this.errorAt < 0) {
      this.error = message;
      this.errorAt = this.pos;
    }
  }

  skipSpace(): void {
    let t = this.text;
    let n = t.length;
    let p = this.pos;
    while (p < n) {
      let c = t.charCodeAt(p);
      if (c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  /** Parses one value at `pos` (no leading space). */
  value(depth: i32): JSONValue | null {
    let t = this.text;
    if (this.pos >= t.length) {
      this.fail("unexpected end of input");
      return null;
    }
    let c = t.charCodeAt(this.pos);
    if (c == 0x7B) return this.object(depth);
    if (c == 0x5B) return this.array(depth);
    if (c == 0x22) {
      let s = this.string();
      return s === null ? null : JSONValue.string(s);
    }
    if (c == 0x2D || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.literal("true")) return JSONValue.bool(true);
    if (this.literal("false")) return JSONValue.bool(false);
    if (this.literal("null")) return JSONValue.null();
    this.fail("unexpected " + describe(t, this.pos));
    return null;
  }

  literal(word: string): bool {
    let t = this.text;
    let n = word.length;
    if (this.pos + n > t.length) return false;
    for (let i = 0; i < n; i++) {
      if (t.charCodeAt(this.pos + i) != word.charCodeAt(i)) return false;
    }
    this.pos += n;
    return true;
  }

  number(): JSONValue | null {
    let t = this.text;
    let n = t.length;
    let start = this.pos;
    let p = start;
    if (t.charCodeAt(p) == 0x2D) p++;
    if (p >= n) { this.pos = p; this.fail("unexpected end of input in a number"); return null; }
    let c = t.charCodeAt(p);
    if (c == 0x30) {
      p++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (p < n && t.charCodeAt(p) >= 0x30 && t.charCodeAt(p) <= 0x39) p++;
    } else {
      this.pos = p;
      this.fail("unexpected " + describe(t, p) + " in a number");
      return null;
    }
    if (p < n && t.charCodeAt(p) == 0x2E) {
      p++;
      let d = p;
      while (p < n && t.charCodeAt(p) >= 0x30 && t.charCodeAt(p) <= 0x39) p++;
      if (p == d) { this.pos = p; this.fail("expected a digit after '.' but found " + describe(t, p)); return null; }
    }
    if (p < n && (t.charCodeAt(p) == 0x65 || t.charCodeAt(p) == 0x45)) {
      p++;
      if (p < n && (t.charCodeAt(p) == 0x2B || t.charCodeAt(p) == 0x2D)) p++;
      let d = p;
      while (p < n && t.charCodeAt(p) >= 0x30 && t.charCodeAt(p) <= 0x39) p++;
      if (p == d) { this.pos = p; this.fail("expected a digit in the exponent but found " + describe(t, p)); return null; }
    }
    this.pos = p;
    let raw = t.substring(start, p);
    let v = new JSONValue();
    v.kind = JSONKind.NUMBER;
    v.num = parseFloat(raw);
    v.str = raw;
    return v;
  }

  /** Parses a string literal at `pos` (which holds `"`); returns its text or null. */
  string(): string | null {
    let t = this.text;
    let n = t.length;
    let p = this.pos + 1;
    let start = p;
    let parts: string[] | null = null;
    while (true) {
      if (p >= n) { this.pos = p; this.fail("unterminated string"); return null; }
      let c = t.charCodeAt(p);
      if (c == 0x22) break;
      if (c < 0x20) { this.pos = p; this.fail("unescaped " + describe(t, p) + " in a string"); return null; }
      if (c != 0x5C) { p++; continue; }
      if (parts === null) parts = new Array<string>();
      if (p > start) parts.push(t.substring(start, p));
      if (p + 1 >= n) { this.pos = p + 1; this.fail("unterminated string"); return null; }
      let e = t.charCodeAt(p + 1);
      p += 2;
      if (e == 0x22) parts.push("\"");
      else if (e == 0x5C) parts.push("\\");
      else if (e == 0x2F) parts.push("/");
      else if (e == 0x62) parts.push("\b");
      else if (e == 0x66) parts.push("\f");
      else if (e == 0x6E) parts.push("\n");
      else if (e == 0x72) parts.push("\r");
      else if (e == 0x74) parts.push("\t");
      else if (e == 0x75) {
        if (p + 4 > n) { this.pos = p; this.fail("incomplete \\u escape"); return null; }
        let u = 0;
        for (let k = 0; k < 4; k++) {
          let h = hexDigit(t.charCodeAt(p + k));
          if (h < 0) { this.pos = p + k; this.fail("invalid hex digit " + describe(t, p + k) + " in a \\u escape"); return null; }
          u = (u << 4) | h;
        }
        p += 4;
        // a pair \uD83D\uDE00 yields two UTF-16 units, i.e. one code point: nothing more to do
        parts.push(String.fromCharCode(u));
      } else {
        this.pos = p - 1;
        this.fail("invalid escape " + describe(t, p - 1));
        return null;
      }
      start = p;
    }
    this.pos = p + 1;
    if (parts === null) return t.substring(start, p);
    if (p > start) parts.push(t.substring(start, p));
    return parts.join("");
  }

  array(depth: i32): JSONValue | null {
    if (depth >= JSON.MAX_DEPTH) { this.fail("nesting deeper than " + JSON.MAX_DEPTH.toString() + " levels"); return null; }
    let t = this.text;
    let v = JSONValue.array();
    this.pos++; // [
    this.skipSpace();
    if (this.pos < t.length && t.charCodeAt(this.pos) == 0x5D) { this.pos++; return v; }
    while (true) {
      let item = this.value(depth + 1);
      if (item === null) return null;
      v.items.push(item);
      this.skipSpace();
      if (this.pos >= t.length) { this.fail("unterminated array"); return null; }
      let c = t.charCodeAt(this.pos);
      if (c == 0x2C) { this.pos++; this.skipSpace(); continue; }
      if (c == 0x5D) { this.pos++; return v; }
      this.fail("expected ',' or ']' but found " + describe(t, this.pos));
      return null;
    }
  }

  object(depth: i32): JSONValue | null {
    if (depth >= JSON.MAX_DEPTH) { this.fail("nesting deeper than " + JSON.MAX_DEPTH.toString() + " levels"); return null; }
    let t = this.text;
    let v = JSONValue.object();
    this.pos++; // {
    this.skipSpace();
    if (this.pos < t.length && t.charCodeAt(this.pos) == 0x7D) { this.pos++; return v; }
    while (true) {
      if (this.pos >= t.length) { this.fail("unterminated object"); return null; }
      if (t.charCodeAt(this.pos) != 0x22) { this.fail("expected a string key but found " + describe(t, this.pos)); return null; }
      let key = this.string();
      if (key === null) return null;
      this.skipSpace();
      if (this.pos >= t.length || t.charCodeAt(this.pos) != 0x3A) { this.fail("expected ':' but found " + describe(t, this.pos)); return null; }
      this.pos++;
      this.skipSpace();
      let item = this.value(depth + 1);
      if (item === null) return null;
      v.keys.push(key);
      v.values.push(item);
      this.skipSpace();
      if (this.pos >= t.length) { this.fail("unterminated object"); return null; }
      let c = t.charCodeAt(this.pos);
      if (c == 0x2C) { this.pos++; this.skipSpace(); continue; }
      if (c == 0x7D) { this.pos++; return v; }
      this.fail("expected ',' or '}' but found " + describe(t, this.pos));
      return null;
    }
  }
}
