/**
 * `capsule up --all` (faas-cluster.md §1.1): a gateway (`proxy --backend nats`), a registry on the
 * Object Store and a cluster node, in this process, against one NATS (the one `capsule up`
 * started). Each is the same service the separate commands run; nothing here is specific to
 * one machine but the shared process.
 */
import type { Logger } from '../../observability/logger.ts';
import { startNamed, type RunningService, type TlsFiles } from '../shared/service.ts';

/** Options of {@link startClusterServices}. */
export interface ClusterServicesOptions {
  logger: Logger;
  /** NATS URLs (`--cluster`). */
  servers: string[];
  lattice: string;
  host: string;
  tls?: TlsFiles;
  /** Gateway, registry and node ports (0 = free ports). */
  gatewayPort: number;
  registryPort: number;
  nodePort: number;
  /** Per-deployment listeners of the node start after this port (0 = free ports). */
  portCounter: number;
  /** The node's content-addressed module cache. */
  cacheDir: string;
  workers?: number;
  /** Gateway's wait for a node's answer, ms. */
  timeoutMs: number;
  insecureAdmin?: boolean;
  /** Admin tokens, as the separate services read them from their environment variables. */
  tokens: { proxy?: string; registry?: string; node?: string };
}

/** The three services, and one close for all. */
export interface RunningClusterServices {
  gateway: RunningService;
  registry: RunningService;
  node: RunningService;
  /** Closes the node first (it leaves the lattice), then the gateway and the registry. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts gateway, registry and node against the NATS at `servers`.
 * @throws Error naming the service that could not start; those already started are closed
 */
export async function startClusterServices(o: ClusterServicesOptions): Promise<RunningClusterServices> {
  const { startProxy, openBackend } = await import('../proxy/index.ts');
  const { startRegistry } = await import('../registry/index.ts');
  const { startNode } = await import('../node/index.ts');
  const { connectCluster, clusterReplicas } = await import('../cluster/state.ts');
  const { bucketName } = await import('../cluster/lattice.ts');
  const { ObjectModuleStore } = await import('../registry/nats-store.ts');
  const started: (() => Promise<void>)[] = [];
  try {
    const gateway = await startNamed('gateway', async () => {
      const logger = o.logger.child({ service: 'gateway' });
      const backend = await openBackend({ backend: 'nats', servers: o.servers, lattice: o.lattice, logger, timeoutMs: o.timeoutMs });
      return startProxy({ logger, host: o.host, port: o.gatewayPort, tls: o.tls, backend, timeoutMs: o.timeoutMs, adminToken: o.tokens.proxy, insecureAdmin: o.insecureAdmin });
    });
    started.push(() => gateway.close());
    const registry = await startNamed('registry', async () => {
      const logger = o.logger.child({ service: 'registry' });
      const nc = await connectCluster({ servers: o.servers, name: 'capsule-registry', logger });
      started.push(() => nc.drain().catch(() => nc.close()));
      const store = await ObjectModuleStore.open(nc, bucketName(o.lattice, 'MODULES'), { replicas: await clusterReplicas(nc) });
      return startRegistry({ logger, host: o.host, port: o.registryPort, tls: o.tls, files: '', store, adminToken: o.tokens.registry, insecureAdmin: o.insecureAdmin });
    });
    started.splice(started.length - 1, 0, () => registry.close());
    const node = await startNamed('node', () => startNode({
      logger: o.logger.child({ service: 'node' }), host: o.host, port: o.nodePort, tls: o.tls, portCounter: o.portCounter, workers: o.workers,
      adminToken: o.tokens.node, insecureAdmin: o.insecureAdmin, workerDomain: o.host, proxyUrl: gateway.url,
      cluster: { servers: o.servers, lattice: o.lattice, cacheDir: o.cacheDir },
    }));
    let closing: Promise<void> | undefined;
    const close = () => (closing ??= (async () => {
      await node.close();
      for (const step of started) await step().catch(() => undefined);
    })());
    return { gateway, registry, node, close };
  } catch (e) {
    for (const step of started) await step().catch(() => undefined);
    throw e;
  }
}
