/**
 * Capability `cache`: the memory cache (capsule-abi.md §5.7, §4.7, §7.4).
 *
 * Gen 2: `hostCacheSet(key, value)` → `S<key>`, `hostCacheGet(key)` → `S<value>` /
 * `Fkey not found`, `hostCacheDel(key)` → `S<key>`, `hostCacheKeys(filter)` →
 * `S{"keys":[…]}` (glob filter, `[]` when nothing matches; Go Capsule answered `null` for any
 * filter but `*`).
 * Gen 1: `hostMemorySet(key, value)` → `[OK](<key>:<value>)`, `hostMemoryGet(key)` → value /
 * `[ERR][0]:key does not exist`, `hostMemoryKeys()` → keys joined by `²`, the map pre-seeded with
 * `capsule_version`.
 *
 * The store lives in the main thread (service `cache`, see memory-store.ts), one namespace per
 * function, shared by every worker; the host functions are async (the guest waits with JSPI).
 */
import { ok, fail, text, type Capability, type HostFunction } from '../types.ts';
import type { ServiceCallerModule } from '../../base/services.ts';
import { CAPABILITY_DEFAULTS } from '../settings.ts';
import { callService, functionName, generationOf } from '../service-calls.ts';
import { okPair } from '../gen1-encodings.ts';
import { memoryStore, type CacheLimits, type CacheReply, type CacheRequest } from './memory-store.ts';

/** The cache limits of a function (settings or defaults). */
export function cacheLimits(caller: ServiceCallerModule): CacheLimits {
  return {
    maxEntries: caller.settings.cache?.maxEntries ?? CAPABILITY_DEFAULTS.cacheMaxEntries,
    maxBytes: caller.settings.cache?.maxBytes ?? CAPABILITY_DEFAULTS.cacheMaxBytes,
  };
}

/** Service `cache` (main thread): one `CacheRequest` on the caller's namespace. */
export function cacheService(request: unknown, caller: ServiceCallerModule): CacheReply {
  const ns = memoryStore.namespace(functionName(caller), generationOf(caller));
  return memoryStore.apply(ns, request as CacheRequest, cacheLimits(caller));
}

const cacheCall = (ctx: Parameters<HostFunction['run']>[0], req: CacheRequest, then: (v: CacheReply) => ReturnType<typeof ok>) =>
  callService<CacheReply>(ctx, 'cache', req, then);

const functions: HostFunction[] = [
  {
    name: 'hostCacheSet', generations: [2], params: ['s', 's'], returns: true, async: true,
    run(ctx, [key, value]) {
      const k = text(key);
      return cacheCall(ctx, { op: 'set', key: k, value: value as Uint8Array }, () => ok(k));
    },
  },
  {
    name: 'hostCacheGet', generations: [2], params: ['s'], returns: true, async: true,
    run(ctx, [key]) {
      return cacheCall(ctx, { op: 'get', key: text(key) }, (v) => (v instanceof Uint8Array ? ok(v) : fail('key not found')));
    },
  },
  {
    name: 'hostCacheDel', generations: [2], params: ['s'], returns: true, async: true,
    run(ctx, [key]) {
      const k = text(key);
      return cacheCall(ctx, { op: 'del', key: k }, () => ok(k));
    },
  },
  {
    name: 'hostCacheKeys', generations: [2], params: ['s'], returns: true, async: true,
    run(ctx, [filter]) {
      return cacheCall(ctx, { op: 'keys', pattern: text(filter) }, (v) => ok(JSON.stringify({ keys: v as string[] })));
    },
  },
  {
    name: 'hostMemorySet', generations: [1], params: ['s', 's'], returns: true, async: true,
    run(ctx, [key, value]) {
      const k = text(key);
      return cacheCall(ctx, { op: 'set', key: k, value: value as Uint8Array }, () => ok(okPair(k, text(value))));
    },
  },
  {
    name: 'hostMemoryGet', generations: [1], params: ['s'], returns: true, async: true,
    run(ctx, [key]) {
      return cacheCall(ctx, { op: 'get', key: text(key) }, (v) => (v instanceof Uint8Array ? ok(v) : fail('key does not exist')));
    },
  },
  {
    // Since 0.2.0 (gen 1b/1c): always `²`.
    name: 'hostMemoryKeys', generations: [1], params: [], returns: true, async: true,
    run(ctx) {
      return cacheCall(ctx, { op: 'keys', pattern: '*' }, (v) => ok((v as string[]).join('²')));
    },
  },
];

export const cache: Capability = {
  name: 'cache',
  functions,
  provide: (host) => host.provide('cache', cacheService), // memory cache, one namespace per function
};
