/**
 * The worker pool (main thread). Guests run on worker threads so that a call that overruns its
 * deadline can be stopped by terminating its worker; the worker is then replaced, the calls
 * queued behind the killed one are re-dispatched (never failed), and the process keeps serving
 * (conventions.md §3).
 *
 * Calls are pipelined: up to `pipeline` calls are sent to a worker ahead (a worker round trip
 * costs ~110 µs, a pipelined message 3–4 µs). Each worker publishes the id and start time of
 * the call it runs in a SharedArrayBuffer, which a watchdog timer reads.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { EventEmitter } from 'node:events';
import { CapsuleError } from './errors.ts';
import type { InvocationInput, InvocationMeta, InvocationOutput } from './invocation.ts';
import type { CallLogs, FunctionSettings, WorkerModule } from './runtime.ts';
import { packCall, unpackDone, type FromWorker, type ToWorker, type WorkerCall } from './protocol.ts';
import type { LoadedModule } from './load.ts';

export interface PoolOptions {
  /** Number of worker threads (default: CPU cores). */
  workers?: number;
  /** Calls sent ahead to one worker (default 2). */
  pipeline?: number;
  /** Calls waiting for a worker before `call` rejects with OVERLOADED (default 10 000). */
  maxQueue?: number;
}

/** The result of a call: the output, and what the guest printed (stdio = capture). */
export interface CallResult {
  output: InvocationOutput;
  logs?: CallLogs;
}

/** A main-thread service for async host functions (see `WorkerPool.provide`). */
export type ServiceHandler = (request: unknown, caller: PoolModule) => unknown;

/** A module registered in the pool. */
export interface PoolModule {
  readonly id: number;
  readonly module: LoadedModule;
  readonly settings: FunctionSettings;
}

export interface CallOptions {
  /** Deadline for the guest's run, ms (counted from when a worker starts it). */
  timeoutMs: number;
  meta?: InvocationMeta;
}

interface PendingCall {
  id: number;
  moduleId: number;
  input: InvocationInput;
  meta: InvocationMeta;
  timeoutMs: number;
  /** Times it was re-dispatched because its worker died before answering. */
  retries: number;
  resolve: (r: CallResult) => void;
  reject: (e: CapsuleError & { logs?: CallLogs }) => void;
}

interface Slot {
  worker: Worker;
  /** Calls sent and not answered, by id, in the order they were sent. */
  inflight: Map<number, PendingCall>;
  /** Calls to send at the end of this event-loop turn (one message per turn). */
  outbox: WorkerCall[];
  running: Int32Array;
  started: Float64Array;
  dead: boolean;
}

const WORKER_URL = new URL('./worker.ts', import.meta.url);
/** Re-dispatches of one call after worker crashes before it fails (a deadline kill does not count). */
const MAX_RETRIES = 2;

/**
 * Events: `timeout` (call id, module name), `worker-exit` (error message) — for metrics/logs.
 */
export class WorkerPool extends EventEmitter {
  readonly size: number;
  readonly #pipeline: number;
  readonly #maxQueue: number;
  readonly #slots: Slot[] = [];
  readonly #queue: PendingCall[] = [];
  readonly #modules = new Map<number, PoolModule>();
  readonly #services = new Map<string, ServiceHandler>();
  #nextCall = 1;
  #nextModule = 1;
  #watchdog: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: PoolOptions = {}) {
    super();
    this.size = Math.max(1, options.workers ?? availableParallelism());
    this.#pipeline = Math.max(1, options.pipeline ?? 32);
    this.#maxQueue = options.maxQueue ?? 10_000;
    for (let i = 0; i < this.size; i++) this.#slots.push(this.#spawn());
  }

  /** Workers running a call now (for the busy-workers gauge). */
  get busy(): number {
    return this.#slots.filter((s) => s.inflight.size > 0).length;
  }

  /** Calls waiting for a worker. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Sends a compiled module to every worker (and to the ones that replace them). */
  register(module: LoadedModule, settings: FunctionSettings): PoolModule {
    const entry: PoolModule = { id: this.#nextModule++, module, settings };
    this.#modules.set(entry.id, entry);
    for (const s of this.#slots) this.#post(s, { t: 'load', moduleId: entry.id, module: this.#workerModule(entry) });
    return entry;
  }

  /** Forgets a module (calls already sent still finish). */
  unregister(entry: PoolModule): void {
    this.#modules.delete(entry.id);
    for (const s of this.#slots) this.#post(s, { t: 'unload', moduleId: entry.id });
  }

  /**
   * Runs one invocation on some worker.
   * @throws CapsuleError with the code the worker reported (TRAP, TIMEOUT, MEMORY, BAD_RESULT…);
   *   OVERLOADED when the queue is full. The error carries `logs` when the guest printed.
   */
  call(entry: PoolModule, input: InvocationInput, options: CallOptions): Promise<CallResult> {
    if (this.#closed) return Promise.reject(new CapsuleError('OVERLOADED', 'the runner is shutting down'));
    return new Promise<CallResult>((resolve, reject) => {
      const call: PendingCall = {
        id: this.#nextCall, moduleId: entry.id, input, meta: options.meta ?? {}, timeoutMs: options.timeoutMs, retries: 0, resolve, reject,
      };
      this.#nextCall = this.#nextCall >= 0x7ffffffe ? 1 : this.#nextCall + 1;
      const slot = this.#pick();
      if (slot) this.#send(slot, call);
      else if (this.#queue.length >= this.#maxQueue) reject(new CapsuleError('OVERLOADED', `too many calls waiting (${this.#queue.length})`));
      else this.#queue.push(call);
      this.#arm();
    });
  }

  /** Terminates every worker; pending calls fail. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#watchdog) clearInterval(this.#watchdog);
    const err = new CapsuleError('OVERLOADED', 'the runner is shutting down');
    for (const c of this.#queue.splice(0)) c.reject(err);
    await Promise.all(this.#slots.map(async (s) => {
      s.dead = true;
      for (const c of s.inflight.values()) c.reject(err);
      s.inflight.clear();
      await s.worker.terminate();
    }));
  }

  #workerModule(entry: PoolModule): WorkerModule {
    const m = entry.module;
    return {
      name: m.name, compiled: m.compiled, detection: m.detection, hostImports: m.hostImports,
      pooledMemory: m.pooledMemory, importedMemory: m.importedMemory, settings: entry.settings,
      snapshot: m.snapshot?.ok ? m.snapshot.plan : undefined,
    };
  }

  #spawn(): Slot {
    const shared = new SharedArrayBuffer(16);
    const worker = new Worker(WORKER_URL, { workerData: { slot: shared } });
    const slot: Slot = { worker, inflight: new Map(), outbox: [], running: new Int32Array(shared, 0, 1), started: new Float64Array(shared, 8, 1), dead: false };
    worker.unref();
    worker.on('message', (msg: FromWorker) => this.#onMessage(slot, msg));
    worker.on('error', (e) => this.#replace(slot, new CapsuleError('INTERNAL', `worker failed: ${e.message}`)));
    worker.on('exit', (code) => {
      if (!slot.dead) this.#replace(slot, new CapsuleError('INTERNAL', `worker exited with code ${code}`));
    });
    for (const entry of this.#modules.values()) this.#post(slot, { t: 'load', moduleId: entry.id, module: this.#workerModule(entry) });
    return slot;
  }

  #post(slot: Slot, msg: ToWorker): void {
    if (!slot.dead) slot.worker.postMessage(msg);
  }

  #pick(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (s.dead || s.inflight.size >= this.#pipeline) continue;
      if (!best || s.inflight.size < best.inflight.size) best = s;
      if (s.inflight.size === 0) break;
    }
    return best;
  }

  #send(slot: Slot, call: PendingCall): void {
    slot.inflight.set(call.id, call);
    if (slot.inflight.size === 1) slot.worker.ref();
    slot.outbox.push({ id: call.id, moduleId: call.moduleId, input: call.input, meta: call.meta });
    if (slot.outbox.length === 1) setImmediate(() => this.#flush(slot));
  }

  #flush(slot: Slot): void {
    if (slot.dead || slot.outbox.length === 0) return;
    slot.worker.postMessage({ t: 'calls', calls: slot.outbox.splice(0).map(packCall) } satisfies ToWorker);
  }

  /**
   * Registers a main-thread service that async host functions reach with `ctx.service(name, req)`.
   * The handler gets the request and the calling module; what it returns (or throws) goes back.
   */
  provide(name: string, handler: ServiceHandler): void {
    this.#services.set(name, handler);
  }

  #onService(slot: Slot, msg: Extract<FromWorker, { t: 'service' }>): void {
    const handler = this.#services.get(msg.name);
    const entry = this.#modules.get(msg.moduleId);
    const reply = (r: { value?: unknown; error?: string }) => this.#post(slot, { t: 'service-reply', id: msg.id, ...r });
    if (!handler || !entry) {
      reply({ error: `host service ${msg.name} is not available` });
      return;
    }
    Promise.resolve()
      .then(() => handler(msg.request, entry))
      .then((value) => reply({ value }), (e: unknown) => reply({ error: (e as Error)?.message ?? String(e) }));
  }

  #onMessage(slot: Slot, msg: FromWorker): void {
    if (msg.t === 'service') {
      this.#onService(slot, msg);
      return;
    }
    for (const item of msg.results) {
      const done = unpackDone(item);
      const call = slot.inflight.get(done.id);
      if (!call) continue;
      slot.inflight.delete(done.id);
      if (done.error) {
        const err = new CapsuleError(done.error.code, done.error.message) as CapsuleError & { logs?: CallLogs };
        err.logs = done.logs;
        call.reject(err);
      } else {
        call.resolve({ output: done.output!, logs: done.logs });
      }
    }
    if (slot.inflight.size === 0) slot.worker.unref();
    this.#fill();
  }

  #fill(): void {
    while (this.#queue.length > 0) {
      const s = this.#pick();
      if (!s) return;
      this.#send(s, this.#queue.shift()!);
    }
  }

  #arm(): void {
    if (this.#watchdog || this.#closed) return;
    this.#watchdog = setInterval(() => this.#check(), 25);
    this.#watchdog.unref();
  }

  /** Kills workers whose running call is past its deadline. */
  #check(): void {
    const now = Date.now();
    let idle = this.#queue.length === 0;
    for (const s of this.#slots) {
      if (s.inflight.size > 0) idle = false;
      const id = Atomics.load(s.running, 0);
      if (id === 0 || s.dead) continue;
      const call = s.inflight.get(id);
      if (!call) continue;
      if (now - s.started[0]! > call.timeoutMs) {
        const err = new CapsuleError('TIMEOUT', `the function did not return within ${call.timeoutMs} ms (--timeout); its worker was stopped`);
        s.inflight.delete(id);
        call.reject(err);
        this.emit('timeout', call.id);
        this.#replace(s, undefined);
      }
    }
    if (idle && this.#watchdog) {
      clearInterval(this.#watchdog);
      this.#watchdog = undefined;
    }
  }

  /** Replaces a dead or killed worker; its waiting calls go back to the front of the queue. */
  #replace(slot: Slot, error: CapsuleError | undefined): void {
    if (slot.dead) return;
    slot.dead = true;
    void slot.worker.terminate();
    const running = Atomics.load(slot.running, 0);
    const again: PendingCall[] = [];
    slot.outbox.length = 0;
    const inflight = [...slot.inflight.values()];
    slot.inflight.clear();
    for (const c of inflight) {
      // The call that was running when the worker died fails; the ones behind it are re-sent.
      if (error && c.id === running) c.reject(error);
      else if (error && ++c.retries > MAX_RETRIES) c.reject(new CapsuleError('INTERNAL', `${error.message}; the call was retried ${MAX_RETRIES} times`));
      else again.push(c);
    }
    if (error) this.emit('worker-exit', error.message);
    const idx = this.#slots.indexOf(slot);
    if (!this.#closed && idx >= 0) this.#slots[idx] = this.#spawn();
    this.#queue.unshift(...again);
    this.#fill();
    if (this.#queue.length > 0 || this.#slots.some((s) => s.inflight.size > 0)) this.#arm();
  }
}
