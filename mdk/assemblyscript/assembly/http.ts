/**
 * The gen-2 HTTP shapes (capsule-abi.md §5.3 request JSON, §5.4 response JSON) as classes.
 */
import { JSON, JSONValue, JSONParseResult, Parser, sharedParser, done, quotedUTF8Length, writeQuotedUTF8, serialize, lastSerializedValid } from "./json";
import { base64EncodeString, base64Encode, base64EncodeInto } from "./base64";
import { resultBlock } from "./result";

/** Lower-cases ASCII letters only (header names are ASCII tokens). */
function asciiLower(s: string): string {
  return s.toLowerCase();
}

/**
 * An incoming HTTP request, as the host describes it in the request JSON (§5.3).
 */
export class Request {
  /** The raw request body as text (invalid UTF-8 arrives as U+FFFD). */
  body: string = "";
  /** Full URL `http[s]://<Host><path>[?<query>]`. */
  uri: string = "";
  /** Upper-case method, e.g. `GET`. */
  method: string = "";
  // The `Headers` string is decoded, and parsed into `headers`, when a handler first reads
  // one of them: `_source` holds the request JSON and `_sourceAt` the offset of the string
  // literal in it (-1: none); `_headersText` is the decoded string once known.
  private _source: string = "";
  private _sourceAt: i32 = -1;
  private _headersText: string | null = null;
  private _raw: string | null = null;
  private _headers: Map<string, string> | null = null;

  /** The `Headers` string exactly as received (`"Name":"value",…`). */
  get rawHeaders(): string {
    let r = this._raw;
    if (r === null) this._raw = r = this.headersText();
    return r;
  }
  set rawHeaders(raw: string) {
    this._raw = raw;
  }

  /** Request headers: canonical names (`Content-Type`) → value (repeated headers joined with `, `). */
  get headers(): Map<string, string> {
    let h = this._headers;
    if (h === null) this._headers = h = parseHeaders(this.headersText());
    return h;
  }
  set headers(headers: Map<string, string>) {
    this._headers = headers;
  }

  /** The `Headers` string of the request JSON ("" when none), decoded on first use. */
  private headersText(): string {
    let t = this._headersText;
    if (t === null) {
      t = "";
      if (this._sourceAt >= 0) {
        let p = sharedParser(this._source, true);
        p.pos = this._sourceAt;
        let s = p.string(); // checked when the request was read
        done(p);
        if (s !== null) t = s;
      }
      this._headersText = t;
      this._source = "";
    }
    return t;
  }

  /**
   * Header value by name, compared case-insensitively; `fallback` when absent.
   */
  header(name: string, fallback: string = ""): string {
    if (this.headers.has(name)) return this.headers.get(name);
    let want = asciiLower(name);
    let keys = this.headers.keys();
    for (let i = 0; i < keys.length; i++) {
      if (asciiLower(unchecked(keys[i])) == want) return this.headers.get(unchecked(keys[i]));
    }
    return fallback;
  }

  /** The path and query of `uri` (`/hello?x=1`), `/` when the URI has none. */
  get path(): string {
    let u = this.uri;
    let scheme = u.indexOf("://");
    let from = scheme >= 0 ? scheme + 3 : 0;
    let slash = u.indexOf("/", from);
    if (scheme < 0) return u.length > 0 ? u : "/";
    return slash < 0 ? "/" : u.substring(slash);
  }

  /** Parses `body` as JSON (see `JSON.tryParse`). */
  json(): JSONParseResult {
    return JSON.tryParse(this.body);
  }

  /**
   * Builds a request from the host's request JSON (§5.3).
   * @returns null with `error` set when the text is not a JSON object
   */
  static parse(text: string): RequestParseResult {
    let fast = Request.read(text);
    if (fast !== null) return new RequestParseResult(fast, "");
    // anything the reader above leaves out (errors, a non-object, non-string members)
    let r = JSON.tryParse(text);
    if (!r.ok) return new RequestParseResult(null, "the request is not valid JSON: " + r.error);
    let v = r.value!;
    if (!v.isObject) return new RequestParseResult(null, "the request JSON is not an object");
    let req = new Request();
    req.body = v.getString("Body");
    req.uri = v.getString("URI");
    req.method = v.getString("Method");
    let h = v.get("Headers");
    if (h !== null) {
      if (h.isString) {
        req._headersText = h.str;
      } else if (h.isObject) {
        // lenient: a host that sends an object of strings
        for (let i = 0; i < h.keys.length; i++) req.headers.set(unchecked(h.keys[i]), unchecked(h.values[i]).asString());
      }
    }
    return new RequestParseResult(req, "");
  }

  /**
   * Reads the request JSON of §5.3 without building a tree: the four members the SDK uses are
   * decoded straight into strings, the others are only checked. Returns null (and the caller
   * takes the general path, which gives the same result or the error) for anything but an object
   * whose keys have no escapes and whose `Body`, `URI`, `Method` and `Headers` are strings.
   */
  private static read(text: string): Request | null {
    let p = sharedParser(text, false);
    let req = Request.readWith(p, text);
    done(p);
    return req;
  }

  private static readWith(p: Parser, text: string): Request | null {
    let n = text.length;
    p.skipSpace();
    if (p.pos >= n || p.at(p.pos) != 0x7B) return null;
    p.pos++;
    p.skipSpace();
    let req = new Request();
    if (p.pos < n && p.at(p.pos) == 0x7D) {
      p.pos++;
    } else {
      while (true) {
        if (p.pos >= n || p.at(p.pos) != 0x22) return null;
        // the key, compared in place (a key with escapes goes the general way)
        let from = p.pos + 1;
        let to = from;
        while (to < n) {
          let c = p.at(to);
          if (c == 0x22 || c == 0x5C || c < 0x20) break;
          to++;
        }
        if (to >= n || p.at(to) != 0x22) return null;
        let key = KEY_OTHER;
        let len = to - from;
        if (len == 4) {
          if (rangeIs(text, from, to, "Body")) key = KEY_BODY;
        } else if (len == 3) {
          if (rangeIs(text, from, to, "URI")) key = KEY_URI;
        } else if (len == 6) {
          if (rangeIs(text, from, to, "Method")) key = KEY_METHOD;
        } else if (len == 7) {
          if (rangeIs(text, from, to, "Headers")) key = KEY_HEADERS;
        }
        p.pos = to + 1;
        p.skipSpace();
        if (p.pos >= n || p.at(p.pos) != 0x3A) return null;
        p.pos++;
        p.skipSpace();
        if (key == KEY_OTHER) {
          if (p.value(1) === null) return null;
        } else if (key == KEY_HEADERS) {
          // checked now, decoded when the handler reads it
          if (p.pos >= n || p.at(p.pos) != 0x22) return null;
          let at = p.pos;
          if (p.string() === null) return null;
          req._sourceAt = at;
        } else {
          if (p.pos >= n || p.at(p.pos) != 0x22) return null;
          p.build = true;
          let s = p.string();
          p.build = false;
          if (s === null) return null;
          if (key == KEY_BODY) req.body = s;
          else if (key == KEY_URI) req.uri = s;
          else req.method = s;
        }
        p.skipSpace();
        if (p.pos >= n) return null;
        let c = p.at(p.pos);
        p.pos++;
        if (c == 0x2C) { p.skipSpace(); continue; }
        if (c == 0x7D) break;
        return null;
      }
    }
    p.skipSpace();
    if (p.pos != n) return null;
    if (req._sourceAt >= 0) req._source = text;
    return req;
  }
}

/** Whether `t[from, to)` is exactly `word` (ASCII). */
function rangeIs(t: string, from: i32, to: i32, word: string): bool {
  let n = word.length;
  if (to - from != n) return false;
  return memory.compare(changetype<usize>(t) + (<usize>from << 1), changetype<usize>(word), <usize>n << 1) == 0;
}

const KEY_OTHER = 0;
const KEY_BODY = 1;
const KEY_URI = 2;
const KEY_METHOD = 3;
const KEY_HEADERS = 4;

/** Outcome of `Request.parse`. */
export class RequestParseResult {
  constructor(public request: Request | null, public error: string) {}
}

/**
 * Parses the gen-2 `Headers` string: `"Name":"value"` items joined by `,` (§5.3). The string is
 * read as the members of a JSON object, so escaped quotes and commas inside values are kept.
 * When that fails (a host that did not escape values), it falls back to the Go MDK's reading:
 * drop every `"`, split on `,`, split each item at its first `:`.
 */
export function parseHeaders(headers: string): Map<string, string> {
  let out = new Map<string, string>();
  if (headers.length == 0) return out;
  if (readHeaderMembers(headers, out)) return out;
  out = new Map<string, string>();
  let v = JSON.parse("{" + headers + "}");
  if (v !== null && v.isObject) {
    for (let i = 0; i < v.keys.length; i++) {
      let value = unchecked(v.values[i]);
      out.set(unchecked(v.keys[i]), value.isString ? value.str : value.toString());
    }
    return out;
  }
  let items = headers.replaceAll("\"", "").split(",");
  for (let i = 0; i < items.length; i++) {
    let item = unchecked(items[i]);
    let colon = item.indexOf(":");
    if (colon <= 0) continue;
    out.set(item.substring(0, colon).trim(), item.substring(colon + 1).trim());
  }
  return out;
}

/**
 * The usual case of `parseHeaders`: members whose values are all strings, read without the
 * braces and without a tree. False (with `out` partly filled) for anything else, which the
 * caller then reads the general way.
 */
function readHeaderMembers(headers: string, out: Map<string, string>): bool {
  let p = sharedParser(headers, true);
  let ok = readMembersWith(p, headers, out);
  done(p);
  return ok;
}

function readMembersWith(p: Parser, headers: string, out: Map<string, string>): bool {
  let n = headers.length;
  p.skipSpace();
  while (p.pos < n) {
    if (p.at(p.pos) != 0x22) return false;
    let key = p.string();
    if (key === null) return false;
    p.skipSpace();
    if (p.pos >= n || p.at(p.pos) != 0x3A) return false;
    p.pos++;
    p.skipSpace();
    if (p.pos >= n || p.at(p.pos) != 0x22) return false;
    let value = p.string();
    if (value === null) return false;
    out.set(key, value);
    p.skipSpace();
    if (p.pos >= n) break;
    if (p.at(p.pos) != 0x2C) return false;
    p.pos++;
    p.skipSpace();
    if (p.pos >= n) return false; // a trailing comma
  }
  return true;
}

/**
 * The text of the last `Response.json`, known to be valid JSON: `frameResponse` need not parse
 * a `jsonBody` that is this very string (strings are immutable) again.
 */
let checkedJSON: string | null = null;

/**
 * An HTTP response a handler returns (§5.4). Set either a text body (`textBody`, sent as
 * base64 in `TextBody`), raw bytes (`bytesBody`, also through `TextBody`) or a JSON body
 * (`jsonBody`, raw JSON text). Without a `Content-Type` header the host uses
 * `text/plain; charset=utf-8` for text/bytes and `application/json; charset=utf-8` for JSON.
 *
 * Note: the gen-2 wire format cannot carry an empty body: an empty text body is sent as an
 * empty `TextBody`, which hosts read as "no text" and answer with the JSON body `{}`.
 */
export class Response {
  /** HTTP status; 0 is read as 200 by hosts. */
  statusCode: i32 = 200;
  /** Response headers, in insertion order. */
  headers: Map<string, string> = new Map<string, string>();
  /** Text body (UTF-8 on the wire). */
  textBody: string = "";
  /** Binary body; wins over `textBody` when set. */
  bytesBody: Uint8Array | null = null;
  /** Raw JSON text of the body; used when there is no text or binary body. Empty = `{}`. */
  jsonBody: string = "";
  /** Set by `Response.failure`: the handler result is then the frame `F<failure>`. */
  failure: string | null = null;

  constructor(statusCode: i32 = 200) {
    this.statusCode = statusCode;
  }

  /** A text response with `Content-Type: text/plain; charset=utf-8`. */
  static text(body: string, statusCode: i32 = 200): Response {
    let r = new Response(statusCode);
    r.textBody = body;
    r.headers.set("Content-Type", "text/plain; charset=utf-8");
    return r;
  }

  /** An HTML response with `Content-Type: text/html; charset=utf-8`. */
  static html(body: string, statusCode: i32 = 200): Response {
    let r = new Response(statusCode);
    r.textBody = body;
    r.headers.set("Content-Type", "text/html; charset=utf-8");
    return r;
  }

  /** A JSON response with `Content-Type: application/json; charset=utf-8`. */
  static json(body: JSONValue, statusCode: i32 = 200): Response {
    let r = new Response(statusCode);
    let text = serialize(body);
    r.jsonBody = text;
    if (lastSerializedValid) checkedJSON = text;
    r.headers.set("Content-Type", "application/json; charset=utf-8");
    return r;
  }

  /** A binary response (sent through `TextBody`), with the given content type. */
  static bytes(body: Uint8Array, contentType: string = "application/octet-stream", statusCode: i32 = 200): Response {
    let r = new Response(statusCode);
    r.bytesBody = body;
    r.headers.set("Content-Type", contentType);
    return r;
  }

  /**
   * A handler failure: the SDK returns `F<message>` instead of a response, which hosts turn into
   * a 500 `text/plain` response with that text (§5.4 step 1).
   */
  static failure(message: string): Response {
    let r = new Response(500);
    r.failure = message;
    return r;
  }

  /** Sets a header (replacing one of the same name). Returns this, for chaining. */
  setHeader(name: string, value: string): Response {
    this.headers.set(name, value);
    return this;
  }

  /**
   * The response JSON of §5.4 (without the `S`):
   * `{"JSONBody":…,"TextBody":"<base64>","Headers":{…},"StatusCode":n}`. Every string is escaped.
   * @returns the JSON text, or null when `jsonBody` is not valid JSON (see `validationError`)
   */
  toJSON(): string | null {
    let jsonBody = "{}";
    let textBody = "";
    let bytes = this.bytesBody;
    if (bytes !== null && bytes.length > 0) {
      textBody = base64Encode(bytes);
    } else if (this.textBody.length > 0) {
      textBody = base64EncodeString(this.textBody);
    } else if (this.jsonBody.length > 0) {
      if (!JSON.isValid(this.jsonBody)) return null;
      jsonBody = this.jsonBody;
    }
    let parts = new Array<string>();
    parts.push("{\"JSONBody\":");
    parts.push(jsonBody);
    parts.push(",\"TextBody\":\"");
    parts.push(textBody); // base64: nothing to escape
    parts.push("\",\"Headers\":{");
    let keys = this.headers.keys();
    for (let i = 0; i < keys.length; i++) {
      if (i > 0) parts.push(",");
      let k = unchecked(keys[i]);
      parts.push(JSON.quote(k));
      parts.push(":");
      parts.push(JSON.quote(this.headers.get(k)));
    }
    parts.push("},\"StatusCode\":");
    parts.push(this.statusCode.toString());
    parts.push("}");
    return parts.join("");
  }

  /** Why `toJSON` returned null (empty when it would not). */
  validationError(): string {
    if (this.bytesBody !== null || this.textBody.length > 0 || this.jsonBody.length == 0) return "";
    let r = JSON.tryParse(this.jsonBody);
    return r.ok ? "" : "the response jsonBody is not valid JSON: " + r.error;
  }
}

/** Writes the ASCII bytes of `s` at `o`; returns the address after them. */
function writeASCII(s: string, o: usize): usize {
  let src = changetype<usize>(s);
  let n = <usize>s.length;
  for (let i: usize = 0; i < n; i++) store<u8>(o + i, <u8>load<u16>(src + (i << 1)));
  return o + n;
}

/** Decimal digits of `v` (with its sign) at `o`; returns the address after them. */
function writeInt(v: i32, o: usize): usize {
  let u = <u32>v;
  if (v < 0) {
    store<u8>(o++, 0x2D);
    u = <u32>0 - u;
  }
  let digits = 1;
  for (let t = u; t >= 10; t /= 10) digits++;
  let end = o + digits;
  let q = end;
  do {
    store<u8>(--q, <u8>(0x30 + u % 10));
    u /= 10;
  } while (u != 0);
  return end;
}

// the fixed parts of the response JSON (§5.4)
const R_JSON = "{\"JSONBody\":";
const R_TEXT = ",\"TextBody\":\"";
const R_HEADERS = "\",\"Headers\":{";
const R_STATUS = "},\"StatusCode\":";

/**
 * The SDK's result for `res`: the result block (result.ts) holding `tag` and the response
 * JSON of §5.4 in UTF-8 (what `toJSON` returns, lone surrogates of `jsonBody` as U+FFFD),
 * written in place: a text body is encoded to UTF-8 at the end of its base64 slot and turned
 * into base64 there. Returns `ptr << 32 | len`, or 0 when `jsonBody` is not valid JSON.
 */
export function frameResponse(tag: u8, res: Response): u64 {
  let bytes = res.bytesBody;
  let text = res.textBody;
  let json = res.jsonBody;
  let mode = 0; // 0: JSONBody {}, 1: bytes, 2: text, 3: jsonBody
  let rawLen: usize = 0; // bytes to encode as base64, or of jsonBody
  if (bytes !== null && bytes.length > 0) {
    mode = 1;
    rawLen = <usize>bytes.length;
  } else if (text.length > 0) {
    mode = 2;
    rawLen = <usize>String.UTF8.byteLength(text, false);
  } else if (json.length > 0) {
    if (changetype<usize>(json) != changetype<usize>(checkedJSON) && !JSON.isValid(json)) return 0;
    mode = 3;
    rawLen = <usize>String.UTF8.byteLength(json, false);
  }
  checkedJSON = null;
  let b64Len: usize = mode == 1 || mode == 2 ? ((rawLen + 2) / 3) * 4 : 0;
  let headers = res.headers;
  let keys = headers.keys();
  let count = keys.length;
  let size: usize = 1 + <usize>(R_JSON.length + R_TEXT.length + R_HEADERS.length + R_STATUS.length) + 1 + 11 + b64Len;
  size += mode == 3 ? rawLen : 2;
  for (let i = 0; i < count; i++) {
    let k = unchecked(keys[i]);
    size += quotedUTF8Length(k) + quotedUTF8Length(headers.get(k)) + 2;
  }
  let block = resultBlock(size);
  let o = block;
  store<u8>(o++, tag);
  o = writeASCII(R_JSON, o);
  if (mode == 3) {
    o += String.UTF8.encodeUnsafe(changetype<usize>(json), json.length, o, false, String.UTF8.ErrorMode.REPLACE);
  } else {
    store<u16>(o, 0x7D7B); // {}
    o += 2;
  }
  o = writeASCII(R_TEXT, o);
  if (mode == 1) {
    o = base64EncodeInto(bytes!.dataStart, rawLen, o);
  } else if (mode == 2) {
    let raw = o + b64Len - rawLen;
    String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, raw, false, String.UTF8.ErrorMode.REPLACE);
    o = base64EncodeInto(raw, rawLen, o);
  }
  o = writeASCII(R_HEADERS, o);
  for (let i = 0; i < count; i++) {
    if (i > 0) store<u8>(o++, 0x2C);
    let k = unchecked(keys[i]);
    o = writeQuotedUTF8(k, o);
    store<u8>(o++, 0x3A);
    o = writeQuotedUTF8(headers.get(k), o);
  }
  o = writeASCII(R_STATUS, o);
  o = writeInt(res.statusCode, o);
  store<u8>(o++, 0x7D);
  return (<u64>block << 32) | <u64>(<u32>(o - block));
}
