/**
 * `capsule proxy` as a library (faas-api.md §1, §9.1–§9.4; faas-cluster.md §1.3, §1.5): the
 * gateway of the FaaS kit. {@link startProxy} serves the proxy route, the registration API and
 * the runner routes on one port and returns the live {@link RouteTable}, which other services of
 * the same process (the node in `capsule faas`) may change directly.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from '../../observability/logger.ts';
import { createServiceApp, listenService, type RunningService, type TlsFiles } from '../shared/service.ts';
import { registerProxyRoutes } from './api.ts';
import type { StaticRoutes } from './config.ts';
import { MemoryRouteStore, type ProxyBackend } from './backends/index.ts';
import { Gateway, ProxyMetrics } from './gateway.ts';
import { UpstreamHealth } from './health.ts';
import { RouteTable } from './table.ts';

export { RouteTable, DEFAULT_REVISION, type TrafficTarget, type Traffic, type RouteChange, type Resolved } from './table.ts';
export { forwardRequest, type ForwardOptions, type ForwardResult } from './forward.ts';
export { loadRoutesConfig, type StaticRoutes } from './config.ts';
export { openBackend, type ProxyBackend, type BackendOptions, type RouteStore } from './backends/index.ts';

/** The header (and environment variable) carrying the proxy's admin token (faas-api.md §1). */
export const PROXY_TOKEN = 'CAPSULE_REVERSE_PROXY_ADMIN_TOKEN';

/** Options of {@link startProxy}. */
export interface ProxyOptions {
  logger: Logger;
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Port (0 = a free port; the Go default is 8080). */
  port: number;
  tls?: TlsFiles;
  /** Admin token of the mutating routes (default: none, then loopback clients only, §9.1). */
  adminToken?: string;
  /** Without a token, accept admin calls from any address. */
  insecureAdmin?: boolean;
  /** Static routes loaded at start (from `--config`, see ./config.ts). */
  routes?: StaticRoutes;
  /** Use this table (shared with other services of the process) instead of a new one. */
  table?: RouteTable;
  /**
   * Where routes live (./backends: memory, redis, nats; default memory on `table`). Static
   * `routes` go into a shared store only for functions it does not hold. Closed with the proxy.
   */
  backend?: ProxyBackend;
  /** Upstream response-header and idle-body timeout, ms (default 30 000). */
  timeoutMs?: number;
  /** Largest admin JSON body, bytes (default 1 MiB; proxied bodies are streamed, never limited here). */
  bodyLimit?: number;
}

/**
 * Hands `/functions/…` requests to the gateway straight from the node:http server, before
 * fastify's routing and request/reply objects (work a proxied request does not need); the
 * route registered in api.ts stays as the fallback and documents the route.
 */
function bypassFramework(server: Server, gateway: Gateway): void {
  const [framework] = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  if (!framework) return;
  server.removeListener('request', framework);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith('/functions/')) void gateway.handle(req, res);
    else framework.call(server, req, res);
  });
}

/** A running proxy: the service plus its route table. */
export type RunningProxy = RunningService & { readonly table: RouteTable };

/**
 * Starts the proxy and listens.
 * @throws Error when it cannot listen (address in use, …); FaasError when `routes` conflict with `table`
 *   (503 STATE_UNAVAILABLE when a shared backend cannot take them)
 */
export async function startProxy(o: ProxyOptions): Promise<RunningProxy> {
  const store = o.backend?.store ?? new MemoryRouteStore(o.table ?? new RouteTable());
  const table = store.table;
  if (o.routes) await store.seed(o.routes);
  const health = new UpstreamHealth(o.logger);
  const stopForgetting = table.onChange(() => {
    // upstreams that left every revision need no more probes
    if (health.downList().length === 0) return;
    const still = new Set(Object.values(table.list()).flatMap((revs) => Object.values(revs).flat()));
    for (const url of health.downList()) if (!still.has(url)) health.forget(url);
  });
  const metrics = new ProxyMetrics(() => health.downList().length);
  const gateway = new Gateway({ table, health, metrics, logger: o.logger, timeoutMs: o.timeoutMs ?? 30_000, lattice: o.backend?.lattice?.(metrics.latticeRetries) });
  const app = createServiceApp({ service: 'reverse-proxy', logger: o.logger, tls: o.tls, bodyLimit: o.bodyLimit, metrics: metrics.registry });
  registerProxyRoutes(app, store, gateway, { service: 'reverse-proxy', header: PROXY_TOKEN, token: o.adminToken, insecureAdmin: o.insecureAdmin });
  bypassFramework(app.server, gateway);
  let running: RunningService;
  try {
    running = await listenService(app, { host: o.host ?? '127.0.0.1', port: o.port, tls: o.tls });
  } catch (e) {
    health.close();
    stopForgetting();
    await o.backend?.close();
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    url: running.url, port: running.port, app, table,
    close: () => (closing ??= (async () => {
      health.close();
      stopForgetting();
      await running.close();
      await o.backend?.close();
    })()),
  };
}
