/**
 * HTTP over NATS request/reply between a gateway and the nodes serving a revision
 * (faas-cluster.md §1.4). The request travels as one message: `Capsule-Method`, `Capsule-Path`,
 * `Capsule-Query`, `Capsule-Deadline` (epoch ms) headers, the HTTP request headers with every
 * value, and the body as the payload; the answer carries `Capsule-Status`, `Capsule-Node`, the
 * response headers and the body. NATS gives each request to one random member of the revision's
 * queue group, so there is no membership list to keep.
 *
 * Errors on the gateway side: nobody subscribed → `502 NO_INSTANCE`; no answer in time → `504
 * TIMEOUT`; a body above the server's `max_payload` → `413 TOO_LARGE`. Retries (bounded, 50 ms
 * apart): on no-responders or a busy node for any method (the request did not run), on a
 * timeout only for GET/HEAD/OPTIONS.
 */
import type { MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../../observability/logger.ts';
import { FaasError } from '../shared/service.ts';

/** An HTTP request as a node receives it. */
export interface InvokeRequest {
  method: string;
  /** Path below the function route, starting with `/`. */
  path: string;
  /** Query string without `?` ('' when none). */
  query: string;
  /** Flat name/value list, every value (hop-by-hop headers already removed). */
  headers: string[];
  body: Uint8Array;
  /** When the gateway stops waiting (epoch ms). */
  deadline: number;
}

/** An HTTP response as the gateway gets it. */
export interface InvokeReply {
  status: number;
  /** Flat name/value list. */
  headers: string[];
  body: Uint8Array;
  /** Id of the node that answered. */
  node?: string;
}

const RESERVED = new Set(['capsule-method', 'capsule-path', 'capsule-query', 'capsule-deadline', 'capsule-status', 'capsule-node', 'capsule-busy']);
const RETRY_ON_TIMEOUT = new Set(['GET', 'HEAD', 'OPTIONS']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * The NATS client module, imported once: an `await import()` of the loaded module still took
 * ~6–9 µs per call (module namespace promise), on every proxied `nats:` request.
 */
let natsModule: Promise<typeof import('@nats-io/transport-node')> | undefined;
const loadNats = () => (natsModule ??= import('@nats-io/transport-node'));

function toHeaders(nats: typeof import('@nats-io/transport-node'), fixed: [string, string][], flat: string[]): MsgHdrs {
  const h = nats.headers();
  for (const [k, v] of fixed) h.set(k, v);
  for (let i = 0; i < flat.length; i += 2) {
    if (!RESERVED.has(flat[i]!.toLowerCase())) h.append(flat[i]!, flat[i + 1]!);
  }
  return h;
}

function fromHeaders(h: MsgHdrs | undefined): string[] {
  const out: string[] = [];
  if (!h) return out;
  for (const [k, values] of h) {
    if (RESERVED.has(k.toLowerCase())) continue;
    for (const v of values) out.push(k, v);
  }
  return out;
}

/** Options of {@link invoke}. */
export interface InvokeOptions {
  /** Longest wait for an answer per attempt, ms. */
  timeoutMs: number;
  /** Further attempts after a retryable failure (default 2). */
  retries?: number;
  /** Counts each retry (metric `capsule_lattice_retries_total`). */
  onRetry?: (reason: 'no-responders' | 'busy' | 'timeout') => void;
}

/**
 * Sends an HTTP request to the revision's queue group and waits for one node's answer.
 * @throws FaasError 502 NO_INSTANCE, 504 TIMEOUT, 413 TOO_LARGE, 503 BUSY (every attempt busy)
 */
export async function invoke(nc: NatsConnection, subject: string, req: InvokeRequest, o: InvokeOptions): Promise<InvokeReply> {
  const nats = await loadNats();
  const max = nc.info?.max_payload ?? 1024 * 1024;
  if (req.body.byteLength > max - 64 * 1024) {
    throw new FaasError(413, 'TOO_LARGE', `the body (${req.body.byteLength} bytes) is above what the NATS cluster carries (max_payload ${max} bytes, less headers)`);
  }
  const headers = toHeaders(nats, [['Capsule-Method', req.method], ['Capsule-Path', req.path], ['Capsule-Query', req.query], ['Capsule-Deadline', String(req.deadline)]], req.headers);
  const retries = o.retries ?? 2;
  for (let attempt = 0; ; attempt++) {
    let reason: 'no-responders' | 'busy' | 'timeout';
    try {
      const m = await nc.request(subject, req.body, { timeout: o.timeoutMs, headers });
      if (m.headers?.get('Capsule-Busy') === '1') {
        reason = 'busy';
      } else {
        return { status: Number(m.headers?.get('Capsule-Status') || 200), headers: fromHeaders(m.headers), body: m.data, node: m.headers?.get('Capsule-Node') || undefined };
      }
    } catch (e) {
      const noResponders = (e instanceof nats.errors.RequestError && e.isNoResponders()) || e instanceof nats.errors.NoRespondersError;
      if (noResponders) reason = 'no-responders';
      else if (e instanceof nats.errors.TimeoutError) reason = 'timeout';
      else throw new FaasError(502, 'NO_INSTANCE', `the request could not be sent over NATS: ${(e as Error).message}`);
    }
    const retryable = reason !== 'timeout' || RETRY_ON_TIMEOUT.has(req.method);
    if (attempt >= retries || !retryable || Date.now() + 50 >= req.deadline) {
      if (reason === 'timeout') throw new FaasError(504, 'TIMEOUT', `no answer within ${o.timeoutMs} ms`);
      if (reason === 'busy') throw new FaasError(503, 'BUSY', 'every node serving this revision is busy');
      throw new FaasError(502, 'NO_INSTANCE', 'no node serves this revision');
    }
    o.onRetry?.(reason);
    await sleep(50);
  }
}

/** Options of {@link serveInvocations}. */
export interface ServeInvocationsOptions {
  /** Calls handled at once by this node for this subscription; more → an immediate "busy" answer. */
  maxInflight: number;
  /** This node's id, returned in `Capsule-Node`. */
  nodeId: string;
  logger: Logger;
  /** Queue group (nodes serving the same revision share its requests); none for node-direct subjects. */
  queue?: string;
  /**
   * A cap shared by several subscriptions (a node's in-flight cap over every revision it serves):
   * when given, a message is answered "busy" once `gate.count` reached `gate.max`, besides `maxInflight`.
   */
  gate?: InflightGate;
}

/** A count of calls in progress shared by subscriptions, with its cap (see {@link ServeInvocationsOptions.gate}). */
export interface InflightGate {
  count: number;
  readonly max: number;
}

/** A node's subscription for one revision. */
export interface InvocationService {
  /** Calls in progress. */
  readonly inflight: number;
  /** Unsubscribes after the calls in progress answered (drain). */
  stop(): Promise<void>;
}

/**
 * Serves the HTTP requests of one subject on a node: each message becomes an {@link InvokeRequest}
 * for `handler`, whose reply (or a 500 JSON when it throws) is sent back.
 */
export async function serveInvocations(nc: NatsConnection, subject: string, handler: (req: InvokeRequest) => Promise<InvokeReply>, o: ServeInvocationsOptions): Promise<InvocationService> {
  const nats = await loadNats();
  let inflight = 0;
  const answer = (m: { respond(data?: Uint8Array, opts?: { headers?: MsgHdrs }): boolean }, r: InvokeReply) =>
    m.respond(r.body, { headers: toHeaders(nats, [['Capsule-Status', String(r.status)], ['Capsule-Node', o.nodeId]], r.headers) });
  const sub: Subscription = nc.subscribe(subject, {
    queue: o.queue,
    callback: (_err, m) => {
      if (!m.reply) return;
      const gate = o.gate;
      if (inflight >= o.maxInflight || (gate && gate.count >= gate.max)) {
        const h = nats.headers();
        h.set('Capsule-Busy', '1');
        h.set('Capsule-Status', '503');
        h.set('Capsule-Node', o.nodeId);
        m.respond(new Uint8Array(0), { headers: h });
        return;
      }
      inflight++;
      if (gate) gate.count++;
      const h = m.headers;
      const req: InvokeRequest = {
        method: h?.get('Capsule-Method') || 'GET',
        path: h?.get('Capsule-Path') || '/',
        query: h?.get('Capsule-Query') ?? '',
        headers: fromHeaders(h),
        body: m.data,
        deadline: Number(h?.get('Capsule-Deadline')) || Date.now() + 30_000,
      };
      handler(req).then((r) => answer(m, r), (e: unknown) => {
        o.logger.error({ subject, err: (e as Error).message }, 'invocation failed');
        const body = new TextEncoder().encode(JSON.stringify({ code: 'ERROR', message: (e as Error).message }));
        answer(m, { status: 500, headers: ['content-type', 'application/json; charset=utf-8'], body });
      }).finally(() => {
        inflight--;
        if (gate) gate.count--;
      });
    },
  });
  return {
    get inflight() {
      return inflight;
    },
    async stop() {
      await sub.drain();
      while (inflight > 0) await sleep(20);
    },
  };
}
