/**
 * The registry's files store (faas-api.md §2 layout, §9.5): `<root>/<org>/<module>/<tag>/`
 * holds `<module>.wasm`, `<module>.info` and the sidecar `<module>.wasm.sha256`
 * (`sha256sum` format). An upload streams into a temporary file in the target directory
 * (`.upload-<uuid>.part`, hidden from listings and downloads) while its SHA-256 is computed, is
 * checked as WebAssembly, and is renamed into place: a reader sees the previous complete module
 * or the new one, never a torn file. Commits of one directory run one at a time, so the module,
 * its info and its sidecar always belong to the same (last) upload.
 *
 * Download digests never trust the sidecar blindly: a file is opened first and its digest is
 * looked up by inode (renames keep inodes; stored files are never written in place), else
 * hashed from the open file once and remembered.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatBytes } from '../../base/units.ts';
import { FaasError } from '../shared/service.ts';
import { refText, type ModuleRef } from './names.ts';
import type { ModuleStore, StagedModule, StoredFile } from './store.ts';

const TEMP = /^\.upload-.*\.part$/;
/** Inode-keyed digests remembered (uploads and first downloads); the oldest go first. */
const DIGEST_CACHE_SIZE = 4096;

/** A {@link ModuleStore} on a directory of the local file system. */
export class FileModuleStore implements ModuleStore {
  /** Absolute root directory. */
  readonly root: string;
  readonly #digests = new Map<string, string>();
  readonly #commits = new Map<string, Promise<void>>();

  /** @param root the registry root (`--files`); created by {@link FileModuleStore.init} */
  constructor(root: string) {
    this.root = resolve(root);
  }

  /** Creates the root directory. @throws Error naming the root when it cannot be created */
  async init(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
    } catch (e) {
      throw new Error(`cannot create the registry directory ${this.root}: ${(e as Error).message}`, { cause: e });
    }
  }

  #dir(ref: ModuleRef): string {
    return join(this.root, ref.org, ref.module, ref.tag);
  }

  async stage(ref: ModuleRef, content: Readable, o: { maxBytes: number }): Promise<StagedModule> {
    const dir = this.#dir(ref);
    const tmp = join(dir, `.upload-${randomUUID()}.part`);
    const check = new WasmIntake(o.maxBytes);
    try {
      await pipeline(content, check, await this.#createTemp(ref, tmp));
      await validateWasmFile(tmp);
    } catch (e) {
      await this.#discard(ref, tmp);
      if (e instanceof FaasError) throw e;
      throw new FaasError(500, 'ERROR_WASM_UPLOAD', `😡 error when uploading the wasm module: ${(e as Error).message}`);
    }
    const st = await stat(tmp);
    let done = false;
    return {
      sha256: check.sha256,
      size: check.size,
      commit: async (info) => {
        done = true;
        await this.#commit(ref, tmp, check.sha256, info);
        this.#remember(`${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`, check.sha256);
      },
      discard: async () => {
        if (done) return;
        done = true;
        await this.#discard(ref, tmp);
      },
    };
  }

  /** Opens a new temporary file, creating the directories (again, if a discard just removed them). */
  async #createTemp(ref: ModuleRef, tmp: string) {
    for (let attempt = 0; ; attempt++) {
      try {
        await mkdir(this.#dir(ref), { recursive: true });
        const handle = await open(tmp, 'wx', 0o644);
        return handle.createWriteStream();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 3) continue;
        throw new FaasError(500, 'ERROR_PATH_CREATION', `😡 error when creating the path ${refText(ref)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
  }

  /** Removes a temporary file and the directories of `ref` it leaves empty. */
  async #discard(ref: ModuleRef, tmp: string): Promise<void> {
    await rm(tmp, { force: true }).catch(() => undefined);
    const dirs = [this.#dir(ref), join(this.root, ref.org, ref.module), join(this.root, ref.org)];
    for (const d of dirs) {
      if (!(await rmdir(d).then(() => true, () => false))) return; // not empty (or gone): keep the parents
    }
  }

  /** Publishes a staged file: info, sidecar, then the module, under the directory's commit lock. */
  async #commit(ref: ModuleRef, tmp: string, sha256: string, info: string): Promise<void> {
    const dir = this.#dir(ref);
    const wasm = `${ref.module}.wasm`;
    await this.#exclusive(dir, async () => {
      try {
        await writeAtomically(join(dir, `${ref.module}.info`), `${info}\n`);
        await writeAtomically(join(dir, `${wasm}.sha256`), `${sha256}  ${wasm}\n`);
        await rename(tmp, join(dir, wasm));
      } catch (e) {
        await rm(tmp, { force: true }).catch(() => undefined);
        throw new FaasError(500, 'ERROR_WASM_UPLOAD', `😡 error when uploading the wasm module: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    });
  }

  /** Runs `fn` after every earlier call with the same key has finished. */
  async #exclusive(key: string, fn: () => Promise<void>): Promise<void> {
    const previous = this.#commits.get(key) ?? Promise.resolve();
    const mine = previous.then(fn);
    const tail = mine.catch(() => undefined);
    this.#commits.set(key, tail);
    try {
      await mine;
    } finally {
      if (this.#commits.get(key) === tail) this.#commits.delete(key);
    }
  }

  #remember(key: string, sha256: string): void {
    this.#digests.delete(key);
    this.#digests.set(key, sha256);
    if (this.#digests.size > DIGEST_CACHE_SIZE) this.#digests.delete(this.#digests.keys().next().value!);
  }

  async open(ref: ModuleRef, fileName: string): Promise<StoredFile | undefined> {
    if (TEMP.test(fileName)) return undefined;
    let handle: FileHandle;
    try {
      handle = await open(join(this.#dir(ref), fileName), 'r');
    } catch (e) {
      if (['ENOENT', 'ENOTDIR', 'EISDIR'].includes((e as NodeJS.ErrnoException).code ?? '')) return undefined;
      throw e;
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) {
        await handle.close();
        return undefined;
      }
      const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
      let sha256 = this.#digests.get(key);
      if (sha256 === undefined) {
        sha256 = await hashOpenFile(handle, st.size);
        this.#remember(key, sha256);
      }
      const size = st.size;
      return {
        size,
        sha256,
        stream: () => {
          if (size > 0) return handle.createReadStream({ start: 0, end: size - 1, autoClose: true });
          void handle.close();
          return Readable.from([]);
        },
        close: () => handle.close(),
      };
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e;
    }
  }

  async list(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return; // removed while walking, or unreadable
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (TEMP.test(e.name)) continue;
        const rel = prefix ? `${prefix}/${e.name}` : e.name;
        out.push(rel);
        if (e.isDirectory()) await walk(join(dir, e.name), rel);
      }
    };
    await walk(this.root, '');
    return out;
  }
}

/**
 * Writes a small file through a temporary file and a rename. Not base/files.ts
 * writeFileAtomically: its temporary name must match `.upload-*.part` ({@link TEMP}) so that
 * listings and downloads never show it.
 */
async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = join(path, '..', `.upload-${randomUUID()}.part`);
  try {
    await writeFile(tmp, text, { flag: 'wx', mode: 0o644 });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

/** Hex SHA-256 of the first `size` bytes of an open file (read by position; the handle stays usable). */
async function hashOpenFile(handle: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(256 * 1024);
  for (let pos = 0; pos < size;) {
    const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return hash.digest('hex');
}

/**
 * Passes an upload through while computing its SHA-256 and size, refusing more than `maxBytes`
 * (413) and a first 8 bytes other than a core WebAssembly module's header (400) as soon as they
 * arrive, before the rest is written.
 */
class WasmIntake extends Transform {
  readonly #hash = createHash('sha256');
  readonly #max: number;
  #head = Buffer.alloc(0);
  size = 0;
  sha256 = '';

  constructor(maxBytes: number) {
    super();
    this.#max = maxBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.#max) return cb(tooLarge(this.#max));
    if (this.#head.length < 8) {
      this.#head = Buffer.concat([this.#head, chunk.subarray(0, 8 - this.#head.length)]);
      if (this.#head.length === 8) {
        const refusal = headerRefusal(this.#head);
        if (refusal) return cb(refusal);
      }
    }
    this.#hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#head.length < 8) return cb(notWasm(`only ${this.size} bytes: a WebAssembly module has at least its 8-byte header`));
    this.sha256 = this.#hash.digest('hex');
    cb();
  }
}

/** Why an 8-byte header is not a core module's (`\0asm`, version 1), or undefined. */
function headerRefusal(head: Buffer): FaasError | undefined {
  if (head.readUInt32BE(0) !== 0x0061736d) return notWasm('it does not start with the bytes 00 61 73 6D ("\\0asm")');
  if (head.readUInt16LE(6) === 1) return notWasm('it is a WebAssembly component; the registry stores core modules (version 1)');
  if (head.readUInt32LE(4) !== 1) return notWasm(`unknown WebAssembly version ${head.readUInt32LE(4)} (expected 1)`);
  return undefined;
}

const notWasm = (why: string) => new FaasError(400, 'ERROR_NOT_WASM', `not a valid WebAssembly module: ${why}`);
const tooLarge = (max: number) => new FaasError(413, 'ERROR_MODULE_TOO_LARGE', `the module is larger than ${formatBytes(max)} (--max-module-size)`);

/**
 * Checks a whole file as a WebAssembly module: V8 compiles it from a file stream (off the main
 * thread; the JavaScript side never holds the whole module).
 * @throws FaasError 400 ERROR_NOT_WASM with V8's reason
 */
async function validateWasmFile(path: string): Promise<void> {
  const body = Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>;
  try {
    await WebAssembly.compileStreaming(new Response(body, { headers: { 'content-type': 'application/wasm' } }));
  } catch (e) {
    throw notWasm((e as Error).message.replace(/^WebAssembly\.compileStreaming\(\): /, ''));
  }
}
