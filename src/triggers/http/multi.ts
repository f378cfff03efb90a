/**
 * The multi-function HTTP server (`capsule serve --functions <dir>` / `--routes <file>`,
 * wasi-cgi.md §9, conventions.md §4): many functions of any kind (Capsule ABI gen 1/2, WASI
 * commands) behind one port and one worker pool, each with its own grants and limits, through
 * the same request pipeline as the single-function server (`servePipeline`). The functions,
 * their versions, routes and reloading are the `FunctionTable` (functions/table.ts); this file
 * is its HTTP adapter.
 *
 * Routing, in order: `/healthz` → `OK` (WAGI); `/capsule/health|ready|metrics` (the runner's);
 * routes under `/functions/…` (named functions and their revisions); then the other routes in
 * table order, a module's `_routes` sub-routes before its own route (last output line first);
 * first match wins. No match → 404 `{"error":"no route for <path>"}`.
 *
 * Modules are compiled once (one compile per file and kind, shared by the routes that use it)
 * and swapped when their file changes on disk (fs.watch on their directories, debounced): the
 * new version takes new requests, calls already running finish on the old one, which is then
 * unregistered. A module that fails to load answers 500 JSON naming the error (logged once) while
 * the others keep serving; a changed file that fails to load leaves the previous version serving.
 * The functions directory and routes file are re-read on change too (functions added, removed,
 * or with new settings). Multi-function servers never pass the runner's environment to guests.
 */
import { CapsuleError } from '../../base/errors.ts';
import { CGI_KINDS } from '../../base/kinds.ts';
import { FunctionTable, type FunctionTableOptions } from '../../functions/table.ts';
import { sendJson, serveRunnerRoute } from '../shared/runner-routes.ts';
import { runLifecycle } from '../lifecycle.ts';
import { servePipeline, type HttpDispatch, type HttpTriggerOptions, type PipelineState, type RunningHttpTrigger } from './server.ts';

export interface MultiServerOptions extends HttpTriggerOptions, Omit<FunctionTableOptions, 'logger' | 'lifecycle'> {}

const ANSWER_HEALTHZ: HttpDispatch = {
  type: 'answer', runner: true, respond: async (req, res) => {
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2 });
    res.end('OK');
    return 200;
  },
};

/** The runner's routes of a multi-function server: `/capsule/health`, `/capsule/ready`, `/capsule/metrics`. */
function runnerRoute(path: string, table: FunctionTable, state: PipelineState): HttpDispatch {
  return { type: 'answer', runner: true, respond: (req, res, requestId) => serveRunnerRoute(path, req, res, requestId, {
    metrics: state.metrics,
    notReady: () => (state.draining ? 'shutting down' : undefined),
    readyInfo: () => ({ functions: table.size, failed: table.failed(), workers: table.pool.size }),
  }) };
}

function notFound(path: string): HttpDispatch {
  return {
    type: 'answer',
    respond: async (req, res) => {
      req.resume();
      return sendJson(res, 404, { error: `no route for ${path}` });
    },
  };
}

/** What serves a request path: `/healthz` (WAGI), the runner's routes, else the table's first match. */
function dispatch(table: FunctionTable, path: string, state: PipelineState): HttpDispatch {
  if (path === '/healthz') return ANSWER_HEALTHZ;
  if (path.startsWith('/capsule/')) return runnerRoute(path, table, state);
  const r = table.route(path);
  if (!r) return notFound(path);
  const h = r.target;
  if (!h.current) return { type: 'error', error: h.error ?? new CapsuleError('BAD_MODULE', `${h.name} is not loaded yet`), name: h.name };
  if (!CGI_KINDS.has(h.current.fn.module.detection.kind)) return { type: 'function', target: h, route: r.def.route };
  return { type: 'function', target: h, route: r.def.route, cgi: { route: r.def.route, entrypoint: r.def.entrypoint, argv: r.def.argv } };
}

/**
 * Starts the multi-function server: loads every function of the table (failures are logged and
 * served as 500s), then listens.
 * @throws CapsuleError USAGE when the table cannot be built; Error when the port cannot be bound
 */
export async function serveFunctions(o: MultiServerOptions): Promise<RunningHttpTrigger> {
  const log = o.logger;
  const table = new FunctionTable({ ...o, logger: log, lifecycle: (fn, name, fields) => runLifecycle(fn, name, log, fields) });
  await table.start();
  return servePipeline({
    pools: [table.pool],
    dispatch: (path, _req, state) => dispatch(table, path, state),
    stop: () => table.close(),
  }, o);
}
