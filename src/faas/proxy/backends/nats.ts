/**
 * The proxy in cluster mode (`capsule proxy --backend nats --cluster URLS --lattice L`,
 * faas-cluster.md §1.2–§1.4, §1.8): any number of gateways share the routes of the lattice's
 * ROUTES KV bucket, and `nats:` targets are invoked over NATS request/reply on the revision's
 * queue group (src/faas/cluster/invoke.ts).
 *
 * - Routes: {@link NatsRouteStore} keeps the gateway's table in step with a watch of the bucket
 *   (key `fn.<f>` → {@link RouteRecord}); registration API writes are compare-and-swap updates of
 *   that key and answer once this gateway's watcher saw them (read-your-writes). Without a
 *   JetStream quorum, writes answer `503 STATE_UNAVAILABLE` while calls keep working from the table.
 * - Calls: {@link LatticeForwarder} sends the HTTP request (headers + body up to the server's
 *   `max_payload`, less 64 KiB for headers; larger → `413 TOO_LARGE`) and writes the reply with
 *   `X-Capsule-Node`; no node → `502 NO_INSTANCE`, no answer in time → `504 TIMEOUT`, every node
 *   busy → `503 BUSY`; retries as invoke.ts decides, counted by `capsule_lattice_retries_total`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Counter } from 'prom-client';
import { readBodyUpTo } from '../../../base/bytes.ts';
import type { Logger } from '../../../observability/logger.ts';
import { invoke, type InvokeOptions } from '../../cluster/invoke.ts';
import { bucketName, invokeSubject, parseKey, routesKey } from '../../cluster/lattice.ts';
import { UNCHANGED, WatchedBucket } from '../../cluster/state.ts';
import { FaasError } from '../../shared/service.ts';
import type { StaticRoutes } from '../config.ts';
import { backwardHeaders, forwardHeaders, sendError, type ForwardResult } from '../forward.ts';
import { RouteTable, type RouteRecord } from '../table.ts';
import { changeRecord, seedChange, type RouteChangeFn, type RouteStore } from './store.ts';

/** Options of {@link NatsRouteStore.open}. */
export interface NatsRouteStoreOptions {
  nc: NatsConnection;
  /** Lattice prefix (checked by the caller). */
  lattice: string;
  /** JetStream replicas of the bucket: min(3, number of servers). */
  replicas: number;
  logger: Logger;
  /** Longest wait for a write's quorum and for the watcher, ms (default 5000). */
  timeoutMs?: number;
}

/** Routes in the lattice's ROUTES bucket (see the file comment). */
export class NatsRouteStore implements RouteStore {
  readonly backend = 'nats';
  readonly table = new RouteTable();
  readonly #bucket: WatchedBucket<RouteRecord>;
  readonly #logger: Logger;
  readonly #stop: () => void;

  private constructor(bucket: WatchedBucket<RouteRecord>, logger: Logger) {
    this.#bucket = bucket;
    this.#logger = logger;
    for (const [key, value] of bucket.entries()) this.#apply(key, value);
    this.#stop = bucket.onChange((key, value) => this.#apply(key, value));
  }

  /**
   * Opens (creating when needed) the ROUTES bucket and fills the table from it.
   * @throws FaasError 503 STATE_UNAVAILABLE when JetStream does not answer
   */
  static async open(o: NatsRouteStoreOptions): Promise<NatsRouteStore> {
    const bucket = await WatchedBucket.open<RouteRecord>(o.nc, bucketName(o.lattice, 'ROUTES'), { replicas: o.replicas, logger: o.logger, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) });
    return new NatsRouteStore(bucket, o.logger);
  }

  async change(fn: string, change: RouteChangeFn): Promise<void> {
    await this.#bucket.update(routesKey(fn), (current) => {
      const r = changeRecord(fn, current, change);
      return r.changed ? r.record : UNCHANGED;
    });
  }

  async seed(routes: StaticRoutes): Promise<void> {
    for (const [fn, revisions] of Object.entries(routes)) await this.change(fn, seedChange(fn, revisions));
  }

  async close(): Promise<void> {
    this.#stop();
    this.#bucket.close();
  }

  #apply(key: string, value: RouteRecord | undefined): void {
    const k = parseKey(key);
    if (!k || k.revision !== undefined) return;
    if (!this.table.load(k.function, value)) this.#logger.warn({ bucket: this.#bucket.name, key, function: k.function }, 'ignored a routes record of an unknown shape');
  }
}

/** Options of {@link LatticeForwarder}. */
export interface LatticeForwarderOptions {
  nc: NatsConnection;
  lattice: string;
  /** Longest wait for a node's answer per attempt, ms. */
  timeoutMs: number;
  /** `capsule_lattice_retries_total{reason}`. */
  retries?: Counter<'reason'>;
}

/** Response headers the gateway sets itself from the reply it holds. */
const OWN_HEADERS = new Set(['content-length', 'transfer-encoding', 'x-capsule-node']);

/** Invokes `nats:` targets for the gateway (see the file comment). */
export class LatticeForwarder {
  readonly #o: LatticeForwarderOptions;
  /** Invoke subject per `fn\0rev`: two base64url encodings (~0.8 µs) made once, not per request. */
  readonly #subjects = new Map<string, string>();
  /** The options of every call (made once, not per request). */
  readonly #invoke: InvokeOptions;
  constructor(o: LatticeForwarderOptions) {
    this.#o = o;
    this.#invoke = { timeoutMs: o.timeoutMs, onRetry: (reason) => o.retries?.inc({ reason }) };
  }

  #subject(fn: string, rev: string): string {
    const key = `${fn}\0${rev}`;
    let subject = this.#subjects.get(key);
    if (subject === undefined) {
      subject = invokeSubject(this.#o.lattice, fn, rev);
      if (this.#subjects.size > 10_000) this.#subjects.clear();
      this.#subjects.set(key, subject);
    }
    return subject;
  }

  /**
   * Sends one proxied request to revision `rev` of `fn` and writes the answer to `res`. Never throws.
   * @param path the path and query below the function route (`/rest?query`)
   * @param subject where to send it instead of the revision's queue group (a node-direct subject)
   */
  async forward(req: IncomingMessage, res: ServerResponse, fn: string, rev: string, path: string, subject = this.#subject(fn, rev)): Promise<ForwardResult> {
    const { nc, timeoutMs } = this.#o;
    const q = path.indexOf('?');
    try {
      const max = (nc.info?.max_payload ?? 1024 * 1024) - 64 * 1024;
      // a declared length above the limit is refused without keeping the body (it is read and dropped)
      const body = await readBodyUpTo(req, Number(req.headers['content-length'] ?? 0) > max ? -1 : max);
      if (!body) throw new FaasError(413, 'TOO_LARGE', `the body is above what the NATS cluster carries (max_payload ${max + 64 * 1024} bytes, less 64 KiB for headers); use a URL target for larger bodies`);
      const reply = await invoke(nc, subject, {
        method: req.method ?? 'GET', path: q < 0 ? path : path.slice(0, q), query: q < 0 ? '' : path.slice(q + 1),
        headers: forwardHeaders(req), body, deadline: Date.now() + 3 * timeoutMs,
      }, this.#invoke);
      if (res.destroyed) return { status: 0, upstream: `nats:${reply.node ?? ''}`, unreachable: [], error: 'the client went away' };
      const head = req.method === 'HEAD';
      const withBody = !head && reply.status !== 204 && reply.status !== 304;
      const raw = backwardHeaders(reply.headers);
      const headers: string[] = [];
      for (let i = 0; i < raw.length; i += 2) {
        const lower = raw[i]!.toLowerCase();
        // a HEAD answer keeps the length the node announced; other lengths are the gateway's
        if (OWN_HEADERS.has(lower) && !(head && lower === 'content-length')) continue;
        headers.push(raw[i]!, raw[i + 1]!);
      }
      if (reply.node) headers.push('X-Capsule-Node', reply.node);
      if (withBody) headers.push('content-length', String(reply.body.byteLength));
      res.writeHead(reply.status, headers);
      res.end(withBody ? reply.body : undefined);
      return { status: reply.status, upstream: `nats:${reply.node ?? ''}`, unreachable: [] };
    } catch (e) {
      if (!(e instanceof FaasError)) {
        sendError(res, 502, 'NO_INSTANCE', `the request could not be sent over NATS: ${(e as Error).message}`);
        return { status: 502, unreachable: [], error: (e as Error).message };
      }
      if (e.status === 413) res.setHeader('connection', 'close'); // the unread body is not waited for
      sendError(res, e.status, e.code, e.message);
      return { status: e.status, upstream: 'nats:', unreachable: [], error: `${e.code}: ${e.message}` };
    }
  }
}
