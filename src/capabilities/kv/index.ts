/**
 * Capability `kv`: `hostKvIncrement(key, delta)` (capsule-abi.md §8 extension, seed 004's
 * counter): atomically adds the decimal integer `delta` to the signed 64-bit integer at `key`
 * (absent = 0) → `S<new value>` / `F<error>` (a value or delta that is not an integer, overflow,
 * backend failure). Gen-1 modules may import it too (value / `[ERR][0]:<error>`).
 *
 * Backend: the memory cache (the function's namespace, shared by every worker of the process;
 * atomic because the main thread runs each increment in one event-loop turn), or Redis `INCRBY`
 * (atomic in the server, shared by every process) with `kv: redis` — the default when a Redis
 * server is configured (`--redis-uri`, `REDIS_URI`, `REDIS_ADDR`).
 */
import { ok, text, type Capability } from '../types.ts';
import type { ServiceCallerModule } from '../../base/services.ts';
import { callService, functionName, generationOf } from '../service-calls.ts';
import { memoryStore } from '../cache/memory-store.ts';
import { cacheLimits } from '../cache/index.ts';
import { redisCommand } from '../redis/client.ts';
import { redisConfiguredInEnv, redisFromEnv } from '../redis/config.ts';

/** A `kv` service request. */
export interface KvRequest {
  key: string;
  /** Decimal integer. */
  delta: string;
}

/** The KV backend of a function (main thread). */
export function kvBackend(caller: ServiceCallerModule): 'memory' | 'redis' {
  return caller.settings.kv ?? (caller.settings.redis || redisConfiguredInEnv() ? 'redis' : 'memory');
}

/** Service `kv` (main thread): one increment. @returns the new value in decimal */
export async function kvService(request: unknown, caller: ServiceCallerModule): Promise<string> {
  const { key, delta } = request as KvRequest;
  const d = delta.trim() === '' ? '1' : delta.trim();
  if (!/^[+-]?\d+$/.test(d)) throw new Error(`increment: the delta "${delta}" is not an integer`);
  if (kvBackend(caller) === 'redis') {
    const r = await redisCommand(caller.settings.redis ?? redisFromEnv(), { op: 'incrby', key, delta: d.replace(/^\+/, '') });
    return String(r);
  }
  const ns = memoryStore.namespace(functionName(caller), generationOf(caller));
  return ns.incr(key, d, cacheLimits(caller));
}

export const kv: Capability = {
  name: 'kv',
  provide: (host) => host.provide('kv', kvService), // hostKvIncrement: memory cache or Redis INCRBY
  functions: [
    {
      name: 'hostKvIncrement', generations: [1, 2], params: ['s', 's'], returns: true, async: true,
      run(ctx, [key, delta]) {
        return callService<string>(ctx, 'kv', { key: text(key), delta: text(delta) } satisfies KvRequest, (v) => ok(v));
      },
    },
  ],
};
