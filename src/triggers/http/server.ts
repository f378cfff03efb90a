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
import type { IncomingMessage, ServerResponse, Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { CapsuleError, STATUS_BY_CODE } from '../../base/errors.ts';
import { concatBytes } from '../../base/bytes.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CallResult, WorkerPool } from '../../engine/pool.ts';
import type { CallLogs } from '../../engine/instance.ts';
import type { HttpRequestInput, HttpResponseOutput, InvocationMeta } from '../../base/invocation.ts';
import type { CgiRoute } from '../../base/invocation.ts';
import type { Logger } from '../../observability/logger.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { DEFAULTS } from '../../engine/function.ts';
import { isRunnerRoute, logGuestOutput, sendError, serveRunnerRoute, writeResponse, type RunnerRouteContext } from '../shared/runner-routes.ts';
import { guardConnections, listen, tlsError } from './connections.ts';
import { runLifecycle, runStopExports, settleWithin, Shutdown } from '../lifecycle.ts';
import { SwappableFunction } from '../../functions/swap.ts';
import { ModuleReloader, RELOAD_ROUTE, type HotReloadOptions } from './reload.ts';
import { requestLogger, type RequestLogger } from './request-log.ts';
import { newRequestId } from '../shared/request-id.ts';

/**
 * node:http's createServer, taken with `process.getBuiltinModule`: an ESM import of node:http
 * builds its namespace, which evaluates its lazy `WebSocket`/`CloseEvent`/`MessageEvent` exports
 * and so loads Node's internal undici (~14 MiB of RSS; docs/performance.md, "Serve cost").
 */
const { createServer: createHttpServer } = process.getBuiltinModule('node:http');

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
  /**
   * Single-module server (`serveHttp`) only: hot reload of its module, `POST /load-wasm-module`
   * and `--watch` (reload.ts). Without it, every path reaches the guest.
   */
  reload?: HotReloadOptions;
  /**
   * Listen with SO_REUSEPORT beside other sockets of this process on the same port (the HTTP
   * threads of `capsule serve --http-threads`, threads.ts). Linux, Node ≥ 22.12.
   */
  reusePort?: boolean;
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

/** A running single-function server (`serveHttp`): its function can be replaced while it serves. */
export interface RunningFunctionServer extends RunningHttpTrigger {
  /** The function serving now. */
  readonly fn: CapsuleFunction;
  /**
   * Replaces the function while serving (hot reload, functions/swap.ts): runs `OnLoad` of
   * `next`, then every request that starts goes to it; requests in flight finish on the old
   * function, whose `OnStop`/`OnExit` then run before it is closed. Make `next` on the served
   * function's pool (`pool: server.fn.pool`) to keep one set of worker threads.
   * @returns once `next` serves (the old function retires in the background; shutdown waits)
   * @throws CapsuleError OVERLOADED when the server is shutting down (`next` is not used: close it)
   */
  replace(next: CapsuleFunction): Promise<void>;
}

/** A function the pipeline can call: one per route (or one for the single-function server). */
export interface HttpTarget {
  /** The `function` label of metrics and log lines. */
  readonly name: string;
  /**
   * Runs one invocation (a hot-reloading target calls whatever version is current). `exchange`:
   * the request and response it answers (an HTTP thread reads the connection's descriptor from it).
   */
  invoke(input: HttpRequestInput, meta: InvocationMeta, exchange?: { req: IncomingMessage; res: ServerResponse }): Promise<CallResult>;
  /** Requests in progress for this target at once (WAGI `http_max_concurrency`): more → 503. Fixed for the target's life. */
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

/** What the pipeline reads of a worker pool: its gauges, and its replaced workers to log. */
export type PipelinePool = Pick<WorkerPool, 'busy' | 'threads' | 'on'>;

/** A server built on the pipeline. */
export interface PipelineSpec {
  /** Worker pools whose busy workers the metrics report (and whose replaced workers are logged). */
  pools: PipelinePool[];
  /** The metric set to count requests in (default: a new one over `pools`). */
  metrics?: RunnerMetrics;
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
  return new Pipeline(spec, o).listen();
}

/** One request on its way through the pipeline: what its log line and metrics need. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly requestId: string;
  /** `performance.now()` when it arrived. */
  readonly start: number;
  /** The `function` label ('' when none). */
  readonly fname: string;
  /** Counted in the request metrics (the runner's own routes are not). */
  readonly counted: boolean;
}

/** The request pipeline: admission, body, call, answer, log line, metrics, --stop-after, shutdown. */
class Pipeline {
  readonly #spec: PipelineSpec;
  readonly #o: HttpTriggerOptions;
  readonly #log: Logger;
  /** Writes the request line of `#done`. */
  readonly #logRequest: RequestLogger;
  readonly #maxBody: number;
  readonly #maxConcurrency: number;
  readonly #scheme: 'http' | 'https';
  readonly #metrics: RunnerMetrics;
  readonly #state: PipelineState;
  /** Calls in flight of the targets that have a `maxConcurrency`. */
  readonly #perTarget = new Map<HttpTarget, number>();
  readonly #drained: (() => void)[] = [];
  readonly #shutdown: Shutdown<void>;
  #inflight = 0;
  #draining = false;
  #port = 0;
  #defaultHost = '';
  #idleTimer: NodeJS.Timeout | undefined;
  #lastRequest = Date.now();
  #server!: Server;
  #guard!: ReturnType<typeof guardConnections>;
  /** The request id of the start-up's own request while it runs (`#warm`): left out of the log and metrics. */
  #warmId: string | undefined;

  constructor(spec: PipelineSpec, o: HttpTriggerOptions) {
    this.#spec = spec;
    this.#o = o;
    const log = this.#log = o.logger;
    this.#logRequest = requestLogger(log);
    this.#maxBody = o.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
    this.#maxConcurrency = o.maxConcurrency ?? 1024;
    this.#scheme = o.tls ? 'https' : 'http';
    const metrics = this.#metrics = spec.metrics ?? new RunnerMetrics(
      () => spec.pools.reduce((n, p) => n + p.busy, 0),
      () => spec.pools.reduce((n, p) => n + p.threads, 0),
    );
    for (const pool of spec.pools) pool.on('worker-exit', (message: string) => log.warn(`worker replaced: ${message}`));
    const draining = () => this.#draining;
    const port = () => this.#port;
    this.#state = {
      get draining() { return draining(); },
      get port() { return port(); },
      metrics,
      logGuest: (logs, fields) => logGuestOutput(log, logs, fields),
    };
    this.#shutdown = new Shutdown((reason) => this.#stop(reason, o.graceMs ?? 10_000));
  }

  /** Creates the server and listens. @throws CapsuleError USAGE (see servePipeline) */
  async listen(): Promise<RunningHttpTrigger> {
    const o = this.#o;
    const handler = (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res);
    let server: Server;
    try {
      server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, handler) : createHttpServer(handler);
    } catch (e) {
      throw new CapsuleError('USAGE', tlsError(e, o.tls!));
    }
    this.#server = server;
    this.#guard = guardConnections(server, this.#log);
    server.keepAliveTimeout = 5000;
    server.headersTimeout = 60_000;
    server.requestTimeout = 0; // the per-call deadline is the guest's --timeout
    const host = o.host ?? '127.0.0.1';
    const port = this.#port = await listen(server, o.port ?? 8080, host, o.reusePort);
    const displayHost = host.includes(':') ? `[${host}]` : host;
    this.#defaultHost = `${displayHost}:${port}`;
    this.#armIdle();
    // the address bound, not `host`: a host name can also resolve to an address another server has
    if (!o.reusePort) await this.#warm((server.address() as { address: string }).address, port);
    const shutdown = this.#shutdown;
    return { url: `${this.#scheme}://${displayHost}:${port}`, port, server, metrics: this.#metrics, shutdown: (reason) => shutdown.run(reason), closed: shutdown.closed };
  }

  /**
   * Warms Node's HTTP code and this pipeline before the server is announced: one request to
   * itself at `host`, the address it is bound to (loopback for a wildcard one), `POST
   * /capsule/health` with a small body (a runner route, the guest is not called), its request id a random one known only here and left out of the log line and
   * metrics. A new server's first request otherwise pays for compiling Node's HTTP parser and
   * response code and the pipeline's own (issue 18: first request ≤ 3× a steady one;
   * docs/performance.md, "Serve cost"). Not done beside other sockets on the port (`reusePort`:
   * the request could reach another thread). Never fails: an error or 1 s without an answer
   * ends it, and the server serves as it would have.
   */
  async #warm(host: string, port: number): Promise<void> {
    const id = this.#warmId = newRequestId();
    const to = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
    const request = `POST /capsule/health HTTP/1.1\r\nHost: ${to.includes(':') ? `[${to}]` : to}:${port}\r\nX-Request-Id: ${id}\r\n` +
      'Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}';
    const tls = this.#o.tls;
    await new Promise<void>((resolve) => {
      const socket = tls
        ? process.getBuiltinModule('node:tls').connect({ host: to, port, rejectUnauthorized: false })
        : process.getBuiltinModule('node:net').connect({ host: to, port });
      const timer = setTimeout(() => socket.destroy(), 1000);
      socket.on(tls ? 'secureConnect' : 'connect', () => socket.end(request));
      socket.on('error', () => {});
      socket.on('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.resume();
    });
    this.#warmId = undefined;
  }

  /** Shutdown: refuse new calls, give those in flight the grace, close, `spec.stop`. */
  async #stop(reason: string, graceMs: number): Promise<void> {
    this.#log.info({ reason, inflight: this.#inflight }, 'shutting down');
    this.#draining = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#server.closeIdleConnections();
    // During the grace the port stays open: /capsule/ready answers 503 (a balancer sees the
    // runner leave instead of a refused connection) and new calls get 503 OVERLOADED.
    if (this.#inflight > 0) await settleWithin(new Promise<void>((r) => this.#drained.push(r)), graceMs);
    this.#server.close();
    await this.#spec.stop(this.#state);
    this.#server.closeAllConnections();
  }

  /** --stop-after: a request only records the time; one timer checks it (no timer per request). */
  #armIdle(): void {
    const stopAfterMs = this.#o.stopAfterMs;
    if (stopAfterMs === undefined) return;
    this.#lastRequest = Date.now();
    if (this.#idleTimer) return;
    const check = () => {
      const idle = Date.now() - this.#lastRequest;
      if (idle >= stopAfterMs && this.#inflight === 0) void this.#shutdown.run(`no request for ${stopAfterMs} ms (--stop-after)`);
      else this.#idleTimer = setTimeout(check, Math.max(stopAfterMs - idle, 10));
    };
    this.#idleTimer = setTimeout(check, stopAfterMs);
  }

  /** Every request starts here: id, dispatch, then an answer, an error or a call. */
  #handle(req: IncomingMessage, res: ServerResponse): void {
    const start = performance.now();
    this.#guard.track(req, res);
    // while draining, every answer tells keep-alive clients to go elsewhere
    if (this.#draining) res.setHeader('Connection', 'close');
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : newRequestId();
    this.#armIdle();
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const dispatch = this.#dispatch(query < 0 ? url : url.slice(0, query), req);
    const fname = dispatch.type === 'function' ? dispatch.target.name : dispatch.name ?? '';
    const ex: Exchange = { req, res, requestId, start, fname, counted: !(dispatch.type === 'answer' && dispatch.runner) };
    if (dispatch.type === 'answer') {
      tagResponse(res, requestId);
      void dispatch.respond(req, res, requestId).then((status) => this.#done(ex, status));
      return;
    }
    if (dispatch.type === 'error') {
      tagResponse(res, requestId);
      req.resume();
      sendError(res, dispatch.error);
      this.#done(ex, STATUS_BY_CODE[dispatch.error.code], dispatch.error.code);
      return;
    }
    if (this.#admit(ex, dispatch.target)) this.#readBody(ex, dispatch);
  }

  #dispatch(path: string, req: IncomingMessage): HttpDispatch {
    try {
      return this.#spec.dispatch(path, req, this.#state);
    } catch (e) {
      return { type: 'error', error: e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message) };
    }
  }

  /** The request's log line and metrics. */
  #done(ex: Exchange, status: number, code?: string): void {
    if (ex.requestId === this.#warmId) return; // the start-up's own request (#warm)
    const ms = performance.now() - ex.start;
    const { fname, req } = ex;
    if (ex.counted) {
      const metrics = this.#metrics;
      metrics.requests.inc({ function: fname, method: req.method ?? '', status });
      metrics.duration.observe({ function: fname }, ms / 1000);
      if (code) metrics.errors.inc({ function: fname, code });
      if (code === 'TIMEOUT') metrics.timeouts.inc({ function: fname });
    }
    this.#logRequest({ requestId: ex.requestId, method: req.method, url: req.url, function: fname, status, durationMs: Math.round(ms * 1000) / 1000, code });
  }

  /**
   * Admission: 503 when the server or the target is full or draining, 413 when the declared
   * body is too large; otherwise the call counts as in flight (until `#release`).
   * @returns whether the call may go on
   */
  #admit(ex: Exchange, target: HttpTarget): boolean {
    const { req, res, requestId } = ex;
    // counted per target only for a target with a limit of its own
    const limited = target.maxConcurrency !== undefined;
    const targetInflight = limited ? this.#perTarget.get(target) ?? 0 : 0;
    const targetFull = limited && targetInflight >= target.maxConcurrency;
    if (this.#inflight >= this.#maxConcurrency || this.#draining || targetFull) {
      tagResponse(res, requestId);
      res.setHeader('Retry-After', '1');
      const why = this.#draining ? 'the server is shutting down'
        : targetFull ? `more than ${target.maxConcurrency} requests in progress for ${target.name} (http_max_concurrency)`
          : `more than ${this.#maxConcurrency} requests in progress (--max-concurrency)`;
      sendError(res, new CapsuleError('OVERLOADED', why));
      req.resume();
      this.#done(ex, 503, 'OVERLOADED');
      return false;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.#maxBody) {
      tagResponse(res, requestId);
      tooLarge(req, res, this.#maxBody);
      this.#done(ex, 413, 'TOO_LARGE');
      return false;
    }
    this.#inflight++;
    if (limited) this.#perTarget.set(target, targetInflight + 1);
    this.#metrics.inflight.inc();
    return true;
  }

  /** The call is over (answered, aborted or refused for its body). */
  #release(target: HttpTarget): void {
    this.#inflight--;
    if (target.maxConcurrency !== undefined) {
      const n = (this.#perTarget.get(target) ?? 1) - 1;
      if (n === 0) this.#perTarget.delete(target);
      else this.#perTarget.set(target, n);
    }
    this.#metrics.inflight.dec();
    if (this.#draining && this.#inflight === 0) this.#drained.splice(0).forEach((f) => f());
  }

  /** Reads the body up to the limit (larger → 413), then calls the target. */
  #readBody(ex: Exchange, dispatch: FunctionDispatch): void {
    const { req, res } = ex;
    const maxBody = this.#maxBody;
    const chunks: Buffer[] = [];
    let size = 0;
    let aborted = false;
    req.on('data', (c: Buffer) => {
      if (aborted) return;
      size += c.length;
      if (size > maxBody) {
        aborted = true;
        tagResponse(res, ex.requestId);
        tooLarge(req, res, maxBody);
        this.#done(ex, 413, 'TOO_LARGE');
        this.#release(dispatch.target);
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => {
      if (!aborted) {
        aborted = true;
        this.#release(dispatch.target);
      }
    });
    req.on('end', () => {
      if (aborted) return;
      this.#call(ex, dispatch, chunks.length === 1 ? chunks[0]! : concatBytes(chunks, size));
    });
  }

  /** Runs the target and answers with its response, or with the runner error it failed with. */
  #call(ex: Exchange, dispatch: FunctionDispatch, body: Uint8Array): void {
    const { req, res, requestId } = ex;
    const { target } = dispatch;
    const o = this.#o;
    const input: HttpRequestInput = {
      type: 'http', method: req.method ?? 'GET', url: `${this.#scheme}://${req.headers.host ?? `${o.host ?? '127.0.0.1'}`}${req.url ?? '/'}`,
      headers: headerPairs(req), body, remoteAddress: req.socket.remoteAddress ?? '', remotePort: req.socket.remotePort ?? 0,
      httpVersion: req.httpVersion,
    };
    if (dispatch.cgi) input.cgi = { maxOutputBytes: o.maxOutputBytes, defaultHost: o.defaultHost ?? this.#defaultHost, ...dispatch.cgi };
    const log = this.#log;
    target.invoke(input, { requestId, trigger: { httpPort: this.#port } }, ex).then(
      (r) => {
        try {
          const out = r.output as HttpResponseOutput;
          if (r.logs || out.failure) {
            const fields = guestFields(requestId, dispatch);
            this.#state.logGuest(r.logs, fields);
            if (out.failure) log.warn({ ...fields, code: out.failure.code }, out.failure.message);
          }
          writeResponse(res, out, requestId);
          this.#done(ex, out.status, out.failure?.code);
        } finally {
          this.#release(target);
        }
      },
      (e: unknown) => {
        try {
          const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
          const fields = guestFields(requestId, dispatch);
          this.#state.logGuest((e as { logs?: CallLogs }).logs, fields);
          log.warn({ ...fields, code: err.code }, err.message);
          tagResponse(res, requestId);
          sendError(res, err);
          this.#done(ex, STATUS_BY_CODE[err.code], err.code);
        } finally {
          this.#release(target);
        }
      },
    );
  }
}

/** The dispatch of a request that calls a function. */
type FunctionDispatch = Extract<HttpDispatch, { type: 'function' }>;

/** The fields of a call's log lines besides the request line (what the guest printed, its failure): made only when there are some. */
function guestFields(requestId: string, dispatch: FunctionDispatch): Record<string, unknown> {
  const fields: Record<string, unknown> = { requestId, function: dispatch.target.name };
  if (dispatch.route !== undefined) fields.route = dispatch.route;
  return fields;
}

/**
 * Serves one function over HTTP: every path but the runner's (`/capsule/…`, `/health`,
 * `/metrics`) goes to it; a WASI command sees the whole path as PATH_INFO (route `/...`). With
 * `o.reload`, `POST /load-wasm-module` reloads it and `--watch` follows its file (reload.ts).
 * @throws Error when the port cannot be bound (EADDRINUSE…)
 */
export async function serveHttp(fn: CapsuleFunction, o: HttpTriggerOptions): Promise<RunningFunctionServer> {
  const log = o.logger;
  const stop = (f: CapsuleFunction) => runStopExports(f, log);
  const slot = new SwappableFunction(fn, { stop, onError: (e) => log.error(`closing the previous module failed: ${e.message}`) });
  // Gen 1 (§4.5): OnLoad once at start, in its own instance; a failure is logged, not fatal.
  await runLifecycle(fn, 'OnLoad', log);
  let draining = false;
  const replace = async (next: CapsuleFunction): Promise<void> => {
    if (draining) throw new CapsuleError('OVERLOADED', 'the server is shutting down');
    await runLifecycle(next, 'OnLoad', log);
    await next.executor.whenUp(); // warmed up in every worker (engine/pool.ts) before it takes calls
    if (draining) throw new CapsuleError('OVERLOADED', 'the server is shutting down');
    slot.swap(next);
  };
  const reloader = o.reload ? new ModuleReloader({ get fn() { return slot.fn; }, replace }, o.reload, log) : undefined;
  const fname = fn.module.name;
  let listening = '';
  const target: HttpTarget = {
    name: fname,
    invoke: (input, meta) => {
      // a reload that changed the module's kind between the dispatch and the call (after the body)
      const wasi = slot.fn.module.detection.kind === 'wasi';
      if (wasi !== (input.cgi !== undefined)) {
        input = { ...input, cgi: wasi ? { route: '/...', maxOutputBytes: o.maxOutputBytes, defaultHost: o.defaultHost ?? listening } : undefined };
      }
      return slot.invoke(input, meta);
    },
  };
  // the two answers of a guest path, made once (dispatch runs per request; the pipeline only reads them)
  const callFunction: FunctionDispatch = { type: 'function', target };
  const callCommand: FunctionDispatch = { type: 'function', target, cgi: { route: '/...' } };
  let routes: RunnerRouteContext | undefined;
  const runnerRoutes = (state: PipelineState): RunnerRouteContext => routes ??= {
    get fn() { return slot.fn; }, metrics: state.metrics,
    notReady: () => (state.draining ? 'shutting down' : undefined),
    trigger: { httpPort: state.port }, // made at the first request, after listen
    logGuest: (logs, requestId) => state.logGuest(logs, { requestId, function: fname }),
  };
  const running = await servePipeline({
    pools: [fn.pool],
    dispatch: (path, req, state) => {
      if (isRunnerRoute(path)) {
        return { type: 'answer', name: fname, runner: true, respond: (rq, res, requestId) => serveRunnerRoute(path, rq, res, requestId, runnerRoutes(state)) };
      }
      if (reloader && path === RELOAD_ROUTE && req.method === 'POST') {
        return { type: 'answer', name: fname, runner: true, respond: (rq, res) => reloader.answer(rq, res) };
      }
      return slot.fn.module.detection.kind === 'wasi' ? callCommand : callFunction;
    },
    stop: async () => {
      draining = true;
      await reloader?.close();
      await slot.close();
    },
  }, o);
  listening = new URL(running.url).host;
  reloader?.watch();
  return { ...running, get fn() { return slot.fn; }, replace };
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
