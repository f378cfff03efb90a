/**
 * Forwards one HTTP request to an upstream (faas-api.md §9.2–§9.4): the method, every request
 * header value (hop-by-hop ones removed), `X-Forwarded-For/-Proto/-Host`, the body streamed
 * (never buffered) and the response streamed back with every header value. `Host` becomes the
 * upstream's. When an upstream cannot be connected to, the next candidate is tried (the body has
 * not been read yet, so nothing is lost); when none can, the client gets `502` JSON. A `503` is
 * also sent to the next candidate, at most twice, for GET/HEAD/OPTIONS or when the upstream is
 * stopping (`Connection: close`, {@link retry503}), the body replayed when it was recorded. Used
 * by `capsule proxy` and by the gen-2 FaaS call route.
 *
 * undici `stream()` stays on the hot path: node:http `request` over keep-alive agents with raw
 * header arrays was measured against it in the same runs and took as much CPU per request or
 * more (docs/performance.md "Gateway").
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from '../../observability/logger.ts';

/** Options of {@link forwardRequest}. */
export interface ForwardOptions {
  logger: Logger;
  /** Longest wait for the upstream's response headers, then between body chunks, ms (→ 504). */
  timeoutMs: number;
  /** Connection pool to use (default: one shared keep-alive {@link Agent}). */
  dispatcher?: Dispatcher;
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

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus those undici sets itself or refuses. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect', 'http2-settings']);
/** The upstream could not be connected to: nothing was sent, another upstream may be tried. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);
/** A kept-alive connection broke before the answer (the upstream closed it): safe to retry when unsent or idempotent. */
const RESET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Methods a `503` sends to the next upstream whatever the answer says (faas-api.md §9.3). */
const RETRY_503 = new Set(['GET', 'HEAD', 'OPTIONS']);
/** At most this many `503` answers are retried per request (as the NATS backend's retries, cluster/invoke.ts). */
const MAX_503_RETRIES = 2;
/** A request body declared up to this size is recorded, so a `503` from a stopping upstream can be retried. */
const REPLAY_MAX_BYTES = 64 * 1024;

/**
 * Whether a `503` answer should go to the next upstream instead of the client: for GET, HEAD and
 * OPTIONS always; for any other method when the upstream is stopping — a Capsule server that
 * drains answers `503` with `Connection: close` and never ran the request (triggers/http/server.ts).
 */
function retry503(method: string, raw: string[]): boolean {
  if (RETRY_503.has(method)) return true;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection' && /(^|,)\s*close\s*(,|$)/i.test(raw[i + 1]!)) return true;
  }
  return false;
}

let sharedAgent: Agent | undefined;
/** The default keep-alive pool (connections are reused between requests to an upstream). */
function defaultAgent(): Agent {
  return (sharedAgent ??= new Agent({ keepAliveTimeout: 4000, connections: 256, pipelining: 1, connect: { timeout: 5000 } }));
}

interface Upstream {
  origin: string;
  /** Path prefix of the upstream URL without a trailing slash ('' for a bare origin). */
  base: string;
}
const parsed = new Map<string, Upstream>();
function upstreamOf(url: string): Upstream {
  let u = parsed.get(url);
  if (!u) {
    const x = new URL(url);
    u = { origin: x.origin, base: x.pathname.replace(/\/+$/, '') };
    if (parsed.size > 10_000) parsed.clear();
    parsed.set(url, u);
  }
  return u;
}

/**
 * The body of one attempt: reads the client's request only once the upstream pulls it (after
 * connecting), so a failed connection leaves the request unread for the next upstream. A body
 * declared small enough is recorded as it goes, so an attempt answered `503` by a stopping
 * upstream can be sent again ({@link LazyBody.replayable}): the next attempt's body starts with
 * what was recorded and takes over the rest of the client's request.
 */
class LazyBody extends Readable {
  started = false;
  readonly #source: IncomingMessage;
  /** What was read from the client so far, by this body and the ones it continues (recorded bodies only). */
  #recorded: Buffer[] | undefined;
  /** The client's request has been read to its end (by this body or one it continues). */
  #ended = false;
  #listeners: { data: (c: Buffer) => void; end: () => void; error: (e: Error) => void; aborted: () => void } | undefined;

  /**
   * @param record keep what is read, for a replay
   * @param previous the body of the attempt before, whose reading this one continues
   */
  constructor(source: IncomingMessage, record: boolean, previous?: LazyBody) {
    super();
    this.#source = source;
    this.#recorded = !record ? undefined : previous === undefined ? [] : [...(previous.#recorded ?? [])];
    if (previous !== undefined) {
      this.#ended = previous.#ended;
      previous.#detach();
      if (previous.started) previous.destroy(); // its attempt is over; the client's request continues here
    }
  }

  /** Whether an attempt that used this body can be sent again with the same bytes. */
  get replayable(): boolean {
    return !this.started || this.#recorded !== undefined;
  }

  #detach(): void {
    const l = this.#listeners;
    if (!l) return;
    this.#listeners = undefined;
    this.#source.off('data', l.data).off('end', l.end).off('error', l.error).off('aborted', l.aborted);
  }

  override _read(): void {
    if (!this.started) {
      this.started = true;
      // what the attempts before read (a replay): nothing is added to #recorded before this read
      if (this.#recorded) for (const c of this.#recorded) this.push(c);
      if (this.#ended) {
        this.push(null);
        return;
      }
      const s = this.#source;
      this.#listeners = {
        data: (chunk: Buffer) => {
          this.#recorded?.push(chunk);
          if (!this.push(chunk)) s.pause();
        },
        end: () => {
          this.#ended = true;
          this.push(null);
        },
        error: (e) => this.destroy(e),
        aborted: () => this.destroy(new Error('the client aborted the request')),
      };
      s.on('data', this.#listeners.data).once('end', this.#listeners.end).once('error', this.#listeners.error).once('aborted', this.#listeners.aborted);
    }
    if (!this.#ended) this.#source.resume();
  }
}

/**
 * Cancels the upstream request when the client goes away: an `abort` emitter, which undici takes
 * as `signal`, lighter than an AbortController with its native listener per request. It holds one
 * listener (one attempt at a time); it has no `aborted` property on purpose (undici would treat
 * it as an AbortSignal).
 */
class ClientGone {
  gone = false;
  #listener: (() => void) | undefined;
  on(_event: 'abort', listener: () => void): this {
    this.#listener = listener;
    return this;
  }
  once(event: 'abort', listener: () => void): this {
    return this.on(event, listener);
  }
  removeListener(): this {
    this.#listener = undefined;
    return this;
  }
  /** The client went away: cancels the attempt in flight. */
  fire(): void {
    this.gone = true;
    const listener = this.#listener;
    this.#listener = undefined;
    listener?.();
  }
}

/** The request headers to send: every value but hop-by-hop ones, plus X-Forwarded-*. */
export function forwardHeaders(req: IncomingMessage): string[] {
  const raw = req.rawHeaders;
  const conn = req.headers.connection?.toLowerCase();
  // the usual `keep-alive` (or `upgrade`) lists nothing the hop-by-hop set does not drop already
  const listed = conn && !HOP_BY_HOP.has(conn) ? new Set(conn.split(',').map((s) => s.trim())) : undefined;
  const out: string[] = [];
  let xff: string | undefined;
  let proto = false;
  let host = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed?.has(lower)) continue;
    if (lower === 'x-forwarded-for') {
      xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'x-forwarded-proto') proto = true;
    else if (lower === 'x-forwarded-host') host = true;
    out.push(name, raw[i + 1]!);
  }
  const client = req.socket.remoteAddress ?? '';
  out.push('x-forwarded-for', xff === undefined ? client : `${xff}, ${client}`);
  if (!proto) out.push('x-forwarded-proto', (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
  if (!host && req.headers.host) out.push('x-forwarded-host', req.headers.host);
  return out;
}

/** Response headers to copy: every value but hop-by-hop ones (flat name/value list). */
export function backwardHeaders(raw: string[]): string[] {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.toLowerCase().split(',')) (listed ??= new Set()).add(token.trim());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower !== 'host' && HOP_BY_HOP.has(lower)) continue;
    if (listed?.has(lower)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** Sends `{code, message}` JSON with a status, unless the response already started. */
export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify({ code, message });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Whether another attempt may follow one that failed with `err` before any answer: when the
 * upstream could not be connected to (it is added to `unreachable` and reported), or when a
 * kept-alive connection broke before the body was read and the request is safe to send again
 * (idempotent method or no body). Anything else ends in a 502.
 */
function mayTryNext(err: Error & { code?: string }, url: string, method: string, hasBody: boolean, body: LazyBody | null, unreachable: string[], o: ForwardOptions): boolean {
  const code = err.code ?? '';
  const unsent = !body?.started;
  if (CONNECT_ERRORS.has(code) && unsent) {
    unreachable.push(url);
    o.onUnreachable?.(url, err);
    o.logger.debug({ upstream: url, code }, 'upstream unreachable, trying the next one');
    return true;
  }
  return RESET_ERRORS.has(code) && unsent && (IDEMPOTENT.has(method) || !hasBody);
}

/**
 * Forwards `req` to the first upstream that can be connected to and streams its answer to `res`.
 * Never throws: failures become `502 {"code":"UPSTREAM_UNREACHABLE"}` (no upstream could be
 * connected to, or one broke before answering), `504 {"code":"UPSTREAM_TIMEOUT"}` (no headers in
 * `timeoutMs`); a response cut mid-body is cut for the client too.
 * @param upstreams candidate base URLs, preferred first (`http://host:port[/base]`)
 * @param path the path and query to send, starting with `/` (appended to the upstream's base path)
 */
export async function forwardRequest(req: IncomingMessage, res: ServerResponse, upstreams: readonly string[], path: string, o: ForwardOptions): Promise<ForwardResult> {
  const dispatcher = o.dispatcher ?? defaultAgent();
  const headers = forwardHeaders(req);
  const method = req.method ?? 'GET';
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  const unreachable: string[] = [];
  let lastError = 'no upstream';
  // a client that goes away before the answer cancels the upstream request
  const gone = new ClientGone();
  const onClose = () => {
    if (!res.writableFinished) gone.fire();
  };
  res.once('close', onClose);
  const record = hasBody && Number(req.headers['content-length'] ?? Infinity) <= REPLAY_MAX_BYTES;
  let retried503 = 0;
  let body: LazyBody | null = null;
  try {
    const queue = [...upstreams];
    for (let url = queue.shift(); url !== undefined && !gone.gone; url = queue.shift()) {
      let target: Upstream;
      try {
        target = upstreamOf(url);
      } catch {
        lastError = `${url} is not a URL`;
        continue;
      }
      body = hasBody ? new LazyBody(req, record, body ?? undefined) : null;
      const sent = body;
      let status = 0;
      let skipped = false;
      try {
        await dispatcher.stream({
          origin: target.origin, path: target.base + path, method, headers, body, signal: gone as unknown as Dispatcher.RequestOptions['signal'],
          headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs, responseHeaders: 'raw',
        }, ({ statusCode, headers: got }) => {
          status = statusCode;
          const raw = got as unknown as string[];
          if (statusCode === 503 && retried503 < MAX_503_RETRIES && queue.length > 0 && (sent === null || sent.replayable) && retry503(method, raw)) {
            skipped = true; // this answer goes nowhere: the next upstream answers instead
            return new Writable({ write: (_c, _e, cb) => cb() });
          }
          res.writeHead(statusCode, backwardHeaders(raw));
          return res;
        });
        if (!skipped) return { status, upstream: url, unreachable };
        retried503++;
        lastError = `${url}: 503`;
        o.logger.debug({ upstream: url, method }, 'upstream answered 503 (stopping or busy), trying the next one');
        continue;
      } catch (e) {
        const err = e as Error & { code?: string };
        lastError = `${url}: ${err.code ?? err.message}`;
        if (gone.gone) return { status: 0, upstream: url, unreachable, error: 'the client went away' };
        if (res.headersSent) {
          res.destroy();
          return { status, upstream: url, unreachable, error: lastError };
        }
        if (err.code === 'UND_ERR_HEADERS_TIMEOUT') {
          sendError(res, 504, 'UPSTREAM_TIMEOUT', `${url} sent no response within ${o.timeoutMs} ms`);
          return { status: 504, upstream: url, unreachable, error: lastError };
        }
        if (skipped) { // the skipped 503 ended badly (a stopping upstream closes the connection): still the next one
          retried503++;
          continue;
        }
        if (!mayTryNext(err, url, method, hasBody, body, unreachable, o)) break;
        if (o.retrySame && await o.retrySame(url, err)) queue.unshift(url);
      }
    }
  } finally {
    res.off('close', onClose);
  }
  sendError(res, 502, 'UPSTREAM_UNREACHABLE', `no upstream could be reached (${lastError})`);
  return { status: 502, unreachable, error: lastError };
}
