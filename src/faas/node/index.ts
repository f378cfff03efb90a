/**
 * The function node (`capsule node`, also `capsule worker` and the `capsule-worker` bin;
 * faas-api.md §3, faas-cluster.md §1.1): the Go worker API over deployments that run in this
 * process on one shared worker pool (or as child processes with `--process`), registered in the
 * reverse proxy over HTTP (Go's way) or straight into its route table when both run in one
 * process; the gen-2 FaaS API (`/functions/start`, …, faas-api.md §6) on the same app and pool
 * (in cluster mode over the cluster's desired state: ./cluster/processes.ts).
 * Also `/capsule/health`, `/capsule/ready` and per-revision `/capsule/metrics`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CapsuleError } from '../../base/errors.ts';
import { FunctionTable } from '../../functions/table.ts';
import type { Logger } from '../../observability/logger.ts';
import { runLifecycle } from '../../triggers/lifecycle.ts';
import { createServiceApp, listenService, type RunningService, type TlsFiles } from '../shared/service.ts';
import { faasRoutes, FaasState } from '../gen2/index.ts';
import { registerNodeRoutes } from './api.ts';
import { Deployments } from './deployments.ts';
import { NodeMetrics } from './metrics.ts';
import { ModuleSource } from './module-source.ts';
import { PortCounter } from './ports.ts';
import type { ProxyRegistration } from './proxy-client.ts';
import { ownCapsuleCommand } from './replicas.ts';
import type { ClusterNodeOptions, ClusterSide } from './cluster/index.ts';

export type { ProxyRegistration } from './proxy-client.ts';
export { httpProxyRegistration, tableProxyRegistration } from './proxy-client.ts';
export { Deployments } from './deployments.ts';

/** How to start a node. */
export interface NodeOptions {
  /** Interface of the node's API and of its replicas (default 127.0.0.1). */
  host?: string;
  /** Port of the worker API (Go default 9999; 0 = a free port). */
  port?: number;
  tls?: TlsFiles;
  logger: Logger;
  /** `CAPSULE_WORKER_ADMIN_TOKEN` (faas-api.md §9.1). */
  adminToken?: string;
  /** Without a token, accept admin calls from any address. */
  insecureAdmin?: boolean;
  /** Where deployments are registered; undefined = nowhere (logged). */
  proxy?: ProxyRegistration;
  /** The proxy's base URL, for `remoteUrl` in replies (Go `-reverseProxy`). */
  proxyUrl?: string;
  /** Host name in `localUrl` (Go `-workerDomain`, default `localhost`). */
  workerDomain?: string;
  /** Go `-httpPortCounter` (default 10000: the first replica gets 10001); 0 = free ports. */
  portCounter?: number;
  /** One child process per replica instead of in-process listeners. */
  process?: boolean;
  /** `--process`: command running a replica (default: this package's `capsule`). */
  capsuleCommand?: string[];
  /** Worker threads of the shared pool (default: CPU cores). */
  workers?: number;
  /** Module cache directory (default: a temporary directory removed at close). */
  modulesDir?: string;
  /** Time given to a stopping replica's in-flight calls, ms (default 10 000). */
  graceMs?: number;
  /** `CAPSULE_FAAS_TOKEN` of the gen-2 FaaS routes mounted on the node (faas-api.md §6). */
  faasToken?: string;
  /** `CAPSULE_DOMAIN`: base URL gen-2 revisions are reached at (default `http://127.0.0.1`). */
  faasDomain?: string;
  /**
   * Cluster mode (`--cluster`, faas-cluster.md §1.1): the worker API writes desired state and the
   * node serves every eligible revision over NATS (./cluster/index.ts). Not with `process`.
   */
  cluster?: ClusterNodeOptions;
}

/** A running node. */
export interface RunningNode extends RunningService {
  /** The one-machine deployments (empty in cluster mode: see `cluster`). */
  readonly deployments: Deployments;
  readonly metrics: NodeMetrics;
  /** Cluster mode: the node's membership (id, connection, desired state, runtime). */
  readonly cluster?: ClusterSide;
}

/**
 * Starts a node: its function table and pool (in-process mode), module cache, and worker API.
 * @throws Error when the API port cannot be bound
 */
export async function startNode(o: NodeOptions): Promise<RunningNode> {
  const logger = o.logger;
  if (o.cluster && o.process) throw new CapsuleError('USAGE', '--process cannot be used with --cluster (cluster nodes run revisions in-process)');
  const host = o.host ?? '127.0.0.1';
  const ownDir = o.modulesDir === undefined;
  const dir = o.modulesDir ?? await mkdtemp(join(tmpdir(), 'capsule-node-'));
  const table = o.process ? undefined : new FunctionTable({
    table: () => ({ functions: [], routes: [], watch: [], warnings: [] }),
    defaults: {}, workers: o.workers, watch: false, logger,
    lifecycle: (fn, name, fields) => runLifecycle(fn, name, logger, fields),
  });
  await table?.start();
  const metrics = new NodeMetrics();
  const listen = { host, domain: o.workerDomain || 'localhost', tls: o.tls, logger, graceMs: o.graceMs ?? 10_000 };
  const ports = new PortCounter(o.portCounter ?? 10_000, host);
  const proxyUrl = (o.proxyUrl ?? '').replace(/\/+$/, '');
  const deployments = new Deployments({
    table, processCommand: o.process ? o.capsuleCommand ?? ownCapsuleCommand() : undefined,
    source: new ModuleSource({ dir }), metrics, proxy: o.cluster ? undefined : o.proxy, proxyUrl, listen, ports,
    logger: o.cluster ? logger.child({}, { level: 'silent' }) : logger, // unused in cluster mode: no "not registered" warning
  });
  const cluster = o.cluster && table
    ? await (await import('./cluster/index.ts')).joinCluster(o.cluster, { table, pool: table.pool, metrics, logger, proxyUrl, listen, ports })
      .catch(async (e: unknown) => {
        await table.close();
        throw e;
      })
    : undefined;
  let closing = false;
  const app = createServiceApp({ service: 'worker', logger, tls: o.tls, metrics: metrics.registry, ready: () => !closing });
  registerNodeRoutes(app, cluster?.deployments ?? deployments, { service: 'worker', header: 'CAPSULE_WORKER_ADMIN_TOKEN', token: o.adminToken, insecureAdmin: o.insecureAdmin });
  // faas-cluster.md §1.1: the node also serves the gen-2 FaaS API, on the same worker pool
  const faas = new FaasState({ logger, processes: o.process, host, workers: o.workers, pool: table?.pool });
  await faasRoutes(app, {
    state: faas, cluster: cluster?.processes, logger, domain: (o.faasDomain || 'http://127.0.0.1').replace(/\/+$/, ''),
    policy: { service: 'faas', header: 'CAPSULE_FAAS_TOKEN', token: o.faasToken, insecureAdmin: o.insecureAdmin },
  });
  const running = await listenService(app, { host, port: o.port ?? 9999, tls: o.tls });
  cluster?.heartbeat(running.url);
  let closed: Promise<void> | undefined;
  const close = () => closed ??= (async () => {
    closing = true;
    await running.close();
    await cluster?.close();
    await deployments.close();
    await faas.close();
    await table?.close();
    if (ownDir) await rm(dir, { recursive: true, force: true });
  })();
  return { url: running.url, port: running.port, app, deployments, metrics, cluster, close };
}
