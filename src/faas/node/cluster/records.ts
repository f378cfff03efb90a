/**
 * The desired state a cluster node reads and writes (faas-cluster.md §1.2): the DEPLOY record of
 * a revision (key `rev.<f>.<rev>`) and the NODES heartbeat (key `<nodeId>`), with the checks that
 * keep a malformed value written by someone else from stopping a node.
 */

/** DEPLOY `rev.<f>.<rev>`: what every eligible node serves for one revision. */
export interface DeployRecord {
  /** Hex SHA-256 of the module (no `sha256:` prefix). */
  sha256: string;
  /** The `downloadUrl` it was deployed from (Go's `wasmRegistryUrl`; the last resort of a node's fetch). */
  source: string;
  /** Name of the module's copy in the Object Store `CAPSULE_<L>_MODULES`. */
  object?: string;
  /** Guest environment (`envVariables`). */
  env: Record<string, string>;
  /** Go's replica count: bookkeeping for the compat replies (every eligible node serves the revision). */
  replicas: number;
  /** A node drops the loaded module after this many seconds without a request starting; 0 = never. */
  idleSeconds: number;
  /** Only nodes carrying every one of these labels serve the revision. */
  placement?: { labels: Record<string, string> };
  /** 1 at the first deploy, +1 at each module or environment change (hot reload). */
  generation: number;
}

/** NODES `<nodeId>`: a node's heartbeat, put every 5 s (the bucket's TTL is 15 s; readers compare `at`). */
export interface NodeRecord {
  /** The node's worker API. */
  url: string;
  labels: Record<string, string>;
  /** `<fn>/<rev>` of the revisions materialized now. */
  loaded: string[];
  /** Calls in progress on the node. */
  inflight: number;
  /** Capsule version. */
  version: string;
  /** When it was written (epoch ms). */
  at: number;
}

/** How long a heartbeat counts as alive, ms (the NODES bucket TTL). */
export const NODE_TTL_MS = 15_000;
/** Time between two heartbeats, ms. */
export const HEARTBEAT_MS = 5_000;

const HEX = /^[0-9a-f]{64}$/;

function isStringMap(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

/** Whether a stored value has the DEPLOY shape (values of another shape are ignored and logged). */
export function isDeployRecord(v: unknown): v is DeployRecord {
  const r = v as Partial<DeployRecord> | null;
  return typeof r === 'object' && r !== null && typeof r.sha256 === 'string' && HEX.test(r.sha256) && typeof r.source === 'string'
    && isStringMap(r.env) && Number.isInteger(r.replicas) && typeof r.idleSeconds === 'number' && r.idleSeconds >= 0
    && Number.isInteger(r.generation) && (r.placement === undefined || isStringMap(r.placement?.labels))
    && (r.object === undefined || typeof r.object === 'string');
}

/** Whether a node with `labels` serves a revision placed by `record.placement`. */
export function eligible(record: DeployRecord, labels: Record<string, string>): boolean {
  const wanted = record.placement?.labels ?? {};
  return Object.entries(wanted).every(([k, v]) => labels[k] === v);
}

/**
 * Parses `--labels k=v,k2=v2` (also used for `placement` given as text).
 * @throws Error naming the bad pair
 */
export function parseLabels(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (text ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = pair.indexOf('=');
    const k = pair.slice(0, i).trim();
    if (i <= 0 || !/^[A-Za-z0-9_.\/-]{1,63}$/.test(k)) throw new Error(`label "${pair}": write key=value (key: letters, digits, _ . / -)`);
    out[k] = pair.slice(i + 1).trim();
  }
  return out;
}

/** The synthetic Go `pid` of replica `index` (1-based) of a revision: stable across nodes and restarts. */
export function syntheticPid(fn: string, rev: string, index: number): number {
  let h = 2166136261;
  for (const c of Buffer.from(`${fn}\0${rev}`)) h = Math.imul(h ^ c, 16777619) >>> 0;
  return (h % 200_000 + 100_000) * 100 + index;
}
