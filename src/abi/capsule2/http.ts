/**
 * Gen-2 HTTP shapes: the request JSON handed to `callHandleHTTP` (capsule-abi.md §5.3) and the
 * response frame it returns (§5.4), with the leniency of §7.8.
 */
import type { HttpRequestInput, HttpResponseOutput } from '../../base/invocation.ts';
import { canonicalHeaderName, canonicalHeaders, responseHeader } from '../capsule-headers.ts';

const encoder = new TextEncoder();
/** Bytes → text as `Buffer#toString()` reads them (invalid UTF-8 → U+FFFD, a BOM kept), without a Buffer per call. */
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Request JSON, fields in the HDK order: Body, JSONBody, TextBody, URI, Method, Headers.
 * `Headers` is a string of `"Name":"value"` items joined by `,` (values JSON-escaped, §7.8).
 * Returned as a string: the guest's copy is encoded straight into its memory (`Guest.pass`).
 */
export function encodeHttpRequest(req: HttpRequestInput): string {
  const body = req.body.length === 0 ? '' : decoder.decode(req.body);
  return `{"Body":${JSON.stringify(body)},"JSONBody":"","TextBody":"","URI":${JSON.stringify(req.url)},"Method":${JSON.stringify(req.method.toUpperCase())},"Headers":"${headersField(req.headers)}"}`;
}

/**
 * The text of the request's `Headers` string, JSON-escaped: `"Name":"value"` items joined by `,`
 * (§5.3), each written already escaped twice, `\"Name\":\"value\"`. The usual request — a few
 * headers, none repeated, printable ASCII values without `"` or `\` — is written straight from
 * its pairs with each name's item start remembered (issue 18: no Map, no array per header, one
 * regex test per value); any other request goes through `canonicalHeaders` and full escaping,
 * which give the same text.
 */
function headersField(pairs: readonly [string, string][]): string {
  if (pairs.length > 16) return escapedHeaders(canonicalHeaders(pairs));
  let out = '';
  for (let i = 0; i < pairs.length; i++) {
    const [name, value] = pairs[i]!;
    const start = itemStart(name);
    if (start === undefined || !PLAIN_ASCII.test(value)) return escapedHeaders(canonicalHeaders(pairs));
    for (let j = 0; j < i; j++) if (itemStart(pairs[j]![0]) === start) return escapedHeaders(canonicalHeaders(pairs)); // repeated: joined
    out += i === 0 ? `${start}${value}\\"` : `,${start}${value}\\"`;
  }
  return out;
}

/** `Headers` text of canonical headers, names and values escaped as they need. */
function escapedHeaders(headers: Map<string, string>): string {
  let out = '';
  for (const [k, v] of headers) {
    const item = PLAIN.test(k) && PLAIN.test(v) ? `\\"${k}\\":\\"${v}\\"` : JSON.stringify(`${JSON.stringify(k)}:${JSON.stringify(v)}`).slice(1, -1);
    out += out ? `,${item}` : item;
  }
  return out;
}

/**
 * `\"Canonical-Name\":\"` for a header name as received, remembered for the names that repeat from
 * request to request (bounded); undefined when the canonical name needs escaping.
 */
function itemStart(name: string): string | undefined {
  let start = ITEM_STARTS.get(name);
  if (start === undefined) {
    const k = canonicalHeaderName(name);
    if (!PLAIN.test(k)) return undefined;
    start = `\\"${k}\\":\\"`;
    if (ITEM_STARTS.size < 1000) ITEM_STARTS.set(name, start);
  }
  return start;
}
const ITEM_STARTS = new Map<string, string>();
/** A value that reads the same as latin1 and UTF-8 and writes as itself in JSON: printable ASCII but `"` and `\`. */
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7f]*$/;

/** Text JSON writes as itself between quotes: no quote, backslash, control character or lone surrogate half. */
const PLAIN = /^[^"\\\x00-\x1f\ud800-\udfff]*$/;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const TEXT_PLAIN = 'text/plain; charset=utf-8';
const APPLICATION_JSON = 'application/json; charset=utf-8';

/** A 500 text response (§5.4 step 1, §5.5). */
export function textResponse(status: number, text: string): HttpResponseOutput {
  return { type: 'http', status, headers: [['Content-Type', TEXT_PLAIN]], body: encoder.encode(text) };
}

/** §5.5: a service export the module does not have. */
export function missingExportResponse(name: string): HttpResponseOutput {
  return textResponse(500, `❌ The exported function ${name} does not exist`);
}

/**
 * Turns `S{JSONBody,TextBody,Headers,StatusCode}` / `F<text>` into a response (§5.4). Header
 * values are UTF-8 text sent as their bytes (`responseHeader`, §4.3 step 2).
 * @param notes receives one line per header left out (a name that is not an HTTP token, a value
 *   with CR, LF or NUL), for the call's log
 */
export function decodeHttpResponse(frame: { ok: boolean; payload: Uint8Array }, notes?: string[]): HttpResponseOutput {
  const text = decoder.decode(frame.payload); // invalid UTF-8 → U+FFFD
  if (!frame.ok) return textResponse(500, text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return textResponse(500, `the function returned a response that is not JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return textResponse(500, 'the function returned a response that is not a JSON object');
  }
  const r = parsed as Record<string, unknown>;
  const code = r['StatusCode'];
  const status = typeof code === 'number' && code >= 100 && code <= 599 ? Math.trunc(code) : 200;
  const headers: [string, string][] = [];
  let hasType = false;
  const h = r['Headers'];
  if (h && typeof h === 'object' && !Array.isArray(h)) {
    const map = h as Record<string, unknown>;
    for (const k of Object.keys(map)) {
      const v = map[k];
      const header = responseHeader(k, typeof v === 'string' ? v : JSON.stringify(v), notes);
      if (!header) continue;
      if (k.length === 12 && k.toLowerCase() === 'content-type') hasType = true;
      headers.push(header);
    }
  }
  const textBody = r['TextBody'];
  let body: Uint8Array;
  if (typeof textBody === 'string' && textBody.length > 0) {
    // A copy of its own: a small Buffer is a slice of a shared 8 KiB pool, which a worker's
    // postMessage would clone whole.
    body = textBody.length % 4 === 0 && BASE64.test(textBody) ? Uint8Array.prototype.slice.call(Buffer.from(textBody, 'base64')) : utf8Bytes(textBody);
    if (!hasType) headers.push(['Content-Type', TEXT_PLAIN]);
  } else {
    const jsonBody = r['JSONBody'];
    body = utf8Bytes(jsonBody === undefined ? '{}' : JSON.stringify(jsonBody));
    if (!hasType) headers.push(['Content-Type', APPLICATION_JSON]);
  }
  return { type: 'http', status, headers, body };
}

/**
 * UTF-8 bytes of `text` in an array of their own (never a view of Node's shared Buffer pool). A
 * short ASCII text — a small JSON answer — is copied by a loop, which costs a fraction of
 * `TextEncoder#encode`'s native call (issue 18); any other text goes through the encoder.
 */
function utf8Bytes(text: string): Uint8Array {
  const n = text.length;
  if (n > 48) return encoder.encode(text);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return encoder.encode(text);
    out[i] = c;
  }
  return out;
}
