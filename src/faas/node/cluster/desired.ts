/**
 * The worker API of a cluster node (faas-api.md §3, faas-cluster.md §1.3): the Go routes write
 * DESIRED STATE instead of starting local deployments, and keep their Go replies.
 *
 * - deploy: the module is downloaded once by the receiving node, verified (digest pins), validated
 *   and compiled BEFORE anything is stored or routed; it is copied into the Object Store, then
 *   DEPLOY `rev.<f>.<rev>` is compare-and-swapped (the same digest and environment = Go's
 *   "scaling", `replicas+1`; another digest or environment = a new `generation`, also
 *   `replicas+1` as on one machine), then the revision's `nats:` target is added to ROUTES.
 *   The receiving node also opens the Go per-deployment listener (`localUrl`), which calls the
 *   revision on this node.
 * - undeploy / downscale: delete / decrement DEPLOY (every node unsubscribes on its watch);
 *   set / remove default: the `default` alias in ROUTES.
 * - reload (`PUT /functions/revisions/module`): `generation+1` with the new digest; every node
 *   validates the module, then swaps it in while the old one serves.
 * Every write answers after this node's watcher saw it (read-your-writes, §1.2); without a
 * JetStream quorum it answers `503 STATE_UNAVAILABLE`.
 */
import type { Logger } from '../../../observability/logger.ts';
import { deployKey, parseKey } from '../../cluster/lattice.ts';
import { UNCHANGED, type WatchedBucket } from '../../cluster/state.ts';
import type { NatsRouteStore } from '../../proxy/backends/nats.ts';
import { LATTICE_TARGET } from '../../proxy/backends/store.ts';
import type { RouteTable } from '../../proxy/table.ts';
import { FaasError } from '../../shared/service.ts';
import { checkName, type DeployRequest, type Reply } from '../deployments.ts';
import type { NodeMetrics } from '../metrics.ts';
import { normaliseDigest, type DeployableModule } from '../module-source.ts';
import type { ClusterModules } from './modules.ts';
import { eligible, isDeployRecord, NODE_TTL_MS, syntheticPid, type DeployRecord, type NodeRecord } from './records.ts';
import type { LocalListeners } from './listeners.ts';

/** Options of a cluster deploy beyond Go's body (faas-cluster.md §1.6). */
export interface ClusterDeployExtras {
  /** Scale-to-zero delay, seconds (0 = never). */
  idleSeconds?: number;
  /** Labels a node must carry to serve the revision. */
  placement?: Record<string, string>;
}

/** A module already in the Object Store, as a revision of DEPLOY should run it ({@link ClusterDeployments.desire}). */
export interface DesiredModule {
  /** Hex SHA-256. */
  sha256: string;
  /** Object Store name of the copy. */
  object?: string;
  /** Where it came from (a URL nodes may download it from, or a path on the node that received it). */
  source: string;
  env: Record<string, string>;
  /** Scale-to-zero delay; undefined = the record's, else the node's `--idle-seconds`. */
  idleSeconds?: number;
  /** Labels a node must carry; undefined = the record's. */
  placement?: Record<string, string>;
}

/** What {@link ClusterDeployments.desire} wrote to DEPLOY, and the record it replaced (undefined: the revision was new). */
export interface DesiredChange {
  rec: DeployRecord;
  before: DeployRecord | undefined;
}

/** What the cluster worker API works on. */
export interface ClusterDeploymentsOptions {
  deploy: WatchedBucket<DeployRecord>;
  nodes: WatchedBucket<NodeRecord>;
  routes: NatsRouteStore;
  modules: ClusterModules;
  listeners: LocalListeners;
  metrics: NodeMetrics;
  /** The proxy's base URL for `remoteUrl` ('' when none). */
  proxyUrl: string;
  /** `idleSeconds` of a deploy that names none. */
  idleSeconds: number;
  /** Resolves once this node's subscriptions for what DEPLOY holds are in place (`RevisionRuntime.ready`). */
  subscribed: () => Promise<void>;
  logger: Logger;
}

const GONE = new Set(['ERROR_FUNCTION_NOT_FOUND', 'ERROR_REVISION_NOT_FOUND']);
const sameEnv = (a: Record<string, string>, b: Record<string, string>) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

/** Runs a route-table change that may find the function or revision already gone. */
function unlessGone(f: () => void): void {
  try {
    f();
  } catch (e) {
    if (!GONE.has((e as FaasError).code)) throw e;
  }
}

/** The revision's `nats:` target in a function's routes (created as needed; a concrete `default` replaces the alias). */
function addLatticeTarget(t: RouteTable, fn: string, rev: string): void {
  if (!t.has(fn)) return t.registerFunction(fn, rev, LATTICE_TARGET);
  if (rev === 'default' && t.traffic(fn)) t.clearTraffic(fn);
  const urls = t.urls(fn, rev);
  if (urls === null) return t.addRevision(fn, rev, LATTICE_TARGET);
  if (!urls.includes(LATTICE_TARGET)) t.addUrl(fn, rev, LATTICE_TARGET);
}

/** The Go worker API over the cluster's desired state (see the module comment). */
export class ClusterDeployments {
  readonly #o: ClusterDeploymentsOptions;

  constructor(o: ClusterDeploymentsOptions) {
    this.#o = o;
  }

  #remoteUrl(fn: string, rev?: string): string {
    return `${this.#o.proxyUrl}/functions/${fn}${rev === undefined ? '' : `/${rev}`}`;
  }

  /** @throws FaasError 404 REVISION_NOT_FOUND */
  #record(fn: string, rev: string): DeployRecord {
    const r = this.recordOf(fn, rev);
    if (!r) throw new FaasError(404, 'REVISION_NOT_FOUND', `${fn}/${rev} is not deployed in the cluster`);
    return r;
  }

  /** Downloads, checks and copies a module into the Object Store. @throws FaasError 4xx (nothing stored), 503 */
  async #prepare(downloadUrl: string, sha256: string | undefined, what: string): Promise<{ mod: DeployableModule; object: string }> {
    const mod = await this.#o.modules.source.download(downloadUrl, sha256);
    const object = await this.#o.modules.publish(mod, `${what} from ${downloadUrl}`);
    return { mod, object };
  }

  /**
   * `POST /functions/deploy` in cluster mode (see the module comment).
   * @throws FaasError 4xx before anything is stored or routed; 503 STATE_UNAVAILABLE
   */
  async deploy(req: DeployRequest & ClusterDeployExtras): Promise<Reply> {
    const { function: fn, revision: rev } = req;
    checkName(fn, 'function');
    checkName(rev, 'revision');
    const { mod, object } = await this.#prepare(req.downloadUrl, req.sha256, `${fn}/${rev}`);
    const { rec } = await this.desire(fn, rev, {
      sha256: mod.digest.slice('sha256:'.length), object, source: req.downloadUrl, env: req.envVariables,
      idleSeconds: req.idleSeconds, placement: req.placement,
    });
    const localUrl = await this.#o.listeners.open(fn, rev);
    this.#o.logger.info({ function: fn, revision: rev, sha256: rec.sha256, generation: rec.generation, replicas: rec.replicas, localUrl }, 'function deployed (cluster)');
    return { code: 'FUNCTION_DEPLOYED', message: 'Function deployed', function: fn, revision: rev, localUrl, remoteUrl: this.#remoteUrl(fn, rev) };
  }

  /**
   * One more replica of a revision in DEPLOY (compare-and-swap: the same module and environment =
   * Go's "scaling", `replicas+1`; another = also `generation+1`), served by this node before the
   * revision's `nats:` target is added to ROUTES. The module must already be in the Object Store.
   * Used by the worker API's deploy and by the gen-2 FaaS routes (./processes.ts).
   * @returns the record written and the one it replaced (for {@link undesire})
   * @throws FaasError 503 STATE_UNAVAILABLE
   */
  async desire(fn: string, rev: string, want: DesiredModule): Promise<DesiredChange> {
    const placement = want.placement && Object.keys(want.placement).length > 0 ? { labels: want.placement } : undefined;
    let before: DeployRecord | undefined;
    const rec = (await this.#o.deploy.update(deployKey(fn, rev), (cur) => {
      const known = cur && isDeployRecord(cur) ? cur : undefined;
      before = known;
      const changed = known !== undefined && (known.sha256 !== want.sha256 || !sameEnv(known.env, want.env));
      return {
        sha256: want.sha256, source: want.source, ...(want.object ? { object: want.object } : {}), env: want.env,
        replicas: (known?.replicas ?? 0) + 1,
        idleSeconds: want.idleSeconds ?? known?.idleSeconds ?? this.#o.idleSeconds,
        ...(placement ?? known?.placement ? { placement: placement ?? known!.placement } : {}),
        generation: (known?.generation ?? 0) + (changed || !known ? 1 : 0),
      };
    }))!;
    await this.#o.subscribed(); // this node serves the revision before the gateway routes to it
    await this.#o.routes.change(fn, (t) => addLatticeTarget(t, fn, rev));
    return { rec, before };
  }

  /**
   * Undoes a {@link desire} whose caller failed afterwards (a gen-2 start whose PROCS write
   * failed), so DEPLOY keeps no replica nobody asked for: when DEPLOY still holds what `desire`
   * wrote, it goes back to the record before (compare-and-swap; a revision that was new leaves
   * ROUTES and DEPLOY); when another write came between, one replica less ({@link release}).
   * With `listener`, the listener the caller opened is closed too. Best effort: a failure is
   * logged (the caller reports its own error).
   */
  async undesire(fn: string, rev: string, change: DesiredChange, listener: boolean): Promise<void> {
    try {
      const cur = this.recordOf(fn, rev);
      const ours = cur !== undefined && JSON.stringify(cur) === JSON.stringify(change.rec);
      if (!ours) {
        if (listener) await this.release(fn, rev);
        else await this.#o.deploy.update(deployKey(fn, rev), (c) => (c && isDeployRecord(c) && c.replicas > 1 ? { ...c, replicas: c.replicas - 1 } : UNCHANGED));
        return;
      }
      if (!change.before) {
        await this.undeploy(fn, rev);
        return;
      }
      const before = change.before;
      await this.#o.deploy.update(deployKey(fn, rev), (c) => (c && JSON.stringify(c) === JSON.stringify(change.rec) ? before : UNCHANGED));
      if (listener) await this.#o.listeners.closeOne(fn, rev);
    } catch (e) {
      this.#o.logger.error({ function: fn, revision: rev, replicas: change.rec.replicas, err: (e as Error).message }, 'cannot undo a DEPLOY change after a failed write: the revision may keep one replica too many');
    }
  }

  /**
   * One replica less (gen-2 drop): `replicas-1`, and at 0 the revision leaves ROUTES and DEPLOY
   * as with undeploy. A revision already gone is left alone.
   * @throws FaasError 503 STATE_UNAVAILABLE
   */
  async release(fn: string, rev: string): Promise<void> {
    let last = false;
    await this.#o.deploy.update(deployKey(fn, rev), (cur) => {
      if (!cur || !isDeployRecord(cur)) return UNCHANGED;
      last = cur.replicas <= 1;
      return last ? UNCHANGED : { ...cur, replicas: cur.replicas - 1 };
    });
    if (last) await this.undeploy(fn, rev);
    else await this.#o.listeners.closeOne(fn, rev);
  }

  /** The DEPLOY record of a revision, or undefined. */
  recordOf(fn: string, rev: string): DeployRecord | undefined {
    const r = this.#o.deploy.get(deployKey(fn, rev));
    return r && isDeployRecord(r) ? r : undefined;
  }

  /** Ids of the live nodes (heartbeat younger than the NODES TTL) eligible for a record, sorted. */
  liveNodes(rec: DeployRecord): string[] {
    const now = Date.now();
    return [...this.#o.nodes.entries()]
      .filter(([, n]) => typeof n?.at === 'number' && now - n.at < NODE_TTL_MS && eligible(rec, n.labels ?? {}))
      .map(([id]) => id).sort();
  }

  /** The node's module sources (cache, Object Store). */
  get modules(): ClusterModules {
    return this.#o.modules;
  }

  /** The node's Go per-deployment listeners (one is opened per gen-2 start too). */
  get listeners(): LocalListeners {
    return this.#o.listeners;
  }

  /** `DELETE /functions/revisions/deployments`: out of ROUTES, then out of DEPLOY (nodes unsubscribe). */
  async undeploy(fn: string, rev: string): Promise<Reply> {
    this.#record(fn, rev);
    await this.#o.routes.change(fn, (t) => {
      if (!t.has(fn)) return;
      const traffic = t.traffic(fn);
      if (traffic?.targets.some((x) => x.revision === rev && x.percent > 0)) t.clearTraffic(fn);
      unlessGone(() => t.removeRevision(fn, rev));
      if (Object.keys(t.list()[fn] ?? {}).length === 0) t.removeFunction(fn);
    });
    await this.#o.deploy.update(deployKey(fn, rev), () => undefined);
    await this.#o.listeners.closeAll(fn, rev);
    return { code: 'REVISION_DEPLOYMENT_REMOVED', message: 'revision deployment removed (all processes killed)', revision: rev, function: fn };
  }

  /** `DELETE /functions/revisions/downscale`: `replicas-1` while at least 2 (the pid is the synthetic one of the replica that left). */
  async downscale(fn: string, rev: string): Promise<Reply> {
    this.#record(fn, rev);
    let pid = 0;
    await this.#o.deploy.update(deployKey(fn, rev), (cur) => {
      if (!cur || !isDeployRecord(cur)) throw new FaasError(404, 'REVISION_NOT_FOUND', `${fn}/${rev} is not deployed in the cluster`);
      if (cur.replicas < 2) {
        pid = 0;
        return UNCHANGED;
      }
      pid = syntheticPid(fn, rev, cur.replicas);
      return { ...cur, replicas: cur.replicas - 1 };
    });
    if (pid === 0) {
      return { code: 'WASM_MODULE_DEPLOYMENT_NOT_REMOVED', message: 'wasm module deployment not removed (the revision needs at least one running wasm module)', revision: rev, function: fn, pid: 0 };
    }
    await this.#o.listeners.closeOne(fn, rev);
    return { code: 'WASM_MODULE_DEPLOYMENT_REMOVED', message: 'wasm module deployment removed (its process is killed)', revision: rev, function: fn, pid };
  }

  /** `POST /functions/set_default_revision`: `default` → `{rev: 100}` in ROUTES. */
  async setDefault(fn: string, rev: string): Promise<Reply> {
    this.#record(fn, rev);
    if (rev !== 'default') await this.#o.routes.change(fn, (t) => t.setTraffic(fn, [{ revision: rev, percent: 100 }]));
    return { code: 'DEFAULT_REVISION_REGISTERED', message: 'Default revision registered', revision: rev, function: fn, url: this.#remoteUrl(fn) };
  }

  /** `DELETE /functions/remove_default_revision`. @throws FaasError 404 FUNCTION_NOT_FOUND */
  async removeDefault(fn: string): Promise<Reply> {
    if (!this.#revisions(fn).length) throw new FaasError(404, 'FUNCTION_NOT_FOUND', `${fn} is not deployed in the cluster`);
    await this.#o.routes.change(fn, (t) => unlessGone(() => t.clearTraffic(fn)));
    return { code: 'DEFAULT_REVISION_REMOVED', message: 'Default revision removed', function: fn };
  }

  /**
   * `PUT /functions/revisions/module`: a new generation for the whole cluster (every node checks
   * the module, then swaps it in; the old one serves meanwhile).
   * @throws FaasError 404 unknown revision or digest; 4xx bad module (nothing stored); 503
   */
  async reload(fn: string, rev: string, from: { downloadUrl?: string; sha256?: string }): Promise<Reply> {
    const known = this.#record(fn, rev);
    let mod: DeployableModule;
    let object: string;
    let source = known.source;
    if (from.downloadUrl !== undefined) {
      ({ mod, object } = await this.#prepare(from.downloadUrl, from.sha256, `${fn}/${rev}`));
      source = from.downloadUrl;
    } else {
      const hex = normaliseDigest(from.sha256!, 'sha256').slice('sha256:'.length);
      mod = await this.#o.modules.fetch({ ...known, sha256: hex, object: undefined }).catch((e: unknown) => {
        if (e instanceof FaasError && e.status === 503) throw new FaasError(404, 'MODULE_NOT_FOUND', `no module with digest sha256:${hex} in the cluster (give a downloadUrl)`);
        throw e;
      });
      object = await this.#o.modules.publish(mod, `${fn}/${rev}`);
    }
    const sha256 = mod.digest.slice('sha256:'.length);
    const rec = (await this.#o.deploy.update(deployKey(fn, rev), (cur) => {
      if (!cur || !isDeployRecord(cur)) throw new FaasError(404, 'REVISION_NOT_FOUND', `${fn}/${rev} is not deployed in the cluster`);
      return cur.sha256 === sha256 ? UNCHANGED : { ...cur, sha256, object, source, generation: cur.generation + 1 };
    }))!;
    this.#o.logger.info({ function: fn, revision: rev, sha256, generation: rec.generation }, 'revision reloaded (cluster)');
    return { code: 'REVISION_MODULE_RELOADED', message: 'Revision module reloaded', function: fn, revision: rev, sha256, generation: rec.generation };
  }

  /** The revisions of a function in DEPLOY. */
  #revisions(fn: string): [string, DeployRecord][] {
    const out: [string, DeployRecord][] = [];
    for (const [key, value] of this.#o.deploy.entries()) {
      const k = parseKey(key);
      if (k?.function === fn && k.revision !== undefined && isDeployRecord(value)) out.push([k.revision, value]);
    }
    return out;
  }

  /**
   * `GET /functions/list` in the Go shape: one `wasmModules` entry per replica of DEPLOY with a
   * synthetic pid (the receiving node's listeners give their `localUrl`, others `nats:`), plus
   * `sha256`, `generation`, `idleSeconds` and the live nodes (NODES heartbeats younger than 15 s)
   * eligible for it. `isDefaultRevision` follows the `default` alias in ROUTES.
   */
  async list(): Promise<Record<string, Record<string, unknown>>> {
    const out: Record<string, Record<string, unknown>> = {};
    const table = this.#o.routes.table;
    for (const [key, rec] of this.#o.deploy.entries()) {
      const k = parseKey(key);
      if (!k || k.revision === undefined || !isDeployRecord(rec)) continue;
      const { function: fn, revision: rev } = k;
      const urls = this.#o.listeners.urls(fn, rev);
      const wasmModules: Record<string, unknown> = {};
      for (let i = 1; i <= rec.replicas; i++) {
        wasmModules[String(syntheticPid(fn, rev, i))] = { localUrl: urls[i - 1] ?? LATTICE_TARGET, remoteUrl: this.#remoteUrl(fn, rev), envVariables: rec.env, status: 'Started' };
      }
      const traffic = table.traffic(fn);
      const isDefault = traffic ? traffic.targets.some((t) => t.revision === rev && t.percent > 0) : rev === 'default';
      const nodes = this.liveNodes(rec);
      (out[fn] ??= {})[rev] = { wasmRegistryUrl: rec.source, isDefaultRevision: String(isDefault), sha256: rec.sha256, generation: rec.generation, idleSeconds: rec.idleSeconds, nodes, wasmModules };
    }
    return out;
  }
}
