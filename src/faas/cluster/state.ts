/**
 * Cluster state in JetStream Key-Value buckets (faas-cluster.md §1.2, §1.8): a bucket watched
 * into a local cache, with compare-and-swap writes and the read-your-writes rule (KV reads may
 * hit a lagging replica, ADR-8, so a write returns only once this process's own watcher has seen
 * the revision the write produced — an admin call that writes then lists sees its write).
 *
 * Faults: the connection reconnects forever (nats.js stops after 10 attempts by default); a
 * watcher that ends or stalls is re-created from the last revision seen, with backoff; a write
 * that cannot reach a JetStream quorum within `timeoutMs` fails with
 * `FaasError(503, 'STATE_UNAVAILABLE')` while reads keep answering from the cache.
 */
import { connect } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import type { KV, KvEntry } from '@nats-io/kv';
import type { Logger } from '../../observability/logger.ts';
import { FaasError } from '../shared/service.ts';
import { CapsuleError } from '../../base/errors.ts';

/** How to reach the cluster. */
export interface ClusterConnectionOptions {
  /** NATS URLs (`nats://a:4222`), any number. */
  servers: string[];
  /** Connection name shown by the server (`capsule-node-<id>`, `capsule-gateway`, …). */
  name: string;
  logger: Logger;
}

/**
 * Connects to the NATS cluster with unlimited reconnects, logging disconnects and reconnects.
 * @throws CapsuleError LOAD when no server answers the first connection attempt
 */
export async function connectCluster(o: ClusterConnectionOptions): Promise<NatsConnection> {
  const { connect } = await import('@nats-io/transport-node');
  const auth = serverAuth(o.servers);
  let nc: NatsConnection;
  try {
    nc = await connect({ ...auth, name: o.name, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 5000 });
  } catch (e) {
    throw new CapsuleError('LOAD', `cannot connect to the NATS cluster at ${auth.servers.join(', ')}: ${(e as Error).message} (is nats-server running? \`capsule up\` starts one)`);
  }
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') o.logger.warn({ server: s.server }, 'lost the NATS connection; reconnecting');
      else if (s.type === 'reconnect') o.logger.info({ server: s.server }, 'reconnected to NATS');
    }
  })();
  return nc;
}

/**
 * The credentials written in the server URLs (`nats://user:password@host:4222`, or
 * `nats://token@host:4222`), which nats.js does not read from there, as connect options, and the
 * URLs without them (safe to log). The first URL carrying credentials gives them for all
 * (faas-cluster.md §1.9: one NATS user per kind of Capsule process, deploy/nats/nats-server.conf).
 */
export function serverAuth(servers: string[]): { servers: string[]; user?: string; pass?: string; token?: string } {
  let auth: { user?: string; pass?: string; token?: string } = {};
  const bare = servers.map((s) => {
    const m = /^([a-z]+:\/\/)?([^@/]*)@(.*)$/i.exec(s);
    if (!m) return s;
    const [user, pass] = m[2]!.split(/:(.*)/s).map((x) => decodeURIComponent(x));
    if (auth.user === undefined && auth.token === undefined) auth = pass === undefined ? { token: user! } : { user: user!, pass };
    return `${m[1] ?? ''}${m[3]}`;
  });
  return { servers: bare, ...auth };
}

/**
 * The JetStream replica count of a lattice's buckets, by one rule for every process, whatever
 * `--cluster` URLs it was given (faas-cluster.md §1.2): `explicit` (`--replicas`) when given;
 * otherwise min(3, the servers of the cluster), and 1 for a server outside any cluster (no
 * `connect_urls` in its INFO). A bucket that already exists is opened as it is, whatever this
 * returns.
 *
 * Servers, not URLs: a server listening on every interface announces one `connect_urls` entry
 * per address (IPv4 and IPv6 alike), so two servers can announce four URLs, and R3 on a cluster
 * of two is refused ("no suitable peers for placement"), which would keep every process from
 * starting. Each announced URL is therefore asked for its server's INFO (`serverIds`), and the
 * distinct `server_id`s are counted. An announced address this process cannot reach is not
 * counted: a count too low still creates the buckets, one too high does not.
 * @param explicit `--replicas` (1–5, JetStream's range), undefined = the rule
 */
export async function clusterReplicas(nc: NatsConnection, explicit?: number): Promise<number> {
  if (explicit !== undefined) return explicit;
  const urls = nc.info?.connect_urls ?? [];
  if (urls.length <= 1) return 1;
  const ids = await serverIds(urls, nc.info?.server_id);
  return Math.max(1, Math.min(3, ids.size));
}

/**
 * The `server_id`s behind NATS client addresses (`host:port`, IPv6 as `[addr]:port`), every
 * address asked at once ({@link serverIdAt}): an address that does not answer is skipped after
 * 1 s, so the count takes about 1 s at most however many addresses cannot be reached.
 * @param known an id already known (the connected server's), counted too
 */
async function serverIds(urls: string[], known?: string): Promise<Set<string>> {
  const ids = await Promise.all(urls.map(serverIdAt));
  return new Set([known, ...ids].filter((id): id is string => id !== undefined));
}

/**
 * The `server_id` in the INFO line a NATS server sends first on a new connection, or undefined
 * when `url` (`host:port`) is not an address, does not answer within 1 s or is not NATS.
 */
function serverIdAt(url: string): Promise<string | undefined> {
  let target: URL;
  try {
    target = new URL(`nats://${url}`);
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const socket = connect({ host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port) || 4222, timeout: 1000 });
    let text = '';
    const done = (id?: string) => {
      socket.destroy();
      resolve(id);
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\r\n');
      if (end < 0 && text.length < 65536) return;
      const m = /^INFO\s+(\{.*\})/.exec(text.slice(0, end < 0 ? undefined : end));
      try {
        done(m ? (JSON.parse(m[1]!) as { server_id?: string }).server_id : undefined);
      } catch {
        done();
      }
    });
    socket.on('timeout', () => done());
    socket.on('error', () => done());
    socket.on('close', () => done());
  });
}

/** Options of {@link WatchedBucket.open}. */
export interface BucketOptions {
  /** JetStream replicas when the bucket is created ({@link clusterReplicas}); an existing bucket keeps its own. */
  replicas: number;
  /** Values kept per key (default 5). */
  history?: number;
  /** Bucket-wide TTL (ms): entries older than this disappear (2.9 has no per-key TTL). */
  ttlMs?: number;
  /** Longest wait for a write or for the watcher to catch up (ms, default 5000). */
  timeoutMs?: number;
  logger: Logger;
}

/** `update` callbacks return this to leave the key as it is. */
export const UNCHANGED: unique symbol = Symbol('unchanged');

interface Cached<T> {
  value: T;
  revision: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A JetStream error that says a CAS expectation failed (wrong last sequence / key exists). */
function isConflict(e: unknown): boolean {
  const err = e as { code?: number; api_error?: { err_code?: number }; message?: string };
  return err.api_error?.err_code === 10071 || err.code === 10071 || /wrong last sequence|key exists/i.test(err.message ?? '');
}

/**
 * A KV bucket of JSON values, watched into a local cache.
 * @typeParam T the JSON value of every key
 */
export class WatchedBucket<T> {
  readonly name: string;
  readonly #kv: KV;
  readonly #o: Required<Omit<BucketOptions, 'ttlMs'>>;
  readonly #cache = new Map<string, Cached<T>>();
  readonly #listeners = new Set<(key: string, value: T | undefined) => void>();
  readonly #waiters = new Set<{ revision: number; resolve: () => void }>();
  readonly #locks = new Map<string, Promise<void>>();
  #seen = 0;
  #closed = false;
  #stopWatch: (() => void) | undefined;

  private constructor(name: string, kv: KV, o: BucketOptions) {
    this.name = name;
    this.#kv = kv;
    this.#o = { ...o, history: o.history ?? 5, timeoutMs: o.timeoutMs ?? 5000 }; // an explicit undefined keeps the defaults
  }

  /**
   * Opens the bucket as it is, or creates it when absent (two processes creating it at once:
   * the loser opens the winner's), starts its watcher and waits until the cache holds every
   * current value.
   * @throws FaasError 503 STATE_UNAVAILABLE when JetStream does not answer within the timeout
   */
  static async open<T>(nc: NatsConnection, name: string, o: BucketOptions): Promise<WatchedBucket<T>> {
    const { Kvm } = await import('@nats-io/kv');
    const timeoutMs = o.timeoutMs ?? 5000;
    const kv = await retrying(`open bucket ${name}`, timeoutMs * 4, () => new Kvm(nc).create(name, {
      replicas: o.replicas, history: o.history ?? 5, ...(o.ttlMs ? { ttl: o.ttlMs } : {}),
    }));
    const bucket = new WatchedBucket<T>(name, kv, o);
    // as long as the create: a stream just created answers its status once its replicas have
    // elected a leader, which on a cluster that has just formed took over 5 s in a loaded CI run
    const status = await retrying(`status of ${name}`, timeoutMs * 4, () => kv.status());
    if (status.replicas !== o.replicas) o.logger.info({ bucket: name, replicas: status.replicas, asked: o.replicas }, 'bucket opened as it is (created earlier with another replica count)');
    void bucket.#watchLoop();
    void bucket.#restartOnReconnect(nc);
    await bucket.#caughtUp(status.streamInfo.state.last_seq, timeoutMs * 4);
    return bucket;
  }

  /**
   * After a reconnect the watcher's consumer may be gone with the server it lived on: it is
   * re-created at once from the last revision seen, instead of waiting for the stall check.
   */
  async #restartOnReconnect(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (this.#closed) return;
      if (s.type === 'reconnect') {
        this.#o.logger.debug({ bucket: this.name, seen: this.#seen }, 'reconnected: re-creating the KV watcher');
        this.#stopWatch?.();
      }
    }
  }

  /** The cached value of a key (undefined when absent or deleted). */
  get(key: string): T | undefined {
    return this.#cache.get(key)?.value;
  }

  /** Every cached key and value. */
  entries(): IterableIterator<[string, T]> {
    const it = this.#cache.entries();
    return (function* () {
      for (const [k, c] of it) yield [k, c.value] as [string, T];
    })();
  }

  /** The highest bucket revision this process has seen. */
  get revision(): number {
    return this.#seen;
  }

  /** Calls `cb` for every change seen by the watcher (own writes included). @returns unsubscribe */
  onChange(cb: (key: string, value: T | undefined) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  /**
   * Read-modify-write with compare-and-swap: `mutate` gets the current value (undefined when
   * absent) and returns the new one, `undefined` to delete, or {@link UNCHANGED}; on a
   * conflict it runs again on the fresh value. Returns once the watcher has seen the write.
   * @throws what `mutate` throws (e.g. a FaasError with a Go code); FaasError 503 STATE_UNAVAILABLE
   */
  update(key: string, mutate: (current: T | undefined) => T | undefined | typeof UNCHANGED): Promise<T | undefined> {
    // One write per key at a time in this process: nats-server 2.9 lets concurrent proposals with
    // the same expected sequence all succeed on a replicated stream (seen on 2.9.10 with R3; R1
    // refuses them), so CAS alone would lose concurrent updates. Across processes the same server
    // bug remains: production needs nats-server >= 2.10 (docs/cluster.md).
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const run = previous.then(() => this.#update(key, mutate));
    const tail = run.then(() => undefined, () => undefined);
    this.#locks.set(key, tail);
    void tail.then(() => {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    });
    return run;
  }

  async #update(key: string, mutate: (current: T | undefined) => T | undefined | typeof UNCHANGED): Promise<T | undefined> {
    const end = Date.now() + this.#o.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const cached = this.#cache.get(key);
      const next = mutate(cached?.value);
      if (next === UNCHANGED) return cached?.value;
      try {
        const revision = await retrying(`write ${this.name} ${key}`, Math.max(500, end - Date.now()), () => this.#write(key, next, cached?.revision));
        await this.#caughtUp(revision, this.#o.timeoutMs);
        // a watcher still behind (its consumer was on a server that went away): read the key itself
        if (this.#seen < revision) await this.#refresh(key);
        return next;
      } catch (e) {
        if (!isConflict(e) || Date.now() > end) throw e;
        await this.#refresh(key);
        await sleep(Math.min(200, 10 * 2 ** attempt));
      }
    }
  }

  /** Stops the watcher. */
  close(): void {
    this.#closed = true;
    this.#stopWatch?.();
  }

  async #write(key: string, value: T | undefined, expected: number | undefined): Promise<number> {
    if (value === undefined) {
      if (expected === undefined) return this.#seen; // already absent
      await this.#kv.delete(key, { previousSeq: expected });
      // a delete returns no revision: wait for the marker through a fresh read
      const e = await this.#kv.get(key);
      return e?.revision ?? this.#seen;
    }
    const data = JSON.stringify(value);
    return expected === undefined ? this.#kv.create(key, data) : this.#kv.update(key, data, expected);
  }

  /** Re-reads one key from the server into the cache (after a CAS conflict). */
  async #refresh(key: string): Promise<void> {
    const e = await this.#kv.get(key).catch(() => null);
    if (e) this.#apply(e);
  }

  #apply(e: KvEntry): void {
    const known = this.#cache.get(e.key);
    if (known && known.revision >= e.revision) return;
    if (e.operation === 'PUT') {
      let value: T;
      try {
        value = e.json<T>();
      } catch {
        this.#o.logger.warn({ bucket: this.name, key: e.key }, 'ignored a value that is not JSON');
        return;
      }
      this.#cache.set(e.key, { value, revision: e.revision });
      for (const cb of this.#listeners) cb(e.key, value);
    } else if (known) {
      this.#cache.delete(e.key);
      for (const cb of this.#listeners) cb(e.key, undefined);
    }
  }

  #saw(revision: number): void {
    if (revision <= this.#seen) return;
    this.#seen = revision;
    for (const w of this.#waiters) {
      if (w.revision <= revision) {
        this.#waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** Resolves once the watcher has seen `revision` (or after `ms`, logged: the write stands). */
  async #caughtUp(revision: number, ms: number): Promise<void> {
    if (revision <= this.#seen) return;
    let timer: NodeJS.Timeout | undefined;
    const seen = new Promise<void>((resolve) => this.#waiters.add({ revision, resolve }));
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
    if ((await Promise.race([seen, late])) === 'late') this.#o.logger.warn({ bucket: this.name, revision, seen: this.#seen }, 'the watcher has not seen a write yet');
    clearTimeout(timer);
  }

  /**
   * Watches the bucket forever, re-creating the watcher after an end, error or stall (checked
   * every `STALL_CHECK_MS`: after a server's death a watcher whose consumer lived there can stay
   * silent, and a process's view would lag until the check re-creates it).
   */
  async #watchLoop(): Promise<void> {
    let backoff = 100;
    while (!this.#closed) {
      try {
        const iter = await this.#kv.watch(this.#seen > 0 ? { resumeFromRevision: this.#seen + 1 } : {});
        this.#stopWatch = () => iter.stop();
        let checking = false;
        const stall = setInterval(() => {
          if (checking) return; // a check waiting for a status during a leader election
          checking = true;
          void this.#checkStall(iter).finally(() => (checking = false));
        }, STALL_CHECK_MS);
        try {
          for await (const e of iter) {
            this.#apply(e);
            this.#saw(e.revision);
            backoff = 100;
          }
        } finally {
          clearInterval(stall);
        }
      } catch (e) {
        if (this.#closed) return;
        this.#o.logger.debug({ bucket: this.name, err: (e as Error).message }, 'KV watcher failed; re-creating it');
      }
      if (this.#closed) return;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  }

  /** A watcher that stays behind the stream (nats.deno #688) is stopped, so the loop re-creates it. */
  async #checkStall(iter: { stop(): void }): Promise<void> {
    try {
      const last = (await this.#kv.status()).streamInfo.state.last_seq;
      if (last > this.#seen) {
        const before = this.#seen;
        await sleep(STALL_CONFIRM_MS);
        if (this.#seen === before) {
          // logged, so a slow propagation between processes can be told from a stuck watcher
          this.#o.logger.warn({ bucket: this.name, seen: this.#seen, last }, 'KV watcher stalled behind the stream: re-creating it');
          iter.stop();
        }
      }
    } catch { /* no quorum now: the watcher waits, reads answer from the cache */ }
  }
}

/** How often a watcher is compared with its stream's last sequence, ms. */
const STALL_CHECK_MS = 2000;
/** How long a watcher behind its stream may stay where it is before it is re-created, ms. */
const STALL_CONFIRM_MS = 1000;

/**
 * Runs `op` until it succeeds, retrying transient JetStream failures (no responders during a
 * leader election, timeouts, JetStream temporarily unavailable) for at most `ms`.
 * @throws the op's own error when it is not transient (a CAS conflict, a bad request);
 *   FaasError 503 STATE_UNAVAILABLE when the time is up
 */
export async function retrying<R>(what: string, ms: number, op: () => Promise<R>): Promise<R> {
  const end = Date.now() + ms;
  let wait = 50;
  for (;;) {
    try {
      return await op();
    } catch (e) {
      if (isConflict(e)) throw e;
      const text = (e as Error).message ?? String(e);
      // "already in use": a stream created by another process between our lookup and our create; the next attempt opens it
      if (!/no responders|timeout|jetstream is not enabled|not available|temporarily unavailable|no suitable peers|leader|closed|disconnect|503|already in use/i.test(text)) throw e;
      if (Date.now() + wait > end) throw new FaasError(503, 'STATE_UNAVAILABLE', `${what}: the cluster state is unavailable (${text}); is a majority of the NATS servers up?`);
      await sleep(wait);
      wait = Math.min(wait * 2, 1000);
    }
  }
}
