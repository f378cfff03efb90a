/**
 * The gen-2 HTTP shapes (capsule-abi.md §5.3 request JSON, §5.4 response JSON) as classes.
 */
import { JSON, JSONValue, JSONParseResult } from "./json";
import { base64EncodeString, base64Encode } from "./base64";

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
  /** Request headers: canonical names (`Content-Type`) → value (repeated headers joined with `, `). */
  headers: Map<string, string> = new Map<string, string>();
  /** The `Headers` string exactly as received (`"Name":"value",…`). */
  rawHeaders: string = "";

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
        req.rawHeaders = h.str;
        req.headers = parseHeaders(h.str);
      } else if (h.isObject) {
        // lenient: a host that sends an object of strings
        for (let i = 0; i < h.keys.length; i++) req.headers.set(unchecked(h.keys[i]), unchecked(h.values[i]).asString());
      }
    }
    return new RequestParseResult(req, "");
  }
}

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
    r.jsonBody = body.toString();
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
