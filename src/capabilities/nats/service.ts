/**
 * Main-thread side of the `nats` capability: the NATS connections host functions use.
 *
 * Guests run on worker threads; NATS connections live in the main thread (conventions.md §3).
 * An async host function asks the `nats` service (`ctx.service(NATS_SERVICE, request)`, the guest
 * suspended with JSPI meanwhile); the service answers with a {@link NatsServiceReply}.
 *
 * - `publish` / `request` use the connection of the NATS trigger (`capsule nats`), attached with
 *   {@link natsHub}(pool).attach(…). Without one they fail with a message that says so.
 * - `connectPublish` / `connectRequest` open an ad-hoc connection to the given server, use it
 *   once and close it (gen-1 `hostNatsConnectPublish` / `hostNatsConnectRequest`, any mode).
 *
 * The NATS client is imported lazily, so a runner that never uses NATS never loads it.
 */
import type { NatsConnection, MsgHdrs } from '@nats-io/transport-node';
import type { ServiceHost } from '../../base/services.ts';
import { poolHub } from '../service-calls.ts';
import { importOnFirstUse, TriggerConnection } from '../broker-functions.ts';

/** Name of the service (see `ServiceHost.provide`). */
export const NATS_SERVICE = 'nats';

/** What a host function asks the `nats` service. Byte strings are raw (UTF-8 for names). */
export type NatsServiceRequest =
  | { op: 'publish'; subject: string; data: Uint8Array; headers?: [string, string][] }
  | { op: 'request'; subject: string; data: Uint8Array; timeoutMs: number }
  | { op: 'connectPublish'; server: string; subject: string; data: Uint8Array }
  | { op: 'connectRequest'; server: string; subject: string; data: Uint8Array; timeoutMs: number };

/**
 * The answer: a value (reply payload; empty for publishes) or an error text. `timeout` marks a
 * request that got no reply in time (gen 2 answers `Ftimeout`, capsule-abi.md §8).
 */
export type NatsServiceReply = { ok: true; value: Uint8Array } | { ok: false; error: string; timeout?: boolean };

/** Longest wait for an ad-hoc connection (ms). */
const AD_HOC_CONNECT_MS = 5000;

/** The NATS client module, imported on first use. */
export const loadNats: () => Promise<typeof import('@nats-io/transport-node')> = importOnFirstUse(() => import('@nats-io/transport-node'));

/**
 * The NATS state of one worker pool: the trigger's connection (if any) and the service that
 * host functions reach.
 */
export class NatsHub extends TriggerConnection<NatsConnection> {
  // attach(connection, server): the trigger's connection (used by `publish`, `request`, `hostNatsReply`)

  /** Handles one service request. Never throws: failures are `{ ok: false }`. */
  async handle(req: NatsServiceRequest): Promise<NatsServiceReply> {
    try {
      switch (req.op) {
        case 'publish': {
          const nc = this.#need();
          const nats = await loadNats();
          let headers: MsgHdrs | undefined;
          if (req.headers?.length) {
            headers = nats.headers();
            for (const [k, v] of req.headers) headers.append(k, v);
          }
          nc.publish(req.subject, req.data, headers ? { headers } : undefined);
          return { ok: true, value: new Uint8Array(0) };
        }
        case 'request':
          return await request(this.#need(), req.subject, req.data, req.timeoutMs);
        case 'connectPublish':
          return await adHoc(req.server, async (nc) => {
            nc.publish(req.subject, req.data);
            await nc.flush();
            return { ok: true, value: new Uint8Array(0) };
          });
        case 'connectRequest':
          return await adHoc(req.server, (nc) => request(nc, req.subject, req.data, req.timeoutMs));
      }
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }

  #need(): NatsConnection {
    const connection = this.connection;
    if (!connection) {
      throw new Error('no NATS connection: this host function uses the connection of the NATS trigger (capsule nats --nats-server=… --subject=…)');
    }
    if (connection.isClosed()) throw new Error(`the NATS connection to ${this.server} is closed`);
    return connection;
  }
}

async function request(nc: NatsConnection, subject: string, data: Uint8Array, timeoutMs: number): Promise<NatsServiceReply> {
  const nats = await loadNats();
  try {
    const msg = await nc.request(subject, data, { timeout: Math.max(1, timeoutMs) });
    return { ok: true, value: msg.data.slice() };
  } catch (e) {
    if (e instanceof nats.errors.TimeoutError) return { ok: false, error: 'timeout', timeout: true };
    if (e instanceof nats.errors.RequestError && e.isNoResponders()) return { ok: false, error: `no responders on ${subject}` };
    if (e instanceof nats.errors.NoRespondersError) return { ok: false, error: `no responders on ${subject}` };
    throw e;
  }
}

async function adHoc(server: string, use: (nc: NatsConnection) => Promise<NatsServiceReply>): Promise<NatsServiceReply> {
  const nats = await loadNats();
  let nc: NatsConnection;
  try {
    nc = await nats.connect({ servers: server, reconnect: false, timeout: AD_HOC_CONNECT_MS, name: 'capsule-ad-hoc' });
  } catch (e) {
    return { ok: false, error: `cannot connect to NATS server ${server}: ${(e as Error).message}` };
  }
  try {
    return await use(nc);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/**
 * The NATS hub of a pool; the first call registers the `nats` service on the pool.
 * Safe to call more than once.
 */
export function natsHub(pool: ServiceHost): NatsHub {
  return poolHub(pool, NATS_SERVICE, () => new NatsHub());
}
