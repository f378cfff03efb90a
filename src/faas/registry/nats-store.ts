/**
 * The registry's store on the NATS JetStream Object Store (`capsule registry --backend nats`,
 * faas-cluster.md §1.7): any registry replica serves any module. Objects are named like the Go
 * layout, `<org>/<module>/<tag>/<module>.wasm` and `<module>.info`, in bucket
 * `CAPSULE_<lattice>_MODULES`. An upload is staged and checked on local disk exactly as the files
 * store does (streamed, size-capped, validated as WebAssembly, SHA-256 computed), then put into
 * the Object Store and removed locally. A download reads the object and checks its SHA-256
 * against the digest the Object Store recorded at upload: Capsule verifies digests itself and
 * does not rely on the client library (nats.js #363).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ObjectStore } from '@nats-io/obj';
import { FaasError } from '../shared/service.ts';
import { retrying } from '../cluster/state.ts';
import { FileModuleStore } from './fs-store.ts';
import type { ModuleRef } from './names.ts';
import type { ModuleStore, StagedModule, StoredFile } from './store.ts';

/** Hex of the `SHA-256=<base64url>` digest the Object Store records. */
function digestHex(digest: string): string | undefined {
  const m = /^SHA-256=(.+)$/i.exec(digest);
  return m ? Buffer.from(m[1]!, 'base64url').toString('hex') : undefined;
}

/** A {@link ModuleStore} on a JetStream Object Store bucket. */
export class ObjectModuleStore implements ModuleStore {
  readonly #os: ObjectStore;
  readonly #staging: FileModuleStore;
  readonly #timeoutMs: number;

  private constructor(os: ObjectStore, staging: FileModuleStore, timeoutMs: number) {
    this.#os = os;
    this.#staging = staging;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Opens the bucket as it is, or creates it when absent.
   * @param replicas JetStream replicas of a bucket created here (cluster/state.ts `clusterReplicas`)
   * @throws FaasError 503 STATE_UNAVAILABLE when JetStream does not answer
   */
  static async open(nc: NatsConnection, bucket: string, o: { replicas: number; timeoutMs?: number }): Promise<ObjectModuleStore> {
    const { Objm } = await import('@nats-io/obj');
    const timeoutMs = o.timeoutMs ?? 5000;
    const os = await retrying(`open object store ${bucket}`, timeoutMs * 4, () => new Objm(nc).create(bucket, { replicas: o.replicas }));
    const staging = new FileModuleStore(await mkdtemp(join(tmpdir(), 'capsule-registry-staging-')));
    await staging.init();
    return new ObjectModuleStore(os, staging, timeoutMs);
  }

  async stage(ref: ModuleRef, content: Readable, o: { maxBytes: number }): Promise<StagedModule> {
    const staged = await this.#staging.stage(ref, content, o);
    const base = `${ref.org}/${ref.module}/${ref.tag}`;
    return {
      sha256: staged.sha256,
      size: staged.size,
      commit: async (info) => {
        // published locally (checked), then into the cluster; the local copy is dropped either way
        await staged.commit(info);
        const local = join(this.#staging.root, ref.org, ref.module, ref.tag);
        try {
          const bytes = await readFile(join(local, `${ref.module}.wasm`));
          if (createHash('sha256').update(bytes).digest('hex') !== staged.sha256) throw new Error('the staged module changed');
          // info first: a reader that finds the module finds its info too
          await this.#put(`${base}/${ref.module}.info`, Buffer.from(`${info}\n`), info);
          const stored = await this.#put(`${base}/${ref.module}.wasm`, bytes, info);
          if (digestHex(stored) !== staged.sha256) throw new Error('the Object Store recorded another digest');
        } catch (e) {
          if (e instanceof FaasError) throw e;
          throw new FaasError(500, 'ERROR_WASM_UPLOAD', `😡 error when storing the wasm module in the cluster: ${(e as Error).message}`);
        } finally {
          await rm(join(this.#staging.root, ref.org), { recursive: true, force: true });
        }
      },
      discard: () => staged.discard(),
    };
  }

  async #put(name: string, data: Uint8Array, description: string): Promise<string> {
    const info = await retrying(`store ${name}`, this.#timeoutMs, () => this.#os.putBlob({ name, description }, data));
    return info.digest;
  }

  async open(ref: ModuleRef, fileName: string): Promise<StoredFile | undefined> {
    const name = `${ref.org}/${ref.module}/${ref.tag}/${fileName}`;
    const info = await retrying(`read ${name}`, this.#timeoutMs, () => this.#os.info(name));
    if (!info || info.deleted) return undefined;
    const bytes = await retrying(`read ${name}`, this.#timeoutMs, () => this.#os.getBlob(name));
    if (!bytes) return undefined;
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (digestHex(info.digest) !== sha256) {
      throw new FaasError(500, 'ERROR_DIGEST_MISMATCH', `${name}: the bytes read do not match the digest recorded at upload`);
    }
    return { size: bytes.byteLength, sha256, stream: () => Readable.from([Buffer.from(bytes)]), close: async () => undefined };
  }

  async list(): Promise<string[]> {
    const objects = await retrying('list modules', this.#timeoutMs, () => this.#os.list());
    const paths = new Set<string>();
    for (const o of objects) {
      if (o.deleted) continue;
      const parts = o.name.split('/');
      for (let i = 1; i <= parts.length; i++) paths.add(parts.slice(0, i).join('/'));
    }
    // depth first in name order, as the files store (a directory before what it holds)
    return [...paths].sort((a, b) => {
      const pa = a.split('/');
      const pb = b.split('/');
      for (let i = 0; i < Math.min(pa.length, pb.length); i++) if (pa[i] !== pb[i]) return pa[i]! < pb[i]! ? -1 : 1;
      return pa.length - pb.length;
    });
  }
}
