/**
 * Proxy routes shared through Redis (`capsule proxy --backend redis --redis-uri URL`, faas-api.md
 * §9.6, faas-cluster.md §1.8): several proxies share one routing table.
 *
 * Layout: hash `capsule:proxy:functions:<function>`, field = revision, value = JSON array of URLs;
 * a `default` traffic split (faas-cluster.md §1.5) is the extra field `:traffic` =
 * `{"targets":[{"revision","percent"}],"sticky"?}` (a revision name cannot contain `:`). Every
 * change increments `capsule:proxy:version` and is announced on channel `capsule:proxy:changed`
 * with `{"function","version"}`, in the same transaction as the change.
 *
 * Each proxy answers from its own table. Pub/sub is at-most-once (messages sent while a proxy is
 * disconnected are lost), so a proxy reloads the whole table after every (re)connection and
 * whenever `capsule:proxy:version` differs from the version it has followed (checked every
 * `checkMs`, and a skipped version in the announcements is noticed at the next check). Writes are
 * optimistic transactions (WATCH/MULTI/EXEC, retried on a conflict); while Redis is unreachable
 * they answer `503 STATE_UNAVAILABLE` and calls keep working from the table.
 */
import type { Logger } from '../../../observability/logger.ts';
import { redact } from '../../../capabilities/redis/config.ts';
import { FaasError } from '../../shared/service.ts';
import type { StaticRoutes } from '../config.ts';
import { DEFAULT_REVISION, RouteTable, type RouteRecord } from '../table.ts';
import { changeRecord, seedChange, type RouteChangeFn, type RouteStore } from './store.ts';

/** Key prefix of the function hashes. */
export const REDIS_FUNCTIONS_PREFIX = 'capsule:proxy:functions:';
/** Channel announcing every change. */
export const REDIS_CHANGED_CHANNEL = 'capsule:proxy:changed';
/** Counter incremented by every change. */
export const REDIS_VERSION_KEY = 'capsule:proxy:version';
const TRAFFIC_FIELD = ':traffic';

type RedisClient = ReturnType<typeof import('redis').createClient>;

/** Options of {@link RedisRouteStore.open}. */
export interface RedisRouteStoreOptions {
  /** `redis://[:password@]host:port[/db]`. */
  url: string;
  logger: Logger;
  /** How often the version counter is compared, ms (default 2000). */
  checkMs?: number;
}

/** A function's hash as a {@link RouteRecord} (undefined when the hash is empty). */
export function recordFromHash(hash: Record<string, string>): RouteRecord | undefined {
  const record: RouteRecord = { revisions: {}, aliases: {} };
  let any = false;
  for (const [field, value] of Object.entries(hash)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      continue;
    }
    if (field === TRAFFIC_FIELD) {
      const t = parsed as { targets?: { revision?: unknown; percent?: unknown }[]; sticky?: unknown };
      if (!Array.isArray(t?.targets)) continue;
      record.aliases.default = Object.fromEntries(t.targets.filter((x) => typeof x?.revision === 'string').map((x) => [x.revision as string, Number(x.percent)]));
      if (typeof t.sticky === 'string') record.sticky = t.sticky;
      any = true;
    } else if (Array.isArray(parsed)) {
      record.revisions[field] = { targets: parsed.filter((u): u is string => typeof u === 'string') };
      any = true;
    }
  }
  return any ? record : undefined;
}

/** A {@link RouteRecord} as the fields of its hash. */
export function hashFromRecord(record: RouteRecord): Record<string, string> {
  const hash: Record<string, string> = {};
  for (const [rev, r] of Object.entries(record.revisions)) hash[rev] = JSON.stringify(r.targets);
  const alias = record.aliases[DEFAULT_REVISION as 'default'];
  if (alias) {
    hash[TRAFFIC_FIELD] = JSON.stringify({ targets: Object.entries(alias).map(([revision, percent]) => ({ revision, percent })), ...(record.sticky ? { sticky: record.sticky } : {}) });
  }
  return hash;
}

const unavailable = (url: string, e: unknown) =>
  new FaasError(503, 'STATE_UNAVAILABLE', `the routes in Redis (${redact(url)}) cannot be changed now: ${(e as Error)?.message || String(e)}`);

/** Routes in Redis (see the file comment). */
export class RedisRouteStore implements RouteStore {
  readonly backend = 'redis';
  readonly table = new RouteTable();
  readonly #o: Required<RedisRouteStoreOptions>;
  readonly #client: RedisClient;
  readonly #sub: RedisClient;
  /** The version counter value the table reflects. */
  #version = -1;
  #writes: Promise<unknown> = Promise.resolve();
  #resyncing: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(o: Required<RedisRouteStoreOptions>, client: RedisClient, sub: RedisClient) {
    this.#o = o;
    this.#client = client;
    this.#sub = sub;
  }

  /**
   * Connects (a command connection and a subscriber), loads the table and starts following Redis.
   * @throws FaasError 503 STATE_UNAVAILABLE when Redis cannot be reached at start
   */
  static async open(o: RedisRouteStoreOptions): Promise<RedisRouteStore> {
    const { createClient } = await import('redis');
    let started = false;
    const options = {
      url: o.url, disableOfflineQueue: true,
      // reconnect forever once started; a server that cannot be reached at start is an error
      socket: { connectTimeout: 2000, reconnectStrategy: (retries: number, cause: Error) => (started ? Math.min(50 * 2 ** Math.min(retries, 10), 1000) : cause) },
    };
    const client = createClient(options) as unknown as RedisClient;
    const sub = createClient(options) as unknown as RedisClient;
    const store = new RedisRouteStore({ checkMs: 2000, ...o }, client, sub);
    let lastError = '';
    for (const c of [client, sub]) {
      c.on('error', (e: Error) => {
        if (e.message !== lastError) o.logger.warn({ redis: redact(o.url), err: e.message }, 'Redis connection failed; reconnecting');
        lastError = e.message;
      });
    }
    // after every (re)connection of the subscriber, messages may have been missed: reload all
    sub.on('ready', () => {
      lastError = '';
      void store.resync('connected');
    });
    try {
      await client.connect();
      await sub.connect();
      await sub.subscribe(REDIS_CHANGED_CHANNEL, (message: string) => store.#announced(message));
      await store.resync('start');
      started = true;
    } catch (e) {
      await store.close();
      throw new FaasError(503, 'STATE_UNAVAILABLE', `cannot reach Redis at ${redact(o.url)}: ${(e as Error).message}`);
    }
    store.#timer = setInterval(() => void store.#check(), store.#o.checkMs);
    store.#timer.unref();
    return store;
  }

  change(fn: string, change: RouteChangeFn): Promise<void> {
    // one transaction at a time on the command connection (WATCH is per connection)
    const run = this.#writes.then(() => this.#change(fn, change));
    this.#writes = run.catch(() => undefined);
    return run;
  }

  async seed(routes: StaticRoutes): Promise<void> {
    for (const [fn, revisions] of Object.entries(routes)) await this.change(fn, seedChange(fn, revisions));
  }

  /**
   * Reloads every function from Redis (after a reconnection or a version mismatch); concurrent
   * calls share one reload, and a call during a reload runs one more after it.
   */
  resync(reason: string): Promise<void> {
    if (this.#resyncing) {
      this.#again = true;
      return this.#resyncing;
    }
    this.#resyncing = (async () => {
      try {
        do {
          this.#again = false;
          await this.#reloadAll(reason);
        } while (this.#again && !this.#closed);
      } catch (e) {
        this.#o.logger.warn({ redis: redact(this.#o.url), err: (e as Error).message }, 'could not reload the routes from Redis; the next check retries');
        this.#version = -1;
      } finally {
        this.#resyncing = undefined;
      }
    })();
    return this.#resyncing;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const c of [this.#sub, this.#client]) {
      try {
        c.destroy();
      } catch { /* never connected */ }
    }
  }

  async #change(fn: string, change: RouteChangeFn): Promise<void> {
    const key = REDIS_FUNCTIONS_PREFIX + fn;
    for (let attempt = 0; ; attempt++) {
      let hash: Record<string, string>;
      try {
        await this.#client.watch(key);
        hash = await this.#client.hGetAll(key);
      } catch (e) {
        throw unavailable(this.#o.url, e);
      }
      let r: ReturnType<typeof changeRecord>;
      try {
        r = changeRecord(fn, recordFromHash(hash), change);
      } catch (e) {
        await this.#client.unwatch().catch(() => undefined);
        throw e;
      }
      if (!r.changed) {
        await this.#client.unwatch().catch(() => undefined);
        return;
      }
      const record = r.record;
      let replies: unknown[];
      try {
        const m = record ? this.#client.multi().del(key).hSet(key, hashFromRecord(record)) : this.#client.multi().del(key);
        replies = await m.incr(REDIS_VERSION_KEY).exec() as unknown[];
      } catch (e) {
        if ((e as Error).name === 'WatchError' || (e as Error).constructor?.name === 'WatchError') {
          if (attempt < 20) continue;
        }
        throw unavailable(this.#o.url, e);
      }
      const version = Number(replies[replies.length - 1]);
      // read-your-writes: the table shows the change before the reply
      this.table.load(fn, r.record);
      if (version === this.#version + 1) this.#version = version;
      await this.#client.publish(REDIS_CHANGED_CHANNEL, JSON.stringify({ function: fn, version })).catch((e: Error) => {
        // the others notice the new version at their next check
        this.#o.logger.warn({ function: fn, err: e.message }, 'could not announce a route change; other proxies see it at their next version check');
      });
      return;
    }
  }

  /** An announcement: reload that function; follow the version when none was skipped. */
  #announced(message: string): void {
    let m: { function?: unknown; version?: unknown };
    try {
      m = JSON.parse(message) as typeof m;
    } catch {
      return;
    }
    if (typeof m.function !== 'string') return;
    const fn = m.function;
    const version = Number(m.version);
    void this.#client.hGetAll(REDIS_FUNCTIONS_PREFIX + fn).then((hash) => {
      this.table.load(fn, recordFromHash(hash));
      if (version === this.#version + 1) this.#version = version;
    }, () => {
      this.#version = -1; // reload everything at the next check
    });
  }

  async #check(): Promise<void> {
    if (this.#closed || this.#resyncing || !this.#client.isReady) return;
    try {
      const v = Number(await this.#client.get(REDIS_VERSION_KEY) ?? 0);
      if (v !== this.#version) await this.resync(`version ${v}, table at ${this.#version}`);
    } catch { /* Redis is away: the reconnection reloads */ }
  }

  async #reloadAll(reason: string): Promise<void> {
    const version = Number(await this.#client.get(REDIS_VERSION_KEY) ?? 0);
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await this.#client.sendCommand(['SCAN', cursor, 'MATCH', `${REDIS_FUNCTIONS_PREFIX}*`, 'COUNT', '200']) as [string, string[]];
      cursor = next;
      for (const key of keys) {
        const fn = key.slice(REDIS_FUNCTIONS_PREFIX.length);
        if (seen.has(fn)) continue;
        seen.add(fn);
        this.table.load(fn, recordFromHash(await this.#client.hGetAll(key)));
      }
    } while (cursor !== '0');
    for (const fn of this.table.names()) if (!seen.has(fn)) this.table.load(fn, undefined);
    this.#version = version;
    this.#o.logger.debug({ reason, functions: seen.size, version }, 'routes reloaded from Redis');
  }
}
