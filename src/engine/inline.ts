/**
 * The inline executor: the worker pool's call interface (register, call, provide, whenUp,
 * close), but calls run in the calling thread — no worker thread is started, and no message
 * crosses a thread. For one-shot commands (`capsule run`, `capsule call`: a worker thread alone
 * costs as much as Node's own start) and for embedders who call a plugin from their own thread
 * (host SDK `inline: true`; docs/performance.md "Start-up" and "Extism plugins…").
 *
 * - Calls are serialised: one runs at a time, the others wait in the order they came.
 * - Instances, their memories and the instance policy are the worker's (`ModuleInstances`,
 *   `MemoryPool`): Extism plugins keep one instance whose vars survive calls (extism-abi.md §11).
 * - Services of the executor (capabilities, host functions of the embedder) are called directly.
 * - A warm call of a module that does not suspend, made while no call runs, runs at once and
 *   without a promise chain (`ModuleInstances.runSync`, `Abi.invokeSync`): a few `async` layers
 *   are a good part of a ~2 µs Extism call.
 * - Deadline (conventions.md §3), metered modules: a module the meter can instrument
 *   (`meteredModule`, src/wasm/meter.ts; metered once, at its registration) checks its own
 *   deadline: guest code past it throws TIMEOUT from inside the guest, with no watchdog and no
 *   cost per entry into guest code. A call that suspends (JSPI host functions) also runs here:
 *   the guest checks its deadline after it resumes, and a host function that never settles is
 *   raced with a timer at the deadline (the call then fails with TIMEOUT and its instances are
 *   abandoned).
 * - Deadline, modules the meter leaves alone: every entry into guest code (an instantiation, a
 *   call of an export) runs inside `vm.Script#runInThisContext` with the time left as its
 *   `timeout`: at the deadline V8's TerminateExecution unwinds the guest (a wasm loop included)
 *   and this thread lives on. Node starts a watchdog thread for each such entry (~0.2 ms); with
 *   no deadline (`timeoutMs: Infinity`) there is no watchdog at all. Such a module that imports
 *   a host function that suspends cannot run here under a deadline (after it resumes from an
 *   await, nothing would stop it): its calls with a deadline go to a one-worker pool started at
 *   its first such call. So do WASI commands that may read the process's standard input (a
 *   blocking read is out of both ways' reach), metered or not.
 * - A call stopped at its deadline fails with TIMEOUT and its module gets new instances (as a
 *   worker killed at its deadline would): the next call runs on a fresh instance, Extism vars
 *   included.
 */
import { EventEmitter } from 'node:events';
import vm from 'node:vm';
import { CapsuleError } from '../base/errors.ts';
import type { InvocationInput, InvocationMeta } from '../base/invocation.ts';
import type { ServiceHandler, ServiceHost } from '../base/services.ts';
import type { FunctionSettings } from '../base/settings.ts';
import { meteredModule, type LoadedModule } from './load.ts';
import { MemoryPool } from './memory-pool.ts';
import { loadFailure, ModuleInstances, type CallError, type CallLogs, type SyncGuard, type WorkerModule } from './instance.ts';
import { workerModuleOf } from './protocol.ts';
import type { CallOptions, CallResult, PoolModule, WorkerPool } from './pool.ts';

/**
 * What runs a function's calls: the worker pool (pool.ts) or the inline executor (this file).
 * `timeoutMs: Infinity` in `CallOptions` means no deadline.
 */
export interface CallExecutor extends ServiceHost {
  /** Prepares a compiled module for calls. */
  register(module: LoadedModule, settings: FunctionSettings): PoolModule;
  /** Forgets a module. */
  unregister(entry: PoolModule): void;
  /** Runs one invocation. @throws CapsuleError TRAP / TIMEOUT / MEMORY / BAD_RESULT / OVERLOADED (with `logs`) */
  call(entry: PoolModule, input: InvocationInput, options: CallOptions): Promise<CallResult>;
  /** Resolves once calls no longer wait for threads to boot. */
  whenUp(): Promise<void>;
  /** Stops it; calls not finished fail with OVERLOADED. */
  close(): Promise<void>;
}

/** One registered module: its instances here, or why they could not be made. */
interface InlineModule {
  readonly entry: PoolModule;
  /** What its instances are made of: the metered module when the meter could instrument it. */
  readonly spec: WorkerModule;
  rt?: ModuleInstances;
  error?: CallError;
  /** Its registration in the fallback pool, once a call needed it. */
  pooled?: Promise<{ pool: WorkerPool; entry: PoolModule }>;
}

/** What `ModuleInstances.run` answers. */
type RunResult = Awaited<ReturnType<ModuleInstances['run']>>;

interface Waiting {
  module: InlineModule;
  input: InvocationInput;
  meta: InvocationMeta;
  timeoutMs: number;
  deadline: number;
  resolve: (r: CallResult) => void;
  reject: (e: unknown) => void;
}

/** The script that enters guest code under a `timeout`: it calls the function stored under this key. */
const ENTRY = Symbol.for('capsule.inline.entry');
const ENTRY_SCRIPT = new vm.Script('globalThis[Symbol.for("capsule.inline.entry")]()', { filename: 'capsule-inline-deadline' });

/** Runs calls in this thread; see the module comment. Events: `timeout` (a call stopped or not run at its deadline), `worker-exit` (of the fallback pool). */
export class InlineExecutor extends EventEmitter implements CallExecutor {
  /** Calls run at once (for code that reads a pool's `size`). */
  readonly size = 1;
  readonly #memory = new MemoryPool();
  readonly #modules = new Map<number, InlineModule>();
  readonly #services = new Map<string, ServiceHandler>();
  readonly #queue: Waiting[] = [];
  readonly #guard: SyncGuard = { run: (f) => this.#enter(f) };
  #nextModule = 1;
  #running = false;
  #closed = false;
  /** Deadline of the running call (ms, Date.now clock; Infinity: none) and whether it was reached. */
  #deadline = Infinity;
  #timeoutMs = 0;
  #expired = false;
  /**
   * The latest deadline (Date.now clock) at which the watchdog stopped a call. Its clock and
   * Date.now differ by a fraction of a millisecond, so a later call sharing that deadline could
   * otherwise start with a sliver of it left and be stopped at once instead of not run.
   */
  #stoppedAt = -Infinity;
  /** Guest entries on the stack: only the outermost one arms the watchdog. */
  #depth = 0;
  #fallback?: Promise<WorkerPool>;

  readonly #meter: boolean;

  /**
   * @param options.meter run the modules the meter can instrument metered (the default, unless
   *   the environment has CAPSULE_METER=0; see the module comment); false: every module under
   *   the watchdog, as before the meter
   */
  constructor(options: { meter?: boolean } = {}) {
    super();
    this.#meter = options.meter ?? process.env['CAPSULE_METER'] !== '0';
  }

  /** Makes the module's instances here (a failure is reported by each of its calls, as a worker does). */
  register(module: LoadedModule, settings: FunctionSettings): PoolModule {
    const entry: PoolModule = { id: this.#nextModule++, module, settings };
    const m: InlineModule = { entry, spec: this.#specOf(module, settings) };
    this.#instantiate(m);
    this.#modules.set(entry.id, m);
    return entry;
  }

  unregister(entry: PoolModule): void {
    const m = this.#modules.get(entry.id);
    this.#modules.delete(entry.id);
    m?.rt?.dispose();
    void m?.pooled?.then(({ pool, entry: e }) => pool.unregister(e), () => {});
  }

  /** Registers a service that host functions reach with `ctx.service(name, req)` (called directly). */
  provide(name: string, handler: ServiceHandler): void {
    this.#services.set(name, handler);
    void this.#fallback?.then((pool) => pool.provide(name, handler), () => {});
  }

  /** Nothing to wait for: no thread starts (the fallback pool's calls wait for its worker themselves). */
  whenUp(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Runs one invocation in this thread (or, for a module that suspends or may block on stdin,
   * under a deadline, on the fallback pool), after the calls accepted before it.
   * @throws CapsuleError as WorkerPool.call: TIMEOUT when it ran past `timeoutMs` (counted from
   *   now, waiting included) or could not start before; OVERLOADED once closed
   */
  call(entry: PoolModule, input: InvocationInput, options: CallOptions): Promise<CallResult> {
    if (this.#closed) return Promise.reject(new CapsuleError('OVERLOADED', 'the runner is shutting down'));
    const m = this.#modules.get(entry.id);
    if (!m) return Promise.reject(new CapsuleError('INTERNAL', `module ${entry.id} is not registered`));
    const deadline = options.timeoutMs === Infinity ? Infinity : Date.now() + options.timeoutMs;
    if (deadline !== Infinity && this.#needsThread(m, input)) return this.#viaPool(m, input, options);
    const meta = options.meta ?? {};
    if (!this.#running) {
      // nothing runs: this one starts now (no queue entry, no promise of its own), and a warm
      // call of a module that does not suspend runs at once, without a promise chain
      try {
        const done = this.#callSync(m, input, meta, options.timeoutMs, deadline);
        if (done) return Promise.resolve(done);
      } catch (e) {
        return Promise.reject(e);
      }
      this.#running = true;
      return this.#run(m, input, meta, options.timeoutMs, deadline);
    }
    return new Promise<CallResult>((resolve, reject) => {
      this.#queue.push({ module: m, input, meta, timeoutMs: options.timeoutMs, deadline, resolve, reject });
    });
  }

  /** After a call: starts the next one waiting. */
  #next(): void {
    const w = this.#queue.shift();
    if (!w) {
      this.#running = false;
      return;
    }
    this.#run(w.module, w.input, w.meta, w.timeoutMs, w.deadline).then(w.resolve, w.reject);
  }

  /** Stops it: waiting calls fail, the running one finishes, the fallback pool is closed. */
  async close(): Promise<void> {
    this.#closed = true;
    const err = new CapsuleError('OVERLOADED', 'the runner is shutting down');
    for (const w of this.#queue.splice(0)) w.reject(err);
    for (const m of this.#modules.values()) m.rt?.dispose();
    this.#modules.clear();
    const fallback = this.#fallback;
    this.#fallback = undefined;
    if (fallback) await (await fallback).close();
  }

  /** Whether a call must not run here under a deadline (see the module comment). */
  #needsThread(m: InlineModule, input: InvocationInput): boolean {
    if (m.rt?.suspends && !m.spec.metered) return true;
    const readsStdin = input.type === 'cli' && input.stdin === undefined && m.entry.module.detection.kind === 'wasi';
    return readsStdin && m.entry.module.parsed.imports.some((i) => i.module === 'wasi_snapshot_preview1' && i.name === 'fd_read');
  }

  /** One call, in this thread; then the next one waiting starts. */
  async #run(m: InlineModule, input: InvocationInput, meta: InvocationMeta, timeoutMs: number, deadline: number): Promise<CallResult> {
    try {
      return await this.#call(m, input, meta, timeoutMs, deadline);
    } finally {
      // a waiting call starts on the next turn: this one's caller gets its result first (the
      // next guest may run long before it yields)
      if (this.#queue.length === 0) this.#running = false;
      else setImmediate(() => this.#next());
    }
  }

  async #call(m: InlineModule, input: InvocationInput, meta: InvocationMeta, timeoutMs: number, deadline: number): Promise<CallResult> {
    const rt = this.#start(m, timeoutMs, deadline);
    let r: RunResult | undefined;
    try {
      r = rt.runSync(input, meta) ?? await this.#race(rt.run(input, meta), rt, deadline);
    } finally {
      this.#deadline = Infinity;
      rt.setDeadline(Infinity);
    }
    if (r) return this.#settle(m, r, timeoutMs, deadline);
    // a host function it waited on did not settle by the deadline: its instances are abandoned,
    // their deadline left past (a guest resumed later stops at its next check)
    if (m.rt === rt) m.rt = undefined;
    rt.setDeadline(-Infinity);
    this.#stoppedAt = Math.max(this.#stoppedAt, deadline);
    this.emit('timeout');
    throw new CapsuleError('TIMEOUT', timeoutMessage(timeoutMs));
  }

  /**
   * A call of a metered module that suspends, raced with a timer at its deadline: undefined when
   * the timer wins (the meter stops guest code, not a host function that never settles).
   */
  #race(run: Promise<RunResult>, rt: ModuleInstances, deadline: number): Promise<RunResult | undefined> {
    if (deadline === Infinity || !rt.suspends) return run;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
    });
    return Promise.race([run, late]).finally(() => clearTimeout(timer));
  }

  /**
   * A call that can run without a promise (a warm instance of a module that does not suspend,
   * `ModuleInstances.runSync`), run now; undefined when it cannot.
   * @throws CapsuleError as `call`
   */
  #callSync(m: InlineModule, input: InvocationInput, meta: InvocationMeta, timeoutMs: number, deadline: number): CallResult | undefined {
    if (!m.rt) return undefined;
    const rt = this.#start(m, timeoutMs, deadline);
    let r: RunResult | undefined;
    try {
      r = rt.runSync(input, meta);
    } finally {
      this.#deadline = Infinity;
      rt.setDeadline(Infinity);
    }
    return r && this.#settle(m, r, timeoutMs, deadline);
  }

  /** The module's instances, set up for a call (the deadline the guard enforces). @throws CapsuleError TIMEOUT (not run), the module's load failure */
  #start(m: InlineModule, timeoutMs: number, deadline: number): ModuleInstances {
    if (deadline !== Infinity && (Date.now() >= deadline || deadline <= this.#stoppedAt)) {
      this.emit('timeout');
      throw new CapsuleError('TIMEOUT', `the function was not run: the calls before it took its ${timeoutMs} ms (--timeout)`);
    }
    if (!m.rt) this.#instantiate(m);
    if (!m.rt) throw new CapsuleError(m.error!.code, m.error!.message);
    this.#deadline = deadline;
    this.#timeoutMs = timeoutMs;
    this.#expired = false;
    m.rt.setDeadline(deadline, timeoutMs);
    return m.rt;
  }

  /** The result of a call, or its failure. @throws CapsuleError with the call's code (and `logs`) */
  #settle(m: InlineModule, r: RunResult, timeoutMs: number, deadline: number): CallResult {
    if (r.error?.code === 'TIMEOUT' && m.spec.metered) {
      // stopped by its own deadline check: new instances, as after the watchdog
      m.rt?.dispose();
      m.rt = undefined;
      this.#stoppedAt = Math.max(this.#stoppedAt, deadline);
      this.emit('timeout');
      throw withLogs(new CapsuleError('TIMEOUT', r.error.message), r.logs);
    }
    if (this.#expired) {
      // whatever the ABI made of it, the call was stopped: new instances, as after a worker's end
      m.rt?.dispose();
      m.rt = undefined;
      this.emit('timeout');
      throw withLogs(new CapsuleError('TIMEOUT', timeoutMessage(timeoutMs)), r.logs);
    }
    if (r.error) throw withLogs(new CapsuleError(r.error.code, r.error.message), r.logs);
    return r as CallResult; // { output, logs }
  }

  /**
   * What a module's instances are made of: metered when the meter can instrument it (and this
   * executor meters), then with no watchdog (see the module comment).
   */
  #specOf(module: LoadedModule, settings: FunctionSettings): WorkerModule {
    const spec = workerModuleOf(module, settings);
    if (!this.#meter) return spec;
    const metered = meteredModule(module);
    return 'skipped' in metered ? spec : { ...spec, compiled: metered.compiled, metered: true };
  }

  /** New instances of a module (at registration, and after a call was stopped at its deadline). */
  #instantiate(m: InlineModule): void {
    const { entry, spec } = m;
    try {
      m.rt = new ModuleInstances(spec, this.#memory, (name, request) => this.#service(entry, name, request), spec.metered ? undefined : this.#guard);
      m.error = undefined;
    } catch (e) {
      m.error = loadFailure(e);
    }
  }

  /** A service call of a host function: the handler, directly; a failure reaches the guest as its message (as from a worker). */
  #service(entry: PoolModule, name: string, request: unknown): Promise<unknown> {
    const handler = this.#services.get(name);
    if (!handler) return Promise.reject(new Error(`host service ${name} is not available`));
    return Promise.resolve()
      .then(() => handler(request, entry))
      .catch((e: unknown) => {
        throw new Error((e as Error)?.message ?? String(e));
      });
  }

  /**
   * SyncGuard: runs guest code `f` under the running call's deadline (see the module comment).
   * @throws CapsuleError TIMEOUT when the deadline has passed or passes while `f` runs
   */
  #enter<T>(f: () => T): T {
    if (this.#depth > 0 || this.#deadline === Infinity) return f();
    const left = this.#deadline - Date.now();
    if (left <= 0 || this.#expired) {
      this.#expired = true;
      throw new CapsuleError('TIMEOUT', timeoutMessage(this.#timeoutMs));
    }
    const g = globalThis as unknown as Record<symbol, (() => unknown) | undefined>;
    this.#depth++;
    g[ENTRY] = f;
    try {
      return ENTRY_SCRIPT.runInThisContext({ timeout: Math.ceil(left) }) as T;
    } catch (e) {
      if ((e as { code?: string })?.code !== 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw e;
      this.#expired = true;
      this.#stoppedAt = Math.max(this.#stoppedAt, this.#deadline);
      throw new CapsuleError('TIMEOUT', timeoutMessage(this.#timeoutMs));
    } finally {
      g[ENTRY] = undefined;
      this.#depth--;
    }
  }

  /** A call on the fallback pool (one worker thread, started at the first such call). */
  async #viaPool(m: InlineModule, input: InvocationInput, options: CallOptions): Promise<CallResult> {
    this.#fallback ??= import('./pool.ts').then(({ WorkerPool }) => {
      const pool = new WorkerPool({ workers: 1 });
      for (const [name, handler] of this.#services) pool.provide(name, handler);
      pool.on('timeout', () => this.emit('timeout'));
      pool.on('worker-exit', (message: string) => this.emit('worker-exit', message));
      return pool;
    });
    m.pooled ??= this.#fallback.then((pool) => ({ pool, entry: pool.register(m.entry.module, m.entry.settings) }));
    const { pool, entry } = await m.pooled;
    return pool.call(entry, input, options);
  }
}

function timeoutMessage(timeoutMs: number): string {
  return `the function did not return within ${timeoutMs} ms (--timeout); it was stopped`;
}

function withLogs(err: CapsuleError, logs: CallLogs | undefined): CapsuleError & { logs?: CallLogs } {
  const e = err as CapsuleError & { logs?: CallLogs };
  if (logs) e.logs = logs;
  return e;
}

