/**
 * The memory cache: one store per process, in the main thread, shared by every worker through
 * the `cache` service (conventions.md §3), namespaced per function (capsule-abi.md §7.4). Each
 * operation runs to completion in one turn of the main thread's event loop, so concurrent
 * requests from any number of workers never interleave inside one (no lost updates on
 * `increment`).
 */
import { CAPSULE_VERSION } from '../../base/version.ts';
import { formatBytes } from '../../base/units.ts';
import { globToRegExp } from './glob.ts';
import type { KeyValueRequest } from '../types.ts';

/** Limits of one namespace. */
export interface CacheLimits {
  maxEntries: number;
  maxBytes: number;
}

/** An operation on one namespace, as sent by the cache and KV host functions. */
export type CacheRequest = KeyValueRequest<'incr'>;

/** Replies: `set`/`del` → null, `get` → the value or null when absent, `keys` → names, `incr` → the new value in decimal. */
export type CacheReply = Uint8Array | string | string[] | null;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const INTEGER = /^[+-]?\d+$/;

/** The keys and values of one function. Values are bytes, kept as the guest sent them. */
export class CacheNamespace {
  readonly #entries = new Map<string, Uint8Array>();
  #bytes = 0;

  /** Entries stored. */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes stored (UTF-8 keys + values). */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Stores `value` at `key` (replacing any value).
   * @throws Error when the namespace would exceed `limits` (the message names the flag)
   */
  set(key: string, value: Uint8Array, limits: CacheLimits): void {
    const old = this.#entries.get(key);
    const keyBytes = Buffer.byteLength(key);
    const grow = value.length + (old ? -old.length : keyBytes);
    if (!old && this.#entries.size >= limits.maxEntries) {
      throw new Error(`the memory cache is full: ${this.#entries.size} entries (--cache-max-entries ${limits.maxEntries})`);
    }
    if (this.#bytes + grow > limits.maxBytes) {
      throw new Error(`the memory cache is full: storing "${key}" would use ${formatBytes(this.#bytes + grow)} (--cache-max-bytes ${formatBytes(limits.maxBytes)})`);
    }
    this.#entries.set(key, value);
    this.#bytes += grow;
  }

  /** The value at `key`, or undefined. */
  get(key: string): Uint8Array | undefined {
    return this.#entries.get(key);
  }

  /** Removes `key` (absent is fine). */
  del(key: string): void {
    const old = this.#entries.get(key);
    if (!old) return;
    this.#entries.delete(key);
    this.#bytes -= Buffer.byteLength(key) + old.length;
  }

  /** Keys matching a glob (`glob.ts`), in insertion order; `""` means `*`. */
  keys(pattern: string): string[] {
    if (pattern === '' || pattern === '*') return [...this.#entries.keys()];
    const re = globToRegExp(pattern);
    return [...this.#entries.keys()].filter((k) => re.test(k));
  }

  /**
   * Adds `delta` to the signed 64-bit integer stored at `key` (absent = 0), as Redis INCRBY does.
   * @returns the new value in decimal
   * @throws Error when the value or `delta` is not an integer, on overflow, or at the limits
   */
  incr(key: string, delta: string, limits: CacheLimits): string {
    if (!INTEGER.test(delta.trim())) throw new Error(`increment: the delta "${delta}" is not an integer`);
    const old = this.#entries.get(key);
    const current = old ? decoder.decode(old).trim() : '0';
    if (!INTEGER.test(current)) throw new Error(`increment: the value at "${key}" is not an integer`);
    const next = BigInt(current) + BigInt(delta.trim());
    if (next < I64_MIN || next > I64_MAX) throw new Error(`increment: the value at "${key}" would overflow a 64-bit integer`);
    const text = next.toString();
    this.set(key, encoder.encode(text), limits);
    return text;
  }
}

/** Every namespace of the process. */
export class MemoryStore {
  readonly #spaces = new Map<string, CacheNamespace>();

  /**
   * The namespace of a function, created on first use. A namespace first used by a gen-1 module
   * is pre-seeded with `capsule_version` (capsule-abi.md §4.7, hostMemoryKeys).
   */
  namespace(name: string, generation: 1 | 2): CacheNamespace {
    let ns = this.#spaces.get(name);
    if (!ns) {
      ns = new CacheNamespace();
      if (generation === 1) ns.set('capsule_version', encoder.encode(CAPSULE_VERSION), { maxEntries: Infinity, maxBytes: Infinity });
      this.#spaces.set(name, ns);
    }
    return ns;
  }

  /** Runs one request on a namespace. @throws Error with a message for the guest */
  apply(ns: CacheNamespace, req: CacheRequest, limits: CacheLimits): CacheReply {
    switch (req.op) {
      case 'set':
        ns.set(req.key, req.value, limits);
        return null;
      case 'get':
        return ns.get(req.key) ?? null;
      case 'del':
        ns.del(req.key);
        return null;
      case 'keys':
        return ns.keys(req.pattern);
      case 'incr':
        return ns.incr(req.key, req.delta, limits);
      default:
        throw new Error(`unknown cache operation ${(req as { op: string }).op}`);
    }
  }

  /** Forgets every namespace (tests, embedders). */
  clear(): void {
    this.#spaces.clear();
  }
}

/** The store of this process (main thread). */
export const memoryStore = new MemoryStore();
