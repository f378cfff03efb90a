/**
 * The runner's own HTTP routes (conventions.md §4), shared by every trigger: `/capsule/health`
 * (liveness), `/capsule/ready` (readiness), `/capsule/metrics` (Prometheus text), and `/health`,
 * `/metrics` (the guest's `OnHealthCheck` / `OnMetrics` when exported, else the runner's own).
 *
 * The HTTP trigger serves them beside the function; the message triggers (NATS, MQTT) serve
 * them on an optional `--http-port` with {@link startRunnerHttp}.
 */
import type { IncomingMessage, ServerResponse, Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { CapsuleError, STATUS_BY_CODE } from '../../base/errors.ts';
import type { CallLogs } from '../../engine/instance.ts';
import type { HttpResponseOutput, InvocationInput, InvocationMeta } from '../../base/invocation.ts';
import type { CallResult } from '../../engine/pool.ts';
import type { ModuleKind } from '../../base/kinds.ts';
import type { Logger } from '../../observability/logger.ts';
import type { RunnerMetrics } from '../../observability/metrics.ts';
import { guardConnections, listen } from '../http/connections.ts';

/** node:http without an ESM import, which would load Node's internal undici (see triggers/http/server.ts). */
const { createServer } = process.getBuiltinModule('node:http');

/**
 * What the runner routes need to know about the trigger that serves them. `fn`, `trigger` and
 * `logGuest` belong to a single-function trigger (its `OnHealthCheck` / `OnMetrics` answer
 * `/health` and `/metrics`, `/capsule/ready` names it); the multi-function server leaves them out.
 */
export interface RunnerRouteContext {
  /** What `/capsule/metrics` (and `/metrics` without `OnMetrics`) answers. */
  metrics: Pick<RunnerMetrics, 'text'>;
  /** Why the runner is not ready (`/capsule/ready` answers 503 with it), or undefined when ready. */
  notReady(): string | undefined;
  /** Extra fields of the `/capsule/ready` answer (e.g. the broker, the functions). */
  readyInfo?(): Record<string, unknown>;
  /** The function of a single-function trigger. */
  fn?: RouteFunction;
  /** Trigger facts passed to `OnHealthCheck` / `OnMetrics` (`InvocationMeta.trigger`). */
  trigger?: Record<string, string | number>;
  /** Logs what the guest printed during `OnHealthCheck` / `OnMetrics`. */
  logGuest?(logs: CallLogs | undefined, requestId: string): void;
}

/**
 * What the runner routes use of a single function: a `CapsuleFunction`, or the function an HTTP
 * thread runs in itself (triggers/http/thread.ts).
 */
export interface RouteFunction {
  readonly module: { readonly name: string; readonly detection: { readonly kind: ModuleKind } };
  /** Worker threads serving it (`/capsule/ready` says how many). */
  readonly pool: { readonly size: number };
  exports(name: string): boolean;
  invoke(input: InvocationInput, meta?: InvocationMeta): Promise<CallResult>;
}

/** Whether `path` (without the query) is one of the runner's routes. */
export function isRunnerRoute(path: string): boolean {
  return path.startsWith('/capsule/') || path === '/health' || path === '/metrics';
}

/**
 * Answers a runner route. Never throws (failures are answered as runner errors).
 * @returns the HTTP status sent
 */
export async function serveRunnerRoute(path: string, req: IncomingMessage, res: ServerResponse, requestId: string, ctx: RunnerRouteContext): Promise<number> {
  req.resume();
  const { fn } = ctx;
  try {
    if (fn && (path === '/health' || path === '/metrics')) {
      const exportName = path === '/health' ? 'OnHealthCheck' : 'OnMetrics';
      if (fn.exports(exportName)) {
        const r = await fn.invoke({ type: 'lifecycle', export: exportName }, { requestId, trigger: ctx.trigger });
        ctx.logGuest?.(r.logs, requestId);
        const out = r.output as HttpResponseOutput;
        writeResponse(res, out);
        return out.status;
      }
    }
    if (path === '/capsule/health' || path === '/health') {
      return sendJson(res, 200, { status: 'ok' });
    }
    if (path === '/capsule/ready') {
      const why = ctx.notReady();
      if (why !== undefined) return sendJson(res, 503, { status: why });
      const named = fn ? { module: fn.module.name, kind: fn.module.detection.kind, workers: fn.pool.size } : {};
      return sendJson(res, 200, { status: 'ready', ...named, ...ctx.readyInfo?.() });
    }
    if (path === '/capsule/metrics' || path === '/metrics') {
      const m = await ctx.metrics.text();
      res.writeHead(200, { 'Content-Type': m.contentType });
      res.end(m.body);
      return 200;
    }
    return sendJson(res, 404, { error: `no route for ${path} (runner routes: /capsule/health, /capsule/ready, /capsule/metrics)`, code: 'NOT_FOUND' });
  } catch (e) {
    const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
    ctx.logGuest?.((e as { logs?: CallLogs }).logs, requestId);
    sendError(res, err);
    return STATUS_BY_CODE[err.code];
  }
}

/**
 * Writes what a guest's captured output holds to the runner log, one line each, with `fields`
 * (request id, function, subject…).
 */
export function logGuestOutput(log: Logger, logs: CallLogs | undefined, fields: Record<string, unknown>): void {
  if (!logs) return;
  for (const line of logs.log) log.info({ ...fields, stream: 'log' }, line);
  for (const [stream, text] of [['stdout', logs.stdout], ['stderr', logs.stderr]] as const) {
    if (!text) continue;
    for (const line of text.replace(/\n$/, '').split('\n')) log.info({ ...fields, stream }, line);
  }
  if (logs.truncated) log.warn(fields, 'guest output truncated (limit per call reached)');
}

const HOP_BY_HOP = new Set(['connection', 'transfer-encoding', 'content-length', 'keep-alive', 'upgrade']);

/**
 * Sends a response made from a guest result (hop-by-hop headers dropped; invalid headers → 500).
 * @param requestId sent as `X-Request-Id` unless the guest set one
 */
export function writeResponse(res: ServerResponse, out: HttpResponseOutput, requestId?: string): void {
  const headers = flatHeaders(out, requestId) ?? groupedHeaders(out, requestId);
  try {
    res.writeHead(out.status, headers);
  } catch (e) {
    // an invalid header value from the guest; writeHead had already taken the guest's status
    // text ("500 Created" else)
    res.statusMessage = undefined as unknown as string;
    if (requestId !== undefined) res.setHeader('X-Request-Id', requestId);
    sendError(res, new CapsuleError('BAD_RESULT', `the function returned an invalid response header: ${(e as Error).message}`));
    return;
  }
  const body = out.body;
  if (body.length > 0 && body.length <= ONE_WRITE_MAX) {
    // latin1 maps each byte to one character and back: the bytes sent are the guest's, unchanged
    res.end(Buffer.from(body.buffer, body.byteOffset, body.length).toString('latin1'), 'latin1');
  } else {
    res.end(body);
  }
}

/**
 * The response headers as Node's flat `[name, value, …]` list, when that sends the bytes of
 * `groupedHeaders` (names lowercased, hop-by-hop ones dropped, `content-length`, then
 * `X-Request-Id` unless the guest set one): no name twice, none an array index or `__proto__`
 * (an object orders or drops those). Else undefined. The list spares building an object with
 * the guest's names as keys, ~0.3 µs a response.
 */
function flatHeaders(out: HttpResponseOutput, requestId: string | undefined): string[] | undefined {
  const flat: string[] = [];
  let hasId = false;
  for (const [k, v] of out.headers) {
    const key = k.toLowerCase();
    if (HOP_BY_HOP.has(key)) continue;
    const c = key.charCodeAt(0);
    if ((c >= 48 && c <= 57) || key === '__proto__') return undefined;
    for (let i = 0; i < flat.length; i += 2) if (flat[i] === key) return undefined;
    if (key === 'x-request-id') hasId = true;
    flat.push(key, v);
  }
  flat.push('content-length', String(out.body.length)); // one write, not chunked framing
  if (requestId !== undefined && !hasId) flat.push('X-Request-Id', requestId);
  return flat;
}

/** The response headers as an object: a name's values together, at its first place. */
function groupedHeaders(out: HttpResponseOutput, requestId: string | undefined): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of out.headers) {
    const key = k.toLowerCase();
    if (HOP_BY_HOP.has(key)) continue;
    // own names only: `constructor` would else read Object's and send its source as a value
    const prev = Object.hasOwn(headers, key) ? headers[key] : undefined;
    headers[key] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  headers['content-length'] = String(out.body.length); // one write, not chunked framing
  if (requestId !== undefined && headers['x-request-id'] === undefined) headers['X-Request-Id'] = requestId;
  return headers;
}

/**
 * Bodies up to this size (bytes) are handed to Node as a latin1 string: it then writes the
 * headers and the body in one write instead of two (measured on the main thread under the bench's
 * load: ~3 µs of a request's ~24). Larger bodies are not copied into a string.
 */
const ONE_WRITE_MAX = 16 * 1024;

/** Sends a JSON body. @returns the status */
export function sendJson(res: ServerResponse, status: number, body: unknown): number {
  if (res.headersSent) {
    res.end();
    return status;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
  return status;
}

/** Sends a runner error `{"error","code"}` with the status of its code (conventions.md §4). */
export function sendError(res: ServerResponse, err: CapsuleError): void {
  sendJson(res, STATUS_BY_CODE[err.code], { error: err.message, code: err.code });
}

/** A listening runner-routes server. */
export interface RunnerHttp {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/**
 * Serves only the runner routes (for triggers that are not HTTP: `capsule nats|mqtt
 * --http-port`). Other paths answer 404.
 * @param o.port 0 = a free port
 * @throws CapsuleError USAGE when the port cannot be bound (in use, not this machine's address…)
 */
export async function startRunnerHttp(ctx: RunnerRouteContext, o: { host: string; port: number; logger: Logger }): Promise<RunnerHttp> {
  let guard: ReturnType<typeof guardConnections> | undefined;
  const server = createServer((req, res) => {
    guard!.track(req, res);
    const requestId = randomUUID();
    res.setHeader('X-Request-Id', requestId);
    const path = (req.url ?? '/').split('?', 1)[0]!;
    void serveRunnerRoute(path, req, res, requestId, ctx).then((status) => {
      o.logger.debug({ requestId, method: req.method, url: req.url, status }, 'request');
    });
  });
  guard = guardConnections(server, o.logger);
  server.keepAliveTimeout = 5000;
  const port = await listen(server, o.port, o.host);
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}`, port, server,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
