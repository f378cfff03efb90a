/**
 * HTTP trigger. One request pipeline (`servePipeline`) serves both the single-function server
 * (`serveHttp`: every method and path goes to the function's HTTP handler, capsule-abi.md §4.3,
 * §5.3–§5.5) and the multi-function server (`multi.ts`: routes and a functions directory,
 * wasi-cgi.md §9). The pipeline owns what every request shares: the request id, the body limit
 * (413), the concurrency limits (503), the per-call deadline's 504, runner-made error JSON,
 * the request log line, metrics labelled by function, `--stop-after` and graceful shutdown. What
 * a path leads to is the server's `dispatch`.
 *
 * Errors made by the runner are JSON `{"error","code"}` with 500 (trap, memory), 504 (deadline),
 * 413 (body), 503 + Retry-After (--max-concurrency); a guest's own failure keeps its ABI shape.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomUUID } from 'node:crypto';
import { CapsuleError, STATUS_BY_CODE } from '../../base/errors.ts';
import { concatBytes } from '../../base/bytes.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CallResult, WorkerPool } from '../../engine/pool.ts';
import type { CallLogs } from '../../engine/runtime.ts';
import type { HttpRequestInput, HttpResponseOutput, InvocationMeta } from '../../base/invocation.ts';
import type { CgiRoute } from '../../base/invocation.ts';
import type { Logger } from '../../observability/logger.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { DEFAULTS } from '../../engine/function.ts';
import { isRunnerRoute, logGuestOutput, sendError, serveRunnerRoute, writeResponse, type RunnerRouteContext } from '../shared/runner-routes.ts';
import { guardConnections, listen, tlsError } from './connections.ts';

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
  /** WASI commands: cap on standard output per request, bytes (`--max-output`, default 10 MiB; wasi-cgi.md §6). */
  maxOutputBytes?: number;
  /** WASI commands: `host[:port]` for SERVER_NAME/SERVER_PORT when a request has no Host (`--default-host`); default: the listening address. */
  defaultHost?: string;
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

/** A function the pipeline can call: one per route (or one for the single-function server). */
export interface HttpTarget {
  /** The `function` label of metrics and log lines. */
  readonly name: string;
  /** Runs one invocation (a hot-reloading target calls whatever version is current). */
  invoke(input: HttpRequestInput, meta: InvocationMeta): Promise<CallResult>;
  /** Requests in progress for this target at once (WAGI `http_max_concurrency`): more → 503. */
  readonly maxConcurrency?: number;
}

/** What serves one request, decided by the server from its path. */
export type HttpDispatch =
  /**
   * Call a function. `cgi` (WASI commands only, wasi-cgi.md §3–§4) says which route matched;
   * Capsule-ABI targets leave it out, so nothing CGI is built or sent to a worker for them.
   */
  | { type: 'function'; target: HttpTarget; cgi?: CgiRoute; route?: string }
  /** A runner-made error, e.g. a module that failed to load (logged once where it failed, not per request). */
  | { type: 'error'; error: CapsuleError; name?: string }
  /**
   * Anything else (runner routes, `/healthz`, 404): answers itself and returns the status sent.
   * `runner`: a route of the runner's own (`/capsule/…`, `/health`, `/metrics`, `/healthz`),
   * logged but not counted in the request metrics (those count what clients asked of functions).
   */
  | { type: 'answer'; name?: string; runner?: boolean; respond(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<number> };

/** What the pipeline tells `dispatch` and the server's hooks. */
export interface PipelineState {
  /** True once shutdown has begun. */
  readonly draining: boolean;
  /** The listening port (0 before `listen`). */
  readonly port: number;
  readonly metrics: RunnerMetrics;
  /** Logs what a guest printed, one line each, with `fields` (request id, function, route). */
  logGuest(logs: CallLogs | undefined, fields: Record<string, unknown>): void;
}

/** A server built on the pipeline. */
export interface PipelineSpec {
  /** Worker pools whose busy workers the metrics report (and whose replaced workers are logged). */
  pools: WorkerPool[];
  /** Decides what serves a request (`path` without the query). */
  dispatch(path: string, req: IncomingMessage, state: PipelineState): HttpDispatch;
  /** Runs once in-flight calls are done (or the grace period is over) at shutdown: OnStop/OnExit, closing functions. */
  stop(state: PipelineState): Promise<void>;
}

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * Sets `X-Request-Id` on a runner-made answer (error, 413, 503, runner route). A function's own
 * response carries it in its writeHead instead (`writeResponse`): a header set before writeHead
 * costs the merge of two header sets, ~2 µs a request.
 */
function tagResponse(res: ServerResponse, requestId: string): void {
  res.setHeader('X-Request-Id', requestId);
}

/**
 * Listens and serves requests through the shared pipeline (see the module comment).
 * @throws CapsuleError USAGE when the port cannot be bound (in use, not this machine's address,
 *   unknown host) or the TLS certificate and key cannot be used, in one line
 */
export async function servePipeline(spec: PipelineSpec, o: HttpTriggerOptions): Promise<RunningHttpTrigger> {
  const log = o.logger;
  const maxBody = o.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const maxConcurrency = o.maxConcurrency ?? 1024;
  const graceMs = o.graceMs ?? 10_000;
  const metrics = new RunnerMetrics(
    () => spec.pools.reduce((n, p) => n + p.busy, 0),
    spec.pools.reduce((n, p) => n + p.size, 0),
  );
  for (const pool of spec.pools) pool.on('worker-exit', (message: string) => log.warn(`worker replaced: ${message}`));
  const scheme = o.tls ? 'https' : 'http';
  let inflight = 0;
  const perTarget = new Map<HttpTarget, number>();
  let draining = false;
  let port = 0;
  let defaultHost = '';
  let idleTimer: NodeJS.Timeout | undefined;
  const drained: (() => void)[] = [];
  const state: PipelineState = {
    get draining() { return draining; },
    get port() { return port; },
    metrics,
    logGuest: (logs, fields) => logGuestOutput(log, logs, fields),
  };

  // --stop-after: a request only records the time; one timer checks it (no timer per request).
  let lastRequest = Date.now();
  const armIdle = () => {
    if (o.stopAfterMs === undefined) return;
    lastRequest = Date.now();
    if (idleTimer) return;
    const check = () => {
      const idle = Date.now() - lastRequest;
      if (idle >= o.stopAfterMs! && inflight === 0) void shutdown(`no request for ${o.stopAfterMs} ms (--stop-after)`);
      else idleTimer = setTimeout(check, Math.max(o.stopAfterMs! - idle, 10));
    };
    idleTimer = setTimeout(check, o.stopAfterMs);
  };

  let guard: ReturnType<typeof guardConnections> | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const start = performance.now();
    guard!.track(req, res);
    // while draining, every answer tells keep-alive clients to go elsewhere
    if (draining) res.setHeader('Connection', 'close');
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    armIdle();
    const path = (req.url ?? '/').split('?', 1)[0]!;
    let dispatch: HttpDispatch;
    try {
      dispatch = spec.dispatch(path, req, state);
    } catch (e) {
      dispatch = { type: 'error', error: e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message) };
    }
    const fname = dispatch.type === 'function' ? dispatch.target.name : dispatch.name ?? '';
    const counted = !(dispatch.type === 'answer' && dispatch.runner);
    const done = (status: number, code?: string) => {
      const ms = performance.now() - start;
      if (counted) {
        metrics.requests.inc({ function: fname, method: req.method ?? '', status });
        metrics.duration.observe({ function: fname }, ms / 1000);
        if (code) metrics.errors.inc({ function: fname, code });
        if (code === 'TIMEOUT') metrics.timeouts.inc({ function: fname });
      }
      const line: Record<string, unknown> = { requestId, method: req.method, url: req.url, function: fname || undefined, status, durationMs: Math.round(ms * 1000) / 1000 };
      if (code) line.code = code;
      log.info(line, 'request');
    };
    if (dispatch.type === 'answer') {
      tagResponse(res, requestId);
      void dispatch.respond(req, res, requestId).then((status) => done(status));
      return;
    }
    if (dispatch.type === 'error') {
      tagResponse(res, requestId);
      req.resume();
      sendError(res, dispatch.error);
      done(STATUS_BY_CODE[dispatch.error.code], dispatch.error.code);
      return;
    }
    const { target } = dispatch;
    const targetInflight = perTarget.get(target) ?? 0;
    const targetFull = target.maxConcurrency !== undefined && targetInflight >= target.maxConcurrency;
    if (inflight >= maxConcurrency || draining || targetFull) {
      tagResponse(res, requestId);
      res.setHeader('Retry-After', '1');
      const why = draining ? 'the server is shutting down'
        : targetFull ? `more than ${target.maxConcurrency} requests in progress for ${target.name} (http_max_concurrency)`
          : `more than ${maxConcurrency} requests in progress (--max-concurrency)`;
      sendError(res, new CapsuleError('OVERLOADED', why));
      req.resume();
      done(503, 'OVERLOADED');
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBody) {
      tagResponse(res, requestId);
      tooLarge(req, res, maxBody);
      done(413, 'TOO_LARGE');
      return;
    }
    inflight++;
    perTarget.set(target, targetInflight + 1);
    metrics.inflight.inc();
    const finish = () => {
      inflight--;
      const n = (perTarget.get(target) ?? 1) - 1;
      if (n === 0) perTarget.delete(target);
      else perTarget.set(target, n);
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
        tagResponse(res, requestId);
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
      const body = chunks.length === 1 ? chunks[0]! : concatBytes(chunks, size);
      const input: HttpRequestInput = {
        type: 'http', method: req.method ?? 'GET', url: `${scheme}://${req.headers.host ?? `${o.host ?? '127.0.0.1'}`}${req.url ?? '/'}`,
        headers: headerPairs(req), body, remoteAddress: req.socket.remoteAddress ?? '', remotePort: req.socket.remotePort ?? 0,
        httpVersion: req.httpVersion,
      };
      if (dispatch.cgi) input.cgi = { maxOutputBytes: o.maxOutputBytes, defaultHost: o.defaultHost ?? defaultHost, ...dispatch.cgi };
      const fields: Record<string, unknown> = { requestId, function: target.name };
      if (dispatch.route !== undefined) fields.route = dispatch.route;
      target.invoke(input, { requestId, trigger: { httpPort: port } }).then(
        (r) => {
          try {
            state.logGuest(r.logs, fields);
            const out = r.output as HttpResponseOutput;
            if (out.failure) log.warn({ ...fields, code: out.failure.code }, out.failure.message);
            writeResponse(res, out, requestId);
            done(out.status, out.failure?.code);
          } finally {
            finish();
          }
        },
        (e: unknown) => {
          try {
            const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
            state.logGuest((e as { logs?: CallLogs }).logs, fields);
            log.warn({ ...fields, code: err.code }, err.message);
            tagResponse(res, requestId);
            sendError(res, err);
            done(STATUS_BY_CODE[err.code], err.code);
          } finally {
            finish();
          }
        },
      );
    });
  };

  let server: Server;
  try {
    server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, handler) : createHttpServer(handler);
  } catch (e) {
    throw new CapsuleError('USAGE', tlsError(e, o.tls!));
  }
  guard = guardConnections(server, log);
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 60_000;
  server.requestTimeout = 0; // the per-call deadline is the guest's --timeout
  port = await listen(server, o.port ?? 8080, o.host ?? '127.0.0.1');
  const displayHost = (o.host ?? '127.0.0.1').includes(':') ? `[${o.host}]` : (o.host ?? '127.0.0.1');
  const url = `${scheme}://${displayHost}:${port}`;
  defaultHost = `${displayHost}:${port}`;
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
      server.closeIdleConnections();
      // During the grace the port stays open: /capsule/ready answers 503 (a balancer sees the
      // runner leave instead of a refused connection) and new calls get 503 OVERLOADED.
      if (inflight > 0) {
        await Promise.race([
          new Promise<void>((r) => drained.push(r)),
          new Promise<void>((r) => setTimeout(r, graceMs).unref()),
        ]);
      }
      server.close();
      await spec.stop(state);
      server.closeAllConnections();
      closedResolve();
    })();
    return shuttingDown;
  }
  return { url, port, server, metrics, shutdown, closed };
}

/** Runs a lifecycle export and logs its output and failure (never throws). */
export async function runLifecycle(fn: CapsuleFunction, name: 'OnLoad' | 'OnStart' | 'OnStop' | 'OnExit', log: Logger, fields: Record<string, unknown> = {}): Promise<void> {
  const r = await fn.lifecycle(name);
  logGuestOutput(log, r.logs, { ...fields, lifecycle: name, function: fn.module.name });
  if (r.error) log.error({ ...fields, code: r.error.code }, `${name} failed: ${r.error.message}`);
}

/**
 * Serves one function over HTTP: every path but the runner's (`/capsule/…`, `/health`,
 * `/metrics`) goes to it; a WASI command sees the whole path as PATH_INFO (route `/...`).
 * @throws Error when the port cannot be bound (EADDRINUSE…)
 */
export async function serveHttp(fn: CapsuleFunction, o: HttpTriggerOptions): Promise<RunningHttpTrigger> {
  const log = o.logger;
  const fname = fn.module.name;
  // Gen 1 (§4.5): OnLoad once at start, in its own instance; a failure is logged, not fatal.
  await runLifecycle(fn, 'OnLoad', log);
  const target: HttpTarget = { name: fname, invoke: (input, meta) => fn.invoke(input, meta) };
  const cgi: CgiRoute | undefined = fn.module.detection.kind === 'wasi' ? { route: '/...' } : undefined;
  let routes: RunnerRouteContext | undefined;
  const runnerRoutes = (state: PipelineState): RunnerRouteContext => routes ??= {
    fn, metrics: state.metrics,
    notReady: () => (state.draining ? 'shutting down' : undefined),
    trigger: { httpPort: state.port }, // made at the first request, after listen
    logGuest: (logs, requestId) => state.logGuest(logs, { requestId, function: fname }),
  };
  return servePipeline({
    pools: [fn.pool],
    dispatch: (path, _req, state) => {
      if (isRunnerRoute(path)) {
        return { type: 'answer', name: fname, runner: true, respond: (req, res, requestId) => serveRunnerRoute(path, req, res, requestId, runnerRoutes(state)) };
      }
      return cgi ? { type: 'function', target, cgi } : { type: 'function', target };
    },
    stop: async () => {
      for (const name of ['OnStop', 'OnExit'] as const) await runLifecycle(fn, name, log);
      await fn.close();
    },
  }, o);
}

function headerPairs(req: IncomingMessage): [string, string][] {
  const out: [string, string][] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function tooLarge(req: IncomingMessage, res: ServerResponse, maxBody: number): void {
  res.setHeader('Connection', 'close');
  sendError(res, new CapsuleError('TOO_LARGE', `the request body is larger than the limit of ${maxBody} bytes (--max-body)`));
  req.resume();
}
