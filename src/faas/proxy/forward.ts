/**
 * Forwards one HTTP request to an upstream (faas-api.md §9.2–§9.4): the method, every request
 * header value (hop-by-hop ones removed), `X-Forwarded-For/-Proto/-Host`, the body streamed
 * (never buffered) and the response streamed back with every header value. `Host` becomes the
 * upstream's. When an upstream cannot be connected to, the next candidate is tried (the body has
 * not been read yet, so nothing is lost); when none can, the client gets `502` JSON. Used by
 * `capsule proxy` and by the gen-2 FaaS call route.
 *
 * The hot path is node:http `request` over keep-alive agents with headers as flat raw arrays
 * (measured against undici `stream()`: docs/performance.md "Gateway").
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Logger } from '../../observability/logger.ts';

/** Connection pools of {@link forwardRequest}, one per scheme. */
export interface ForwardAgents {
  http?: HttpAgent;
  https?: HttpsAgent;
}

/** Options of {@link forwardRequest}. */
export interface ForwardOptions {
  logger: Logger;
  /** Longest wait for the upstream's response headers, then between body chunks, ms (→ 504). */
  timeoutMs: number;
  /** Connection pools to use (default: shared keep-alive node:http / node:https agents). */
  agents?: ForwardAgents;
  /** Called when an upstream could not be connected to (passive health: leave the rotation). */
  onUnreachable?: (upstream: string, error: Error) => void;
  /**
   * Asked after an upstream could not be connected to: resolving true tries the same upstream
   * again (the gen-2 FaaS call route restarts a revision and retries, faas-api.md §6), false
   * moves on to the next one.
   */
  retrySame?: (upstream: string, error: Error) => Promise<boolean>;
}

/** How a forwarded request ended. */
export interface ForwardResult {
  /** The status the client got (upstream's, or 502/504 made here; 0 when the client went away). */
  status: number;
  /** The upstream that answered, if any. */
  upstream?: string;
  /** Upstreams that could not be connected to, in the order tried. */
  unreachable: string[];
  /** Why the proxy answered itself or cut the response (connect/socket/timeout error text). */
  error?: string;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1), plus Host (the upstream's is sent) and Expect (answered here). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect', 'http2-settings']);
/** The upstream could not be connected to: nothing was sent, another upstream may be tried. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'EADDRNOTAVAIL', 'ETIMEDOUT']);
/** A kept-alive connection broke before the answer (the upstream closed it): safe to retry when unsent or idempotent. */
const RESET_ERRORS = new Set(['ECONNRESET', 'EPIPE']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Error code of an attempt that got no response headers in time. */
const HEADERS_TIMEOUT = 'UPSTREAM_HEADERS_TIMEOUT';

let sharedAgents: Required<ForwardAgents> | undefined;
/** The default keep-alive pools (connections are reused between requests to an upstream). */
function defaultAgents(): Required<ForwardAgents> {
  const o = { keepAlive: true, maxSockets: 256, maxFreeSockets: 256, timeout: 4000, scheduling: 'lifo' as const };
  return (sharedAgents ??= { http: new HttpAgent(o), https: new HttpsAgent(o) });
}

/** An upstream URL taken apart once (cached: upstream URLs are few and long-lived). */
interface Upstream {
  url: string;
  https: boolean;
  hostname: string;
  port: number;
  /** The Host header to send. */
  host: string;
  /** Path prefix of the upstream URL without a trailing slash ('' for a bare origin). */
  base: string;
}
const parsed = new Map<string, Upstream>();
function upstreamOf(url: string): Upstream {
  let u = parsed.get(url);
  if (!u) {
    const x = new URL(url);
    if (x.protocol !== 'http:' && x.protocol !== 'https:') throw new Error(`${url}: not an http(s) URL`);
    const https = x.protocol === 'https:';
    u = {
      url, https, hostname: x.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(x.port || (https ? 443 : 80)),
      host: x.host, base: x.pathname.replace(/\/+$/, ''),
    };
    if (parsed.size > 10_000) parsed.clear();
    parsed.set(url, u);
  }
  return u;
}

/**
 * Appends the request headers to send to `out` (flat name/value list): every value but hop-by-hop
 * ones and those the `Connection` header lists, plus X-Forwarded-For/-Proto/-Host.
 */
function appendForwardHeaders(req: IncomingMessage, out: string[]): void {
  const raw = req.rawHeaders;
  let listed: Set<string> | undefined;
  let xff: string | undefined;
  let proto = false;
  let fwdHost = false;
  let host: string | undefined;
  const start = out.length;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') for (const t of raw[i + 1]!.toLowerCase().split(',')) (listed ??= new Set()).add(t.trim());
      else if (lower === 'host') host ??= raw[i + 1];
      continue;
    }
    if (lower === 'x-forwarded-for') {
      xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'x-forwarded-proto') proto = true;
    else if (lower === 'x-forwarded-host') fwdHost = true;
    out.push(name, raw[i + 1]!);
  }
  if (listed) {
    // rare: a Connection header naming end-to-end-looking headers; filter them out afterwards
    let w = start;
    for (let i = start; i < out.length; i += 2) {
      if (listed.has(out[i]!.toLowerCase())) continue;
      out[w++] = out[i]!;
      out[w++] = out[i + 1]!;
    }
    out.length = w;
  }
  const client = req.socket.remoteAddress ?? '';
  out.push('x-forwarded-for', xff === undefined ? client : `${xff}, ${client}`);
  if (!proto) out.push('x-forwarded-proto', (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
  if (!fwdHost && host) out.push('x-forwarded-host', host);
}

/** The request headers to send: every value but hop-by-hop ones, plus X-Forwarded-* (flat name/value list). */
export function forwardHeaders(req: IncomingMessage): string[] {
  const out: string[] = [];
  appendForwardHeaders(req, out);
  return out;
}

/** Response headers to copy: every value but hop-by-hop ones (flat name/value list). */
export function backwardHeaders(raw: string[]): string[] {
  let listed: Set<string> | undefined;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower !== 'host' && HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') for (const t of raw[i + 1]!.toLowerCase().split(',')) (listed ??= new Set()).add(t.trim());
      continue;
    }
    out.push(raw[i]!, raw[i + 1]!);
  }
  if (!listed) return out;
  return out.filter((_, i) => !listed.has(out[i & ~1]!.toLowerCase()));
}

/** Sends `{code, message}` JSON with a status, unless the response already started. */
export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify({ code, message });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Longest wait for a new connection to an upstream, ms (then it counts as unreachable). */
const CONNECT_TIMEOUT_MS = 5000;

/** How one attempt on one upstream ended. */
interface Attempt {
  /** The upstream's status, sent to the client (0 when none came). */
  status: number;
  /** Why the attempt failed (undefined: the whole response was forwarded). */
  error?: Error & { code?: string };
  /** The client's body started to be read: the request cannot be sent again. */
  bodyStarted: boolean;
}

/** An error with a Node-style code. */
function codeError(message: string, code: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/** What one forwarded request shares between its attempts. */
interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** Request headers to send, `host` first (its value is set per upstream). */
  headers: string[];
  hasBody: boolean;
  timeoutMs: number;
  agents: ForwardAgents;
  /** The attempt in flight (destroyed when the client goes away). */
  current?: ClientRequest;
  /** The client went away. */
  gone: boolean;
}

/**
 * Sends the request to one upstream and streams its answer to the client; resolves when the
 * answer was forwarded whole or the attempt failed (never rejects). The client's body is read
 * only once the connection is up, so an upstream that cannot be reached leaves it for the next.
 */
function attempt(c: Call, u: Upstream, path: string): Promise<Attempt> {
  return new Promise((resolve) => {
    const result: Attempt = { status: 0, bodyStarted: false };
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      if (error) result.error = error;
      c.current = undefined;
      resolve(result);
    };
    c.headers[1] = u.host;
    const agent = u.https ? (c.agents.https ?? defaultAgents().https) : (c.agents.http ?? defaultAgents().http);
    const out = (u.https ? httpsRequest : httpRequest)({ agent, hostname: u.hostname, port: u.port, path: u.base + path, method: c.method, headers: c.headers });
    c.current = out;
    const startBody = () => {
      result.bodyStarted = true;
      c.req.pipe(out);
    };
    out.once('socket', (s: Socket) => {
      if (!s.connecting) return void (c.hasBody && startBody());
      const timer = setTimeout(() => {
        const e = codeError(`no connection within ${CONNECT_TIMEOUT_MS} ms`, 'ECONNECT_TIMEOUT');
        settle(e);
        out.destroy(e);
      }, CONNECT_TIMEOUT_MS);
      s.once('connect', () => {
        clearTimeout(timer);
        if (c.hasBody) startBody();
      });
      s.once('close', () => clearTimeout(timer));
    });
    if (!c.hasBody) out.end();
    out.setTimeout(c.timeoutMs, () => {
      const e = result.status ? codeError(`no data for ${c.timeoutMs} ms`, 'UPSTREAM_BODY_TIMEOUT') : codeError(`no response within ${c.timeoutMs} ms`, HEADERS_TIMEOUT);
      settle(e);
      out.destroy(e);
    });
    out.on('error', settle);
    out.once('close', () => {
      if (!result.status) settle(codeError('the upstream closed the connection before answering', 'ECONNRESET'));
    });
    out.once('response', (up: IncomingMessage) => {
      result.status = up.statusCode ?? 502;
      c.res.writeHead(result.status, backwardHeaders(up.rawHeaders));
      up.pipe(c.res);
      up.once('end', () => settle());
      up.on('error', settle);
      up.once('close', () => {
        if (!up.readableEnded) settle(codeError('the upstream response was cut', 'ECONNRESET'));
      });
    });
  });
}

/**
 * Forwards `req` to the first upstream that can be connected to and streams its answer to `res`.
 * Never throws: failures become `502 {"code":"UPSTREAM_UNREACHABLE"}` (no upstream could be
 * connected to, or one broke before answering), `504 {"code":"UPSTREAM_TIMEOUT"}` (no headers in
 * `timeoutMs`); a response cut mid-body is cut for the client too.
 * @param upstreams candidate base URLs, preferred first (`http[s]://host:port[/base]`)
 * @param path the path and query to send, starting with `/` (appended to the upstream's base path)
 */
export async function forwardRequest(req: IncomingMessage, res: ServerResponse, upstreams: readonly string[], path: string, o: ForwardOptions): Promise<ForwardResult> {
  const headers = ['host', ''];
  appendForwardHeaders(req, headers);
  const te = req.headers['transfer-encoding'];
  const length = req.headers['content-length'];
  const hasBody = te !== undefined || (length !== undefined && length !== '0');
  // a body without a length goes on chunked (the client's own Transfer-Encoding is hop-by-hop)
  if (te !== undefined && length === undefined) headers.push('transfer-encoding', 'chunked');
  const method = req.method ?? 'GET';
  const c: Call = { req, res, method, headers, hasBody, timeoutMs: o.timeoutMs, agents: o.agents ?? {}, gone: false };
  const unreachable: string[] = [];
  let lastError = 'no upstream';
  // a client that goes away before the answer cancels the upstream request
  const onClose = () => {
    if (res.writableFinished) return;
    c.gone = true;
    c.current?.destroy();
  };
  res.once('close', onClose);
  try {
    const queue = upstreams.slice();
    for (let url = queue.shift(); url !== undefined && !c.gone; url = queue.shift()) {
      let target: Upstream;
      try {
        target = upstreamOf(url);
      } catch {
        lastError = `${url} is not an http(s) URL`;
        continue;
      }
      const { status, error, bodyStarted } = await attempt(c, target, path);
      if (!error) return { status, upstream: url, unreachable };
      lastError = `${url}: ${error.code ?? error.message}`;
      if (c.gone) return { status: 0, upstream: url, unreachable, error: 'the client went away' };
      if (res.headersSent) {
        res.destroy();
        return { status, upstream: url, unreachable, error: lastError };
      }
      if (error.code === HEADERS_TIMEOUT) {
        sendError(res, 504, 'UPSTREAM_TIMEOUT', `${url} sent no response within ${o.timeoutMs} ms`);
        return { status: 504, upstream: url, unreachable, error: lastError };
      }
      const code = error.code ?? '';
      if ((CONNECT_ERRORS.has(code) || code === 'ECONNECT_TIMEOUT') && !bodyStarted) {
        unreachable.push(url);
        o.onUnreachable?.(url, error);
        o.logger.debug({ upstream: url, code }, 'upstream unreachable, trying the next one');
      } else if (!(RESET_ERRORS.has(code) && !bodyStarted && (IDEMPOTENT.has(method) || !hasBody))) {
        break;
      }
      if (o.retrySame && await o.retrySame(url, error)) queue.unshift(url);
    }
  } finally {
    res.off('close', onClose);
  }
  if (c.gone) return { status: 0, unreachable, error: 'the client went away' };
  sendError(res, 502, 'UPSTREAM_UNREACHABLE', `no upstream could be reached (${lastError})`);
  return { status: 502, unreachable, error: lastError };
}
