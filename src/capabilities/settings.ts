/**
 * Settings of the host capabilities that go beyond grants of files and hosts: outbound HTTP
 * limits, the memory cache and KV backend, Redis and CouchBase. They are part of a function's
 * `FunctionSettings` (and `FunctionOptions`), so they travel to the workers and reach the
 * main-thread services with the calling module (`PoolModule.settings`).
 *
 * Every field is optional: an embedder that sets none gets the defaults below, and the Redis and
 * CouchBase clients then read the Go Capsule environment variables of the runner's process
 * (capsule-abi.md §4.7, §5.7).
 */

/** A Redis server (capsule-abi.md §5.7). */
export interface RedisSettings {
  /** `redis://[:password@]host:port[/db]` or `rediss://…`. */
  readonly url: string;
  /** Where the URL came from, for messages (`--redis-uri`, `REDIS_URI`, `REDIS_ADDR`, default); default `option redis.url`. */
  readonly origin?: string;
}

/** A CouchBase cluster (capsule-abi.md §4.7 environment; conventions.md §5). */
export interface CouchbaseSettings {
  /** Connection string, e.g. `couchbase://127.0.0.1`. */
  readonly cluster: string;
  readonly user: string;
  readonly password: string;
  readonly bucket: string;
}

/** Capability settings of one function. */
export interface CapabilitySettings {
  /**
   * The function's name: it namespaces the memory cache and the memory KV (multi-function
   * servers give each function its own). Default: the module's name.
   */
  name?: string;
  /** Outbound HTTP (`hostHTTP`, `hostHttp`) limits. */
  http?: {
    /** Whole exchange (redirects and body included), ms. Default 10 000. */
    timeoutMs?: number;
    /** Largest response body accepted, bytes. Default 10 MiB. */
    maxResponseBytes?: number;
  };
  /** Memory cache limits, per function (capsule-abi.md §7.4). */
  cache?: {
    /** Entries. Default 10 000. */
    maxEntries?: number;
    /** Bytes of keys and values (UTF-8 keys, raw values). Default 64 MiB. */
    maxBytes?: number;
  };
  /**
   * Backend of `hostKvIncrement` (§8): the memory cache, or Redis `INCRBY`. Default: `redis`
   * when a Redis server is configured (`redis` set, or `REDIS_URI`/`REDIS_ADDR` in the runner's
   * environment), else `memory`.
   */
  kv?: 'memory' | 'redis';
  /** Redis server; default from `REDIS_URI`, else `REDIS_ADDR`/`REDIS_PWD`/`REDIS_DEFAULTDB`. */
  redis?: RedisSettings;
  /** CouchBase cluster; default from `COUCHBASE_CLUSTER` (unset = not configured). */
  couchbase?: CouchbaseSettings;
}

/** Defaults of the capability settings (documented in the README's "Capabilities" section). */
export const CAPABILITY_DEFAULTS = {
  httpTimeoutMs: 10_000,
  maxResponseBytes: 10 * 1024 * 1024,
  cacheMaxEntries: 10_000,
  cacheMaxBytes: 64 * 1024 * 1024,
} as const;

/** Copies the capability settings out of a larger options object (only the fields that are set). */
export function pickCapabilitySettings(o: CapabilitySettings): CapabilitySettings {
  const out: CapabilitySettings = {};
  if (o.name !== undefined) out.name = o.name;
  if (o.http !== undefined) out.http = o.http;
  if (o.cache !== undefined) out.cache = o.cache;
  if (o.kv !== undefined) out.kv = o.kv;
  if (o.redis !== undefined) out.redis = o.redis;
  if (o.couchbase !== undefined) out.couchbase = o.couchbase;
  return out;
}
