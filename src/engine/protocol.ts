/**
 * Messages between the pool (main thread) and its workers.
 *
 * Calls and results travel in batches, and the common case travels packed: an HTTP request
 * (without CGI route data) or an HTTP response (without logs or failure) becomes a short array
 * whose strings are joined by NUL into one string beside the body bytes. The structured clone
 * copies that much faster than an object graph with an array per header: measured under the
 * bench's load, packing the calls took 1.5 µs of main-thread and 1.4 µs of worker CPU off each
 * request. Anything else, and any item with a NUL inside one of its strings, travels as is.
 */
import type { HttpRequestInput, HttpResponseOutput, InvocationInput, InvocationMeta, InvocationOutput } from '../base/invocation.ts';
import type { CallError, CallLogs, WorkerModule } from './instance.ts';
import type { LoadedModule } from './load.ts';
import type { FunctionSettings } from '../base/settings.ts';

export type ToWorker =
  /** `warm`: warm the module up before its first call (`ModuleInstances.warm`; the worker answers `warm`). */
  | { t: 'load'; moduleId: number; module: WorkerModule; warm?: boolean }
  | { t: 'unload'; moduleId: number }
  | { t: 'calls'; calls: (WorkerCall | PackedCall)[] }
  | { t: 'service-reply'; id: number; value?: unknown; error?: string };

/** One call in a batch (calls made in the same event-loop turn travel in one message). */
export interface WorkerCall {
  id: number;
  moduleId: number;
  /**
   * Position of the call among those sent to this worker (1, 2, …, wrapping as an int32). The
   * worker starts it only if it can move the shared "last started" counter from `seq - 1` to
   * `seq`; the pool takes unstarted calls back by setting that counter to the last seq it sent
   * (see WorkerPool's withdraw).
   */
  seq: number;
  /**
   * Deadline, ms since the epoch (`Date.now()` clock): a call reached after it is not run.
   * Infinity for a call accepted before the pool's first worker was up (the pool then enforces it).
   */
  deadline: number;
  input: InvocationInput;
  meta: InvocationMeta;
}

/**
 * Results travel in batches too (flushed before the worker starts a guest, and when its queue
 * is empty). `ready`: the worker has loaded its code (sent once, right after it starts).
 * `warm`: the warm-up of a module loaded with `warm` is over (whatever it did).
 */
export type FromWorker =
  | { t: 'ready' }
  | { t: 'warm'; moduleId: number }
  | { t: 'done'; results: (CallDone | PackedDone)[] }
  | { t: 'service'; id: number; moduleId: number; name: string; request: unknown };

export interface CallDone {
  id: number;
  /** The call waited past its deadline in the worker's queue and was not run. */
  expired?: true;
  output?: InvocationOutput;
  error?: CallError;
  logs?: CallLogs;
}

/** An HTTP call: id, module id, seq, deadline, NUL-joined strings (see `packCall`), body. */
export type PackedCall = [number, number, number, number, string, Uint8Array];
/** An HTTP result: id, NUL-joined status and header names and values, body. */
export type PackedDone = [number, string, Uint8Array];

const NUL = '\u0000';

/** `parts[from..]` read as header name, value, name, value… */
function pairsFrom(parts: string[], from: number): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = from; i < parts.length; i += 2) pairs.push([parts[i]!, parts[i + 1]!]);
  return pairs;
}

/** Joins `parts` with NUL, or undefined when one of them holds a NUL itself. */
function join(parts: string[]): string | undefined {
  for (const p of parts) if (p.includes(NUL)) return undefined;
  return parts.join(NUL);
}

/** A call as it is posted: packed when it is a plain HTTP request (see the module comment). */
export function packCall(call: WorkerCall): WorkerCall | PackedCall {
  const { input: i, meta: m } = call;
  if (i.type !== 'http' || i.cgi !== undefined || m.exit !== undefined || i.httpVersion === '' || m.requestId === '') return call;
  const port = m.trigger?.['httpPort'];
  if (m.trigger !== undefined && (Object.keys(m.trigger).length !== 1 || typeof port !== 'number')) return call;
  const parts = [i.method, i.url, i.remoteAddress, String(i.remotePort), i.httpVersion ?? '', m.requestId ?? '', port === undefined ? '' : String(port)];
  for (const [k, v] of i.headers) parts.push(k, v);
  const text = join(parts);
  return text === undefined ? call : [call.id, call.moduleId, call.seq, call.deadline, text, i.body];
}

/** The call `packCall` packed (or the call itself). */
export function unpackCall(item: WorkerCall | PackedCall): WorkerCall {
  if (!Array.isArray(item)) return item;
  const [id, moduleId, seq, deadline, text, body] = item;
  const p = text.split(NUL);
  const input: HttpRequestInput = {
    type: 'http', method: p[0]!, url: p[1]!, headers: pairsFrom(p, 7), body, remoteAddress: p[2]!, remotePort: Number(p[3]), httpVersion: p[4] || undefined,
  };
  const meta: InvocationMeta = { requestId: p[5] || undefined, trigger: p[6] ? { httpPort: Number(p[6]) } : undefined };
  return { id, moduleId, seq, deadline, input, meta };
}

/** A result as it is posted: packed when it is a plain HTTP response (see the module comment). */
export function packDone(done: CallDone): CallDone | PackedDone {
  const o = done.output;
  if (o === undefined || o.type !== 'http' || o.failure !== undefined || done.error !== undefined || done.logs !== undefined) return done;
  const parts = [String(o.status)];
  for (const [k, v] of o.headers) parts.push(k, v);
  const text = join(parts);
  return text === undefined ? done : [done.id, text, o.body];
}

/** The result `packDone` packed (or the result itself). */
export function unpackDone(item: CallDone | PackedDone): CallDone {
  if (!Array.isArray(item)) return item;
  const [id, text, body] = item;
  const p = text.split(NUL);
  const output: HttpResponseOutput = { type: 'http', status: Number(p[0]), headers: pairsFrom(p, 1), body };
  return { id, output };
}

/**
 * Requests a thread sends to the main thread, each answered by a reply carrying its id (a worker's
 * host-service calls, an HTTP thread's asks): {@link PendingReplies.send} posts one and resolves
 * with the reply's value, or rejects with an Error of the reply's `error` text.
 */
export class PendingReplies {
  #next = 1;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();

  /** Posts a request under a new id (`post` sends the message); settles with the reply to that id. */
  send(post: (id: number) => void): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      post(id);
    });
  }

  /** Settles the request `reply` answers (a reply to no pending request is ignored). */
  settle(reply: { id: number; value?: unknown; error?: string }): void {
    const pending = this.#pending.get(reply.id);
    this.#pending.delete(reply.id);
    if (reply.error !== undefined) pending?.reject(new Error(reply.error));
    else pending?.resolve(reply.value);
  }
}

/**
 * What `ModuleInstances` takes of a loaded module and its settings: what the pool sends its
 * workers and what the inline executor instantiates in its own thread.
 */
export function workerModuleOf(m: LoadedModule, settings: FunctionSettings): WorkerModule {
  return {
    name: m.name, compiled: m.compiled, detection: m.detection, hostImports: m.hostImports,
    pooledMemory: m.pooledMemory, importedMemory: m.importedMemory, settings, linked: m.linked,
    snapshot: m.snapshot?.ok ? m.snapshot.plan : undefined,
    // the start section (id 8) and linked modules run guest code at instantiation
    instantiationRunsCode: (m.linked?.length ?? 0) > 0 || m.parsed.sections.some((s) => s.id === 8),
  };
}
