/**
 * The gen-2 FaaS routes of a cluster node (faas-api.md §6, faas-cluster.md §1.2–§1.3): `POST
 * /functions/start`, `PUT /functions/duplicate/…`, `DELETE /functions/drop/…`, `GET
 * /functions/processes` and the call route write and read DESIRED STATE instead of starting a
 * revision on the node that receives them, and keep Go's replies.
 *
 * - start: the module named by the arguments capsctl sends (`-wasm=<path on this node>` or
 *   `-url=<url>`) is read or downloaded once, checked and copied into the Object Store; DEPLOY
 *   gets one more replica of the revision (./desired.ts `desire`: every eligible node serves it,
 *   gateways route it through `nats:`); `-stopAfter` becomes the revision's `idleSeconds`;
 *   `env` (`K=V`) and `-env` are the guest's environment. Then the process record is added to
 *   PROCS (key `rev.<f>.<rev>` → the revision's records by index, compare-and-swap, so indexes
 *   stay unique) with a synthetic `pid` and the port of a Go-style listener opened on this node.
 * - duplicate: the revision's DEPLOY record copied under the new revision, and a record for it.
 * - drop: the record leaves PROCS and the revision one replica (the last one takes it out of
 *   ROUTES and DEPLOY: every node unsubscribes).
 * - processes: every record of PROCS, whichever node started it, in Go's listing shape.
 * - call `/functions/:n/:r[/:i]`: over NATS to the revision's queue group (any node), or with an
 *   index to the node-direct subject of the i-th live eligible node (ids sorted, modulo their count).
 * Every write answers after this node's watcher saw it (read-your-writes); without a JetStream
 * quorum a write answers `503 STATE_UNAVAILABLE`. A start or duplicate whose PROCS write fails
 * after its DEPLOY write undoes the DEPLOY change (`undesire`), so no replica stays without a record.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { digestOf } from '../../../engine/load.ts';
import type { Logger } from '../../../observability/logger.ts';
import { deployKey, nodeSubject, parseKey } from '../../cluster/lattice.ts';
import { UNCHANGED, type WatchedBucket } from '../../cluster/state.ts';
import { emptyRecord, ProcessTable, recordKey, Status, type ProcessRecord } from '../../gen2/records.ts';
import { inProcessSpec } from '../../gen2/runners.ts';
import { checkTaskNames, isCapsulePath, type StartTask } from '../../gen2/state.ts';
import type { LatticeForwarder } from '../../proxy/backends/nats.ts';
import { sendError } from '../../proxy/forward.ts';
import { FaasError } from '../../shared/service.ts';
import { normaliseDigest, type DeployableModule } from '../module-source.ts';
import type { ClusterDeployments } from './desired.ts';
import { syntheticPid } from './records.ts';

/** PROCS `rev.<f>.<rev>`: the gen-2 process records of one revision, by index. */
export type ProcsValue = Record<string, ProcessRecord>;

/** What the cluster's gen-2 routes work on. */
export interface ClusterProcessesOptions {
  procs: WatchedBucket<ProcsValue>;
  deployments: ClusterDeployments;
  forwarder: LatticeForwarder;
  lattice: string;
  logger: Logger;
}

/** `name/revision/index` → its parts (names hold no `/`, gen2/state.ts). */
function splitKey(key: string): { name: string; revision: string; index: string } | undefined {
  const [name, revision, index, ...more] = key.split('/');
  return name && revision && index !== undefined && more.length === 0 ? { name, revision, index } : undefined;
}

/** The gen-2 FaaS API over the cluster's desired state (see the module comment). */
export class ClusterProcesses {
  readonly #o: ClusterProcessesOptions;

  constructor(o: ClusterProcessesOptions) {
    this.#o = o;
  }

  /** Reads (`-wasm`) or downloads (`-url`) the module of a start, checks it and copies it into the Object Store. */
  async #module(task: StartTask): Promise<{ mod: DeployableModule; object: string; source: string; env: Record<string, string>; idleSeconds?: number }> {
    let spec: ReturnType<typeof inProcessSpec>;
    try {
      spec = inProcessSpec(task.args?.length ? task.args : [''], task.env ?? []);
    } catch (e) {
      throw new FaasError(400, 'ERROR_JSON_BINDING', (e as Error).message);
    }
    const { modules } = this.#o.deployments;
    let mod: DeployableModule;
    let source: string;
    if ('url' in spec.source) {
      if (spec.source.authHeader) throw new FaasError(400, 'ERROR_JSON_BINDING', '-authHeaderName is not supported in cluster mode: publish the module to a registry every node can read, or give -wasm');
      source = spec.source.url;
      mod = await modules.source.download(source, spec.digest);
    } else {
      source = spec.source.path;
      const expected = spec.digest === undefined ? undefined : normaliseDigest(spec.digest, '-digest'); // a bad digest is refused before any I/O
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await readFile(source));
      } catch (e) {
        throw new FaasError(400, 'ERROR_MODULE_READ', `-wasm=${source}: ${(e as Error).message} (the path is read by the node that receives the start)`);
      }
      const digest = digestOf(bytes);
      if (expected !== undefined && expected !== digest) throw new FaasError(422, 'ERROR_DIGEST_MISMATCH', `${source}: digest mismatch: expected ${expected}, got ${digest}`);
      mod = await modules.source.accept(bytes, source, digest, 0);
    }
    const object = await modules.publish(mod, `${task.name}/${task.revision || 'default'} from ${source}`);
    const idleSeconds = spec.stopAfterMs === undefined ? undefined : Math.max(1, Math.ceil(spec.stopAfterMs / 1000));
    return { mod, object, source, env: Object.fromEntries(spec.ownEnv), idleSeconds };
  }

  /** Adds a record to PROCS under the next index of its revision. @returns the record's key */
  async #addRecord(make: (index: number) => ProcessRecord): Promise<string> {
    let key = '';
    await this.#o.procs.update(deployKey(make(0).functionName, make(0).functionRevision), (cur) => {
      const index = Object.values(cur ?? {}).reduce((max, r) => Math.max(max, r.index), -1) + 1;
      const record = make(index);
      key = recordKey(record.functionName, record.functionRevision, index);
      return { ...cur, [String(index)]: record };
    });
    return key;
  }

  /**
   * `POST /functions/start` in cluster mode (see the module comment).
   * @returns the key `name/revision/index` (Go's reply text)
   * @throws FaasError 400 bad names, arguments or path, 4xx bad module (nothing stored), 503
   */
  async start(task: StartTask): Promise<string> {
    const { name, revision } = checkTaskNames(task.name, task.revision);
    if (!isCapsulePath(task.path)) throw new FaasError(400, 'ERROR_JSON_BINDING', `path "${task.path}": a cluster node runs revisions itself (in-process on its worker pool); leave "path" empty`);
    const m = await this.#module(task);
    const change = await this.#o.deployments.desire(name, revision, { sha256: m.mod.digest.slice('sha256:'.length), object: m.object, source: m.source, env: m.env, idleSeconds: m.idleSeconds });
    const rec = change.rec;
    let listener = false;
    let key: string;
    try {
      const localUrl = await this.#o.deployments.listeners.open(name, revision);
      listener = true;
      const port = new URL(localUrl).port;
      const args = [...(task.args?.length ? task.args : ['']), `-httpPort=${port}`];
      key = await this.#addRecord((index) => ({
        ...emptyRecord(), index, functionName: name, functionRevision: revision, description: task.description ?? '',
        httpPort: port, pid: syntheticPid(name, revision, index + 1), path: task.path ?? '', args, env: [...task.env ?? []],
        currentStatus: Status.Started, statusDescription: 'Started',
      }));
    } catch (e) {
      await this.#o.deployments.undesire(name, revision, change, listener); // no replica without its record
      throw e;
    }
    this.#o.logger.info({ key, sha256: rec.sha256, generation: rec.generation, replicas: rec.replicas }, 'FaaS revision started (cluster)');
    return key;
  }

  /**
   * `PUT /functions/duplicate/:name/:revision/:newRevision`: the revision's desired state copied
   * under `newRevision`, with a record whose `formerFunctionRevision` names the original.
   * @returns the function name, or undefined when `name/revision/0` has no record
   * @throws FaasError 400 bad new revision; 503
   */
  async duplicate(name: string, revision: string, newRevision: string): Promise<string | undefined> {
    const from = this.#o.procs.get(deployKey(name, revision))?.['0'];
    const rec = this.#o.deployments.recordOf(name, revision);
    if (!from || !rec) return undefined;
    checkTaskNames(name, newRevision);
    const change = await this.#o.deployments.desire(name, newRevision, { sha256: rec.sha256, object: rec.object, source: rec.source, env: rec.env, idleSeconds: rec.idleSeconds, placement: rec.placement?.labels });
    try {
      await this.#addRecord((index) => ({
        ...from, args: [...from.args], env: [...from.env], index, functionRevision: newRevision, formerFunctionRevision: revision,
        pid: syntheticPid(name, newRevision, index + 1),
      }));
    } catch (e) {
      await this.#o.deployments.undesire(name, newRevision, change, false);
      throw e;
    }
    return name;
  }

  /**
   * `DELETE /functions/drop/…`: the record leaves PROCS, the revision one replica.
   * @returns the key, or undefined when unknown
   * @throws FaasError 503
   */
  async drop(key: string): Promise<string | undefined> {
    const k = await this.#changeRecord(key, (records, index) => {
      const { [index]: _gone, ...rest } = records;
      return Object.keys(rest).length === 0 ? undefined : rest;
    });
    if (!k) return undefined;
    await this.#o.deployments.release(k.name, k.revision);
    this.#o.logger.info({ key }, 'FaaS revision dropped (cluster)');
    return key;
  }

  /** `/notify/…`: the record is marked Stopped. @returns the key, or undefined when unknown */
  async notify(key: string): Promise<string | undefined> {
    const k = await this.#changeRecord(key, (records, index) => {
      const copy = { ...records[index]! };
      new ProcessTable(undefined).setStatus(copy, Status.Stopped);
      return { ...records, [index]: copy };
    });
    return k ? key : undefined;
  }

  /**
   * Changes the PROCS entry of the revision `key` (`name/revision/index`) names, when it holds
   * that index: `change` gets the revision's records and returns what they become (undefined:
   * the entry is deleted).
   * @returns the key's parts, or undefined when the key is malformed or names no record
   * @throws FaasError 503
   */
  async #changeRecord(key: string, change: (records: ProcsValue, index: string) => ProcsValue | undefined): Promise<{ name: string; revision: string } | undefined> {
    const k = splitKey(key);
    if (!k) return undefined;
    let found = false;
    await this.#o.procs.update(deployKey(k.name, k.revision), (cur) => {
      found = cur?.[k.index] !== undefined;
      return found ? change(cur!, k.index) : UNCHANGED;
    });
    return found ? k : undefined;
  }

  /** `GET /functions/processes`: every record of PROCS, in Go's listing shape (no `env`). */
  listing(): string {
    const table = new ProcessTable(undefined);
    const all: ProcessRecord[] = [];
    for (const [key, value] of this.#o.procs.entries()) {
      if (parseKey(key)?.revision === undefined || typeof value !== 'object' || value === null) continue;
      for (const r of Object.values(value)) if (typeof r?.functionName === 'string') all.push({ ...r });
    }
    all.sort((a, b) => a.functionName.localeCompare(b.functionName) || a.functionRevision.localeCompare(b.functionRevision) || a.index - b.index);
    for (const r of all) table.set(r);
    return table.listing();
  }

  /**
   * The call route `/functions/:name/:revision[/:index][/rest]`: over NATS to any node serving
   * the revision, or with an index to the i-th live eligible node. Answers itself (404 JSON when
   * the revision or record is unknown); never throws.
   * @param path the path and query forwarded (`/rest?query`)
   */
  async forward(req: IncomingMessage, res: ServerResponse, name: string, revision: string, index: string | undefined, path: string): Promise<void> {
    const rec = this.#o.deployments.recordOf(name, revision);
    const records = this.#o.procs.get(deployKey(name, revision));
    if (!rec || (index !== undefined && records?.[index] === undefined)) {
      req.resume();
      sendError(res, 404, 'FUNCTION_NOT_FOUND', `${name}/${revision}${index === undefined ? '' : `/${index}`} is not registered`);
      return;
    }
    let subject: string | undefined;
    if (index !== undefined) {
      const nodes = this.#o.deployments.liveNodes(rec);
      if (nodes.length > 0) subject = nodeSubject(this.#o.lattice, nodes[Number(index) % nodes.length]!, name, revision);
    }
    await this.#o.forwarder.forward(req, res, name, revision, path, subject);
  }
}
