/**
 * The worker pool (main thread). Guests run on worker threads so that a call that overruns its
 * deadline can be stopped by terminating its worker; the worker is then replaced, the calls
 * queued behind the killed one are re-dispatched (never failed), and the process keeps serving
 * (conventions.md §3).
 *
 * Calls are pipelined: up to `pipeline` calls are sent to a worker ahead (a worker round trip
 * costs ~110 µs, a pipelined message 3–4 µs). Each worker publishes in a SharedArrayBuffer the
 * id and start time of the call it runs and the seq of the last call it started, which a
 * watchdog timer reads every 25 ms while calls are in flight.
 *
 * Runaways do not starve other calls (README "Limits", docs/performance.md):
 * - A call's deadline counts from when `call` accepted it, waiting included, except while no
 *   worker of the pool is up (its start, or every worker being replaced): a call accepted then
 *   counts from when one is. A call still waiting at its deadline fails with TIMEOUT without
 *   running; a running one is stopped.
 * - A worker whose call has run longer than `longCallMs` gets no new call, and the calls sent
 *   to it but not started are taken back (an atomic swap of its "last started" counter; the
 *   worker then skips them) and dispatched elsewhere.
 * - When every worker runs such a long call, the pool starts workers: one per waiting call, or
 *   one standby, up to `maxWorkers` threads; workers beyond `workers` that stay idle `idleMs`
 *   are stopped. Under that pressure, the threads of long calls get the lowest CPU priority.
 * - Workers boot with Node's module compile cache (see bootScript).
 */
import type { Worker } from 'node:worker_threads';
import { availableParallelism, getPriority, setPriority } from 'node:os';
import { EventEmitter } from 'node:events';
import type { ServiceHandler, ServiceHost } from '../base/services.ts';
import { CapsuleError } from '../base/errors.ts';
import type { InvocationInput, InvocationMeta, InvocationOutput } from '../base/invocation.ts';
import type { CallLogs, WorkerModule } from './instance.ts';
import type { FunctionSettings } from '../base/settings.ts';
import { packCall, unpackDone, workerModuleOf, type CallDone, type FromWorker, type ToWorker, type WorkerCall } from './protocol.ts';
import type { LoadedModule } from './load.ts';
import { workerEntryUrl } from './worker-entry.ts';
import { IdleTrim } from './memory-pool.ts';

export interface PoolOptions {
  /**
   * Worker threads always kept (default: CPU cores). 0: none at idle, one started when a call
   * comes and stopped after `idleMs` without calls (a server whose guests run elsewhere, e.g.
   * `capsule serve --http-threads`, keeps such a pool for lifecycle exports and services).
   */
  workers?: number;
  /**
   * Most worker threads at once, the ones started beside runaways included (default:
   * max(4 × workers, 16)); at least `workers`.
   */
  maxWorkers?: number;
  /** A call that has run this long (ms) gets no call queued behind it (default 100). */
  longCallMs?: number;
  /** Workers beyond `workers` idle this long (ms) are stopped (default 10 000). */
  idleMs?: number;
  /** Calls sent ahead to one worker (default 32). */
  pipeline?: number;
  /** Calls waiting for a worker before `call` rejects with OVERLOADED (default 10 000). */
  maxQueue?: number;
  /**
   * Whether workers warm each module up when they receive it (default true; see `whenUp`). A
   * warm-up keeps, per worker, the module's snapshot and an idle instance from the start: a pool
   * holding many functions that mostly sit idle (the functions server, the FaaS node) says false.
   */
  warm?: boolean;
  /**
   * A module's warm-up in a worker (`ModuleInstances.warm`: its initialisation, probed) that
   * runs this long (ms) is stopped with its worker, and the module is not warmed up again
   * (default 2 000): a looping initialisation does not hold `whenUp` or a thread for ever. Calls
   * sent to a worker wait behind its warm-up (their deadlines count), so this bounds that wait too.
   */
  warmLimitMs?: number;
}

/** The result of a call: the output, and what the guest printed (stdio = capture). */
export interface CallResult {
  output: InvocationOutput;
  logs?: CallLogs;
}

/** A module registered in the pool. */
export interface PoolModule {
  readonly id: number;
  readonly module: LoadedModule;
  readonly settings: FunctionSettings;
}

export interface CallOptions {
  /**
   * Deadline of the call, ms, counted from when `call` accepts it (or, while no worker of the
   * pool is up, from when one is): waiting for a worker counts. A call still waiting at its
   * deadline is not run; a running one is stopped (its worker too).
   */
  timeoutMs: number;
  meta?: InvocationMeta;
}

interface PendingCall {
  id: number;
  moduleId: number;
  input: InvocationInput;
  meta: InvocationMeta;
  timeoutMs: number;
  /** When `call` accepted it and when it must be answered (ms, Date.now clock; Infinity until a worker is up). */
  accepted: number;
  deadline: number;
  /** Its seq in the worker it was last sent to (see `WorkerCall.seq`). */
  seq: number;
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
  /** Shared with the worker: id of the running call (0 = none), seq of the last call started, start of the running call. */
  running: Int32Array;
  claimed: Int32Array;
  started: Float64Array;
  /** Shared with the worker: its kernel thread id (Linux; 0 = unknown). */
  tid: Int32Array;
  /** Seq of the last call sent to it. */
  seq: number;
  /** Id of its running call once that has run longer than `longCallMs` (0 = none): it gets no new calls. */
  long: number;
  /** The nice value its thread had before it was lowered to the lowest priority (see `#demote`), or undefined. */
  demoted: number | undefined;
  /** When it last had no call in flight (ms, Date.now clock). */
  idleSince: number;
  /** It has loaded its code (its `ready` message came). */
  up: boolean;
  /** Ids of the modules it was sent to warm up and has not answered `warm` for. */
  warming: Set<number>;
  dead: boolean;
}

/**
 * A worker's entry: it enables Node's module compile cache for itself, then loads worker.ts
 * (beside this file in the sources, worker.js in the build, or their one-file bundle:
 * worker-entry.ts). A new worker then does not strip and compile its ~50 TypeScript modules
 * again: it boots 2–3× faster, which is what calls waiting beside runaways wait for
 * (docs/performance.md). Node's own switches apply: NODE_COMPILE_CACHE=dir moves the cache
 * (default: <tmpdir>/node-compile-cache), NODE_DISABLE_COMPILE_CACHE=1 turns it off. Made when
 * the first worker starts, as node:worker_threads is loaded then: a process that loads this
 * module and starts no worker (`capsule run`, inline) pays neither (~3 ms).
 */
let workerBoot: string | undefined;
function bootScript(): string {
  return (workerBoot ??= `const m = require('node:module');
m.enableCompileCache();
import(${JSON.stringify(workerEntryUrl(import.meta.url).href)}).then(() => m.flushCompileCache());`);
}
/** Workers in a row that may die before being up before the pool gives up (see `#giveUp`). */
const MAX_BOOT_FAILURES = 3;
/** Re-dispatches of one call after worker crashes before it fails (a deadline kill does not count). */
const MAX_RETRIES = 2;
/** Watchdog period, ms: deadlines are enforced to this much. */
const TICK_MS = 25;
/** Nice value of a thread stuck in a long call while the pool runs beyond its size (the lowest priority). */
const DEMOTED_NICE = 19;

/**
 * Events: `timeout` (call id: a call stopped or not run at its deadline), `worker-exit` (error
 * message), `grow` and `shrink` (worker threads now) — for metrics/logs.
 */
export class WorkerPool extends EventEmitter implements ServiceHost {
  /** Worker threads always kept. */
  readonly size: number;
  /** Most worker threads at once. */
  readonly maxWorkers: number;
  readonly #pipeline: number;
  readonly #maxQueue: number;
  readonly #longCallMs: number;
  readonly #idleMs: number;
  readonly #warmLimitMs: number;
  readonly #warm: boolean;
  /** Modules whose warm-up was stopped at `warmLimitMs`: workers load them without one. */
  readonly #cold = new Set<number>();
  /** Live workers (a stopped one leaves at once; it may still deliver results until it exits). */
  readonly #slots: Slot[] = [];
  readonly #queue: PendingCall[] = [];
  readonly #modules = new Map<number, PoolModule>();
  readonly #services = new Map<string, ServiceHandler>();
  readonly #upWaiters: (() => void)[] = [];
  #nextCall = 1;
  #nextModule = 1;
  #watchdog: NodeJS.Timeout | undefined;
  #shrinker: NodeJS.Timeout | undefined;
  /**
   * Idle after calls, the main thread's heap is reduced if a burst grew it: its young generation
   * grows to 128 MiB under load and V8 gives it back only ~10 s later (docs/performance.md,
   * "Memory"). The workers trim themselves (worker.ts).
   */
  readonly #trim = new IdleTrim(undefined);
  #closed = false;
  /** Workers in a row that died before they were up (their thread code could not load). */
  #bootFailures = 0;
  /** Set once workers keep failing to start: every call fails with it, none waits for ever. */
  #broken: CapsuleError | undefined;

  constructor(options: PoolOptions = {}) {
    super();
    this.size = options.workers === 0 ? 0 : Math.max(1, options.workers ?? availableParallelism());
    this.maxWorkers = Math.max(this.size, options.maxWorkers ?? Math.max(4 * this.size, 16));
    this.#pipeline = Math.max(1, options.pipeline ?? 32);
    this.#maxQueue = options.maxQueue ?? 10_000;
    this.#longCallMs = Math.max(1, options.longCallMs ?? 100);
    this.#idleMs = Math.max(1, options.idleMs ?? 10_000);
    this.#warmLimitMs = Math.max(1, options.warmLimitMs ?? 2_000);
    this.#warm = options.warm ?? true;
    for (let i = 0; i < this.size; i++) this.#slots.push(this.#spawn());
  }

  /** Workers running a call now (for the busy-workers gauge). */
  get busy(): number {
    return this.#slots.filter((s) => s.inflight.size > 0).length;
  }

  /** Worker threads now: `size`, plus the ones started beside long calls (at most `maxWorkers`). */
  get threads(): number {
    return this.#slots.length;
  }

  /** Calls waiting for a worker. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Sends a compiled module to every worker (and to the ones that replace them). */
  register(module: LoadedModule, settings: FunctionSettings): PoolModule {
    const entry: PoolModule = { id: this.#nextModule++, module, settings };
    this.#modules.set(entry.id, entry);
    for (const s of this.#slots) this.#load(s, entry);
    return entry;
  }

  /** Forgets a module (calls already sent still finish). */
  unregister(entry: PoolModule): void {
    this.#modules.delete(entry.id);
    this.#cold.delete(entry.id);
    for (const s of this.#slots) this.#post(s, { t: 'unload', moduleId: entry.id });
  }

  /**
   * Runs one invocation on some worker, within `options.timeoutMs` of now.
   * @throws CapsuleError with the code the worker reported (TRAP, TIMEOUT, MEMORY, BAD_RESULT…);
   *   TIMEOUT also when no worker could start it before its deadline; OVERLOADED when the queue
   *   is full. The error carries `logs` when the guest printed.
   */
  call(entry: PoolModule, input: InvocationInput, options: CallOptions): Promise<CallResult> {
    if (this.#closed) return Promise.reject(new CapsuleError('OVERLOADED', 'the runner is shutting down'));
    if (this.#broken) return Promise.reject(this.#broken);
    return new Promise<CallResult>((resolve, reject) => {
      const accepted = Date.now();
      const call: PendingCall = {
        id: this.#nextCall, moduleId: entry.id, input, meta: options.meta ?? {}, timeoutMs: options.timeoutMs,
        accepted, deadline: this.#anyUp() ? accepted + options.timeoutMs : Infinity, seq: 0, retries: 0, resolve, reject,
      };
      this.#nextCall = this.#nextCall >= 0x7ffffffe ? 1 : this.#nextCall + 1;
      const slot = this.#queue.length === 0 ? this.#pick() : undefined;
      if (slot) this.#send(slot, call);
      else if (this.#queue.length >= this.#maxQueue) reject(new CapsuleError('OVERLOADED', `too many calls waiting (${this.#queue.length})`));
      else {
        this.#queue.push(call);
        this.#fill();
      }
      this.#arm();
    });
  }

  /**
   * Resolves once every worker thread of the pool has booted (loaded its code) and warmed up
   * every module registered (`ModuleInstances.warm`: the work of a first call that has no
   * effect, done ahead; at most `warmLimitMs` each), or the pool is closed. A worker running
   * calls is not waited for (a reload beside a long call): it warms up once they end. A server awaits it
   * before its ready line, and a reload before the new module takes calls, so that a first
   * request neither waits for threads to start nor pays the warm-up (docs/performance.md,
   * "Start-up").
   */
  whenUp(): Promise<void> {
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.#allUp()) return Promise.resolve();
    return new Promise((resolve, reject) => this.#upWaiters.push(() => (this.#broken ? reject(this.#broken) : resolve())));
  }

  /** Resolves the `whenUp` waiters once every worker is up and warm (see `#allUp`). */
  #wakeIfUp(): void {
    if (this.#allUp()) for (const resolve of this.#upWaiters.splice(0)) resolve();
  }

  #allUp(): boolean {
    // a worker running calls is not waited for: it warms up when they end, before the calls sent after
    return this.#closed || this.#slots.every((s) => s.dead || (s.up && (s.warming.size === 0 || s.inflight.size > 0)));
  }

  /** Terminates every worker; pending calls fail. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const resolve of this.#upWaiters.splice(0)) resolve();
    if (this.#watchdog) clearInterval(this.#watchdog);
    if (this.#shrinker) clearInterval(this.#shrinker);
    this.#trim.stop();
    const err = new CapsuleError('OVERLOADED', 'the runner is shutting down');
    for (const c of this.#queue.splice(0)) c.reject(err);
    await Promise.all(this.#slots.splice(0).map(async (s) => {
      s.dead = true;
      for (const c of s.inflight.values()) c.reject(err);
      s.inflight.clear();
      await s.worker.terminate();
    }));
  }


  /** Sends `entry` to a worker, to warm up unless its warm-up was stopped once (see `warmLimitMs`). */
  #load(slot: Slot, entry: PoolModule): void {
    const warm = this.#warm && !this.#cold.has(entry.id);
    this.#post(slot, { t: 'load', moduleId: entry.id, module: workerModuleOf(entry.module, entry.settings), warm });
    if (!warm || slot.dead) return;
    slot.warming.add(entry.id);
    this.#arm();
  }

  /**
   * A worker's warm-up of a module is over: `whenUp` may resolve. (A warm-up is not a long call:
   * the calls sent behind it wait for it, as they waited for a first call's probe, and no worker
   * is started beside it.)
   */
  #warmed(slot: Slot, moduleId: number): void {
    slot.warming.delete(moduleId);
    this.#wakeIfUp();
  }

  #spawn(): Slot {
    const shared = new SharedArrayBuffer(24);
    const { Worker } = process.getBuiltinModule('node:worker_threads');
    const worker = new Worker(bootScript(), { eval: true, workerData: { slot: shared } });
    const slot: Slot = {
      worker, inflight: new Map(), outbox: [], running: new Int32Array(shared, 0, 1), claimed: new Int32Array(shared, 4, 1),
      started: new Float64Array(shared, 8, 1), tid: new Int32Array(shared, 16, 1), seq: 0, long: 0, demoted: undefined, idleSince: Date.now(), up: false, warming: new Set(), dead: false,
    };
    worker.unref();
    worker.on('message', (msg: FromWorker) => this.#onMessage(slot, msg));
    worker.on('error', (e) => this.#retire(slot, new CapsuleError('INTERNAL', `worker failed: ${e.message}`)));
    worker.on('exit', (code) => {
      this.#retire(slot, new CapsuleError('INTERNAL', `worker exited with code ${code}`));
      this.#settle(slot);
    });
    for (const entry of this.#modules.values()) this.#load(slot, entry);
    return slot;
  }

  #post(slot: Slot, msg: ToWorker): void {
    if (!slot.dead) slot.worker.postMessage(msg);
  }

  /** The least loaded worker that can take one more call: not full, not running a long call. */
  #pick(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (s.long !== 0 || s.inflight.size >= this.#pipeline) continue;
      if (!best || s.inflight.size < best.inflight.size) best = s;
      if (s.inflight.size === 0) break;
    }
    return best;
  }

  /**
   * When every worker runs a long call, starts workers: one for each waiting call, or one ahead
   * (a standby: the next call, or the replacement of a worker killed at its deadline, does not
   * wait for a worker to boot), up to `maxWorkers` threads. Returns one of them.
   */
  #grow(): Slot | undefined {
    if (this.#closed || this.#slots.length >= this.maxWorkers || this.#slots.some((s) => s.long === 0)) return undefined;
    if (this.#queue.length > 0) for (const s of this.#slots) this.#demote(s);
    const n = Math.min(Math.max(1, this.#queue.length), this.maxWorkers - this.#slots.length);
    for (let i = 0; i < n; i++) this.#slots.push(this.#spawn());
    this.emit('grow', this.#slots.length);
    if (!this.#shrinker) {
      this.#shrinker = setInterval(() => this.#shrink(), Math.max(TICK_MS, this.#idleMs / 4));
      this.#shrinker.unref();
    }
    return this.#pick();
  }

  /** Stops workers beyond `size` that have been idle for `idleMs`, but not the standby beside long calls. */
  #shrink(): void {
    const now = Date.now();
    for (let i = this.#slots.length - 1; i >= 0 && this.#slots.length > this.size; i--) {
      const s = this.#slots[i]!;
      if (s.inflight.size > 0 || now - s.idleSince < this.#idleMs) continue;
      if (this.#slots.some((o) => o.long !== 0) && !this.#slots.some((o) => o !== s && o.long === 0)) continue;
      s.dead = true;
      this.#slots.splice(i, 1);
      void s.worker.terminate();
      this.emit('shrink', this.#slots.length);
    }
    if (this.#slots.length <= this.size && this.#shrinker) {
      clearInterval(this.#shrinker);
      this.#shrinker = undefined;
    }
  }

  #send(slot: Slot, call: PendingCall): void {
    slot.seq = (slot.seq + 1) | 0;
    call.seq = slot.seq;
    slot.inflight.set(call.id, call);
    this.#trim.busy();
    if (slot.inflight.size === 1) slot.worker.ref();
    slot.outbox.push({ id: call.id, moduleId: call.moduleId, seq: call.seq, deadline: call.deadline, input: call.input, meta: call.meta });
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
    const reply = (r: { value?: unknown; error?: string }) => this.#post(slot, { t: 'service-reply', id: msg.id, ...r });
    this.runService(msg.name, msg.request, msg.moduleId)
      .then((value) => reply({ value }), (e: unknown) => reply({ error: (e as Error)?.message ?? String(e) }));
  }

  /**
   * Runs a service registered with `provide` for a module of this pool: what a worker's
   * `ctx.service(name, request)` reaches (also used by threads of other kinds running this
   * pool's modules, triggers/http/threads.ts).
   * @throws Error when no such service or module is registered, or what the handler throws
   */
  async runService(name: string, request: unknown, moduleId: number): Promise<unknown> {
    const handler = this.#services.get(name);
    const entry = this.#modules.get(moduleId);
    if (!handler || !entry) throw new Error(`host service ${name} is not available`);
    return handler(request, entry);
  }

  /**
   * A registered module as a worker thread receives it (its compiled module, detection,
   * settings…), with its id in this pool; undefined when `module` is not registered here.
   */
  workerModuleOf(module: LoadedModule): { id: number; module: WorkerModule } | undefined {
    for (const entry of this.#modules.values()) if (entry.module === module) return { id: entry.id, module: workerModuleOf(entry.module, entry.settings) };
    return undefined;
  }

  #onMessage(slot: Slot, msg: FromWorker): void {
    if (msg.t === 'service') {
      this.#onService(slot, msg);
      return;
    }
    if (msg.t === 'ready') {
      this.#up(slot);
      return;
    }
    if (msg.t === 'warm') {
      this.#warmed(slot, msg.moduleId);
      return;
    }
    for (const item of msg.results) {
      const done = unpackDone(item);
      const call = slot.inflight.get(done.id);
      if (!call) continue;
      slot.inflight.delete(done.id);
      if (slot.long === done.id) slot.long = 0;
      this.#answer(call, done);
    }
    if (slot.inflight.size === 0) {
      slot.worker.unref();
      slot.idleSince = Date.now();
      if (this.#queue.length === 0 && this.#slots.every((s) => s.inflight.size === 0)) this.#trim.idle();
    }
    if (slot.demoted !== undefined && slot.long === 0) this.#promote(slot);
    this.#fill();
  }

  /** Whether a worker of the pool has loaded its code (deadlines run only then). */
  #anyUp(): boolean {
    for (const s of this.#slots) if (s.up) return true;
    return false;
  }

  /** A worker is up: the deadlines of calls accepted while none was start now. */
  #up(slot: Slot): void {
    if (slot.dead) return;
    slot.up = true;
    this.#bootFailures = 0;
    const now = Date.now();
    const waiting = [...this.#queue, ...this.#slots.flatMap((s) => [...s.inflight.values()])];
    for (const c of waiting) if (c.deadline === Infinity) c.deadline = now + c.timeoutMs;
    this.#wakeIfUp();
  }

  /** Settles a call with what its worker reported. */
  #answer(call: PendingCall, done: CallDone): void {
    if (done.expired) {
      this.#expire(call);
    } else if (done.error) {
      const err = new CapsuleError(done.error.code, done.error.message) as CapsuleError & { logs?: CallLogs };
      err.logs = done.logs;
      call.reject(err);
    } else {
      call.resolve({ output: done.output!, logs: done.logs });
    }
  }

  /** Fails a call that reached its deadline before any worker started it. */
  #expire(call: PendingCall): void {
    call.reject(new CapsuleError('TIMEOUT', `the function was not run: no worker was free within ${call.timeoutMs} ms (--timeout)`));
    this.emit('timeout', call.id);
  }

  /** Dispatches waiting calls (failing the ones past their deadline), growing the pool if every worker runs a long call. */
  #fill(): void {
    const now = Date.now();
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      if (now >= head.deadline) {
        this.#queue.shift();
        this.#expire(head);
        continue;
      }
      const s = this.#pick() ?? this.#grow();
      if (!s) return;
      this.#send(s, this.#queue.shift()!);
    }
  }

  /**
   * Takes back the calls sent to `slot` that it has not started: its "last started" counter is
   * swapped for the last seq sent, so the worker's claim of any of them fails. They go back to
   * the queue in the order they were accepted.
   */
  #withdraw(slot: Slot): void {
    slot.outbox.length = 0;
    const started = Atomics.exchange(slot.claimed, 0, slot.seq);
    if (started === slot.seq) return;
    const back: PendingCall[] = [];
    for (const c of slot.inflight.values()) if (((c.seq - started) | 0) > 0) back.push(c);
    if (back.length === 0) return;
    for (const c of back) slot.inflight.delete(c.id);
    this.#queue.unshift(...back);
    this.#queue.sort((a, b) => a.accepted - b.accepted);
  }

  #arm(): void {
    if (this.#watchdog || this.#closed) return;
    this.#watchdog = setInterval(() => this.#check(), TICK_MS);
    this.#watchdog.unref();
  }

  /** Stops calls past their deadline, takes calls back from workers stuck in long ones, dispatches. */
  #check(): void {
    const now = Date.now();
    for (const s of [...this.#slots]) this.#watch(s, now);
    this.#fill();
    this.#grow();
    if (this.#queue.length === 0 && this.#slots.every((s) => s.inflight.size === 0 && s.warming.size === 0) && this.#watchdog) {
      clearInterval(this.#watchdog);
      this.#watchdog = undefined;
    }
  }

  /** One worker, for `#check`. A negative running id is a module's warm-up (worker.ts). */
  #watch(s: Slot, now: number): void {
    const id = Atomics.load(s.running, 0);
    if (id < 0 && now - s.started[0]! >= this.#warmLimitMs) {
      this.#cold.add(-id); // its replacement loads the module without a warm-up
      this.#retire(s, undefined);
      return;
    }
    const call = id === 0 ? undefined : s.inflight.get(id);
    if (call && now >= call.deadline) {
      const waited = s.started[0]! - (call.deadline - call.timeoutMs);
      const note = waited >= 50 ? ` (${Math.round(waited)} ms of it waiting for a worker)` : '';
      s.inflight.delete(id);
      call.reject(new CapsuleError('TIMEOUT', `the function did not return within ${call.timeoutMs} ms (--timeout)${note}; its worker was stopped`));
      this.emit('timeout', call.id);
      this.#retire(s, undefined);
      return;
    }
    if (call && now - s.started[0]! > this.#longCallMs) {
      s.long = id;
      if (this.#queue.length > 0 || this.#slots.length > this.size + 1) this.#demote(s);
    }
    let overdue = false;
    for (const c of s.inflight.values()) if (c !== call && now >= c.deadline) overdue = true;
    if (s.long !== 0 || overdue) this.#withdraw(s);
  }

  /**
   * Lowers the CPU priority of a thread stuck in a long call (Linux: nice 19 for that thread
   * alone), so that the workers started beside it boot and short calls run while it spins. Only
   * under pressure: calls waiting, or more workers than `size` + the standby (see `#grow`);
   * nothing where threads have no id.
   */
  #demote(slot: Slot): void {
    const tid = Atomics.load(slot.tid, 0);
    if (slot.demoted !== undefined || slot.dead || tid === 0) return;
    try {
      const before = getPriority(tid);
      setPriority(tid, DEMOTED_NICE);
      slot.demoted = before;
    } catch {
      // not permitted or not supported: it keeps its priority
    }
  }

  /**
   * Gives a demoted thread whose long call ended its priority back; where raising a priority is
   * not permitted (an unprivileged process), the worker is retired instead.
   */
  #promote(slot: Slot): void {
    try {
      setPriority(Atomics.load(slot.tid, 0), slot.demoted ?? 0);
      slot.demoted = undefined;
    } catch {
      this.#retire(slot, undefined);
    }
  }

  /**
   * Workers keep dying before they start (their code cannot load: a broken install or bundle):
   * no more are spawned, and every waiting call and `whenUp` fails with the reason instead of
   * waiting for ever (their deadlines start only once a worker is up).
   */
  #giveUp(error: CapsuleError): void {
    this.#broken = new CapsuleError('INTERNAL', `worker threads cannot start (${MAX_BOOT_FAILURES} tries): ${error.message}`);
    for (const s of this.#slots.splice(0)) {
      s.dead = true;
      void s.worker.terminate();
      for (const c of s.inflight.values()) c.reject(this.#broken);
    }
    for (const c of this.#queue.splice(0)) c.reject(this.#broken);
    for (const wake of this.#upWaiters.splice(0)) wake();
  }

  /**
   * Takes a worker out of the pool: killed at a deadline (`error` undefined) or dead (`error`).
   * Calls it had not started go back to the queue; the call it was running fails with `error`;
   * results of calls it finished still arrive until it exits (see `#settle`). A new worker
   * replaces it if fewer than `size` are left.
   */
  #retire(slot: Slot, error: CapsuleError | undefined): void {
    if (slot.dead) return;
    slot.dead = true;
    void slot.worker.terminate();
    this.#withdraw(slot);
    const running = slot.inflight.get(Atomics.load(slot.running, 0));
    if (error && running) {
      slot.inflight.delete(running.id);
      running.reject(error);
    }
    if (error) this.emit('worker-exit', error.message);
    const idx = this.#slots.indexOf(slot);
    if (idx >= 0) this.#slots.splice(idx, 1);
    if (error && !slot.up && ++this.#bootFailures >= MAX_BOOT_FAILURES && !this.#slots.some((s) => s.up)) {
      this.#giveUp(error);
      return;
    }
    if (!this.#closed && this.#slots.length < this.size) this.#slots.push(this.#spawn());
    this.#wakeIfUp(); // the worker it waited for may have been this one
    this.#fill();
    if (this.#queue.length > 0 || this.#slots.some((s) => s.inflight.size > 0)) this.#arm();
  }

  /** After a worker exited: calls whose results never came are sent again (or fail after MAX_RETRIES). */
  #settle(slot: Slot): void {
    const lost = [...slot.inflight.values()];
    slot.inflight.clear();
    if (lost.length === 0) return;
    for (const c of lost) {
      if (this.#closed) c.reject(new CapsuleError('OVERLOADED', 'the runner is shutting down'));
      else if (++c.retries > MAX_RETRIES) c.reject(new CapsuleError('INTERNAL', `its worker stopped before answering; the call was retried ${MAX_RETRIES} times`));
      else this.#queue.unshift(c);
    }
    this.#queue.sort((a, b) => a.accepted - b.accepted);
    this.#fill();
    this.#arm();
  }
}
