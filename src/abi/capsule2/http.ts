/**
 * Gen-2 HTTP shapes: the request JSON handed to `callHandleHTTP` (capsule-abi.md §5.3) and the
 * response frame it returns (§5.4), with the leniency of §7.8.
 */
import type { HttpRequestInput, HttpResponseOutput } from '../../base/invocation.ts';
import { canonicalHeaders, responseHeader } from '../capsule-headers.ts';

const encoder = new TextEncoder();

/**
 * Request JSON, fields in the HDK order: Body, JSONBody, TextBody, URI, Method, Headers.
 * `Headers` is a string of `"Name":"value"` items joined by `,` (values JSON-escaped, §7.8).
 * Returned as a string: the guest's copy is encoded straight into its memory (`Guest.pass`).
 */
export function encodeHttpRequest(req: HttpRequestInput): string {
  // `Headers` is the JSON string of `"Name":"value",…`: each item is written already escaped
  // twice, `\"Name\":\"value\"` when name and value need no escaping (the usual case),
  // instead of building the inner text and escaping it whole (~0.4 µs a request less)
  let headers = '';
  for (const [k, v] of canonicalHeaders(req.headers)) {
    const item = PLAIN.test(k) && PLAIN.test(v) ? `\\"${k}\\":\\"${v}\\"` : JSON.stringify(`${JSON.stringify(k)}:${JSON.stringify(v)}`).slice(1, -1);
    headers += headers ? `,${item}` : item;
  }
  const body = req.body.length === 0 ? '' : Buffer.from(req.body.buffer, req.body.byteOffset, req.body.length).toString();
  return `{"Body":${JSON.stringify(body)},"JSONBody":"","TextBody":"","URI":${JSON.stringify(req.url)},"Method":${JSON.stringify(req.method.toUpperCase())},"Headers":"${headers}"}`;
}

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
  const p = frame.payload;
  const text = Buffer.from(p.buffer, p.byteOffset, p.length).toString(); // invalid UTF-8 → U+FFFD
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
  const status = typeof r['StatusCode'] === 'number' && r['StatusCode'] >= 100 && r['StatusCode'] <= 599 ? Math.trunc(r['StatusCode']) : 200;
  const headers: [string, string][] = [];
  let hasType = false;
  const h = r['Headers'];
  if (h && typeof h === 'object' && !Array.isArray(h)) {
    for (const [k, v] of Object.entries(h as Record<string, unknown>)) {
      const header = responseHeader(k, typeof v === 'string' ? v : JSON.stringify(v), notes);
      if (!header) continue;
      if (k.toLowerCase() === 'content-type') hasType = true;
      headers.push(header);
    }
  }
  const textBody = r['TextBody'];
  let body: Uint8Array;
  let defaultType: string;
  if (typeof textBody === 'string' && textBody.length > 0) {
    // A copy of its own: a small Buffer is a slice of a shared 8 KiB pool, which a worker's
    // postMessage would clone whole.
    body = textBody.length % 4 === 0 && BASE64.test(textBody) ? Uint8Array.prototype.slice.call(Buffer.from(textBody, 'base64')) : encoder.encode(textBody);
    defaultType = TEXT_PLAIN;
  } else {
    const jsonBody = r['JSONBody'];
    body = encoder.encode(jsonBody === undefined ? '{}' : JSON.stringify(jsonBody));
    defaultType = APPLICATION_JSON;
  }
  if (!hasType) headers.push(['Content-Type', defaultType]);
  return { type: 'http', status, headers, body };
}
