/**
 * `capsule faas`, the FaaS kit in one process for a laptop (faas-cluster.md §1.1): a reverse
 * proxy (Go default :8080), a registry (:4999) and a function node (:9999) whose deployments are
 * registered straight into the proxy's route table (no HTTP hop, no proxy token needed between
 * them). Each service keeps its own Go API, port and admin token, so `caps`, `capsule deploy …`
 * and the Go demo scripts drive it as they drive the separate services.
 */
import type { Logger } from '../../observability/logger.ts';
import { startNamed, type RunningService, type TlsFiles } from '../shared/service.ts';
import { startProxy, type RunningProxy } from '../proxy/index.ts';
import { startRegistry } from '../registry/index.ts';
import { startNode, tableProxyRegistration, type RunningNode } from '../node/index.ts';

export { callService, serviceUrl, serviceToken, ServiceError, SERVICES, type ServiceName, type ServiceReply } from './http.ts';

/** How to start the kit. Ports: 0 = a free port. */
export interface FaasKitOptions {
  logger: Logger;
  /** Interface every service binds (default 127.0.0.1). */
  host?: string;
  /** Proxy port (default 8080). */
  proxyPort?: number;
  /** Registry port (default 4999). */
  registryPort?: number;
  /** Node (worker API) port (default 9999). */
  nodePort?: number;
  /** The node's `-httpPortCounter` (default 10000; 0 = free ports for replicas). */
  portCounter?: number;
  /** Registry root directory (default `./registry`). */
  files?: string;
  tls?: TlsFiles;
  /** Admin tokens, one per service (faas-api.md §9.1); unset = loopback-only admin unless insecureAdmin. */
  tokens?: { proxy?: string; registry?: string; node?: string };
  insecureAdmin?: boolean;
  /** Worker threads shared by every deployment (default: CPU cores). */
  workers?: number;
  /** Module cache of the node (default: a temporary directory removed at close). */
  modulesDir?: string;
}

/** The running kit; `close()` stops the node first (its replicas leave the proxy), then the others. */
export interface RunningFaasKit {
  proxy: RunningProxy;
  registry: RunningService;
  node: RunningNode;
  close(): Promise<void>;
}

/**
 * Starts proxy, registry and node in this process.
 * @throws Error naming the service that could not start (`the registry: cannot listen on …`); the
 *   services already started are closed again
 */
export async function startFaasKit(o: FaasKitOptions): Promise<RunningFaasKit> {
  const host = o.host ?? '127.0.0.1';
  const started: RunningService[] = [];
  try {
    const proxy = await startNamed('proxy', () => startProxy({ logger: o.logger.child({ service: 'proxy' }), host, port: o.proxyPort ?? 8080, tls: o.tls, adminToken: o.tokens?.proxy, insecureAdmin: o.insecureAdmin }));
    started.push(proxy);
    const registry = await startNamed('registry', () => startRegistry({ logger: o.logger.child({ service: 'registry' }), host, port: o.registryPort ?? 4999, tls: o.tls, files: o.files ?? './registry', adminToken: o.tokens?.registry, insecureAdmin: o.insecureAdmin }));
    started.push(registry);
    const node = await startNamed('node', () => startNode({
      logger: o.logger.child({ service: 'node' }), host, port: o.nodePort ?? 9999, tls: o.tls,
      adminToken: o.tokens?.node, insecureAdmin: o.insecureAdmin, workers: o.workers, modulesDir: o.modulesDir,
      portCounter: o.portCounter ?? 10_000, proxy: tableProxyRegistration(proxy.table), proxyUrl: proxy.url,
    }));
    started.push(node);
    let closing: Promise<void> | undefined;
    const close = () => (closing ??= (async () => {
      await node.close();
      await Promise.allSettled([proxy.close(), registry.close()]);
    })());
    return { proxy, registry, node, close };
  } catch (e) {
    await Promise.allSettled(started.reverse().map((s) => s.close()));
    throw e;
  }
}
