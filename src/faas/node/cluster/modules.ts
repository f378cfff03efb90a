/**
 * Module bytes of a cluster node (faas-cluster.md §1.6, §1.7): a revision's module is looked for in
 * the node's content-addressed cache (`<cache>/sha256/<hex>.wasm`), else in the lattice's Object
 * Store `CAPSULE_<L>_MODULES` (the copy the deploying node made, named in DEPLOY `object`), else
 * at the recorded `downloadUrl`. Whatever the source, Capsule computes the SHA-256 of the bytes
 * itself and compares it with DEPLOY's `sha256` (the Object Store client is not trusted alone,
 * nats.js #363), then validates and compiles the module ({@link ModuleSource}).
 */
import { readFile } from 'node:fs/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ObjectStore } from '@nats-io/obj';
import { digestOf } from '../../../engine/load.ts';
import type { Logger } from '../../../observability/logger.ts';
import { retrying } from '../../cluster/state.ts';
import { FaasError } from '../../shared/service.ts';
import type { DeployableModule, ModuleSource } from '../module-source.ts';
import type { DeployRecord } from './records.ts';

/** Object name of a module copied by a node's worker API: `sha256/<hex>.wasm`. */
const objectName = (hex: string) => `sha256/${hex}.wasm`;

/** The module sources of a cluster node (see the module comment). */
export class ClusterModules {
  readonly #os: ObjectStore;
  readonly #source: ModuleSource;
  readonly #log: Logger;
  readonly #timeoutMs: number;

  private constructor(os: ObjectStore, source: ModuleSource, log: Logger, timeoutMs: number) {
    this.#os = os;
    this.#source = source;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Opens the Object Store bucket as it is, or creates it with `replicas` when absent.
   * @throws FaasError 503 STATE_UNAVAILABLE when JetStream does not answer
   */
  static async open(nc: NatsConnection, bucket: string, o: { replicas: number; source: ModuleSource; logger: Logger; timeoutMs?: number }): Promise<ClusterModules> {
    const { Objm } = await import('@nats-io/obj');
    const timeoutMs = o.timeoutMs ?? 5000;
    const os = await retrying(`open object store ${bucket}`, timeoutMs * 4, () => new Objm(nc).create(bucket, { replicas: o.replicas }));
    return new ClusterModules(os, o.source, o.logger, timeoutMs);
  }

  /** The node's module cache (downloads of the worker API land there too). */
  get source(): ModuleSource {
    return this.#source;
  }

  /**
   * Copies a checked module into the Object Store unless a copy with the same digest is there.
   * @returns the object name
   * @throws FaasError 503 STATE_UNAVAILABLE without a JetStream quorum
   */
  async publish(mod: DeployableModule, description: string): Promise<string> {
    const bytes = new Uint8Array(await readFile(mod.path));
    const hex = mod.digest.slice('sha256:'.length);
    const name = objectName(hex);
    const info = await retrying(`read ${name}`, this.#timeoutMs, () => this.#os.info(name));
    if (info && !info.deleted && info.size === bytes.byteLength) return name;
    await retrying(`store ${name}`, this.#timeoutMs, () => this.#os.putBlob({ name, description }, bytes));
    return name;
  }

  /**
   * The module of a DEPLOY record: cache, Object Store, then URL; every copy verified.
   * @returns the checked module, with `fetchSeconds` the time spent getting the bytes
   * @throws FaasError 503 MODULE_UNAVAILABLE when no source holds the right bytes; 422 when they are not a valid module
   */
  async fetch(rec: DeployRecord): Promise<DeployableModule> {
    const digest = `sha256:${rec.sha256}`;
    const t0 = performance.now();
    const cached = await this.#source.cached(digest).catch(() => undefined);
    if (cached) return { ...cached, fetchSeconds: (performance.now() - t0) / 1000 - cached.compileSeconds };
    const why: string[] = [];
    const name = rec.object ?? objectName(rec.sha256);
    try {
      const bytes = await retrying(`read ${name}`, this.#timeoutMs, () => this.#os.getBlob(name));
      if (!bytes) why.push(`no object ${name}`);
      else if (digestOf(bytes) !== digest) why.push(`object ${name} has digest ${digestOf(bytes)}`);
      else {
        return await this.#source.accept(bytes, name, digest, (performance.now() - t0) / 1000);
      }
    } catch (e) {
      if (e instanceof FaasError && e.status === 422) throw e;
      why.push(`object store: ${(e as Error).message}`);
    }
    this.#log.warn({ sha256: rec.sha256, object: name, why: why.join('; ') }, 'module not in the Object Store: downloading it from its source URL');
    try {
      return await this.#source.download(rec.source, digest);
    } catch (e) {
      if (e instanceof FaasError && e.status === 422 && e.code === 'ERROR_BAD_MODULE') throw e;
      why.push(`${rec.source}: ${(e as Error).message}`);
    }
    throw new FaasError(503, 'MODULE_UNAVAILABLE', `module ${digest} cannot be fetched: ${why.join('; ')}`);
  }
}
