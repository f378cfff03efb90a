/**
 * Opens the backend of `capsule proxy --backend memory|redis|nats` (faas-cluster.md §1.1): its
 * {@link RouteStore} and, in cluster mode, the invoker of `nats:` targets. The shared backends'
 * modules (and their client libraries) are loaded only when chosen.
 */
import type { Logger } from '../../../observability/logger.ts';
import type { ForwardResult } from '../forward.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Counter } from 'prom-client';
import { MemoryRouteStore, type RouteStore } from './store.ts';

export { LATTICE_TARGET, MemoryRouteStore, type RouteStore, type RouteChangeFn } from './store.ts';

/** What the proxy gets from its backend. */
export interface ProxyBackend {
  store: RouteStore;
  /** Invokes `nats:` targets (cluster mode only); given the proxy's retry counter. */
  lattice?: (retries: Counter<'reason'>) => { forward(req: IncomingMessage, res: ServerResponse, fn: string, rev: string, path: string): Promise<ForwardResult> };
  /** Closes the store and the connections (called when the proxy closes). */
  close(): Promise<void>;
}

/** Options of {@link openBackend}. */
export type BackendOptions =
  | { backend: 'memory' }
  | { backend: 'redis'; redisUri: string; logger: Logger }
  | {
    backend: 'nats';
    /** NATS URLs of the cluster. */
    servers: string[];
    lattice: string;
    logger: Logger;
    /** Per-attempt wait for a node's answer, ms. */
    timeoutMs: number;
    /** `--replicas` of a ROUTES bucket this gateway creates (undefined: cluster/state.ts `clusterReplicas`). */
    replicas?: number;
  };

/**
 * Opens a backend.
 * @throws CapsuleError LOAD when NATS cannot be reached; FaasError 503 STATE_UNAVAILABLE when
 *   Redis or JetStream does not answer at start
 */
export async function openBackend(o: BackendOptions): Promise<ProxyBackend> {
  if (o.backend === 'memory') {
    const store = new MemoryRouteStore();
    return { store, close: () => store.close() };
  }
  if (o.backend === 'redis') {
    const { RedisRouteStore } = await import('./redis.ts');
    const store = await RedisRouteStore.open({ url: o.redisUri, logger: o.logger });
    return { store, close: () => store.close() };
  }
  const { connectCluster, clusterReplicas } = await import('../../cluster/state.ts');
  const { NatsRouteStore, LatticeForwarder } = await import('./nats.ts');
  const nc = await connectCluster({ servers: o.servers, name: 'capsule-gateway', logger: o.logger });
  let store: RouteStore;
  try {
    store = await NatsRouteStore.open({ nc, lattice: o.lattice, replicas: await clusterReplicas(nc, o.replicas), logger: o.logger });
  } catch (e) {
    await nc.close();
    throw e;
  }
  return {
    store,
    lattice: (retries) => new LatticeForwarder({ nc, lattice: o.lattice, timeoutMs: o.timeoutMs, retries }),
    close: async () => {
      await store.close();
      // drain flushes what is in flight; a connection that cannot drain (NATS away) is closed
      const late = new Promise<'late'>((r) => setTimeout(() => r('late'), 2000).unref());
      if (await Promise.race([nc.drain().then(() => 'ok', () => 'failed'), late]) !== 'ok') await nc.close().catch(() => undefined);
    },
  };
}
