/**
 * The HTTP routes of the gen-2 FaaS mode (faas-api.md §6 with §9.1–§9.3, §9.7), as a fastify
 * plugin over a {@link FaasState}: `capsule faas-mode` (bin `capsule-http --faas`) mounts it on
 * its own app and `capsule node` on the node's app (faas-cluster.md §1.1). Admin routes need
 * `CAPSULE_FAAS_TOKEN` (401/403, never a fall-through); the call route forwards the request
 * (method, headers, streamed body, path rest and query) to the replica's port.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AdminPolicy } from '../shared/admin.ts';
import { adminGuard, bindJson, FaasError, sendJson } from '../shared/service.ts';
import { forwardRequest } from '../proxy/forward.ts';
import type { Logger } from '../../observability/logger.ts';
import { NOT_FOUND_TEXT, recordKey } from './records.ts';
import type { FaasState, StartTask } from './state.ts';
import type { Runner } from './runners.ts';
import type { NodeMetrics } from '../node/metrics.ts';

/**
 * The gen-2 routes over a cluster's desired state (a cluster node's `ClusterProcesses`,
 * faas-cluster.md §1.3): same replies, records in PROCS, revisions served by every node.
 */
export interface FaasClusterApi {
  /** @returns the key `name/revision/index` @throws FaasError 4xx, 503 */
  start(task: StartTask): Promise<string>;
  /** @returns the function name, undefined when `name/revision/0` is unknown */
  duplicate(name: string, revision: string, newRevision: string): Promise<string | undefined>;
  /** @returns the key, undefined when unknown */
  drop(key: string): Promise<string | undefined>;
  /** @returns the key, undefined when unknown */
  notify(key: string): Promise<string | undefined>;
  /** `GET /functions/processes` text. */
  listing(): string;
  /** Forwards a call and answers it (404 JSON when unknown); never throws. */
  forward(req: IncomingMessage, res: ServerResponse, name: string, revision: string, index: string | undefined, path: string): Promise<void>;
}

/** Options of {@link faasRoutes}. */
export interface FaasRoutesOptions {
  state: FaasState;
  /** Cluster mode: the routes write and read the cluster's desired state instead of `state`. */
  cluster?: FaasClusterApi;
  logger: Logger;
  /** The token policy of the admin routes (`CAPSULE_FAAS_TOKEN`, service `faas`). */
  policy: AdminPolicy;
  /** Base URL replicas are reached at (`CAPSULE_DOMAIN`, default `http://127.0.0.1`), without the port. */
  domain: string;
  /** Per-revision metrics (the node's metric set: requests, errors, latency, in flight; labels `fn`, `rev`). */
  metrics?: NodeMetrics;
  /** Longest wait for a replica's response headers, ms (default 300 000). */
  callTimeoutMs?: number;
  /**
   * `ALL /*` of the standalone main process (§6): where other paths go. Undefined = not mounted
   * (the node has its own). `index` = `index.page/default/0` if started, else the version text.
   */
  root?: { type: 'module'; url: string } | { type: 'index'; text: string };
}

type Params = Record<string, string | undefined>;

const text = (reply: FastifyReply, status: number, body: string) => reply.code(status).type('text/plain; charset=utf-8').send(body);

/** The key a drop/notify route names: revision `default` and index `0` when left out. */
function keyOf(p: Params): string {
  return recordKey(p['name']!, p['revision'] || 'default', p['index'] || '0');
}

/** Registers the admin routes (JSON bodies) and, in a child context without body parsing, the forwarding routes. */
export async function faasRoutes(app: FastifyInstance, o: FaasRoutesOptions): Promise<void> {
  await app.register(async (admin) => adminRoutes(admin, o));
  await app.register(async (raw) => forwardingRoutes(raw, o));
}

/** The admin routes; capsctl sends `Content-Type: application/json` with no body on PUT and DELETE, which must parse. */
async function adminRoutes(app: FastifyInstance, o: FaasRoutesOptions): Promise<void> {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    if ((body as string).trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(body as string));
    } catch (e) {
      done(e as Error, undefined);
    }
  });
  const guard = { onRequest: adminGuard(o.policy) };
  const { state } = o;
  app.post('/functions/start', guard, async (request, reply) => {
    const body = bindJson(request, reply, ['name']);
    if (!body) return reply;
    const list = (v: unknown, field: string): string[] | undefined => {
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new FaasError(400, 'ERROR_JSON_BINDING', `field "${field}" must be an array of strings`);
      return v as string[];
    };
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const task = {
      name: body.name, revision: str(body['revision']), description: str(body['description']), path: str(body['path']),
      args: list(body['args'], 'args'), env: list(body['env'], 'env'),
    };
    try {
      return text(reply, 200, await (o.cluster ?? state).start(task));
    } catch (e) {
      const status = (e as { status?: number }).status;
      if (status === 400 || (o.cluster && e instanceof FaasError)) throw e; // a cluster's 4xx/503 keep their JSON
      o.logger.error({ function: task.name, revision: task.revision, err: (e as Error).message }, 'cannot start a FaaS revision');
      return text(reply, 500, (e as Error).message);
    }
  });
  app.get('/functions/processes', guard, async (_request, reply) => reply.code(200).type('application/json; charset=utf-8').send(o.cluster ? o.cluster.listing() : state.table.listing()));
  app.put('/functions/duplicate/:name/:revision/:newRevision', guard, async (request, reply) => {
    const p = request.params as Params;
    const name = await (o.cluster ?? state).duplicate(p['name']!, p['revision']!, p['newRevision']!);
    return name === undefined ? text(reply, 500, NOT_FOUND_TEXT) : text(reply, 200, name);
  });
  const drop = async (request: FastifyRequest, reply: FastifyReply) => {
    const key = await (o.cluster ?? state).drop(keyOf(request.params as Params));
    return key === undefined ? text(reply, 500, NOT_FOUND_TEXT) : text(reply, 200, key);
  };
  for (const path of ['/functions/drop/:name', '/functions/drop/:name/:revision', '/functions/drop/:name/:revision/:index']) app.delete(path, guard, drop);
}

/** The routes whose body is streamed to a replica: no parser reads it first. */
async function forwardingRoutes(app: FastifyInstance, o: FaasRoutesOptions): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  const notify = async (request: FastifyRequest, reply: FastifyReply) => {
    const key = await (o.cluster ?? o.state).notify(keyOf(request.params as Params));
    return key === undefined ? text(reply, 500, NOT_FOUND_TEXT) : text(reply, 200, key);
  };
  app.all('/notify/:name/:revision', notify);
  app.all('/notify/:name/:revision/:index', notify);
  const call = (request: FastifyRequest, reply: FastifyReply) => callFunction(request, reply, o);
  app.all('/functions/:name', call);
  app.all('/functions/:name/:revision', call);
  app.all('/functions/:name/:revision/*', call);
  const root = o.root;
  if (root) app.all('/*', (request, reply) => rootRoute(request, reply, o, root));
}

/** The query string of a request URL, with its `?` ('' when none). */
function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q);
}

/**
 * `ALL /functions/:name[/:revision[/:index|/rest]]` (§6, §9.2, §9.3): a digits-only third
 * segment is the replica index and is not forwarded; any other rest is the path sent.
 */
async function callFunction(request: FastifyRequest, reply: FastifyReply, o: FaasRoutesOptions): Promise<unknown> {
  const p = request.params as Params;
  const name = p['name']!;
  const revision = p['revision'] || 'default';
  let rest = p['*'] ?? '';
  let index: string | undefined;
  const m = /^(\d+)(?:\/(.*))?$/s.exec(rest);
  if (m) {
    index = String(Number(m[1]));
    rest = m[2] ?? '';
  }
  const path = `/${rest}${queryOf(request.url)}`;
  if (o.cluster) {
    reply.hijack();
    return o.cluster.forward(request.raw, reply.raw, name, revision, index, path);
  }
  return forwardTo(request, reply, o, { name, revision, index, path, label: p['revision'] ? `${name}/${revision}` : name });
}

/** Finds (and wakes) the replica, forwards, and counts the call in flight for --stopAfter. */
async function forwardTo(request: FastifyRequest, reply: FastifyReply, o: FaasRoutesOptions,
  t: { name: string; revision: string; index?: string; path: string; label: string }): Promise<unknown> {
  let found: Awaited<ReturnType<FaasState['target']>>;
  try {
    found = await o.state.target(t.name, t.revision, t.index);
  } catch (e) {
    o.logger.error({ function: t.name, revision: t.revision, err: (e as Error).message }, 'cannot start the FaaS revision');
    return sendJson(reply, 502, { code: 'UPSTREAM_UNREACHABLE', message: `${t.name}/${t.revision} cannot start: ${(e as Error).message}` });
  }
  if (!found) {
    const label = t.index !== undefined ? `${t.name}/${t.revision}/${t.index}` : t.label;
    return sendJson(reply, 404, { code: 'FUNCTION_NOT_FOUND', message: `${label} is not registered` });
  }
  const { runner } = found;
  const labels = { fn: t.name, rev: t.revision };
  const m = o.metrics;
  const start = performance.now();
  m?.inflight.inc(labels);
  reply.hijack();
  try {
    const result = await forwardRequest(request.raw, reply.raw, [`${o.domain}:${runner.port}`], t.path, {
      logger: o.logger, timeoutMs: o.callTimeoutMs ?? 300_000, retrySame: restartAndRetry(o, runner),
    });
    // the key string and the object only when someone reads debug lines (this runs for every call)
    if (o.logger.isLevelEnabled('debug')) o.logger.debug({ key: recordKey(found.record.functionName, found.record.functionRevision, found.record.index), status: result.status, error: result.error }, 'FaaS call');
    m?.requests.inc({ ...labels, status: String(result.status) });
    if (result.status >= 500 || result.status === 0) m?.errors.inc({ ...labels, code: result.error ? 'UPSTREAM' : String(result.status) });
  } finally {
    runner.callEnded();
    m?.inflight.dec(labels);
    m?.duration.observe(labels, (performance.now() - start) / 1000);
  }
  return undefined;
}

/**
 * Go's policy when a revision refuses the connection (faas-api.md §6, §9.7): start it again if it
 * ended, then retry 4 times, 500 ms apart.
 */
function restartAndRetry(o: FaasRoutesOptions, runner: Runner): () => Promise<boolean> {
  let attempts = 0;
  return async () => {
    if (++attempts > 4) return false;
    o.logger.info({ port: runner.port, attempt: attempts }, 'the FaaS revision refused the connection: restarting it and retrying');
    await new Promise((r) => setTimeout(r, 500));
    await o.state.wake(runner).catch((e: unknown) => o.logger.warn({ port: runner.port, err: (e as Error).message }, 'cannot restart the FaaS revision'));
    return true;
  };
}

/** `ALL /*` of the standalone main process: the `--wasm` module, else `index.page`, else the version text. */
async function rootRoute(request: FastifyRequest, reply: FastifyReply, o: FaasRoutesOptions, root: NonNullable<FaasRoutesOptions['root']>): Promise<unknown> {
  if (root.type === 'module') {
    reply.hijack();
    await forwardRequest(request.raw, reply.raw, [root.url], request.url, { logger: o.logger, timeoutMs: o.callTimeoutMs ?? 300_000 });
    return undefined;
  }
  if (o.state.table.get(recordKey('index.page', 'default', 0)) === undefined) {
    request.raw.resume();
    return text(reply, 200, root.text);
  }
  return forwardTo(request, reply, o, { name: 'index.page', revision: 'default', index: '0', path: request.url, label: 'index.page' });
}
