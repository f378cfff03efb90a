/**
 * The serving side of a cluster node (faas-cluster.md §1.4, §1.6): it follows the DEPLOY bucket
 * and, for every revision this node is eligible for (placement labels), keeps a queue
 * subscription on `capsule.<L>.invoke.<f>.<rev>` (queue group `capsule.<f>.<rev>`) plus the
 * node-direct subject. A revision is materialized lazily by its first request (module from the
 * cache, Object Store or source URL, digest verified, compiled, loaded on the node's function
 * table, i.e. the shared worker pool); concurrent first requests share one materialization. An
 * idle revision (no request STARTED for `idleSeconds`, none in flight) is dropped from the table
 * while its subscriptions stay, so the next request is the activation. A new generation in
 * DEPLOY (hot reload) is fetched, validated and swapped in while the previous one serves; one
 * that fails validation is refused here too and the previous one keeps serving.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Gauge } from 'prom-client';
import { CapsuleError, STATUS_BY_CODE } from '../../../base/errors.ts';
import type { HttpRequestInput, HttpResponseOutput, InvocationMeta } from '../../../base/invocation.ts';
import type { CallResult } from '../../../engine/pool.ts';
import type { FunctionDef } from '../../../functions/routes.ts';
import type { FunctionTable } from '../../../functions/table.ts';
import type { Logger } from '../../../observability/logger.ts';
import { serveInvocations, type InflightGate, type InvocationService, type InvokeReply, type InvokeRequest } from '../../cluster/invoke.ts';
import { deployKey, invokeSubject, nodeSubject, parseKey, queueGroup } from '../../cluster/lattice.ts';
import type { WatchedBucket } from '../../cluster/state.ts';
import { FaasError } from '../../shared/service.ts';
import type { DeployableModule } from '../module-source.ts';
import type { NodeMetrics } from '../metrics.ts';
import type { ClusterModules } from './modules.ts';
import { CGI_KINDS } from '../../../base/kinds.ts';
import { eligible, isDeployRecord, type DeployRecord } from './records.ts';

/** What a node's runtime is built from. */
export interface RuntimeOptions {
  nc: NatsConnection;
  lattice: string;
  nodeId: string;
  labels: Record<string, string>;
  /** The node's function table (one worker pool for every revision). */
  table: FunctionTable;
  modules: ClusterModules;
  metrics: NodeMetrics;
  /** Calls in progress on this node over every revision; more → "busy" (the gateway retries elsewhere). */
  maxInflight: number;
  logger: Logger;
}

/** What is loaded of a revision. */
interface Loaded {
  /** Hex SHA-256. */
  sha256: string;
  env: string;
  generation: number;
  kind: string;
}

/** One revision this node is eligible for. */
interface Slot {
  readonly fn: string;
  readonly rev: string;
  /** Function-table key `<fn>@<rev>`. */
  readonly key: string;
  record: DeployRecord;
  subscribed: Promise<InvocationService[]>;
  loaded?: Loaded;
  /** The materialization in progress (shared by concurrent first requests). */
  activating?: Promise<void>;
  /** Loads and swaps, one at a time. */
  queue: Promise<void>;
  /** Operations queued or running. */
  ops: number;
  inflight: number;
  /** When the last request started (epoch ms). */
  lastStart: number;
  dropped: boolean;
}

const envKey = (env: Record<string, string>) => JSON.stringify(Object.entries(env).sort());

/** The revisions a cluster node serves (see the module comment). */
export class RevisionRuntime {
  readonly #o: RuntimeOptions;
  readonly #log: Logger;
  readonly #slots = new Map<string, Slot>();
  readonly #gate: InflightGate;
  readonly #loadedGauge: Gauge<'fn' | 'rev'>;
  readonly #timer: NodeJS.Timeout;
  #stopFollow: (() => void) | undefined;

  constructor(o: RuntimeOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#gate = { count: 0, max: o.maxInflight };
    this.#loadedGauge = new Gauge({ name: 'capsule_revision_loaded', help: 'Whether a revision is materialized on this node (1) or scaled to zero (0)', labelNames: ['fn', 'rev'], registers: [o.metrics.registry] });
    this.#timer = setInterval(() => this.#evictIdle(), 200);
    this.#timer.unref();
  }

  /** Calls in progress on this node. */
  get inflight(): number {
    return this.#gate.count;
  }

  /** `<fn>/<rev>` of every revision loaded now. */
  loadedNames(): string[] {
    return [...this.#slots.values()].filter((s) => s.loaded).map((s) => `${s.fn}/${s.rev}`);
  }

  /** Serves what the DEPLOY bucket holds and follows its changes. */
  follow(deploy: WatchedBucket<DeployRecord>): void {
    for (const [key, value] of deploy.entries()) this.#apply(key, value);
    this.#stopFollow = deploy.onChange((key, value) => this.#apply(key, value));
  }

  #apply(key: string, value: DeployRecord | undefined): void {
    const k = parseKey(key);
    if (!k || k.revision === undefined) return;
    if (value !== undefined && !isDeployRecord(value)) {
      this.#log.warn({ key, value }, 'ignored a DEPLOY record of an unknown shape');
      return;
    }
    const slot = this.#slots.get(key);
    if (value === undefined || !eligible(value, this.#o.labels)) {
      if (slot) void this.#drop(key, slot).catch((e: unknown) => this.#log.warn({ key, err: (e as Error).message }, 'could not stop serving a revision cleanly'));
      return;
    }
    if (!slot) {
      this.#add(key, k.function, k.revision, value);
      return;
    }
    slot.record = value;
    if (slot.loaded && (slot.loaded.sha256 !== value.sha256 || slot.loaded.env !== envKey(value.env))) {
      void this.#enqueue(slot, () => this.#swap(slot)).catch(() => undefined);
    }
  }

  #add(key: string, fn: string, rev: string, record: DeployRecord): void {
    const { nc, lattice, nodeId, logger } = this.#o;
    const slot: Slot = { fn, rev, key: `${fn}@${rev}`, record, queue: Promise.resolve(), ops: 0, inflight: 0, lastStart: 0, dropped: false, subscribed: Promise.resolve([]) };
    const handler = (req: InvokeRequest) => this.#serve(slot, req);
    const common = { maxInflight: Number.MAX_SAFE_INTEGER, nodeId, logger, gate: this.#gate };
    slot.subscribed = Promise.all([
      serveInvocations(nc, invokeSubject(lattice, fn, rev), handler, { ...common, queue: queueGroup(fn, rev) }),
      serveInvocations(nc, nodeSubject(lattice, nodeId, fn, rev), handler, common),
    ]).then(async (subs) => {
      await nc.flush();
      return subs;
    });
    this.#slots.set(key, slot);
    this.#loadedGauge.set({ fn, rev }, 0);
    this.#log.info({ function: fn, revision: rev, generation: record.generation }, 'serving revision (materialized on its first request)');
  }

  /** Resolves once the subscriptions of every revision served now are in place. */
  async ready(): Promise<void> {
    await Promise.all([...this.#slots.values()].map((s) => s.subscribed));
  }

  /** Unsubscribes (after the calls in flight answered) and unloads. */
  async #drop(key: string, slot: Slot): Promise<void> {
    this.#slots.delete(key);
    slot.dropped = true;
    await Promise.all((await slot.subscribed).map((s) => s.stop()));
    await slot.queue;
    this.#loadedGauge.remove({ fn: slot.fn, rev: slot.rev });
    if (slot.loaded && !this.#slots.has(key)) {
      slot.loaded = undefined;
      await this.#o.table.retire(slot.key);
    }
    this.#log.info({ function: slot.fn, revision: slot.rev }, 'revision no longer served by this node');
  }

  /** Runs `op` after the slot's earlier loads and swaps. */
  #enqueue(slot: Slot, op: () => Promise<void>): Promise<void> {
    slot.ops++;
    const run = slot.queue.then(op).finally(() => slot.ops--);
    slot.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs one call of revision `rev` of `fn` on this node, materializing it first when needed.
   * @throws CapsuleError / FaasError when the revision is not served here or cannot be loaded, or the call's error
   */
  async call(fn: string, rev: string, input: HttpRequestInput, meta: InvocationMeta): Promise<CallResult> {
    const slot = this.#slots.get(deployKey(fn, rev));
    if (!slot) throw new FaasError(404, 'REVISION_NOT_FOUND', `${fn}/${rev} is not served by this node`);
    return this.#call(slot, input, meta);
  }

  async #call(slot: Slot, input: HttpRequestInput, meta: InvocationMeta): Promise<CallResult> {
    slot.inflight++;
    slot.lastStart = Date.now(); // activity counts at request start (openfaas #1410)
    try {
      return await this.#o.metrics.track({ fn: slot.fn, rev: slot.rev }, async () => {
        if (!slot.loaded) await (slot.activating ??= this.#enqueue(slot, () => this.#materialize(slot)).finally(() => (slot.activating = undefined)));
        const entry = this.#o.table.entries().get(slot.key);
        if (!entry || !slot.loaded) throw new CapsuleError('BAD_MODULE', `${slot.fn}/${slot.rev} is not loaded on this node`);
        if (!input.cgi && CGI_KINDS.has(slot.loaded.kind)) input.cgi = { route: '/...' };
        return entry.invoke(input, meta);
      });
    } finally {
      slot.inflight--;
    }
  }

  /** The NATS handler of a revision's subjects. */
  async #serve(slot: Slot, req: InvokeRequest): Promise<InvokeReply> {
    try {
      const r = await this.#call(slot, toInput(req), { trigger: { nodeId: this.#o.nodeId } });
      return toReply(r.output as HttpResponseOutput);
    } catch (e) {
      if (e instanceof FaasError) return jsonReply(e.status, { code: e.code, message: e.message });
      const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
      return jsonReply(STATUS_BY_CODE[err.code], { error: err.message, code: err.code });
    }
  }

  /** First request: module fetched and verified, compiled, loaded on the pool (phases observed). */
  async #materialize(slot: Slot): Promise<void> {
    if (slot.loaded || slot.dropped) return;
    const rec = slot.record;
    const mod = await this.#o.modules.fetch(rec);
    const t0 = performance.now();
    await this.#load(slot, rec, mod, true);
    this.#observe(slot, mod, (performance.now() - t0) / 1000);
    this.#loadedGauge.set({ fn: slot.fn, rev: slot.rev }, 1);
    this.#log.info({ function: slot.fn, revision: slot.rev, generation: rec.generation, sha256: rec.sha256 }, 'revision materialized');
    // a new generation written while this one was loading: swap it in next
    if (slot.record !== rec) void this.#enqueue(slot, () => this.#swap(slot)).catch(() => undefined);
  }

  /** A new generation while loaded: checked, then swapped in; a bad one leaves the old one serving. */
  async #swap(slot: Slot): Promise<void> {
    const rec = slot.record;
    const loaded = slot.loaded;
    if (!loaded || slot.dropped || (loaded.sha256 === rec.sha256 && loaded.env === envKey(rec.env))) return;
    try {
      const mod = await this.#o.modules.fetch(rec);
      const t0 = performance.now();
      await this.#load(slot, rec, mod, false);
      this.#observe(slot, mod, (performance.now() - t0) / 1000);
      this.#log.info({ function: slot.fn, revision: slot.rev, generation: rec.generation, sha256: rec.sha256 }, 'new generation serves');
    } catch (e) {
      this.#log.error({ function: slot.fn, revision: slot.rev, generation: rec.generation, err: (e as Error).message }, 'new generation refused: the previous one keeps serving');
    }
  }

  /**
   * Loads a checked module as the revision's version on the table (a new module with the same
   * environment is swapped with `replaceModule`; the old version finishes its calls).
   * @throws FaasError 422 ERROR_BAD_MODULE when the table cannot load it
   */
  async #load(slot: Slot, rec: DeployRecord, mod: DeployableModule, fresh: boolean): Promise<void> {
    const table = this.#o.table;
    const env = envKey(rec.env);
    const def: FunctionDef = {
      key: slot.key, name: slot.fn, revision: slot.rev, module: mod.path, source: `${slot.fn}/${slot.rev} (${mod.digest})`,
      env: Object.entries(rec.env), dirs: [], allowedHosts: [],
    };
    try {
      if (!fresh && slot.loaded?.env === env) await table.replaceModule(slot.key, mod.module);
      else await table.deploy(def, []);
    } catch (e) {
      throw new FaasError(422, 'ERROR_BAD_MODULE', `${slot.fn}/${slot.rev}: ${(e as Error).message}`);
    }
    const entry = table.entries().get(slot.key);
    if (entry?.current?.digest !== mod.digest) {
      if (fresh) await table.retire(slot.key);
      throw new FaasError(422, 'ERROR_BAD_MODULE', `${slot.fn}/${slot.rev}: ${entry?.error?.message ?? 'the module could not be loaded'}`);
    }
    slot.loaded = { sha256: rec.sha256, env, generation: rec.generation, kind: entry.current.fn.module.detection.kind };
  }

  #observe(slot: Slot, mod: DeployableModule, initSeconds: number): void {
    const labels = { fn: slot.fn, rev: slot.rev };
    const h = this.#o.metrics.coldStart;
    h.observe({ ...labels, phase: 'fetch' }, Math.max(0, mod.fetchSeconds));
    h.observe({ ...labels, phase: 'compile' }, mod.compileSeconds);
    h.observe({ ...labels, phase: 'init' }, initSeconds);
  }

  /** Scale to zero: unloads revisions with no request started for `idleSeconds` and none in flight. */
  #evictIdle(): void {
    const now = Date.now();
    for (const slot of this.#slots.values()) {
      const idleMs = slot.record.idleSeconds * 1000;
      if (idleMs <= 0 || !slot.loaded || slot.inflight > 0 || slot.ops > 0 || now - slot.lastStart < idleMs) continue;
      slot.loaded = undefined;
      this.#loadedGauge.set({ fn: slot.fn, rev: slot.rev }, 0);
      this.#log.info({ function: slot.fn, revision: slot.rev, idleSeconds: slot.record.idleSeconds }, 'idle revision unloaded (scaled to zero; still subscribed)');
      void this.#o.table.retire(slot.key);
    }
  }

  /** Stops following DEPLOY, drains every subscription and unloads. */
  async close(): Promise<void> {
    this.#stopFollow?.();
    clearInterval(this.#timer);
    await Promise.allSettled([...this.#slots].map(([key, slot]) => this.#drop(key, slot)));
  }
}

/** The HTTP request of a NATS message as the function table takes it. */
function toInput(req: InvokeRequest): HttpRequestInput {
  const headers: [string, string][] = [];
  let host = 'localhost';
  let remote = '';
  for (let i = 0; i < req.headers.length; i += 2) {
    const k = req.headers[i]!;
    const v = req.headers[i + 1]!;
    headers.push([k, v]);
    const lower = k.toLowerCase();
    if (lower === 'host') host = v;
    else if (lower === 'x-forwarded-for' && remote === '') remote = v.split(',')[0]!.trim();
  }
  return {
    type: 'http', method: req.method, url: `http://${host}${req.path}${req.query ? `?${req.query}` : ''}`,
    headers, body: req.body, remoteAddress: remote, remotePort: 0, httpVersion: '1.1',
  };
}

const HOP_BY_HOP = new Set(['connection', 'transfer-encoding', 'content-length', 'keep-alive', 'upgrade']);

/** A guest's response as a NATS reply (header values are the wire bytes, latin1: sent as their UTF-8 text). */
function toReply(out: HttpResponseOutput): InvokeReply {
  const headers: string[] = [];
  for (const [k, v] of out.headers) {
    if (HOP_BY_HOP.has(k.toLowerCase())) continue;
    headers.push(k, /[^\x00-\x7f]/.test(v) ? Buffer.from(v, 'latin1').toString('utf8') : v);
  }
  return { status: out.status, headers, body: out.body };
}

function jsonReply(status: number, body: unknown): InvokeReply {
  return { status, headers: ['Content-Type', 'application/json; charset=utf-8'], body: new TextEncoder().encode(JSON.stringify(body)) };
}
