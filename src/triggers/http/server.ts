/**
 * HTTP trigger: every method and path goes to the function's HTTP handler (capsule-abi.md §4.3,
 * §5.3–§5.5); the runner's own routes live under /capsule/ (conventions.md §4).
 *
 * Errors made by the runner are JSON `{"error","code"}` with 500 (trap, memory), 504 (deadline),
 * 413 (body), 503 + Retry-After (--max-concurrency); a guest's own failure keeps its ABI shape.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { CapsuleError, STATUS_BY_CODE } from '../../engine/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CallLogs } from '../../engine/runtime.ts';
import type { HttpRequestInput, HttpResponseOutput } from '../../engine/invocation.ts';
import type { Logger } from '../../observability/logger.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { DEFAULTS } from '../../engine/function.ts';

export interface HttpTriggerOptions {
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 8080; 0 = a free port). */
  port?: number;
  /** PEM certificate and key: serve HTTPS. */
  tls?: { cert: Buffer; key: Buffer };
  /** Request body limit, bytes (default 10 MiB): larger → 413 without running the guest. */
  maxBodyBytes?: number;
  /** Invocations in progress at once (default 1024): more → 503 with Retry-After. */
  maxConcurrency?: number;
  /** Stop after this many ms without a request (Go Capsule's --stop-after); undefined = never. */
  stopAfterMs?: number;
  /** Time given to in-flight calls on SIGTERM, ms (default 10 000). */
  graceMs?: number;
  logger: Logger;
}

/** A listening HTTP trigger. */
export interface RunningHttpTrigger {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  readonly metrics: RunnerMetrics;
  /** Stops accepting, waits for in-flight calls (up to graceMs), runs OnStop/OnExit. */
  shutdown(reason: string): Promise<void>;
  /** Resolves when the server has shut down (signal, --stop-after or `shutdown`). */
  readonly closed: Promise<void>;
}

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * Serves one function over HTTP.
 * @throws Error when the port cannot be bound (EADDRINUSE…)
 */
export async function serveHttp(fn: CapsuleFunction, o: HttpTriggerOptions): Promise<RunningHttpTrigger> {
  const log = o.logger;
  const maxBody = o.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const maxConcurrency = o.maxConcurrency ?? 1024;
  const graceMs = o.graceMs ?? 10_000;
  const fname = fn.module.name;
  const metrics = new RunnerMetrics(() => fn.pool.busy, fn.pool.size);
  fn.pool.on('timeout', () => metrics.timeouts.inc({ function: fname }));
  fn.pool.on('worker-exit', (message: string) => log.warn({ function: fname }, `worker replaced: ${message}`));
  const scheme = o.tls ? 'https' : 'http';
  let inflight = 0;
  let draining = false;
  let idleTimer: NodeJS.Timeout | undefined;
  const drained: (() => void)[] = [];

  const armIdle = () => {
    if (o.stopAfterMs === undefined) return;
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = setTimeout(() => void shutdown(`no request for ${o.stopAfterMs} ms (--stop-after)`), o.stopAfterMs);
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const start = performance.now();
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', requestId);
    armIdle();
    const done = (status: number, code?: string) => {
      const ms = performance.now() - start;
      metrics.requests.inc({ function: fname, method: req.method ?? '', status });
      metrics.duration.observe({ function: fname }, ms / 1000);
      if (code) metrics.errors.inc({ function: fname, code });
      log.info({ requestId, method: req.method, url: req.url, status, durationMs: Math.round(ms * 1000) / 1000, ...(code ? { code } : {}) }, 'request');
    };
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (path.startsWith('/capsule/') || path === '/health' || path === '/metrics') {
      void serviceRoute(path, req, res, requestId).then((status) => done(status));
      return;
    }
    if (inflight >= maxConcurrency || draining) {
      res.setHeader('Retry-After', '1');
      sendError(res, new CapsuleError('OVERLOADED', draining ? 'the server is shutting down' : `more than ${maxConcurrency} requests in progress (--max-concurrency)`));
      req.resume();
      done(503, 'OVERLOADED');
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBody) {
      tooLarge(req, res, maxBody);
      done(413, 'TOO_LARGE');
      return;
    }
    inflight++;
    metrics.inflight.inc();
    const finish = () => {
      inflight--;
      metrics.inflight.dec();
      if (draining && inflight === 0) drained.splice(0).forEach((f) => f());
    };
    const chunks: Buffer[] = [];
    let size = 0;
    let aborted = false;
    req.on('data', (c: Buffer) => {
      if (aborted) return;
      size += c.length;
      if (size > maxBody) {
        aborted = true;
        tooLarge(req, res, maxBody);
        done(413, 'TOO_LARGE');
        finish();
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => {
      if (!aborted) {
        aborted = true;
        finish();
      }
    });
    req.on('end', () => {
      if (aborted) return;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      const input: HttpRequestInput = {
        type: 'http', method: req.method ?? 'GET', url: `${scheme}://${req.headers.host ?? `${o.host ?? '127.0.0.1'}`}${req.url ?? '/'}`,
        headers: headerPairs(req), body, remoteAddress: req.socket.remoteAddress ?? '', remotePort: req.socket.remotePort ?? 0,
      };
      fn.invoke(input, { requestId, trigger: { httpPort: port } }).then(
        (r) => {
          logGuest(r.logs, requestId);
          const out = r.output as HttpResponseOutput;
          writeResponse(res, out);
          done(out.status);
        },
        (e: unknown) => {
          const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
          logGuest((e as { logs?: CallLogs }).logs, requestId);
          log.warn({ requestId, code: err.code }, err.message);
          sendError(res, err);
          done(STATUS_BY_CODE[err.code], err.code);
        },
      ).finally(finish);
    });
  };

  function logGuest(logs: CallLogs | undefined, requestId: string): void {
    const where = /^On[A-Z]/.test(requestId) ? { lifecycle: requestId } : { requestId };
    if (!logs) return;
    for (const line of logs.log) log.info({ ...where, function: fname, stream: 'log' }, line);
    for (const [stream, text] of [['stdout', logs.stdout], ['stderr', logs.stderr]] as const) {
      if (!text) continue;
      for (const line of text.replace(/\n$/, '').split('\n')) log.info({ ...where, function: fname, stream }, line);
    }
    if (logs.truncated) log.warn({ ...where, function: fname }, 'guest output truncated (limit per call reached)');
  }

  async function serviceRoute(path: string, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<number> {
    req.resume();
    try {
      if (path === '/health' || path === '/metrics') {
        const exportName = path === '/health' ? 'OnHealthCheck' : 'OnMetrics';
        if (fn.exports(exportName)) {
          const r = await fn.invoke({ type: 'lifecycle', export: exportName }, { requestId, trigger: { httpPort: port } });
          logGuest(r.logs, requestId);
          const out = r.output as HttpResponseOutput;
          writeResponse(res, out);
          return out.status;
        }
      }
      if (path === '/capsule/health' || path === '/health') {
        return sendJson(res, 200, { status: 'ok' });
      }
      if (path === '/capsule/ready') {
        return draining ? sendJson(res, 503, { status: 'shutting down' }) : sendJson(res, 200, { status: 'ready', module: fname, kind: fn.module.detection.kind, workers: fn.pool.size });
      }
      if (path === '/capsule/metrics' || path === '/metrics') {
        const m = await metrics.text();
        res.writeHead(200, { 'Content-Type': m.contentType });
        res.end(m.body);
        return 200;
      }
      return sendJson(res, 404, { error: `no route ${path} (runner routes: /capsule/health, /capsule/ready, /capsule/metrics)`, code: 'NOT_FOUND' });
    } catch (e) {
      const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
      logGuest((e as { logs?: CallLogs }).logs, requestId);
      sendError(res, err);
      return STATUS_BY_CODE[err.code];
    }
  }

  // Gen 1 (§4.5): OnLoad once at start, in its own instance; a failure is logged, not fatal.
  const onLoad = await fn.lifecycle('OnLoad');
  logGuest(onLoad.logs, 'OnLoad');
  if (onLoad.error) log.error({ code: onLoad.error.code }, `OnLoad failed: ${onLoad.error.message}`);

  const server: Server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, handler) : createHttpServer(handler);
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 60_000;
  server.requestTimeout = 0; // the per-call deadline is the guest's --timeout
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const displayHost = (o.host ?? '127.0.0.1').includes(':') ? `[${o.host}]` : (o.host ?? '127.0.0.1');
  const url = `${scheme}://${displayHost}:${port}`;
  armIdle();

  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => (closedResolve = r));
  let shuttingDown: Promise<void> | undefined;
  function shutdown(reason: string): Promise<void> {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      log.info({ reason, inflight }, 'shutting down');
      draining = true;
      if (idleTimer) clearTimeout(idleTimer);
      server.close();
      server.closeIdleConnections();
      if (inflight > 0) {
        await Promise.race([
          new Promise<void>((r) => drained.push(r)),
          new Promise<void>((r) => setTimeout(r, graceMs).unref()),
        ]);
      }
      for (const name of ['OnStop', 'OnExit'] as const) {
        const r = await fn.lifecycle(name);
        logGuest(r.logs, name);
        if (r.error) log.error({ code: r.error.code }, `${name} failed: ${r.error.message}`);
      }
      server.closeAllConnections();
      await fn.close();
      closedResolve();
    })();
    return shuttingDown;
  }
  return { url, port, server, metrics, shutdown, closed };
}

function headerPairs(req: IncomingMessage): [string, string][] {
  const out: [string, string][] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

const HOP_BY_HOP = new Set(['connection', 'transfer-encoding', 'content-length', 'keep-alive', 'upgrade']);

function writeResponse(res: ServerResponse, out: HttpResponseOutput): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of out.headers) {
    const key = k.toLowerCase();
    if (HOP_BY_HOP.has(key)) continue;
    const prev = headers[key];
    headers[key] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  headers['content-length'] = String(out.body.length); // one write, not chunked framing
  try {
    res.writeHead(out.status, headers);
  } catch (e) {
    // an invalid header value from the guest
    sendError(res, new CapsuleError('BAD_RESULT', `the function returned an invalid response header: ${(e as Error).message}`));
    return;
  }
  res.end(out.body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): number {
  if (res.headersSent) {
    res.end();
    return status;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
  return status;
}

function sendError(res: ServerResponse, err: CapsuleError): void {
  sendJson(res, STATUS_BY_CODE[err.code], { error: err.message, code: err.code });
}

function tooLarge(req: IncomingMessage, res: ServerResponse, maxBody: number): void {
  res.setHeader('Connection', 'close');
  sendError(res, new CapsuleError('TOO_LARGE', `the request body is larger than the limit of ${maxBody} bytes (--max-body)`));
  req.resume();
}
