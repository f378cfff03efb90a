/**
 * Where the Redis server is (capsule-abi.md §4.7, §5.7): `REDIS_URI` (a Redis URL) wins; else
 * `REDIS_ADDR` (`host:port`, default `localhost:6379`), `REDIS_PWD` (default empty) and
 * `REDIS_DEFAULTDB` (default `0`). `--redis-uri` / config `redisUri` / `CAPSULE_REDIS_URI`
 * override them all.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { RedisSettings } from '../../base/settings.ts';

/**
 * The Redis server of the runner's environment.
 * @param env the runner's process environment
 */
export function redisFromEnv(env: NodeJS.ProcessEnv = process.env): RedisSettings {
  if (env['REDIS_URI']) return { url: env['REDIS_URI'], origin: 'REDIS_URI' };
  const addr = env['REDIS_ADDR'] || 'localhost:6379';
  const pwd = env['REDIS_PWD'] ?? '';
  const db = env['REDIS_DEFAULTDB'] || '0';
  const auth = pwd ? `:${encodeURIComponent(pwd)}@` : '';
  return { url: `redis://${auth}${addr}/${db}`, origin: env['REDIS_ADDR'] ? 'REDIS_ADDR' : 'default; REDIS_URI and REDIS_ADDR unset' };
}

/** Whether the runner's environment names a Redis server (then `hostKvIncrement` uses Redis). */
export function redisConfiguredInEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env['REDIS_URI'] || env['REDIS_ADDR']);
}

/**
 * Checks a `--redis-uri` value.
 * @throws CapsuleError USAGE when it is not a `redis://` or `rediss://` URL
 */
export function parseRedisUri(text: string, what = '--redis-uri'): RedisSettings {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new CapsuleError('USAGE', `${what}: "${text}" is not a URL (expected redis://[:password@]host:port[/db])`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new CapsuleError('USAGE', `${what}: "${redact(text)}" must start with redis:// or rediss://`);
  }
  return { url: text, origin: what };
}

/** A Redis URL with its password replaced by `***`, for messages and logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
