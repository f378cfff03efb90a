/**
 * The deployments of a function node (faas-api.md §3, faas-cluster.md §1.1 and §1.3): functions,
 * their revisions, each revision's replicas, which revision is `default`, and the proxy
 * registrations that follow them. In-process (default), a revision is one function of the node's
 * function table (functions/table.ts: one worker pool for all revisions) and each replica is a
 * listener on the next counter port calling it; with `--process` each replica is a child
 * `capsule serve`. A deploy of an existing revision adds a replica ("scaling" in Go); when it
 * brings another module or other envVariables, the revision gets a new generation first.
 * `reload` swaps a revision's module without dropping a call (in-flight calls finish on the old
 * one). Changes are applied one at a time; downloads run before, outside that queue.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { FunctionTable } from '../../functions/table.ts';
import type { FunctionDef } from '../../functions/routes.ts';
import type { Logger } from '../../observability/logger.ts';
import { FaasError } from '../shared/service.ts';
import type { NodeMetrics } from './metrics.ts';
import type { DeployableModule, ModuleSource } from './module-source.ts';
import type { ProxyRegistration } from './proxy-client.ts';
import { CGI_KINDS } from '../../base/kinds.ts';
import { startInProcessReplica, startProcessReplica, type Replica, type ReplicaListen, type ReplicaTarget } from './replicas.ts';
import { PortCounter } from './ports.ts';

/** The revision `/functions/<fn>` leads to (faas-api.md §1). */
const DEFAULT = 'default';

/** Function and revision names: they become URL path segments and metric labels. */
const NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** One replica and the guest environment it was deployed with. */
interface ReplicaRecord {
  replica: Replica;
  env: Record<string, string>;
}

/** A deployed revision. */
interface RevisionState {
  readonly fn: string;
  readonly rev: string;
  /** Function-table key `<fn>@<rev>`. */
  readonly key: string;
  wasmRegistryUrl: string;
  digest: string;
  path: string;
  env: Record<string, string>;
  /** 1 at the first deploy, +1 on each module or environment change. */
  generation: number;
  replicas: ReplicaRecord[];
  /** In-process: what the replica listeners call. */
  target?: ReplicaTarget;
}

/** What a node's deployments are built from (see `startNode`). */
export interface DeploymentsOptions {
  /** The function table of in-process replicas; undefined with `--process`. */
  table?: FunctionTable;
  /** `--process`: the command that runs a replica (`capsule` of this package by default). */
  processCommand?: string[];
  source: ModuleSource;
  metrics: NodeMetrics;
  /** Where to register replicas; undefined = no reverse proxy (nothing registered, logged once). */
  proxy?: ProxyRegistration;
  /** The proxy's base URL, for `remoteUrl` (Go: `-reverseProxy`, '' when none). */
  proxyUrl: string;
  listen: ReplicaListen;
  ports: PortCounter;
  logger: Logger;
  /**
   * Time between taking a replica out of the proxy and stopping it, ms (default 200): a request
   * the proxy routed just before reaches it while it still takes calls (a stopping replica
   * answers new calls 503).
   */
  settleMs?: number;
}

/** The body of `POST /functions/deploy` (faas-api.md §3) plus the optional digest pin. */
export interface DeployRequest {
  function: string;
  revision: string;
  downloadUrl: string;
  envVariables: Record<string, string>;
  /** Expected `sha256` (hex or `sha256:hex`), besides a `#sha256=` pin in the URL. */
  sha256?: string;
  /** Cluster mode only (node/cluster/desired.ts): scale-to-zero delay, seconds; ignored here. */
  idleSeconds?: number;
  /** Cluster mode only: labels a node must carry to serve the revision; ignored here. */
  placement?: Record<string, string>;
}

/** A Go-shaped reply body (`code`, `message`, …) sent with 202. */
export type Reply = Record<string, unknown> & { code: string; message: string };

/** @throws FaasError 400 ERROR_JSON_BINDING when a name is not `[A-Za-z0-9._-]{1,128}` */
export function checkName(value: string, field: string): void {
  if (!NAME.test(value)) throw new FaasError(400, 'ERROR_JSON_BINDING', `field "${field}" must match [A-Za-z0-9._-]{1,128}, not ${JSON.stringify(value)}`);
}

function sameEnv(a: Record<string, string>, b: Record<string, string>): boolean {
  return JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
}

/** The functions, revisions and replicas of one node (see the module comment). */
export class Deployments {
  readonly #o: DeploymentsOptions;
  readonly #log: Logger;
  readonly #functions = new Map<string, Map<string, RevisionState>>();
  readonly #defaults = new Map<string, string>();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(o: DeploymentsOptions) {
    this.#o = o;
    this.#log = o.logger;
    if (!o.proxy) this.#log.warn('no reverse proxy (--reverse-proxy): deployments are not registered anywhere');
  }

  /** Runs changes one at a time. */
  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#closed) throw new FaasError(503, 'SHUTTING_DOWN', 'the node is shutting down');
      return f();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** A deployed revision. @throws FaasError 404 REVISION_NOT_FOUND */
  #get(fn: string, rev: string): RevisionState {
    const r = this.#functions.get(fn)?.get(rev);
    if (!r) throw new FaasError(404, 'REVISION_NOT_FOUND', `${fn}/${rev} is not deployed on this node`);
    return r;
  }

  #remoteUrl(fn: string, rev?: string): string {
    return `${this.#o.proxyUrl}/functions/${fn}${rev === undefined ? '' : `/${rev}`}`;
  }

  /** Waits `settleMs` after a replica left the proxy (nothing to wait for without a proxy). */
  async #settle(): Promise<void> {
    const ms = this.#o.settleMs ?? 200;
    if (this.#o.proxy && ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  /** Runs a proxy change; a failure is logged and returned as text (Go went on too). */
  async #register(what: string, f: (p: ProxyRegistration) => Promise<void>): Promise<string | undefined> {
    const proxy = this.#o.proxy;
    if (!proxy) return undefined;
    try {
      await f(proxy);
      return undefined;
    } catch (e) {
      this.#log.error({ err: (e as Error).message }, `reverse proxy: ${what} failed`);
      return (e as Error).message;
    }
  }

  /**
   * `POST /functions/deploy`: downloads and checks the module, then starts one more replica of
   * the revision and registers it in the proxy.
   * @throws FaasError 4xx before anything changes (bad name, URL, download, digest or module)
   */
  async deploy(req: DeployRequest): Promise<Reply> {
    checkName(req.function, 'function');
    checkName(req.revision, 'revision');
    const mod = await this.#o.source.download(req.downloadUrl, req.sha256);
    return this.#serial(async () => {
      const { function: fn, revision: rev } = req;
      const known = this.#functions.get(fn)?.get(rev);
      const fresh = !known;
      // in-process a revision has one module and one environment; a --process child has its own environment
      const changed = known !== undefined && (known.digest !== mod.digest || (this.#o.table !== undefined && !sameEnv(known.env, req.envVariables)));
      const state: RevisionState = known ?? { fn, rev, key: `${fn}@${rev}`, wasmRegistryUrl: req.downloadUrl, digest: mod.digest, path: mod.path, env: req.envVariables, generation: 1, replicas: [] };
      if (fresh && this.#o.table) state.target = this.#target(state);
      const t0 = performance.now();
      if (this.#o.table && (fresh || changed)) await this.#loadGeneration(state, mod, req.envVariables, fresh);
      else if (changed) await this.#replaceChildren(state, mod); // never two modules under one revision
      if (changed) state.wasmRegistryUrl = req.downloadUrl;
      const replica = await this.#startReplica(state, req.envVariables).catch((e: unknown) => {
        if (fresh && this.#o.table) void this.#o.table.retire(state.key);
        throw e;
      });
      this.#observeColdStart(state, mod, fresh || changed ? (performance.now() - t0) / 1000 : undefined);
      if (fresh) this.#revisions(fn).set(rev, state);
      state.replicas.push({ replica, env: req.envVariables });
      this.#o.metrics.replicas.set({ fn, rev }, this.#live(state).length);
      if (rev === DEFAULT) await this.#dropAlias(fn); // a concrete `default` revision replaces the alias
      const failed = await this.#register(`adding ${replica.localUrl} to ${fn}/${rev}`, (p) => p.addUrl(fn, rev, replica.localUrl));
      this.#log.info({ function: fn, revision: rev, localUrl: replica.localUrl, digest: mod.digest, generation: state.generation }, 'function deployed');
      return {
        code: 'FUNCTION_DEPLOYED', message: 'Function deployed', function: fn, revision: rev,
        localUrl: replica.localUrl, remoteUrl: this.#remoteUrl(fn, rev),
        ...(failed ? { warning: `not registered in the reverse proxy: ${failed}` } : {}),
      };
    });
  }

  #revisions(fn: string): Map<string, RevisionState> {
    let m = this.#functions.get(fn);
    if (!m) this.#functions.set(fn, (m = new Map()));
    return m;
  }

  #live(state: RevisionState): ReplicaRecord[] {
    return state.replicas.filter((r) => r.replica.status === 'Started');
  }

  #observeColdStart(state: RevisionState, mod: DeployableModule, initSeconds: number | undefined): void {
    if (initSeconds === undefined) return; // a replica of a loaded generation: no cold start
    const labels = { fn: state.fn, rev: state.rev };
    this.#o.metrics.coldStart.observe({ ...labels, phase: 'fetch' }, mod.fetchSeconds);
    this.#o.metrics.coldStart.observe({ ...labels, phase: 'compile' }, mod.compileSeconds);
    this.#o.metrics.coldStart.observe({ ...labels, phase: 'init' }, initSeconds);
  }

  /** Records a checked module as the revision's current generation. */
  #adopt(state: RevisionState, mod: DeployableModule, env: Record<string, string>): void {
    if (state.digest !== mod.digest || !sameEnv(state.env, env)) state.generation++;
    state.digest = mod.digest;
    state.path = mod.path;
    state.env = env;
  }

  /**
   * In-process: loads a generation into the function table (a new module with the same
   * environment is swapped in with `replaceModule`, other changes redeploy the entry); the
   * previous version serves until the new one is ready, then finishes its calls.
   * @throws FaasError 422 ERROR_BAD_MODULE when the table cannot load it (the old one keeps serving)
   */
  async #loadGeneration(state: RevisionState, mod: DeployableModule, env: Record<string, string>, fresh: boolean): Promise<void> {
    const table = this.#o.table!;
    const def: FunctionDef = {
      key: state.key, name: state.fn, revision: state.rev, module: mod.path, source: `${state.fn}/${state.rev} (${mod.digest})`,
      env: Object.entries(env), dirs: [], allowedHosts: [],
    };
    try {
      if (!fresh && sameEnv(state.env, env)) await table.replaceModule(state.key, mod.module);
      else await table.deploy(def, []);
    } catch (e) {
      throw new FaasError(422, 'ERROR_BAD_MODULE', `${state.fn}/${state.rev}: ${(e as Error).message}`);
    }
    const entry = table.entries().get(state.key);
    if (entry?.current?.digest !== mod.digest) {
      const why = entry?.error?.message ?? 'the module could not be loaded';
      if (fresh) await table.retire(state.key);
      throw new FaasError(422, 'ERROR_BAD_MODULE', `${state.fn}/${state.rev}: ${why}`);
    }
    if (!fresh) this.#adopt(state, mod, env);
  }

  /** What in-process replica listeners call: the revision's current version, with metrics. */
  #target(state: RevisionState): ReplicaTarget {
    const table = this.#o.table!;
    const m = this.#o.metrics;
    const labels = { fn: state.fn, rev: state.rev };
    return {
      name: state.key,
      cgi: () => CGI_KINDS.has(table.entries().get(state.key)?.current?.fn.module.detection.kind ?? ''),
      invoke: (input, meta) => {
        const entry = table.entries().get(state.key);
        if (!entry) return Promise.reject(new CapsuleError('BAD_MODULE', `${state.fn}/${state.rev} is not deployed`));
        return m.track(labels, () => entry.invoke(input, meta));
      },
    };
  }

  /** Starts one replica on the next counter port (a port found taken is skipped). */
  async #startReplica(state: RevisionState, env: Record<string, string>): Promise<Replica> {
    const o = this.#o;
    for (let attempt = 0; ; attempt++) {
      const port = await o.ports.next();
      try {
        if (o.table) return await startInProcessReplica(state.target!, o.table.pool, port, o.listen);
        return await startProcessReplica({
          command: o.processCommand!, wasm: state.path, env: Object.entries(env), onExit: (r) => this.#exited(state, r),
        }, port, o.listen);
      } catch (e) {
        if (attempt >= 4 || port === 0) throw new FaasError(500, 'ERROR_REPLICA_START', `${state.fn}/${state.rev}: ${(e as Error).message}`);
      }
    }
  }

  /** A `--process` child ended on its own: out of the proxy, kept in the list with its status. */
  #exited(state: RevisionState, replica: Replica): void {
    if (this.#closed || !state.replicas.some((r) => r.replica === replica)) return; // stopped by us
    this.#o.metrics.replicas.set({ fn: state.fn, rev: state.rev }, this.#live(state).length);
    void this.#register(`removing ${replica.localUrl} from ${state.fn}/${state.rev}`, (p) => p.removeUrl(state.fn, state.rev, replica.localUrl));
  }

  /** `DELETE /functions/revisions/deployments`: out of the proxy, then every replica stopped. */
  undeploy(fn: string, rev: string): Promise<Reply> {
    return this.#serial(async () => {
      const state = this.#get(fn, rev);
      await this.#register(`removing ${fn}/${rev}`, (p) => p.removeRevision(fn, rev));
      if (this.#defaults.get(fn) === rev) {
        await this.#register(`removing the default of ${fn}`, (p) => p.removeDefault(fn));
        this.#defaults.delete(fn);
      }
      this.#functions.get(fn)!.delete(rev);
      if (this.#functions.get(fn)!.size === 0) this.#functions.delete(fn);
      await this.#settle();
      await Promise.all(state.replicas.map((r) => r.replica.stop()));
      await this.#o.table?.retire(state.key);
      this.#o.metrics.replicas.remove({ fn, rev });
      this.#log.info({ function: fn, revision: rev }, 'revision undeployed');
      return { code: 'REVISION_DEPLOYMENT_REMOVED', message: 'revision deployment removed (all processes killed)', revision: rev, function: fn };
    });
  }

  /** `DELETE /functions/revisions/downscale`: with ≥ 2 live replicas, the newest leaves. */
  downscale(fn: string, rev: string): Promise<Reply> {
    return this.#serial(async () => {
      const state = this.#get(fn, rev);
      const live = this.#live(state);
      if (live.length < 2) {
        return { code: 'WASM_MODULE_DEPLOYMENT_NOT_REMOVED', message: 'wasm module deployment not removed (the revision needs at least one running wasm module)', revision: rev, function: fn, pid: 0 };
      }
      const victim = live[live.length - 1]!;
      state.replicas = state.replicas.filter((r) => r !== victim);
      await this.#register(`removing ${victim.replica.localUrl} from ${fn}/${rev}`, (p) => p.removeUrl(fn, rev, victim.replica.localUrl));
      await this.#settle();
      await victim.replica.stop();
      this.#o.metrics.replicas.set({ fn, rev }, this.#live(state).length);
      return { code: 'WASM_MODULE_DEPLOYMENT_REMOVED', message: 'wasm module deployment removed (its process is killed)', revision: rev, function: fn, pid: victim.replica.pid };
    });
  }

  /** `POST /functions/set_default_revision`. @throws FaasError 404, 502 when the proxy refuses */
  setDefault(fn: string, rev: string): Promise<Reply> {
    return this.#serial(async () => {
      this.#get(fn, rev);
      // a revision deployed under the name `default` (Go scripts do) is the default by itself
      const failed = rev === DEFAULT ? await this.#dropAlias(fn) : await this.#register(`setting the default of ${fn} to ${rev}`, (p) => p.setDefault(fn, rev));
      if (failed) throw new FaasError(502, 'DEFAULT_REVISION_NOT_REGISTERED', failed);
      if (rev !== DEFAULT) this.#defaults.set(fn, rev);
      return { code: 'DEFAULT_REVISION_REGISTERED', message: 'Default revision registered', revision: rev, function: fn, url: this.#remoteUrl(fn) };
    });
  }

  /** Removes the function's `default` alias from the proxy, if the node set one. @returns the failure text, if any */
  async #dropAlias(fn: string): Promise<string | undefined> {
    if (!this.#defaults.has(fn)) return undefined;
    const failed = await this.#register(`removing the default of ${fn}`, (p) => p.removeDefault(fn));
    if (!failed) this.#defaults.delete(fn);
    return failed;
  }

  /** `DELETE /functions/remove_default_revision`. @throws FaasError 404, 502 when the proxy refuses */
  removeDefault(fn: string): Promise<Reply> {
    return this.#serial(async () => {
      if (!this.#functions.has(fn)) throw new FaasError(404, 'FUNCTION_NOT_FOUND', `${fn} is not deployed on this node`);
      const failed = await this.#register(`removing the default of ${fn}`, (p) => p.removeDefault(fn));
      if (failed) throw new FaasError(502, 'DEFAULT_REVISION_NOT_REMOVED', failed);
      this.#defaults.delete(fn);
      return { code: 'DEFAULT_REVISION_REMOVED', message: 'Default revision removed', function: fn };
    });
  }

  /**
   * `PUT /functions/revisions/module`: a new generation of a revision, checked first, then
   * swapped without a failed call (in-process: in the table; `--process`: new children are
   * registered before the old ones leave the proxy and drain).
   * @throws FaasError 404 unknown revision or cached digest, 4xx as `deploy` (the old module keeps serving)
   */
  async reload(fn: string, rev: string, from: { downloadUrl?: string; sha256?: string }): Promise<Reply> {
    this.#get(fn, rev);
    const mod = from.downloadUrl !== undefined ? await this.#o.source.download(from.downloadUrl, from.sha256) : await this.#o.source.cached(from.sha256!);
    return this.#serial(async () => {
      const state = this.#get(fn, rev);
      const t0 = performance.now();
      if (this.#o.table) await this.#loadGeneration(state, mod, state.env, false);
      else await this.#replaceChildren(state, mod);
      this.#observeColdStart(state, mod, (performance.now() - t0) / 1000);
      if (from.downloadUrl !== undefined) state.wasmRegistryUrl = from.downloadUrl;
      this.#log.info({ function: fn, revision: rev, digest: mod.digest, generation: state.generation }, 'revision reloaded');
      return { code: 'REVISION_MODULE_RELOADED', message: 'Revision module reloaded', function: fn, revision: rev, sha256: mod.digest.slice(7), generation: state.generation };
    });
  }

  /** `--process` reload: each live child is replaced by one running the new module. */
  async #replaceChildren(state: RevisionState, mod: DeployableModule): Promise<void> {
    const old = this.#live(state);
    this.#adopt(state, mod, state.env);
    for (const rec of old) {
      const replica = await this.#startReplica(state, rec.env);
      state.replicas.push({ replica, env: rec.env });
      await this.#register(`adding ${replica.localUrl} to ${state.fn}/${state.rev}`, (p) => p.addUrl(state.fn, state.rev, replica.localUrl));
      state.replicas = state.replicas.filter((r) => r !== rec);
      await this.#register(`removing ${rec.replica.localUrl} from ${state.fn}/${state.rev}`, (p) => p.removeUrl(state.fn, state.rev, rec.replica.localUrl));
      await this.#settle();
      await rec.replica.stop();
    }
  }

  /**
   * `GET /functions/list` in the Go shape (faas-api.md §3), plus `sha256`, `generation` and each
   * replica's `status`. `isDefaultRevision` is read from the proxy, as Go did (a split set there
   * directly counts: every revision with a share is "true"); the node's own record answers when
   * there is no proxy or it cannot be reached.
   */
  async list(): Promise<Record<string, Record<string, unknown>>> {
    const out: Record<string, Record<string, unknown>> = {};
    const fns = [...this.#functions.keys()];
    const shares = await Promise.all(fns.map((fn) => this.#defaultShare(fn)));
    fns.forEach((fn, i) => {
      out[fn] = {};
      for (const [rev, s] of this.#functions.get(fn)!) {
        const wasmModules: Record<string, unknown> = {};
        for (const { replica: r, env } of s.replicas) {
          wasmModules[String(r.pid)] = { localUrl: r.localUrl, remoteUrl: this.#remoteUrl(fn, rev), envVariables: env, status: r.status, ...(r.exit !== undefined ? { exitCode: r.exit } : {}) };
        }
        out[fn][rev] = { wasmRegistryUrl: s.wasmRegistryUrl, isDefaultRevision: String(this.#isDefault(fn, rev, shares[i])), sha256: s.digest.slice(7), generation: s.generation, wasmModules };
      }
    });
    return out;
  }

  /** The proxy's default traffic of a function: targets, null (no alias), undefined (unknown: no proxy or an error). */
  async #defaultShare(fn: string): Promise<{ revision: string; percent: number }[] | null | undefined> {
    const proxy = this.#o.proxy;
    if (!proxy) return undefined;
    try {
      return (await proxy.defaultTraffic(fn)) ?? null;
    } catch (e) {
      this.#log.warn({ function: fn, err: (e as Error).message }, 'cannot read the default revision from the reverse proxy: listing the node\'s own record');
      return undefined;
    }
  }

  /** Whether `/functions/<fn>` of the proxy leads to a revision: by the proxy's split, else the default the node set, else the one named `default`. */
  #isDefault(fn: string, rev: string, share: { revision: string; percent: number }[] | null | undefined): boolean {
    if (share) return share.some((t) => t.revision === rev && t.percent > 0);
    const set = share === null ? undefined : this.#defaults.get(fn);
    return set !== undefined ? set === rev : rev === DEFAULT;
  }

  /** Stops every replica (in-flight calls finish first) and refuses later changes. */
  async close(): Promise<void> {
    await this.#serial(async () => {
      this.#closed = true;
    }).catch(() => undefined);
    const all = [...this.#functions.values()].flatMap((revs) => [...revs.values()]);
    await Promise.all(all.flatMap((s) => s.replicas.map((r) => r.replica.stop())));
  }
}
