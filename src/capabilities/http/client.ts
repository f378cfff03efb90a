/**
 * Outbound HTTP for guests (capsule-abi.md §5.7 hostHTTP, §4.7 hostHttp, §7.6), with Node's
 * fetch (undici), run in the worker that runs the guest (the guest waits with JSPI; the worker's
 * event loop keeps the exchange going).
 *
 * - Only `http:` and `https:` URLs whose host is on the function's allow-list; every redirect
 *   target is checked again (redirects are followed here, up to `MAX_REDIRECTS`: 301/302/303
 *   turn a POST into a GET without body as browsers and Go do, 307/308 keep method and body;
 *   `Authorization` and `Cookie` are dropped when the origin changes).
 * - The whole exchange (redirects and body) has a deadline; the response body has a size cap,
 *   checked against `Content-Length` first and while reading.
 * - Every method fetch accepts (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, custom tokens);
 *   GET and HEAD never carry a body.
 */
import { formatBytes } from '../../base/units.ts';
import { isAllowed, type AllowRule } from './allow-list.ts';
import { concatBytes } from '../../base/bytes.ts';

/** Redirects followed before giving up (Go's http.Client stops after 10). */
export const MAX_REDIRECTS = 10;

/** A request as the host functions decode it. */
export interface OutboundRequest {
  method: string;
  url: string;
  /** Name and value; a name may repeat. */
  headers: [string, string][];
  body?: Uint8Array | string;
}

/** A response: status, headers (lower-case names as fetch gives them; `set-cookie` repeated), body. */
export interface OutboundResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  /** The URL that answered (after redirects). */
  url: string;
}

/** What the function was granted. */
export interface OutboundPolicy {
  rules: readonly AllowRule[];
  /** The allow-list as configured, for messages. */
  allowedHosts: readonly string[];
  timeoutMs: number;
  maxResponseBytes: number;
}

/** A refusal or transport failure; `message` is what the guest gets. */
export class OutboundError extends Error {}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Why `url` is refused, or undefined when it may be fetched. */
export function refusal(policy: OutboundPolicy, url: URL, redirectedFrom?: string): string | undefined {
  const via = redirectedFrom ? ` (redirected from ${redirectedFrom})` : '';
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${url.href}${via}: only http and https URLs can be fetched`;
  if (isAllowed(policy.rules, url)) return undefined;
  const hint = policy.allowedHosts.length === 0
    ? 'no outbound host is granted'
    : `allowed: ${policy.allowedHosts.join(', ')}`;
  return `${url.host}${via} is not an allowed host (${hint}); add it with --allowed-hosts ${url.host} (config allowedHosts)`;
}

/**
 * Makes the request under `policy`.
 * @throws OutboundError naming the refused host, the limit that was hit, or the transport error
 */
export async function outboundFetch(req: OutboundRequest, policy: OutboundPolicy): Promise<OutboundResponse> {
  const method = req.method.trim().toUpperCase() || 'GET';
  if (!TOKEN.test(method)) throw new OutboundError(`"${req.method}" is not an HTTP method`);
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    throw new OutboundError(`"${req.url}" is not an absolute URL`);
  }
  const first = refusal(policy, url);
  if (first) throw new OutboundError(first);

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, policy.timeoutMs);
  let current = { method, headers: req.headers, body: method === 'GET' || method === 'HEAD' ? undefined : req.body };
  try {
    for (let hop = 0; ; hop++) {
      const headers = new Headers();
      for (const [n, v] of current.headers) headers.append(n, v);
      let res: Response;
      try {
        res = await fetch(url, { method: current.method, headers, body: current.body as BodyInit | undefined, redirect: 'manual', signal: controller.signal });
      } catch (e) {
        throw new OutboundError(transportError(e, current.method, url, timedOut, policy));
      }
      const location = res.headers.get('location');
      if ([301, 302, 303, 307, 308].includes(res.status) && location !== null) {
        await res.body?.cancel().catch(() => undefined);
        if (hop >= MAX_REDIRECTS) throw new OutboundError(`${method} ${req.url}: stopped after ${MAX_REDIRECTS} redirects`);
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new OutboundError(`${url.href} redirected to "${location}", which is not a URL`);
        }
        const refused = refusal(policy, next, url.href);
        if (refused) throw new OutboundError(refused);
        const toGet = res.status === 303 ? current.method !== 'HEAD' : (res.status === 301 || res.status === 302) && current.method === 'POST';
        let hdrs = current.headers;
        if (toGet) hdrs = hdrs.filter(([n]) => !/^(content-type|content-length|content-encoding|transfer-encoding)$/i.test(n));
        if (next.origin !== url.origin) hdrs = hdrs.filter(([n]) => !/^(authorization|cookie|proxy-authorization)$/i.test(n));
        current = { method: toGet ? 'GET' : current.method, headers: hdrs, body: toGet ? undefined : current.body };
        url = next;
        continue;
      }
      const body = await readCapped(res, policy, current.method, url, () => timedOut);
      const out: [string, string][] = [];
      res.headers.forEach((value, name) => {
        if (name !== 'set-cookie') out.push([name, value]);
      });
      for (const c of res.headers.getSetCookie()) out.push(['set-cookie', c]);
      return { status: res.status, headers: out, body, url: url.href };
    }
  } finally {
    clearTimeout(timer);
  }
}

async function readCapped(res: Response, policy: OutboundPolicy, method: string, url: URL, timedOut: () => boolean): Promise<Uint8Array> {
  const max = policy.maxResponseBytes;
  const tooLarge = () => new OutboundError(`${method} ${url.href}: the response body is larger than ${formatBytes(max)} (--max-response)`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (!res.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > max) {
        await reader.cancel().catch(() => undefined);
        throw tooLarge();
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof OutboundError) throw e;
    throw new OutboundError(transportError(e, method, url, timedOut(), policy));
  }
  return concatBytes(chunks, size);
}

function transportError(e: unknown, method: string, url: URL, timedOut: boolean, policy: OutboundPolicy): string {
  if (timedOut) return `${method} ${url.href}: no complete answer within ${policy.timeoutMs} ms (--http-timeout)`;
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const cause = err?.cause;
  let detail = cause?.message || err?.message || String(e);
  if (cause?.code && !detail.includes(cause.code)) detail = `${cause.code}: ${detail}`;
  return `${method} ${url.href}: ${detail}`;
}
