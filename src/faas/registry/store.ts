/**
 * Where the registry keeps modules: the routes (api.ts) talk to this interface only, so that the
 * files store of one machine (fs-store.ts) and a later NATS Object Store (faas-cluster.md §1.7)
 * serve the same API. Every file carries its SHA-256, computed once when it is stored.
 */
import type { Readable } from 'node:stream';
import type { ModuleRef } from './names.ts';

/** A module streamed into the store but not yet visible (`commit` publishes it, `discard` drops it). */
export interface StagedModule {
  /** Lower-case hex SHA-256 of the bytes received. */
  readonly sha256: string;
  /** Bytes received. */
  readonly size: number;
  /**
   * Makes the module (and its `info` text) the current version of its reference, atomically:
   * a reader sees the previous complete version or this one, never a mix. Of concurrent
   * commits of one reference, the last one wins.
   */
  commit(info: string): Promise<void>;
  /** Removes the staged bytes (idempotent). */
  discard(): Promise<void>;
}

/** A stored file opened for reading (its bytes cannot change while it is open). */
export interface StoredFile {
  /** The bytes (call once). */
  stream(): Readable;
  readonly size: number;
  /** Lower-case hex SHA-256 of exactly the bytes `stream()` gives. */
  readonly sha256: string;
  /** Releases the file when the stream is not consumed. */
  close(): Promise<void>;
}

/** Storage of modules by reference (faas-api.md §2 layout: `<org>/<module>/<tag>/<file>`). */
export interface ModuleStore {
  /**
   * Streams a module into a staging area, computing its SHA-256 and size, refusing more than
   * `maxBytes` and anything that is not a valid WebAssembly module.
   * @throws FaasError 413 ERROR_MODULE_TOO_LARGE, 400 ERROR_NOT_WASM, 500 ERROR_PATH_CREATION /
   *   ERROR_WASM_UPLOAD; nothing is left behind when it throws
   */
  stage(ref: ModuleRef, content: Readable, o: { maxBytes: number }): Promise<StagedModule>;
  /** Opens `<org>/<module>/<tag>/<fileName>`; undefined when there is no such file. */
  open(ref: ModuleRef, fileName: string): Promise<StoredFile | undefined>;
  /** Every directory and file under the root, as `/`-separated paths relative to it, depth first in name order. */
  list(): Promise<string[]>;
}
