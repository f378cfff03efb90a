/**
 * A function node in cluster mode (`capsule node --cluster URLS [--lattice L] [--labels k=v,…]
 * [--max-inflight N] [--cache-dir DIR]`, faas-cluster.md §1.1–§1.6): joins the NATS cluster,
 * serves every revision of DEPLOY it is eligible for (./runtime.ts), answers the Go worker API by
 * writing desired state (./desired.ts), and puts its heartbeat in NODES every 5 s
 * (`{url, labels, loaded, inflight, version, at}`; the bucket's TTL is 15 s).
 */
import { hostname } from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import type { KV } from '@nats-io/kv';
import { CAPSULE_VERSION } from '../../../base/version.ts';
import type { WorkerPool } from '../../../engine/pool.ts';
import type { FunctionTable } from '../../../functions/table.ts';
import type { Logger } from '../../../observability/logger.ts';
import { bucketName, checkLattice, parseKey } from '../../cluster/lattice.ts';
import { clusterReplicas, connectCluster, retrying, serverAuth, WatchedBucket } from '../../cluster/state.ts';
import { LatticeForwarder, NatsRouteStore } from '../../proxy/backends/nats.ts';
import type { NodeMetrics } from '../metrics.ts';
import { ModuleSource } from '../module-source.ts';
import type { PortCounter } from '../ports.ts';
import type { ReplicaListen } from '../replicas.ts';
import { ClusterDeployments } from './desired.ts';
import { ClusterProcesses, type ProcsValue } from './processes.ts';
import { LocalListeners } from './listeners.ts';
import { ClusterModules } from './modules.ts';
import { HEARTBEAT_MS, NODE_TTL_MS, type DeployRecord, type NodeRecord } from './records.ts';
import { RevisionRuntime } from './runtime.ts';

export { parseLabels } from './records.ts';
export type { ClusterDeployments } from './desired.ts';
export type { ClusterProcesses } from './processes.ts';

/** How a node joins the cluster (the `--cluster` family of flags). */
export interface ClusterNodeOptions {
  /** NATS URLs (`--cluster`, comma-separated on the command line). */
  servers: string[];
  /** `--lattice` (default `default`). */
  lattice?: string;
  /** `--labels`: what placement constraints match. */
  labels?: Record<string, string>;
  /** `--max-inflight`: calls in progress on this node over every revision (default 256). */
  maxInflight?: number;
  /** `--cache-dir`: the content-addressed module cache. */
  cacheDir: string;
  /** `--node-id` (default `<host>-<pid>`, characters other than letters, digits, `-`, `_` replaced). */
  nodeId?: string;
  /** `--idle-seconds`: scale-to-zero delay of deploys that name none (default 0 = never). */
  idleSeconds?: number;
  /** `--replicas` of buckets this node creates (undefined: {@link clusterReplicas}). */
  replicas?: number;
}

/** What `startNode` hands to the cluster side. */
export interface ClusterNodeContext {
  table: FunctionTable;
  pool: WorkerPool;
  metrics: NodeMetrics;
  logger: Logger;
  /** The proxy's base URL for `remoteUrl` ('' when none). */
  proxyUrl: string;
  listen: ReplicaListen;
  ports: PortCounter;
}

/** A node's membership of the cluster. */
export interface ClusterSide {
  readonly nodeId: string;
  readonly nc: NatsConnection;
  readonly deployments: ClusterDeployments;
  /** The gen-2 FaaS routes over PROCS and DEPLOY. */
  readonly processes: ClusterProcesses;
  readonly runtime: RevisionRuntime;
  /** Starts the NODES heartbeat naming the worker API's URL. */
  heartbeat(url: string): void;
  /** Leaves: heartbeat deleted, subscriptions drained, listeners closed, connection closed. */
  close(): Promise<void>;
}

/** Longest wait for a node's answer to a gen-2 call forwarded over NATS, ms. */
const GEN2_CALL_TIMEOUT_MS = 30_000;

/** A node id usable as a KV key and subject token. */
function defaultNodeId(): string {
  return `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, '-');
}

/**
 * Connects, opens the lattice's buckets and starts serving desired state.
 * @throws CapsuleError LOAD when no NATS server answers; FaasError 400 BAD_LATTICE; FaasError
 *   503 STATE_UNAVAILABLE when JetStream does not answer
 */
export async function joinCluster(o: ClusterNodeOptions, ctx: ClusterNodeContext): Promise<ClusterSide> {
  const lattice = checkLattice(o.lattice ?? 'default');
  const nodeId = o.nodeId ?? defaultNodeId();
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(nodeId)) throw new Error(`--node-id "${nodeId}": use letters, digits, - or _`);
  const { logger } = ctx;
  const labels = o.labels ?? {};
  const nc = await connectCluster({ servers: o.servers, name: `capsule-node-${nodeId}`, logger });
  try {
    const replicas = await clusterReplicas(nc, o.replicas);
    const deploy = await WatchedBucket.open<DeployRecord>(nc, bucketName(lattice, 'DEPLOY'), { replicas, logger });
    const nodes = await WatchedBucket.open<NodeRecord>(nc, bucketName(lattice, 'NODES'), { replicas, ttlMs: NODE_TTL_MS, logger });
    const routes = await NatsRouteStore.open({ nc, lattice, replicas, logger });
    const modules = await ClusterModules.open(nc, bucketName(lattice, 'MODULES'), { replicas, source: new ModuleSource({ dir: o.cacheDir }), logger });
    const runtime = new RevisionRuntime({ nc, lattice, nodeId, labels, table: ctx.table, modules, metrics: ctx.metrics, maxInflight: o.maxInflight ?? 256, logger });
    const listeners = new LocalListeners(runtime, ctx.pool, ctx.ports, ctx.listen);
    const stopListening = deploy.onChange((key, value) => {
      const k = parseKey(key);
      if (value === undefined && k?.revision !== undefined) void listeners.closeAll(k.function, k.revision);
    });
    runtime.follow(deploy);
    await runtime.ready();
    const deployments = new ClusterDeployments({ deploy, nodes, routes, modules, listeners, metrics: ctx.metrics, proxyUrl: ctx.proxyUrl, idleSeconds: o.idleSeconds ?? 0, subscribed: () => runtime.ready(), logger });
    const procs = await WatchedBucket.open<ProcsValue>(nc, bucketName(lattice, 'PROCS'), { replicas, logger });
    const forwarder = new LatticeForwarder({ nc, lattice, timeoutMs: GEN2_CALL_TIMEOUT_MS });
    const processes = new ClusterProcesses({ procs, deployments, forwarder, lattice, logger });
    const { Kvm } = await import('@nats-io/kv');
    const kv: KV = await retrying('open NODES', 5000, () => new Kvm(nc).open(bucketName(lattice, 'NODES')));
    let timer: NodeJS.Timeout | undefined;
    const beat = (url: string) => {
      const rec: NodeRecord = { url, labels, loaded: runtime.loadedNames(), inflight: runtime.inflight, version: CAPSULE_VERSION, at: Date.now() };
      kv.put(nodeId, JSON.stringify(rec)).catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'heartbeat not written (NODES)'));
    };
    logger.info({ nodeId, lattice, labels, servers: serverAuth(o.servers).servers }, 'joined the cluster');
    return {
      nodeId, nc, deployments, processes, runtime,
      heartbeat(url) {
        beat(url);
        timer = setInterval(() => beat(url), HEARTBEAT_MS);
        timer.unref();
      },
      async close() {
        clearInterval(timer);
        await kv.delete(nodeId).catch(() => undefined);
        stopListening();
        await runtime.close();
        await listeners.close();
        deploy.close();
        nodes.close();
        procs.close();
        await routes.close();
        await nc.drain().catch(() => undefined);
      },
    };
  } catch (e) {
    await nc.close().catch(() => undefined);
    throw e;
  }
}
