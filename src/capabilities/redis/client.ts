/**
 * The Redis client of the process (main thread; capsule-abi.md §5.7 "one lazily created client
 * per process"; one per distinct server URL when functions name different servers), with the
 * official `redis` npm client, loaded on first use.
 *
 * Failure policy (capsule-abi.md §7.3): nothing here throws past the service boundary as
 * anything but an Error with a message; the guest gets an `F` / `[ERR][0]:` result.
 * - The first use connects and waits for that first attempt (up to `CONNECT_WAIT_MS`). When it
 *   fails, that call and every later one fail at once with the reason (`connect ECONNREFUSED …`)
 *   while the client keeps trying in the background; the first call after it is back succeeds.
 * - Lost connections are re-established in the background the same way (back-off up to 1 s);
 *   while the client is not connected, commands fail at once (no offline queue: a guest never
 *   waits for a server that is down).
 * - A command that gets no answer within `COMMAND_TIMEOUT_MS` fails.
 * - Nothing here keeps the process alive: sockets and retry timers are unref'd, so a program
 *   that embeds Capsule exits once its own work is done, even while a server is unreachable.
 *   (node-redis's own reconnection waits on a ref'd timer; it is turned off and done here.)
 */
import { redact } from './config.ts';
import type { RedisSettings } from '../../base/settings.ts';
import type { KeyValueRequest } from '../types.ts';

/** How long the first use of a server waits for its connection, ms. */
export const CONNECT_WAIT_MS = 2000;
/** How long a command may wait for its reply, ms. */
export const COMMAND_TIMEOUT_MS = 5000;

/** An operation of the Redis host functions (service `redis`). */
export type RedisRequest = KeyValueRequest<'incrby'>;

/** Replies: `set` → `OK`, `get` → the value or null (`nil`), `del` → keys removed, `keys` → names, `incrby` → the new value in decimal. */
export type RedisReply = Uint8Array | string | number | string[] | null;

/** The part of the node-redis client used here. */
interface RedisClientLike {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  unref(): void;
  destroy(): void;
  sendCommand<T>(args: readonly (string | Buffer)[], options?: { typeMapping?: Record<number, unknown> }): Promise<T>;
}

/** One server: its current client (a new one per connection attempt), and how the last one went. */
interface Entry {
  settings: RedisSettings;
  client?: RedisClientLike;
  /** Settles when the first connection attempt has succeeded or failed. */
  firstAttempt: Promise<void>;
  connectedOnce: boolean;
  lastError?: string;
  /** Failed attempts in a row (the back-off's exponent). */
  failures: number;
  retry?: NodeJS.Timeout;
  closed: boolean;
}

const clients = new Map<string, Entry>();
/** The client module, once loaded. */
let redisModule: typeof import('redis') | undefined;
const BLOB_STRING = 36; // RESP_TYPES.BLOB_STRING: bulk strings as Buffers (binary-safe GET)

/** Back-off between connection attempts, ms. */
const retryDelay = (failures: number) => Math.min(50 * 2 ** Math.min(failures, 10), 1000);

/** Starts one connection attempt; on failure or a later loss, schedules the next (unref'd). */
function attempt(e: Entry): Promise<void> {
  const client = redisModule!.createClient({
    url: e.settings.url,
    disableOfflineQueue: true,
    socket: { connectTimeout: CONNECT_WAIT_MS, reconnectStrategy: false },
  }) as unknown as RedisClientLike;
  e.client = client;
  client.on('error', (err) => {
    e.lastError = (err as Error)?.message || String(err);
  });
  client.on('ready', () => {
    e.connectedOnce = true;
    e.failures = 0;
    e.lastError = undefined;
  });
  // reconnectStrategy false: a lost connection ends this client; the next attempt is ours
  client.on('terminated', () => scheduleRetry(e, client));
  client.unref(); // never keeps the process alive
  return client.connect().then(() => undefined, (err: unknown) => {
    e.lastError = (err as Error)?.message || e.lastError || String(err);
    scheduleRetry(e, client);
  });
}

function scheduleRetry(e: Entry, client: RedisClientLike): void {
  if (e.closed || e.client !== client || e.retry) return;
  try {
    client.destroy();
  } catch {
    // already closed
  }
  e.retry = setTimeout(() => {
    e.retry = undefined;
    if (!e.closed) void attempt(e);
  }, retryDelay(e.failures++));
  e.retry.unref();
}

async function entryFor(settings: RedisSettings): Promise<Entry> {
  let entry = clients.get(settings.url);
  if (entry) return entry;
  redisModule ??= await import('redis');
  entry = clients.get(settings.url); // another request may have created it meanwhile
  if (entry) return entry;
  const e: Entry = { settings, firstAttempt: Promise.resolve(), connectedOnce: false, failures: 0, closed: false };
  clients.set(settings.url, e);
  e.firstAttempt = attempt(e);
  return e;
}

/** The server, for messages: its URL without the password, and where it was configured. */
function where(settings: RedisSettings): string {
  return `${redact(settings.url)} (${settings.origin || 'option redis.url'})`;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A connected client for `settings`, or an Error saying why there is none. */
async function ready(settings: RedisSettings): Promise<RedisClientLike> {
  const e = await entryFor(settings);
  if (e.client?.isReady) return e.client;
  if (!e.connectedOnce) {
    // only the first attempt is waited for; afterwards a server that never answered fails at once
    await withTimeout(e.firstAttempt, CONNECT_WAIT_MS, 'timeout').catch(() => undefined);
    if (e.client?.isReady) return e.client;
    throw new Error(`redis: cannot connect to ${where(settings)}: ${e.lastError ?? `no answer within ${CONNECT_WAIT_MS} ms`}`);
  }
  throw new Error(`redis: the connection to ${where(settings)} is lost (${e.lastError ?? 'reconnecting'}); reconnecting`);
}

/**
 * Runs one request against the server of `settings`.
 * @throws Error with a message for the guest (`redis: …`, or the server's error reply)
 */
export async function redisCommand(settings: RedisSettings, req: RedisRequest): Promise<RedisReply> {
  const client = await ready(settings);
  const run = async (): Promise<RedisReply> => {
    switch (req.op) {
      case 'set':
        return client.sendCommand<string>(['SET', req.key, Buffer.from(req.value.buffer, req.value.byteOffset, req.value.byteLength)]);
      case 'get': {
        const v = await client.sendCommand<Buffer | null>(['GET', req.key], { typeMapping: { [BLOB_STRING]: Buffer } });
        return v === null ? null : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      }
      case 'del':
        return client.sendCommand<number>(['DEL', req.key]);
      case 'keys':
        return client.sendCommand<string[]>(['KEYS', req.pattern]);
      case 'incrby':
        return String(await client.sendCommand<number | string>(['INCRBY', req.key, req.delta]));
      default:
        throw new Error(`unknown redis operation ${(req as { op: string }).op}`);
    }
  };
  try {
    return await withTimeout(run(), COMMAND_TIMEOUT_MS, `redis: no answer from ${where(settings)} within ${COMMAND_TIMEOUT_MS} ms`);
  } catch (e) {
    const msg = (e as Error)?.message ?? String(e);
    if (/^redis: /.test(msg)) throw e;
    if (redisModule && e instanceof redisModule.ErrorReply) throw new Error(msg); // the server's own error text (WRONGTYPE …), as go-redis gave it
    throw new Error(`redis: ${msg} (${redact(settings.url)})`);
  }
}

/** Closes every client and stops their reconnection (tests and embedders; the CLI just exits). */
export function closeRedisClients(): void {
  for (const e of clients.values()) {
    e.closed = true;
    if (e.retry) clearTimeout(e.retry);
    try {
      e.client?.destroy();
    } catch {
      // already closed
    }
  }
  clients.clear();
}
