/**
 * Capability `redis` (capsule-abi.md §4.7, §5.7, §7.3, §7.9).
 *
 * Gen 2 (every gen-2 module, §7.9): `hostRedisSet(key, value)` → `S<key>`, `hostRedisGet(key)` →
 * `S<value>` / `Fredis: nil`, `hostRedisDel(key)` → `S<key>`, `hostRedisKeys(pattern)` →
 * `S{"keys":[…]}`; any failure (server down, lost connection, error reply) → `F<error>`.
 * Gen 1: `hostRedisSet` → `[OK](<key>:<value>)`, `hostRedisGet` → value / `[ERR][0]:redis: nil`,
 * `hostRedisKeys` → keys joined by the era's separator; failures `[ERR][0]:<error>`.
 *
 * The client lives in the main thread (service `redis`, client.ts); the server comes from the
 * function's settings (`--redis-uri`) or the runner's environment (config.ts).
 */
import { ok, fail, text, type Capability, type HostFunction, type HostCallContext, type HostResult } from '../types.ts';
import type { ServiceCallerModule } from '../../base/services.ts';
import { callService } from '../service-calls.ts';
import { gen1ListSeparator, okPair } from '../gen1-encodings.ts';
import { redisFromEnv } from './config.ts';
import { redisCommand, type RedisReply, type RedisRequest } from './client.ts';

/** Service `redis` (main thread): one request against the caller's Redis server. */
export function redisService(request: unknown, caller: ServiceCallerModule): Promise<RedisReply> {
  return redisCommand(caller.settings.redis ?? redisFromEnv(), request as RedisRequest);
}

const redisCall = (ctx: HostCallContext, req: RedisRequest, then: (v: RedisReply) => HostResult) =>
  callService<RedisReply>(ctx, 'redis', req, then);

const functions: HostFunction[] = [
  {
    name: 'hostRedisSet', generations: [1, 2], params: ['s', 's'], returns: true, async: true, grant: true,
    run(ctx, [key, value]) {
      const k = text(key);
      return redisCall(ctx, { op: 'set', key: k, value: value as Uint8Array }, () => ok(ctx.generation === 1 ? okPair(k, text(value)) : k));
    },
  },
  {
    name: 'hostRedisGet', generations: [1, 2], params: ['s'], returns: true, async: true, grant: true,
    run(ctx, [key]) {
      return redisCall(ctx, { op: 'get', key: text(key) }, (v) => (v instanceof Uint8Array ? ok(v) : fail('redis: nil')));
    },
  },
  {
    name: 'hostRedisDel', generations: [2], params: ['s'], returns: true, async: true, grant: true,
    run(ctx, [key]) {
      const k = text(key);
      return redisCall(ctx, { op: 'del', key: k }, () => ok(k));
    },
  },
  {
    name: 'hostRedisKeys', generations: [1, 2], params: ['s'], returns: true, async: true, grant: true,
    run(ctx, [pattern]) {
      const p = text(pattern);
      return redisCall(ctx, { op: 'keys', pattern: p === '' ? '*' : p }, (v) => {
        const keys = v as string[];
        return ok(ctx.generation === 1 ? keys.join(gen1ListSeparator(ctx)) : JSON.stringify({ keys }));
      });
    },
  },
];

export const redis: Capability = {
  name: 'redis',
  functions,
  grant: { lends: 'a Redis server', how: '--redis-uri URL (config redisUri), or REDIS_URI / REDIS_ADDR; default localhost:6379' },
  provide: (host) => host.provide('redis', redisService), // one lazily created client per server
};
