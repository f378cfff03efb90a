/**
 * The proxy's HTTP routes (faas-api.md §1, §9): the registration API under `/memory/…` (also
 * answered under `/redis/…` and `/nats/…`, §9.6) with Go's replies (202 + echo, 500 + Go codes,
 * keys in Go's sorted order), the traffic route of faas-cluster.md §1.3/§1.5, the proxy route
 * `ANY /functions/*` (bodies stay unread until forwarded) and Go's 404 for anything else.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { adminGuard, bindJson, FaasError, sendJson } from '../shared/service.ts';
import type { AdminPolicy } from '../shared/admin.ts';
import { isHttpUrl, isRouteName } from './config.ts';
import type { Gateway } from './gateway.ts';
import type { TrafficTarget } from './table.ts';
import { LATTICE_TARGET, type RouteStore } from './backends/store.ts';

/** The prefixes the registration API answers under (the backend names, §9.6). */
export const ADMIN_PREFIXES = ['memory', 'redis', 'nats'] as const;
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];

/**
 * JSON as Go's encoding/json writes a map: keys sorted, `<`, `>`, `&` escaped; `indent` gives
 * Gin's IndentedJSON (4 spaces).
 */
export function goJson(value: unknown, indent = false): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    return v;
  };
  return JSON.stringify(sort(value), null, indent ? 4 : undefined)
    .replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

function goReply(reply: FastifyReply, status: number, body: unknown, indent = false): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send(goJson(body, indent));
}

/**
 * Checks names and URLs of a registration body (400 ERROR_BAD_NAME / ERROR_BAD_URL); `nats:`
 * (a revision served by cluster nodes) is a URL only in cluster mode.
 */
function checkInputs(v: { function?: string; revision?: string; url?: string }, lattice = false): void {
  for (const k of ['function', 'revision'] as const) {
    const name = v[k];
    if (name !== undefined && !isRouteName(name)) throw new FaasError(400, 'ERROR_BAD_NAME', `${k} "${name}" must match [A-Za-z0-9._-] (1 to 128 characters)`);
  }
  if (v.url !== undefined && !isHttpUrl(v.url) && !(lattice && v.url === LATTICE_TARGET)) {
    throw new FaasError(400, 'ERROR_BAD_URL', `url "${v.url}" is not an absolute http(s) URL${lattice ? ` or ${LATTICE_TARGET}` : ''}`);
  }
}

type Params = { fn: string; rev: string };

/**
 * A listing without `nats:` targets outside cluster mode (faas-cluster.md §3 risk 5: scripts
 * that curl every URL of the list).
 */
function shown<T extends string[] | null>(urls: T, lattice: boolean): T {
  return (lattice || !urls ? urls : urls.filter((u) => u !== LATTICE_TARGET)) as T;
}

/** Registers the registration API (§1 table) and the traffic routes under one prefix. */
function adminRoutes(app: FastifyInstance, prefix: string, store: RouteStore, policy: AdminPolicy): void {
  const guard = { onRequest: adminGuard(policy) };
  const base = `/${prefix}/functions`;
  const table = store.table;
  const lattice = store.backend === 'nats';
  app.get(`${base}/list`, async (_req, reply) => {
    const list = table.list();
    for (const revs of Object.values(list)) for (const rev of Object.keys(revs)) revs[rev] = shown(revs[rev]!, lattice);
    return goReply(reply, 200, list, true);
  });
  app.post(`${base}/registration`, guard, async (req, reply) => {
    const b = bindJson(req, reply, ['function', 'revision', 'url']);
    if (!b) return reply;
    checkInputs(b, lattice);
    await store.change(b.function, (t) => t.registerFunction(b.function, b.revision, b.url));
    return goReply(reply, 202, { code: 'OK', message: 'Function created', function: b.function, revision: b.revision, url: b.url });
  });
  app.delete(`${base}/registration`, guard, async (req, reply) => {
    const b = bindJson(req, reply, ['function']);
    if (!b) return reply;
    await store.change(b.function, (t) => t.removeFunction(b.function));
    return goReply(reply, 202, { code: 'OK', message: 'Function removed', function: b.function });
  });
  app.post<{ Params: Params }>(`${base}/:fn/revision`, guard, async (req, reply) => {
    const b = bindJson(req, reply, ['revision', 'url']);
    if (!b) return reply;
    checkInputs(b, lattice);
    await store.change(req.params.fn, (t) => t.addRevision(req.params.fn, b.revision, b.url));
    return goReply(reply, 202, { code: 'OK', message: 'Revision added to the function', function: req.params.fn, revision: b.revision, url: b.url });
  });
  app.delete<{ Params: Params }>(`${base}/:fn/revision`, guard, async (req, reply) => {
    const b = bindJson(req, reply, ['revision']);
    if (!b) return reply;
    await store.change(req.params.fn, (t) => t.removeRevision(req.params.fn, b.revision));
    return goReply(reply, 202, { code: 'OK', message: 'Revision removed from the function', function: req.params.fn, revision: b.revision });
  });
  app.post<{ Params: Params }>(`${base}/:fn/:rev/url`, guard, async (req, reply) => {
    const b = bindJson(req, reply, ['url']);
    if (!b) return reply;
    checkInputs(b, lattice);
    await store.change(req.params.fn, (t) => t.addUrl(req.params.fn, req.params.rev, b.url));
    return goReply(reply, 202, { code: 'OK', message: 'URL added to the revision', function: req.params.fn, revision: req.params.rev, url: b.url });
  });
  app.delete<{ Params: Params }>(`${base}/:fn/:rev/url`, guard, async (req, reply) => {
    const b = bindJson(req, reply, ['url']);
    if (!b) return reply;
    await store.change(req.params.fn, (t) => t.removeUrl(req.params.fn, req.params.rev, b.url));
    return goReply(reply, 202, { code: 'OK', message: 'URL removed from the revision', function: req.params.fn, revision: req.params.rev, url: b.url });
  });
  app.get<{ Params: Params }>(`${base}/:fn/:rev/urls`, async (req, reply) => goReply(reply, 200, shown(table.urls(req.params.fn, req.params.rev), lattice), true));
  trafficRoutes(app, base, store, guard);
}

/** `GET|PUT|DELETE <base>/:fn/traffic` (faas-cluster.md §1.5). */
function trafficRoutes(app: FastifyInstance, base: string, store: RouteStore, guard: { onRequest: ReturnType<typeof adminGuard> }): void {
  const table = store.table;
  app.get<{ Params: Params }>(`${base}/:fn/traffic`, async (req, reply) => {
    if (!table.has(req.params.fn)) throw new FaasError(500, 'ERROR_FUNCTION_NOT_FOUND', `${req.params.fn} does not exist`);
    return sendJson(reply, 200, { function: req.params.fn, ...(table.traffic(req.params.fn) ?? { targets: [] }) });
  });
  app.put<{ Params: Params }>(`${base}/:fn/traffic`, guard, async (req: FastifyRequest<{ Params: Params }>, reply) => {
    const b = bindJson(req, reply, []);
    if (!b) return reply;
    if (!Array.isArray(b['targets'])) return sendJson(reply, 400, { code: 'ERROR_JSON_BINDING', message: 'field "targets" (an array of {"revision","percent"}) is missing' });
    if (b['sticky'] !== undefined && typeof b['sticky'] !== 'string') return sendJson(reply, 400, { code: 'ERROR_JSON_BINDING', message: 'field "sticky" must be a string such as "header:X-User" or "cookie:capsule-rev"' });
    await store.change(req.params.fn, (t) => t.setTraffic(req.params.fn, b['targets'] as TrafficTarget[], b['sticky'] as string | undefined));
    return sendJson(reply, 202, { code: 'OK', message: 'Traffic set', function: req.params.fn, ...table.traffic(req.params.fn) });
  });
  app.delete<{ Params: Params }>(`${base}/:fn/traffic`, guard, async (req, reply) => {
    await store.change(req.params.fn, (t) => t.clearTraffic(req.params.fn));
    return sendJson(reply, 202, { code: 'OK', message: 'Traffic split removed', function: req.params.fn });
  });
}

/**
 * Registers every route of the proxy on its service app.
 * @param store the routes: read from its table, changed through it (the backend's writes)
 * @param policy the admin-token policy of the mutating routes (§9.1)
 */
export function registerProxyRoutes(app: FastifyInstance, store: RouteStore, gateway: Gateway, policy: AdminPolicy): void {
  for (const prefix of ADMIN_PREFIXES) adminRoutes(app, prefix, store, policy);
  // the proxy route in its own scope: no body parser, the body is streamed to the upstream
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req: FastifyRequest, _payload: unknown, done: (err: Error | null, body?: unknown) => void) => done(null, undefined));
    scope.route({
      method: METHODS, url: '/functions/*', exposeHeadRoute: false,
      handler: async (req, reply) => {
        reply.hijack();
        await gateway.handle(req.raw, reply.raw);
      },
    });
  });
  app.setNotFoundHandler(async (_req, reply) => goReply(reply, 404, { code: 'PAGE_NOT_FOUND', message: '😢 Page not found 🥵' }));
}
