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
  // The three lists are created on first use: most values (strings, numbers, …) never need
  // them, and an empty array costs two allocations.
  private _items: JSONValue[] | null = null;
  private _keys: string[] | null = null;
  private _values: JSONValue[] | null = null;

  /** ARRAY items. */
  get items(): JSONValue[] {
    let a = this._items;
    if (a === null) this._items = a = new Array<JSONValue>();
    return a;
  }
  set items(items: JSONValue[]) { this._items = items; }
  /** OBJECT keys, in order (parallel to `values`). */
  get keys(): string[] {
    let a = this._keys;
    if (a === null) this._keys = a = new Array<string>();
    return a;
  }
  set keys(keys: string[]) { this._keys = keys; }
  /** OBJECT values, in order (parallel to `keys`). */
  get values(): JSONValue[] {
    let a = this._values;
    if (a === null) this._values = a = new Array<JSONValue>();
    return a;
  }
  set values(values: JSONValue[]) { this._values = values; }

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
    if (this.kind == JSONKind.ARRAY) {
      let items = this._items;
      return items === null ? 0 : items.length;
    }
    if (this.kind == JSONKind.OBJECT) {
      let keys = this._keys;
      return keys === null ? 0 : keys.length;
    }
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
    if (this.kind != JSONKind.ARRAY || index < 0 || index >= this.length) return null;
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
    if (this._keys === null) return false;
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
    let mark = sbMark();
    writeValue(this);
    return sbFinish(mark);
  }

  private indexOfKey(key: string): i32 {
    if (this.kind != JSONKind.OBJECT) return -1;
    let keys = this._keys;
    if (keys === null) return -1;
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
    let p = sharedParser(text, true);
    p.skipSpace();
    let v = p.value(0);
    if (v !== null) {
      p.skipSpace();
      if (p.pos < text.length) {
        p.fail("unexpected " + describe(text, p.pos) + " after the JSON value");
        v = null;
      }
    }
    done(p);
    if (v === null) return new JSONParseResult(null, p.error + " at offset " + p.errorAt.toString(), p.errorAt);
    return new JSONParseResult(v, "", -1);
  }

  /** Compact JSON text of a value. */
  export function stringify(value: JSONValue): string {
    return value.toString();
  }

  /** `s` as a JSON string literal, quotes included: `a"b` → `"a\"b"`. */
  export function quote(s: string): string {
    let mark = sbMark();
    sbQuoted(s);
    return sbFinish(mark);
  }

  /** Whether `text` is exactly one valid JSON value. */
  export function isValid(text: string): bool {
    // the parser of tryParse, run without building values: same verdict, no tree
    let p = sharedParser(text, false);
    p.skipSpace();
    let ok = p.value(0) !== null;
    if (ok) {
      p.skipSpace();
      ok = p.pos >= text.length;
    }
    done(p);
    return ok;
  }
}

// --- serializer ---------------------------------------------------------------------------

// Text is built as UTF-16 units in one scratch block outside the GC heap, then copied into one
// string: one allocation per result instead of one per piece. Users nest by taking a mark
// (`sbMark`) and finishing from it (`sbFinish`), which restores the mark.
let sbPtr: usize = 0;
let sbCap: usize = 0; // bytes
let sbLen: usize = 0; // bytes
/** Blocks above this size are given back once a top-level result is built. */
const SB_KEEP: usize = 16384;

// @ts-ignore: decorator
@inline function sbMark(): usize {
  return sbLen;
}

function sbGrow(need: usize): void {
  let cap = sbCap < 256 ? <usize>256 : sbCap;
  while (cap < need) cap <<= 1;
  sbPtr = sbPtr == 0 ? heap.alloc(cap) : heap.realloc(sbPtr, cap);
  sbCap = cap;
}

// @ts-ignore: decorator
@inline function sbReserve(bytes: usize): usize {
  let need = sbLen + bytes;
  if (need > sbCap) sbGrow(need);
  let at = sbPtr + sbLen;
  sbLen = need;
  return at;
}

function sbUnit(c: u32): void {
  store<u16>(sbReserve(2), <u16>c);
}

function sbStr(s: string): void {
  let bytes = <usize>s.length << 1;
  memory.copy(sbReserve(bytes), changetype<usize>(s), bytes);
}

/** The text written since `mark`, as a new string; the builder goes back to `mark`. */
function sbFinish(mark: usize): string {
  let bytes = sbLen - mark;
  let out = __new(bytes, idof<String>());
  memory.copy(out, sbPtr + mark, bytes);
  sbLen = mark;
  if (mark == 0 && sbCap > SB_KEEP) {
    heap.free(sbPtr);
    sbPtr = 0;
    sbCap = 0;
  }
  return changetype<string>(out);
}

const HEX = "0123456789abcdef";

/** Set when `writeValue` wrote a number text that is not JSON (only a hand-set `str` can be). */
let wroteInvalid = false;

/**
 * `value.toString()`, and whether the text is known to be valid JSON (it is unless a NUMBER's
 * `str` was set by hand to something else). For the SDK (Response.json); not public API.
 */
export function serialize(value: JSONValue): string {
  wroteInvalid = false;
  let text = value.toString();
  lastSerializedValid = !wroteInvalid;
  return text;
}

/** Whether the text of the last `serialize` is valid JSON. */
export let lastSerializedValid = false;

/** Whether `s` is exactly a JSON number (RFC 8259 grammar). */
function isNumberText(s: string): bool {
  let base = changetype<usize>(s);
  let n = s.length;
  let p = 0;
  if (p < n && load<u16>(base) == 0x2D) p++;
  if (p >= n) return false;
  let c = <u32>load<u16>(base + (<usize>p << 1));
  if (c == 0x30) {
    p++;
  } else if (c - 0x31 <= 8) {
    while (p < n && <u32>load<u16>(base + (<usize>p << 1)) - 0x30 <= 9) p++;
  } else {
    return false;
  }
  if (p < n && load<u16>(base + (<usize>p << 1)) == 0x2E) {
    let d = ++p;
    while (p < n && <u32>load<u16>(base + (<usize>p << 1)) - 0x30 <= 9) p++;
    if (p == d) return false;
  }
  if (p < n && (load<u16>(base + (<usize>p << 1)) | 0x20) == 0x65) {
    p++;
    if (p < n) {
      let sign = load<u16>(base + (<usize>p << 1));
      if (sign == 0x2B || sign == 0x2D) p++;
    }
    let d = p;
    while (p < n && <u32>load<u16>(base + (<usize>p << 1)) - 0x30 <= 9) p++;
    if (p == d) return false;
  }
  return p == n;
}

function writeValue(v: JSONValue): void {
  switch (v.kind) {
    case JSONKind.NULL: sbStr("null"); break;
    case JSONKind.BOOL: sbStr(v.bool ? "true" : "false"); break;
    case JSONKind.NUMBER: {
      let text = v.str;
      if (text.length == 0) {
        text = formatNumber(v.num);
      } else if (!isNumberText(text)) {
        wroteInvalid = true; // `str` set by hand: written as is, as always
      }
      sbStr(text);
      break;
    }
    case JSONKind.STRING: sbQuoted(v.str); break;
    case JSONKind.ARRAY: {
      sbUnit(0x5B);
      let n = v.length;
      if (n > 0) {
        let items = v.items;
        for (let i = 0; i < n; i++) {
          if (i > 0) sbUnit(0x2C);
          writeValue(unchecked(items[i]));
        }
      }
      sbUnit(0x5D);
      break;
    }
    case JSONKind.OBJECT: {
      sbUnit(0x7B);
      let n = v.length;
      if (n > 0) {
        let keys = v.keys;
        let values = v.values;
        if (values.length < n) wroteInvalid = true; // lists set by hand
        for (let i = 0; i < n; i++) {
          if (i > 0) sbUnit(0x2C);
          sbQuoted(unchecked(keys[i]));
          sbUnit(0x3A);
          writeValue(unchecked(values[i]));
        }
      }
      sbUnit(0x7D);
      break;
    }
  }
}

/** Writes `\uXXXX` for the UTF-16 unit `c`. */
function sbUnicodeEscape(c: u32): void {
  let at = sbReserve(12);
  let hex = changetype<usize>(HEX);
  store<u16>(at, 0x5C);
  store<u16>(at, 0x75, 2);
  store<u16>(at, load<u16>(hex + (((c >> 12) & 15) << 1)), 4);
  store<u16>(at, load<u16>(hex + (((c >> 8) & 15) << 1)), 6);
  store<u16>(at, load<u16>(hex + (((c >> 4) & 15) << 1)), 8);
  store<u16>(at, load<u16>(hex + ((c & 15) << 1)), 10);
}

/**
 * The escape of a UTF-16 unit in a JSON string: 0 = copy it as is, 1 = `\uXXXX`, else the
 * letter after the backslash (`"`, `\`, `n`, `r`, `t`, `b`, `f`). Surrogates are handled by
 * the callers (a well-formed pair is copied, a lone one escaped, as ES2019 `JSON.stringify`).
 */
// @ts-ignore: decorator
@inline export function escapeOf(c: u32): u32 {
  if (c == 0x22) return 0x22;
  if (c == 0x5C) return 0x5C;
  if (c >= 0x20) return 0;
  if (c == 0x0A) return 0x6E;
  if (c == 0x0D) return 0x72;
  if (c == 0x09) return 0x74;
  if (c == 0x08) return 0x62;
  if (c == 0x0C) return 0x66;
  return 1;
}

/** Appends `s` as a JSON string literal; runs without escapes are copied in one go. */
function sbQuoted(s: string): void {
  sbUnit(0x22);
  let src = changetype<usize>(s);
  let n = s.length;
  let start = 0;
  for (let i = 0; i < n; i++) {
    let c = <u32>load<u16>(src + (<usize>i << 1));
    let esc: u32 = 0;
    if (c < 0x20 || c == 0x22 || c == 0x5C) {
      esc = escapeOf(c);
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      if (c <= 0xDBFF && i + 1 < n) {
        let d = <u32>load<u16>(src + (<usize>(i + 1) << 1));
        if (d >= 0xDC00 && d <= 0xDFFF) { i++; continue; }
      }
      esc = 1;
    }
    if (esc == 0) continue;
    if (i > start) {
      let bytes = <usize>(i - start) << 1;
      memory.copy(sbReserve(bytes), src + (<usize>start << 1), bytes);
    }
    if (esc == 1) {
      sbUnicodeEscape(c);
    } else {
      let at = sbReserve(4);
      store<u16>(at, 0x5C);
      store<u16>(at, <u16>esc, 2);
    }
    start = i + 1;
  }
  if (n > start) {
    let bytes = <usize>(n - start) << 1;
    memory.copy(sbReserve(bytes), src + (<usize>start << 1), bytes);
  }
  sbUnit(0x22);
}

/**
 * Bytes of `s` as a JSON string literal in UTF-8 (see `writeQuotedUTF8`). For the SDK's
 * writers (http.ts); not part of the public API.
 */
export function quotedUTF8Length(s: string): usize {
  let src = changetype<usize>(s);
  let n = s.length;
  let size: usize = 2;
  for (let i = 0; i < n; i++) {
    let c = <u32>load<u16>(src + (<usize>i << 1));
    if (c < 0x80) {
      if (c < 0x20 || c == 0x22 || c == 0x5C) size += escapeOf(c) == 1 ? 6 : 2;
      else size += 1;
    } else if (c < 0x800) {
      size += 2;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      if (c <= 0xDBFF && i + 1 < n) {
        let d = <u32>load<u16>(src + (<usize>(i + 1) << 1));
        if (d >= 0xDC00 && d <= 0xDFFF) { size += 4; i++; continue; }
      }
      size += 6;
    } else {
      size += 3;
    }
  }
  return size;
}

/**
 * Writes `s` at `dst` as a JSON string literal in UTF-8, escaped as `JSON.quote` does (lone
 * surrogates as `\uXXXX`). Returns the address after the last byte.
 */
export function writeQuotedUTF8(s: string, dst: usize): usize {
  let src = changetype<usize>(s);
  let n = s.length;
  let o = dst;
  store<u8>(o++, 0x22);
  for (let i = 0; i < n; i++) {
    let c = <u32>load<u16>(src + (<usize>i << 1));
    if (c < 0x80) {
      if (c < 0x20 || c == 0x22 || c == 0x5C) {
        let esc = escapeOf(c);
        if (esc == 1) {
          o = writeUnicodeEscape(o, c);
        } else {
          store<u8>(o, 0x5C);
          store<u8>(o, <u8>esc, 1);
          o += 2;
        }
      } else {
        store<u8>(o++, <u8>c);
      }
    } else if (c < 0x800) {
      store<u8>(o, <u8>(0xC0 | (c >> 6)));
      store<u8>(o, <u8>(0x80 | (c & 63)), 1);
      o += 2;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      if (c <= 0xDBFF && i + 1 < n) {
        let d = <u32>load<u16>(src + (<usize>(i + 1) << 1));
        if (d >= 0xDC00 && d <= 0xDFFF) {
          let cp = 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00);
          store<u8>(o, <u8>(0xF0 | (cp >> 18)));
          store<u8>(o, <u8>(0x80 | ((cp >> 12) & 63)), 1);
          store<u8>(o, <u8>(0x80 | ((cp >> 6) & 63)), 2);
          store<u8>(o, <u8>(0x80 | (cp & 63)), 3);
          o += 4;
          i++;
          continue;
        }
      }
      o = writeUnicodeEscape(o, c);
    } else {
      store<u8>(o, <u8>(0xE0 | (c >> 12)));
      store<u8>(o, <u8>(0x80 | ((c >> 6) & 63)), 1);
      store<u8>(o, <u8>(0x80 | (c & 63)), 2);
      o += 3;
    }
  }
  store<u8>(o++, 0x22);
  return o;
}

/** Writes `\uXXXX` (ASCII) for the unit `c` at `o`; returns the address after it. */
function writeUnicodeEscape(o: usize, c: u32): usize {
  let hex = changetype<usize>(HEX);
  store<u8>(o, 0x5C);
  store<u8>(o, 0x75, 1);
  store<u8>(o, <u8>load<u16>(hex + (((c >> 12) & 15) << 1)), 2);
  store<u8>(o, <u8>load<u16>(hex + (((c >> 8) & 15) << 1)), 3);
  store<u8>(o, <u8>load<u16>(hex + (((c >> 4) & 15) << 1)), 4);
  store<u8>(o, <u8>load<u16>(hex + ((c & 15) << 1)), 5);
  return o + 6;
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

/** The unit a one-letter escape `\e` stands for, or -1 (`u` is handled by the caller). */
function unescape(e: u32): i32 {
  if (e == 0x22) return 0x22;
  if (e == 0x5C) return 0x5C;
  if (e == 0x2F) return 0x2F;
  if (e == 0x62) return 0x08;
  if (e == 0x66) return 0x0C;
  if (e == 0x6E) return 0x0A;
  if (e == 0x72) return 0x0D;
  if (e == 0x74) return 0x09;
  return -1;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

let shared: Parser | null = null;

/**
 * One parser reused by the SDK's parses, which never nest (nothing calls back into user code
 * while one runs). Call `done` after use, so that the text is not kept alive.
 */
export function sharedParser(text: string, build: bool): Parser {
  let p = shared;
  if (p === null) {
    shared = p = new Parser(text, build);
    return p;
  }
  return p.reset(text, build);
}

/** Ends a use of `sharedParser`. */
export function done(p: Parser): void {
  p.text = "";
}

/** What a parser that does not build values returns for a valid value. */
let skipped: JSONValue | null = null;

function skippedValue(): JSONValue {
  let v = skipped;
  if (v === null) skipped = v = new JSONValue();
  return v;
}

/**
 * The JSON reader. With `build` false it only checks the text (same verdicts and errors) and
 * allocates nothing: values come back as one shared placeholder and strings as "".
 * Exported for the SDK's own readers (http.ts); not part of the public API.
 */
export class Parser {
  text: string;
  build: bool;
  pos: i32 = 0;
  error: string = "";
  errorAt: i32 = -1;

  constructor(text: string, build: bool = true) {
    this.text = text;
    this.build = build;
  }

  /** Starts over on `text`; see `sharedParser`. */
  reset(text: string, build: bool): Parser {
    this.text = text;
    this.build = build;
    this.pos = 0;
    this.error = "";
    this.errorAt = -1;
    return this;
  }

  fail(message: string): void {
    if (this.errorAt < 0) {
      this.error = message;
      this.errorAt = this.pos;
    }
  }

  /** The UTF-16 unit at `i` (caller checks `i < text.length`). */
  // @ts-ignore: decorator
  @inline at(i: i32): u32 {
    return <u32>load<u16>(changetype<usize>(this.text) + (<usize>i << 1));
  }

  skipSpace(): void {
    let base = changetype<usize>(this.text);
    let n = this.text.length;
    let p = this.pos;
    while (p < n) {
      let c = <u32>load<u16>(base + (<usize>p << 1));
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
    let c = this.at(this.pos);
    if (c == 0x7B) return this.object(depth);
    if (c == 0x5B) return this.array(depth);
    if (c == 0x22) {
      let s = this.string();
      if (s === null) return null;
      return this.build ? JSONValue.string(s) : skippedValue();
    }
    if (c == 0x2D || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.literal("true")) return this.build ? JSONValue.bool(true) : skippedValue();
    if (this.literal("false")) return this.build ? JSONValue.bool(false) : skippedValue();
    if (this.literal("null")) return this.build ? JSONValue.null() : skippedValue();
    this.fail("unexpected " + describe(t, this.pos));
    return null;
  }

  literal(word: string): bool {
    let t = this.text;
    let n = word.length;
    if (this.pos + n > t.length) return false;
    for (let i = 0; i < n; i++) {
      if (this.at(this.pos + i) != <u32>word.charCodeAt(i)) return false;
    }
    this.pos += n;
    return true;
  }

  /** Whether the unit at `p` (< text.length) is an ASCII digit. */
  // @ts-ignore: decorator
  @inline digitAt(p: i32): bool {
    return this.at(p) - 0x30 <= 9;
  }

  number(): JSONValue | null {
    let t = this.text;
    let n = t.length;
    let start = this.pos;
    let p = start;
    if (this.at(p) == 0x2D) p++;
    if (p >= n) { this.pos = p; this.fail("unexpected end of input in a number"); return null; }
    let c = this.at(p);
    if (c == 0x30) {
      p++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (p < n && this.digitAt(p)) p++;
    } else {
      this.pos = p;
      this.fail("unexpected " + describe(t, p) + " in a number");
      return null;
    }
    if (p < n && this.at(p) == 0x2E) {
      p++;
      let d = p;
      while (p < n && this.digitAt(p)) p++;
      if (p == d) { this.pos = p; this.fail("expected a digit after '.' but found " + describe(t, p)); return null; }
    }
    if (p < n && (this.at(p) == 0x65 || this.at(p) == 0x45)) {
      p++;
      if (p < n && (this.at(p) == 0x2B || this.at(p) == 0x2D)) p++;
      let d = p;
      while (p < n && this.digitAt(p)) p++;
      if (p == d) { this.pos = p; this.fail("expected a digit in the exponent but found " + describe(t, p)); return null; }
    }
    this.pos = p;
    if (!this.build) return skippedValue();
    let raw = t.substring(start, p);
    let v = new JSONValue();
    v.kind = JSONKind.NUMBER;
    v.num = parseFloat(raw);
    v.str = raw;
    return v;
  }

  /**
   * Parses a string literal at `pos` (which holds `"`); returns its text or null ("" when not
   * building). A first pass checks it and counts what its escapes save; a string with escapes
   * is then decoded into one new string of the right size.
   */
  string(): string | null {
    let t = this.text;
    let base = changetype<usize>(t);
    let n = t.length;
    let start = this.pos + 1;
    let p = start;
    let saved = 0; // units the escapes take beyond the units they stand for
    while (true) {
      let c: u32 = 0;
      while (p < n) {
        c = <u32>load<u16>(base + (<usize>p << 1));
        if (c == 0x22 || c == 0x5C || c < 0x20) break;
        p++;
      }
      if (p >= n) { this.pos = p; this.fail("unterminated string"); return null; }
      if (c == 0x22) break;
      if (c < 0x20) { this.pos = p; this.fail("unescaped " + describe(t, p) + " in a string"); return null; }
      // a backslash
      if (p + 1 >= n) { this.pos = p + 1; this.fail("unterminated string"); return null; }
      let e = <u32>load<u16>(base + (<usize>(p + 1) << 1));
      p += 2;
      if (e == 0x75) {
        if (p + 4 > n) { this.pos = p; this.fail("incomplete \\u escape"); return null; }
        for (let k = 0; k < 4; k++) {
          if (hexDigit(<i32>load<u16>(base + (<usize>(p + k) << 1))) < 0) { this.pos = p + k; this.fail("invalid hex digit " + describe(t, p + k) + " in a \\u escape"); return null; }
        }
        p += 4;
        saved += 5;
      } else if (unescape(e) < 0) {
        this.pos = p - 1;
        this.fail("invalid escape " + describe(t, p - 1));
        return null;
      } else {
        saved += 1;
      }
    }
    this.pos = p + 1;
    if (!this.build) return "";
    if (saved == 0) return t.substring(start, p);
    // second pass: every escape is known to be valid; the runs between them are copied
    let out = __new(<usize>(p - start - saved) << 1, idof<String>());
    let o = out;
    let i = start;
    while (i < p) {
      let run = i;
      while (i < p && load<u16>(base + (<usize>i << 1)) != 0x5C) i++;
      if (i > run) {
        let bytes = <usize>(i - run) << 1;
        memory.copy(o, base + (<usize>run << 1), bytes);
        o += bytes;
      }
      if (i >= p) break;
      let e = <u32>load<u16>(base + (<usize>(i + 1) << 1));
      if (e == 0x75) {
        // a pair \uD83D\uDE00 yields two UTF-16 units, i.e. one code point: nothing more to do
        let at = base + (<usize>(i + 2) << 1);
        let u = (hexDigit(<i32>load<u16>(at)) << 12) | (hexDigit(<i32>load<u16>(at, 2)) << 8)
          | (hexDigit(<i32>load<u16>(at, 4)) << 4) | hexDigit(<i32>load<u16>(at, 6));
        store<u16>(o, <u16>u);
        i += 6;
      } else {
        store<u16>(o, <u16>unescape(e));
        i += 2;
      }
      o += 2;
    }
    return changetype<string>(out);
  }

  array(depth: i32): JSONValue | null {
    if (depth >= JSON.MAX_DEPTH) { this.fail("nesting deeper than " + JSON.MAX_DEPTH.toString() + " levels"); return null; }
    let t = this.text;
    let build = this.build;
    let v = build ? JSONValue.array() : skippedValue();
    this.pos++; // [
    this.skipSpace();
    if (this.pos < t.length && this.at(this.pos) == 0x5D) { this.pos++; return v; }
    while (true) {
      let item = this.value(depth + 1);
      if (item === null) return null;
      if (build) v.items.push(item);
      this.skipSpace();
      if (this.pos >= t.length) { this.fail("unterminated array"); return null; }
      let c = this.at(this.pos);
      if (c == 0x2C) { this.pos++; this.skipSpace(); continue; }
      if (c == 0x5D) { this.pos++; return v; }
      this.fail("expected ',' or ']' but found " + describe(t, this.pos));
      return null;
    }
  }

  object(depth: i32): JSONValue | null {
    if (depth >= JSON.MAX_DEPTH) { this.fail("nesting deeper than " + JSON.MAX_DEPTH.toString() + " levels"); return null; }
    let t = this.text;
    let build = this.build;
    let v = build ? JSONValue.object() : skippedValue();
    this.pos++; // {
    this.skipSpace();
    if (this.pos < t.length && this.at(this.pos) == 0x7D) { this.pos++; return v; }
    while (true) {
      if (this.pos >= t.length) { this.fail("unterminated object"); return null; }
      if (this.at(this.pos) != 0x22) { this.fail("expected a string key but found " + describe(t, this.pos)); return null; }
      let key = this.string();
      if (key === null) return null;
      this.skipSpace();
      if (this.pos >= t.length || this.at(this.pos) != 0x3A) { this.fail("expected ':' but found " + describe(t, this.pos)); return null; }
      this.pos++;
      this.skipSpace();
      let item = this.value(depth + 1);
      if (item === null) return null;
      if (build) {
        v.keys.push(key);
        v.values.push(item);
      }
      this.skipSpace();
      if (this.pos >= t.length) { this.fail("unterminated object"); return null; }
      let c = this.at(this.pos);
      if (c == 0x2C) { this.pos++; this.skipSpace(); continue; }
      if (c == 0x7D) { this.pos++; return v; }
      this.fail("expected ',' or '}' but found " + describe(t, this.pos));
      return null;
    }
  }
}
