/**
 * Gen-1 HTTP shapes (capsule-abi.md §4.1, §4.3): request header strings, the 1c request
 * parameters, the `[BODY]…[HEADERS]…` / `[ERR][code]:…` response, with the deliberate
 * differences of §7.2 (values keep their `:`, `[HEADERS]` split at its last occurrence, bodies
 * passed through unchanged).
 */
import type { HttpRequestInput, HttpResponseOutput } from '../../base/invocation.ts';
import { canonicalHeaders, responseHeader } from '../capsule-headers.ts';

const encoder = new TextEncoder();


/** Request headers as `Name:value` items joined by `sep` (canonical names, §4.3). */
export function encodeGen1Headers(headers: readonly [string, string][], sep: string): string {
  let out = '';
  for (const [k, v] of canonicalHeaders(headers)) out += out ? `${sep}${k}:${v}` : `${k}:${v}`;
  return out;
}

/** 1c: `<body>²<headers joined by ³>²<full URL>²<method>` (§4.3), as bytes (the body is raw). */
export function requestParams(req: HttpRequestInput): Uint8Array {
  const rest = encoder.encode(`²${encodeGen1Headers(req.headers, '³')}²${req.url}²${req.method.toUpperCase()}`);
  const out = new Uint8Array(req.body.length + rest.length);
  out.set(req.body);
  out.set(rest, req.body.length);
  return out;
}

/**
 * Reads `[ERR][<code>]:<message>`: the code between the second `[` and its `]`, the message
 * after the first `]:`; shown as `message` (code 0) or `message (code)` (§4.1).
 */
export function parseGen1Error(text: string): { code: string; message: string; display: string } {
  const open = text.indexOf('[', 1);
  const close = open >= 0 ? text.indexOf(']', open) : -1;
  const code = open >= 0 && close > open ? text.slice(open + 1, close) : '0';
  const sep = text.indexOf(']:');
  const message = sep >= 0 ? text.slice(sep + 2) : text.slice(5);
  const display = code === '0' || code === '' ? message : `${message} (${code})`;
  return { code, message, display };
}

const TEXT_PLAIN = 'text/plain; charset=utf-8';

/**
 * Turns a gen-1 handler result into a response (§4.3 steps 1–5). Header values are UTF-8 text
 * sent as their bytes (`responseHeader`).
 * @param notes receives one line per header left out (a name that is not an HTTP token, a value
 *   with CR, LF or NUL), for the call's log
 */
export function decodeGen1Response(result: string, sep: string, notes?: string[]): HttpResponseOutput {
  const at = result.lastIndexOf('[HEADERS]');
  const payload = at >= 0 ? result.slice(0, at) : result;
  const headerText = at >= 0 ? result.slice(at + '[HEADERS]'.length) : '';
  const headers: [string, string][] = [];
  for (const item of headerText.split(sep)) {
    const colon = item.indexOf(':');
    if (colon <= 0) continue;
    const header = responseHeader(item.slice(0, colon).trim(), item.slice(colon + 1).trim(), notes);
    if (header) headers.push(header);
  }
  const type = headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1];
  const json = type !== undefined && type.toLowerCase().startsWith('application/json');
  if (type === undefined) headers.push(['Content-Type', TEXT_PLAIN]);
  if (payload.startsWith('[ERR]')) {
    const { display } = parseGen1Error(payload);
    const body = json ? JSON.stringify({ error: display, from: 'host' }) : display;
    return { type: 'http', status: 500, headers, body: encoder.encode(body) };
  }
  if (payload.startsWith('[BODY]')) {
    const body = payload.slice('[BODY]'.length);
    if (json) {
      try {
        JSON.parse(body);
      } catch {
        return { type: 'http', status: 500, headers, body: encoder.encode('{"error":"JSON string bad format","from":"host"}') };
      }
    }
    return { type: 'http', status: 200, headers, body: encoder.encode(body) };
  }
  return { type: 'http', status: 200, headers, body: encoder.encode(payload) };
}
