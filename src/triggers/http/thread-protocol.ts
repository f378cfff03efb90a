/**
 * Messages and shared memory between `capsule serve --http-threads`' main thread (threads.ts,
 * the supervisor) and its HTTP threads (thread.ts). Kept apart from both so that a thread loads
 * none of the supervisor's modules.
 */
import { METHODS, type IncomingHttpHeaders } from 'node:http';
import type { WorkerModule } from '../../engine/instance.ts';
import type { HttpTriggerOptions } from './server.ts';
import type { LogFormat, LogLevel } from '../../observability/log-levels.ts';

/** A module version as a thread receives it: its id in the main thread's pool, the module, its exported function names. */
export interface ThreadVersion {
  id: number;
  module: WorkerModule;
  exports: string[];
}

/** The HTTP options a thread listens with (the TLS pair as bytes: they cross the thread boundary). */
export type ThreadHttpOptions = Omit<HttpTriggerOptions, 'logger' | 'reload' | 'tls' | 'reusePort' | 'stopAfterMs'> & {
  tls?: { cert: Uint8Array; key: Uint8Array };
};

/** A thread's `workerData`. */
export interface ThreadInit {
  /** See `threadSlot`. */
  slot: SharedArrayBuffer;
  /** Its number (0, 1, …), kept by the thread that replaces it: the `thread` field of its log lines. */
  index: number;
  /** HTTP threads of the server (`/capsule/ready` says how many). */
  threads: number;
  version: ThreadVersion;
  /** Per-call deadline, ms (`--timeout`). */
  timeoutMs: number;
  http: ThreadHttpOptions;
  log: { level: LogLevel; format: LogFormat };
  /** `/load-wasm-module` when the server reloads; undefined: that path reaches the guest. */
  reloadRoute?: string;
}

/** Supervisor → thread. */
export type ToThread =
  /** A new version serves every call that starts from now; the old one is retired once its calls are done. */
  | { t: 'swap'; version: ThreadVersion }
  /** Asks for the thread's metrics (prom-client JSON), answered by a `reply`. */
  | { t: 'metrics'; id: number }
  /** The answer to a thread's `ask`. */
  | { t: 'reply'; id: number; value?: unknown; error?: string }
  /** Graceful shutdown: stop accepting, finish the calls in flight (the grace), close; then `stopped`. */
  | { t: 'stop'; reason: string };

/** What a thread asks the main thread. */
export type ThreadAsk =
  | { service: string; request: unknown; moduleId: number }
  | { scrape: true }
  | { reload: { headers: IncomingHttpHeaders; remoteAddress: string | undefined; body: { text: string } | { error: string } } };

/** Thread → supervisor. */
export type FromThread =
  | { t: 'listening'; port: number }
  | { t: 'listen-failed'; code: string; message: string }
  | { t: 'ask'; id: number; what: ThreadAsk }
  | { t: 'reply'; id: number; value: unknown }
  /** The version of that id has no call left in this thread and was let go. */
  | { t: 'retired'; id: number }
  | { t: 'stopped' };

/** The shared memory of one thread, as views. */
export interface ThreadSlot {
  /** Number of the oldest call running now (0 = none; several run at once when they yield, thread.ts). */
  running: Int32Array;
  /** Connections open on the thread now. */
  connections: Int32Array;
  /** When the supervisor stops the thread if that call still runs (its deadline, + METER_GRACE_MS when metered), ms (Date.now clock). */
  deadline: Float64Array;
  /**
   * The file descriptor of that call's connection when the supervisor may answer it
   * itself at the deadline (plain HTTP, nothing else pending on it), else -1.
   */
  fd: Int32Array;
  /** Bytes of that call's request id (`X-Request-Id`) in `requestId`, when `fd` is not -1 (0: none). */
  requestIdLength: Int32Array;
  /** That call's request id, ASCII (`REQUEST_ID_BYTES` at most: an incoming id is 200 at most, server.ts). */
  requestId: Uint8Array;
  /** That call's HTTP method, as 1 + its index in node:http `METHODS` (0: unknown). */
  method: Uint8Array;
}

/**
 * How long after its deadline a call of a metered module (`WorkerModule.metered`) may still run
 * before the supervisor stops its thread, ms: the meter stops guest code within a fraction of a
 * millisecond; this is for what it cannot reach (a host function that waits).
 */
export const METER_GRACE_MS = 1000;

/** `running` once the supervisor has taken the call at its deadline: the thread must not answer it. */
export const TAKEN = -1;

/** Room for a request id in a thread's shared memory, bytes. */
const REQUEST_ID_BYTES = 200;

/** Bytes of a thread's shared memory. */
export const THREAD_SLOT_BYTES = 24 + REQUEST_ID_BYTES + 1;

/**
 * The views of a thread's shared memory: int32 at 0 the running call's number, int32 at 4 the
 * open connections, float64 at 8 its deadline, int32 at 16 its connection's descriptor, int32
 * at 20 and bytes from 24 its request id, then a byte its method (`publishRequest`). The thread
 * writes these before the number (an atomic store), so a reader that sees a number sees its
 * deadline, descriptor, id and method. The thread ends a call by swapping its number back to 0
 * (then publishes the next oldest running call, if any, the same way), the supervisor takes one
 * at its deadline by swapping it to TAKEN: whoever swaps first answers. The supervisor reads
 * the call's descriptor, id and method before its swap: once the call is taken, the thread may
 * publish its next one.
 */
export function threadSlot(buffer: SharedArrayBuffer): ThreadSlot {
  return {
    running: new Int32Array(buffer, 0, 1),
    connections: new Int32Array(buffer, 4, 1),
    deadline: new Float64Array(buffer, 8, 1),
    fd: new Int32Array(buffer, 16, 1),
    requestIdLength: new Int32Array(buffer, 20, 1),
    requestId: new Uint8Array(buffer, 24, REQUEST_ID_BYTES),
    method: new Uint8Array(buffer, 24 + REQUEST_ID_BYTES, 1),
  };
}

const utf8 = new TextEncoder();
const METHOD_CODES = new Map(METHODS.map((m, i) => [m, i + 1]));
/** A request id the supervisor writes in its 504's head: printable ASCII, no space (as server.ts accepts one). */
const HEADER_SAFE_ID = /^[\x21-\x7e]+$/;

/**
 * Writes a call's request id and method in `slot` (before its number), so that the supervisor's
 * 504 carries the id and is counted under the method; an id that does not fit is left out.
 */
export function publishRequest(slot: ThreadSlot, id: string | undefined, method: string | undefined): void {
  const { read, written } = id === undefined ? { read: -1, written: 0 } : utf8.encodeInto(id, slot.requestId);
  slot.requestIdLength[0] = read === id?.length ? written : 0;
  slot.method[0] = (method !== undefined && METHOD_CODES.get(method)) || 0;
}

/**
 * The request id and method ('' when unknown) of the call in `slot` (`publishRequest`); the id
 * is undefined when it has none or one that is not printable ASCII (not safe in a header).
 */
export function publishedRequest(slot: ThreadSlot): { requestId: string | undefined; method: string } {
  const n = slot.requestIdLength[0]!;
  const id = n > 0 ? Buffer.from(slot.requestId.buffer, slot.requestId.byteOffset, n).toString('latin1') : '';
  return { requestId: HEADER_SAFE_ID.test(id) ? id : undefined, method: METHODS[slot.method[0]! - 1] ?? '' };
}
