/**
 * The instances of one module inside a worker thread: instantiation with a pooled, capped memory, the instance
 * policy (fresh per call, or one long-lived instance per worker with --reuse), the per-call
 * host context and captured stdio, and the classification of failures.
 *
 * "Fresh per call" (capsule-abi.md §3) is served, when the module allows it, by one initialised
 * instance reset after each call to its post-initialisation state (snapshot.ts); otherwise by a
 * new instance per call.
 */
import { writeAllSync } from '../base/stdio.ts';
import { CapsuleError, type ErrorCode } from '../base/errors.ts';
import { formatBytes } from '../base/units.ts';
import { MemoryPool, PAGE } from './memory-pool.ts';
import { MEMORY_IMPORT, type MemoryLimits } from '../wasm/binary.ts';
import { hideSnapshotExports, probeImports, Snapshot, snapshotTarget, type SnapshotPlan, type SnapshotTarget } from './snapshot.ts';
import type { Detection } from '../base/kinds.ts';
import type { InvocationInput, InvocationMeta, InvocationOutput } from '../base/invocation.ts';
import { Wasi, WasiExit, type WasiConfig } from '../wasi/preview1.ts';
import { Guest, GuestFault } from '../abi/guest.ts';
import { abiFor } from '../abi/index.ts';
import { buildHostImports, type CallState } from '../abi/host-imports.ts';
import { capsuleUserFunctions, plainUserImports, UserFunctionFailure } from '../abi/user-functions.ts';
import { findHostFunction } from '../capabilities/index.ts';
import type { HostCallContext } from '../capabilities/types.ts';
import type { FunctionSettings } from '../base/settings.ts';
import type { Abi, GuestOptions, GuestInstances } from '../abi/types.ts';
import type { LinkedModule } from './load.ts';
import { checkDeadline, meterImports, type MeterDeadline } from '../wasm/meter.ts';

/** A module as a worker receives it. */
export interface WorkerModule {
  name: string;
  compiled: WebAssembly.Module;
  detection: Detection;
  hostImports: string[];
  pooledMemory?: MemoryLimits;
  importedMemory?: { module: string; name: string; limits: MemoryLimits };
  /** Modules instantiated with each instance, their exports under their name (`LoadOptions.linked`). */
  linked?: LinkedModule[];
  /** The exports of its mutable globals, when fresh calls may reset one instance (snapshot.ts). */
  snapshot?: SnapshotPlan;
  /**
   * false when instantiating it runs no guest code (no start function, no linked modules): a
   * `SyncGuard` then does not enter it under a watchdog. Absent: it may.
   */
  instantiationRunsCode?: boolean;
  /**
   * `compiled` checks its own deadline (src/wasm/meter.ts, `meteredModule`): it imports
   * `capsule_meter.check`, which the instances supply; `ModuleInstances.setDeadline` arms it.
   */
  metered?: boolean;
  settings: FunctionSettings;
}

/** What a call captured (stdio = capture). */
export interface CallLogs {
  stdout: string;
  stderr: string;
  log: string[];
  truncated: boolean;
}

/** Calls a named main-thread service; see `WorkerPool.provide`. */
export type ServiceCaller = (name: string, request: unknown) => Promise<unknown>;

/**
 * Runs guest code (an instantiation, an export) synchronously under a deadline: the inline
 * executor's (inline.ts), which stops it with V8's TerminateExecution. `run` throws a
 * CapsuleError TIMEOUT when the deadline passes, and calls `f` directly when none applies.
 */
export interface SyncGuard {
  run<T>(f: () => T): T;
}

/** A failure as it crosses the worker boundary. */
export interface CallError {
  code: ErrorCode;
  message: string;
}

/**
 * What a module that could not be instantiated answers to each of its calls (worker.ts and the
 * inline executor alike): MEMORY or BAD_MODULE as thrown, any other failure INTERNAL.
 */
export function loadFailure(e: unknown): CallError & { code: 'MEMORY' | 'BAD_MODULE' | 'INTERNAL' } {
  const err = e as { code?: string; message?: string };
  const code = err?.code === 'MEMORY' || err?.code === 'BAD_MODULE' ? err.code : 'INTERNAL';
  return { code, message: err?.message ?? String(e) };
}

const decoder = new TextDecoder();
/** `HostCallContext.trigger` of a call whose meta has none (one object for all: it is read-only). */
const NO_TRIGGER: HostCallContext['trigger'] = Object.freeze({});

class Capture {
  stdout = '';
  stderr = '';
  log: string[] = [];
  bytes = 0;
  truncated = false;
  readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  /** Adds text; past `max` bytes (UTF-8) the rest is dropped and `truncated` set. */
  add(kind: 'stdout' | 'stderr' | 'log', text: string): void {
    let size = Buffer.byteLength(text);
    if (this.bytes + size > this.max) {
      this.truncated = true;
      const room = Math.max(0, this.max - this.bytes);
      text = Buffer.from(text).subarray(0, room).toString();
      size = room;
      if (!text) return;
    }
    this.bytes += size;
    if (kind === 'log') this.log.push(text);
    else this[kind] += text;
  }
}

/** The instances of one module inside one worker thread (what an ABI's `invoke` runs calls on). */
export class ModuleInstances implements GuestInstances {
  readonly spec: WorkerModule;
  readonly abi: Abi;
  readonly #wasi = new Wasi();
  readonly #state: CallState = {};
  /** The import object's namespaces other than the memory's (`Abi.imports`, filled). */
  readonly #namespaces: WebAssembly.Imports;
  readonly #jspi: boolean;
  readonly #env: Map<string, string>;
  readonly #memoryPool: MemoryPool;
  readonly #memShape?: { initial: number; maximum: number; module: string; name: string };
  #reused?: { guest: Guest; memory?: WebAssembly.Memory };
  /** Whether the compiled module carries the exports snapshot.ts added (kept from `Guest`). */
  readonly #hideExports: boolean;
  /** Fresh mode: the module's snapshot plan; cleared for good when the module cannot use it. */
  #plan?: SnapshotPlan;
  /** Fresh mode: the state right after initialisation, captured on the first call. */
  #snapshot?: Snapshot;
  /** Fresh mode: an initialised (or reset) instance waiting for the next call. */
  #idle?: { guest: Guest; memory: WebAssembly.Memory; target: SnapshotTarget };
  /** Set by `warm` until the first call: the plan it probed and the WASI options it probed with (see `#firstAfterWarm`). */
  #warmed?: { plan: SnapshotPlan; wasi: GuestOptions['wasi'] };
  /** Whether a call has begun (`warm` then does nothing). */
  #called = false;
  /** Whether the running call captures its stdio (`stdio: capture`); its `Capture` is made at its first write. */
  #capturing = false;
  #capture?: Capture;
  #wasiOverrides?: GuestOptions['wasi'];
  /** The WASI config last made and the overrides it was made of (an ABI passing the same options object each call reuses it). */
  #wasiMade?: { overrides: GuestOptions['wasi']; config: WasiConfig };
  /** The context of `withReadyGuestSync` calls, one per instance set anew for each (nothing keeps it past a synchronous call). */
  #syncCtx?: CallContext;
  /** The ABI generation host functions see (2 for kinds without host functions). */
  readonly #generation: 1 | 2;
  /** Memory of the instance that ran last, kept for classifying its failure. */
  #lastMemory?: WebAssembly.Memory;
  /** The deadline a metered module's `capsule_meter.check` reads (`setDeadline`); undefined when not metered. */
  readonly #meter?: MeterDeadline;
  /** The meter's deadline when its calls yield (`options.yieldEveryMs`): the guests' `YieldGate`. */
  readonly #gate?: MeterDeadline;

  readonly #service: ServiceCaller;
  /** Wraps every entry into guest code (not for modules that suspend: they run with JSPI). */
  readonly #guard?: SyncGuard;

  /**
   * @param service reaches main-thread services (shared cache, broker connections) for async
   *   host functions
   * @param guard runs each instantiation and each call of an export (inline executor: the
   *   deadline); ignored when the module imports something that suspends (`suspends`)
   * @param options.yieldEveryMs for a metered module: a call gives the thread back when it has
   *   run this long (ms) since it started or resumed, and resumes on `setImmediate` (JSPI; its
   *   exports then run through `WebAssembly.promising`, `suspends` is true). Ignored for a
   *   module that is not metered. See `meterImports`.
   * @param options.onYield with `yieldEveryMs`: called on `setImmediate` before a call that gave
   *   the thread back resumes (no guest code on the stack then)
   */
  constructor(spec: WorkerModule, memoryPool: MemoryPool, service: ServiceCaller = () => Promise.reject(new Error('no host services here')), guard?: SyncGuard, options: { yieldEveryMs?: number; onYield?: () => void } = {}) {
    this.spec = spec;
    this.#service = service;
    this.abi = abiFor(spec.detection.kind, spec.name);
    this.#memoryPool = memoryPool;
    this.#env = new Map(spec.settings.env);
    const generation = this.abi.generation(spec.detection);
    this.#generation = generation ?? 2;
    const user = spec.settings.userFunctions;
    const fns = generation ? [...spec.hostImports.map((n) => findHostFunction(n, generation)!), ...capsuleUserFunctions(user)] : [];
    const built = buildHostImports(fns, generation ?? 2, this.#state);
    this.#namespaces = {};
    for (const [ns, provider] of Object.entries(this.abi.imports)) {
      this.#namespaces[ns] = provider === 'wasi-preview1' ? this.#wasi.imports as unknown as WebAssembly.ModuleImports
        : provider === 'host-functions' ? built.imports as WebAssembly.ModuleImports
          : Object.fromEntries(Object.entries(provider).map(([name, e]) => [name, e.make(this.#state, spec.name)]));
    }
    // host functions the embedder defined in namespaces of their own (main-thread services)
    for (const ns of Object.keys(user?.namespaces ?? {})) {
      if (this.abi.imports[ns] === undefined) this.#namespaces[ns] = plainUserImports(user!, ns, this.#state, this.abi.userCallHooks) as WebAssembly.ModuleImports;
    }
    if (spec.metered) {
      const meter: MeterDeadline = (this.#meter = { at: Infinity, onYield: options.onYield });
      Object.assign(this.#namespaces, meterImports(meter, options.yieldEveryMs));
      if (options.yieldEveryMs !== undefined) this.#gate = meter;
      this.#wasi.beforeSleep = () => checkDeadline(meter);
    }
    // JSPI costs a stack switch per call: only for modules importing something that suspends
    const suspends = WebAssembly.Module.imports(spec.compiled).some((i) => {
      const provider = this.abi.imports[i.module];
      return typeof provider === 'object' ? provider[i.name]?.async === true : user?.namespaces[i.module] !== undefined;
    });
    this.#jspi = built.async || suspends || this.#gate !== undefined;
    if (!this.#jspi) this.#guard = guard;
    const capPages = Math.floor(spec.settings.maxMemoryBytes / PAGE);
    const limits = spec.pooledMemory ?? spec.importedMemory?.limits;
    if (limits) {
      const maximum = Math.min(limits.max ?? Infinity, capPages);
      if (limits.min > maximum) {
        throw new CapsuleError('MEMORY', `${spec.name} needs ${limits.min} pages (${limits.min * 64} KiB) of linear memory at start, above the cap of ${capPages} pages (--max-memory)`);
      }
      const where = spec.pooledMemory ? MEMORY_IMPORT : spec.importedMemory!;
      this.#memShape = { initial: limits.min, maximum, module: where.module, name: where.name };
    }
    const plan = spec.snapshot;
    this.#hideExports = plan !== undefined;
    if (!spec.settings.reuse && this.#memShape) this.#plan = plan;
  }

  /**
   * Whether the module imports a host function that suspends it (JSPI: an async capability, a
   * host function of the embedder), or yields (`options.yieldEveryMs`): its calls leave the
   * thread's stack while the host awaits.
   */
  get suspends(): boolean {
    return this.#jspi;
  }

  /**
   * Arms the deadline a metered module (`WorkerModule.metered`) checks itself: guest code of
   * these instances that runs past it (a call, an instantiation, an initialisation) throws a
   * CapsuleError TIMEOUT from inside the guest, and the instance it ran in is dropped. Set it
   * before each call and `Infinity` after; calls must not interleave (one call at a time per
   * `ModuleInstances`: a thread that interleaves yielding calls runs each on its own).
   * Nothing for a module that is not metered.
   * @param deadline ms, Date.now clock; Infinity: none
   * @param timeoutMs the call's timeout, for the error message
   */
  setDeadline(deadline: number, timeoutMs?: number): void {
    const meter = this.#meter;
    if (!meter) return;
    meter.at = deadline === Infinity ? Infinity : performance.now() + (deadline - Date.now());
    meter.timeoutMs = timeoutMs;
  }

  /** Times a call of these instances gave the thread back (`options.yieldEveryMs`), since they were made. */
  get yields(): number {
    return this.#meter?.yields ?? 0;
  }

  /** Whether the module checks its own deadline (`WorkerModule.metered`). */
  get metered(): boolean {
    return this.#meter !== undefined;
  }

  /** GuestInstances: what the module's import functions act on. */
  get callState(): CallState {
    return this.#state;
  }

  /** Lets go of the long-lived instance and closes the files it kept open (module unloaded). */
  dispose(): void {
    this.#reused = undefined;
    this.#idle = undefined;
    this.#wasi.closeKept();
  }

  /** Runs one invocation; never throws (failures come back as `error`). */
  async run(input: InvocationInput, meta: InvocationMeta): Promise<{ output?: InvocationOutput; error?: CallError; logs?: CallLogs }> {
    this.#startCall();
    try {
      const output = await this.abi.invoke(this, input, meta, this.spec.detection);
      return { output, logs: this.#logs() };
    } catch (e) {
      return this.#failed(e);
    } finally {
      this.#endCall();
    }
  }

  /**
   * `run` without a promise when the ABI and the module allow it (`Abi.invokeSync`: a module that
   * does not suspend, with an instance ready: its reused one, or in fresh mode an idle one at its
   * snapshot); never throws.
   * @returns undefined when the call cannot run that way (then `run`)
   */
  runSync(input: InvocationInput, meta: InvocationMeta): { output?: InvocationOutput; error?: CallError; logs?: CallLogs } | undefined {
    if (!this.abi.invokeSync || this.#jspi || !(this.#reused ?? this.#idle)) return undefined;
    this.#startCall();
    try {
      const output = this.abi.invokeSync(this, input, meta, this.spec.detection);
      if (output === undefined) return undefined;
      return { output, logs: this.#logs() };
    } catch (e) {
      return this.#failed(e);
    } finally {
      this.#endCall();
    }
  }

  /** A call of `run`/`runSync` begins: it captures its stdio when the settings say `capture`, no memory seen yet. */
  #startCall(): void {
    this.#lastMemory = undefined;
    this.#capturing = this.spec.settings.stdio === 'capture';
    this.#capture = undefined;
  }

  /** What the running call captured; undefined when it wrote nothing (or does not capture). */
  #logs(): CallLogs | undefined {
    return this.#capture ? logsOf(this.#capture) : undefined;
  }

  /** A call failed with `e`: what `run`/`runSync` return, the logs it captured included. */
  #failed(e: unknown): { error: CallError; logs?: CallLogs } {
    return { error: this.#classify(e), logs: this.#logs() };
  }

  /** The call is over: its capture and memory are forgotten. */
  #endCall(): void {
    this.#capturing = false;
    this.#capture = undefined;
    this.#lastMemory = undefined;
  }

  /**
   * GuestInstances: `withGuest` without a promise, when its instance is ready: the reused one, or
   * in fresh mode the idle one at the snapshot (reset after the call as `#withSnapshot` does).
   */
  withReadyGuestSync<T>(meta: InvocationMeta, fn: (guest: Guest, ctx: HostCallContext) => T, options: GuestOptions = {}): { value: T } | undefined {
    if (this.#jspi) return undefined;
    if (!this.spec.settings.reuse) return this.#withIdleSync(meta, fn, options);
    const entry = this.#reused;
    if (!entry) return undefined;
    const ctx = this.#syncContext(meta);
    this.#wasiOverrides = options.wasi;
    this.#bind(entry.guest, ctx, entry.memory);
    this.#lastMemory = entry.guest.memory;
    try {
      return { value: fn(entry.guest, ctx) };
    } catch (e) {
      this.#reused = undefined; // a trapped instance is never reused (§7.12)
      throw e;
    } finally {
      this.#unbind(this.#reused !== undefined);
    }
  }

  /**
   * GuestInstances: an initialised guest for `fn`, fresh or reused (capsule-abi.md §3). Not
   * `async` itself: a call on the snapshot's instance gets `#withSnapshot`'s promise, with no
   * layer of promise more.
   */
  withGuest<T>(meta: InvocationMeta, fn: (guest: Guest, ctx: HostCallContext) => Promise<T>, options: GuestOptions = {}): Promise<T> {
    const ctx = this.#context(meta);
    this.#called = true;
    if (this.#warmed) this.#firstAfterWarm(options.wasi);
    this.#wasiOverrides = options.wasi;
    if (!this.spec.settings.reuse && this.#plan && this.#snapshot) return this.#withSnapshot(ctx, fn);
    return this.#withGuestAsync(ctx, fn);
  }

  /** `withGuest` past its first steps: the reused instance, the snapshot probe, or a new instance. */
  async #withGuestAsync<T>(ctx: HostCallContext, fn: (guest: Guest, ctx: HostCallContext) => Promise<T>): Promise<T> {
    if (this.spec.settings.reuse) {
      let entry = this.#reused;
      try {
        if (!entry) {
          entry = this.#instantiate(ctx);
          this.#reused = entry;
          await this.abi.initialise(entry.guest);
        } else {
          this.#bind(entry.guest, ctx, entry.memory);
          this.#lastMemory = entry.guest.memory;
        }
        return await fn(entry.guest, ctx);
      } catch (e) {
        this.#reused = undefined; // a trapped instance is never reused (§7.12)
        throw e;
      } finally {
        // the long-lived instance keeps the files it opened for its next call (a fresh one
        // would start with the preopens only); a discarded one closes them
        this.#unbind(this.#reused !== undefined);
      }
    }
    if (this.#plan && (this.#snapshot ??= await this.#probe(ctx))) return this.#withSnapshot(ctx, fn);
    const { guest, memory } = this.#instantiate(ctx);
    try {
      await this.abi.initialise(guest);
      return await fn(guest, ctx);
    } finally {
      this.#unbind();
      if (memory && this.#memShape) this.#memoryPool.release(this.#memShape.initial, this.#memShape.maximum, memory);
    }
  }

  /**
   * Does ahead what the first fresh call of the module does first, so that it costs what later
   * ones do (docs/performance.md, "Start-up"): the snapshot probe, whose imports refuse to run
   * (snapshot.ts: side-effect free), then, when instantiating runs no guest code (no start
   * function, no linked module: `WorkerModule.instantiationRunsCode` false), the instance the
   * first call runs on, set to the snapshot. No guest export runs with working imports. Nothing
   * to do with --reuse, for a module without a snapshot plan, or once a call has begun. The
   * probe runs with the WASI options the ABI's calls pass (`Abi.guestOptions`); a first call
   * that passes others probes again with them (`#firstAfterWarm`), as it would have without the
   * warm-up.
   * Never throws (a failed probe leaves the module to a new instance per call, as at a call).
   */
  async warm(): Promise<void> {
    const plan = this.#plan;
    if (!plan || this.#snapshot || this.#called) return;
    const wasi = this.abi.guestOptions?.wasi;
    this.#warmed = { plan, wasi };
    this.#wasiOverrides = wasi;
    const ctx = this.#context({});
    const snapshot = (this.#snapshot = await this.#probe(ctx));
    if (!snapshot || this.spec.instantiationRunsCode !== false || this.#called) return;
    try {
      this.#idle = this.#newAtSnapshot(ctx, snapshot);
    } catch {
      // the first call makes its instance and reports the failure
    } finally {
      this.#unbind();
    }
  }

  /**
   * The first call after `warm`: it keeps the warm-up's snapshot and idle instance when it passes
   * the WASI options the probe ran with; otherwise they are dropped and it probes with its own.
   */
  #firstAfterWarm(wasi: GuestOptions['wasi']): void {
    const warmed = this.#warmed!;
    this.#warmed = undefined;
    if (wasi === warmed.wasi) return;
    this.#plan = warmed.plan;
    this.#snapshot = undefined;
    this.#idle = undefined; // its memory is left to the garbage collector (once)
  }

  /**
   * Initialises a probe instance whose imports refuse to run (snapshot.ts) and captures its state.
   * @returns undefined, and drops the plan for good, when initialisation called an import or
   *   failed in any way (the ordinary path then runs it, and reports its failure, per call)
   */
  async #probe(ctx: HostCallContext): Promise<Snapshot | undefined> {
    const shape = this.#memShape!;
    const memory = new WebAssembly.Memory({ initial: shape.initial, maximum: shape.maximum });
    const probe = probeImports(this.#imports(memory));
    this.#bind(undefined, ctx, memory); // the side-effect-free WASI functions run for real
    try {
      const instance = this.#newInstance(() => probe.imports);
      // a yielding module's probe yields too (its initialisation may be a runaway)
      await this.abi.initialise(new Guest(this.#guarded(hideSnapshotExports(instance)), memory, this.#gate !== undefined, this.#gate));
      if (!probe.called()) return Snapshot.capture(snapshotTarget(this.#plan!, instance, memory), probe.replay);
    } catch {
      // the ordinary path reproduces the failure with the real imports
    } finally {
      this.#unbind();
    }
    this.#plan = undefined;
    return undefined;
  }

  /**
   * Runs `fn` on the idle instance (or on a new one set to the snapshot), then resets it for the
   * next call. An instance whose call failed in any way, or whose memory grew, is discarded.
   */
  async #withSnapshot<T>(ctx: HostCallContext, fn: (guest: Guest, ctx: HostCallContext) => Promise<T>): Promise<T> {
    const snapshot = this.#snapshot!;
    let entry = this.#idle;
    this.#idle = undefined;
    if (entry) {
      this.#bind(entry.guest, ctx, entry.memory);
      this.#lastMemory = entry.memory;
      snapshot.replay(this.#wasi.imports);
    } else {
      try {
        entry = this.#newAtSnapshot(ctx, snapshot);
        snapshot.replay(this.#wasi.imports);
      } catch (e) {
        this.#unbind();
        throw e;
      }
    }
    let clean = false;
    try {
      const result = await fn(entry.guest, ctx);
      clean = true;
      return result;
    } finally {
      this.#unbind();
      this.#putBack(entry, snapshot, clean);
    }
  }

  /**
   * `#withSnapshot` without a promise, on the idle instance only (`withReadyGuestSync`, fresh mode).
   * @returns undefined when no instance is idle, or when the first call after `warm` passes other
   *   WASI options than the warm-up probed with (then `withGuest` probes again)
   */
  #withIdleSync<T>(meta: InvocationMeta, fn: (guest: Guest, ctx: HostCallContext) => T, options: GuestOptions): { value: T } | undefined {
    const entry = this.#idle;
    const snapshot = this.#snapshot;
    if (!entry || !snapshot) return undefined;
    if (this.#warmed) {
      if (this.#warmed.wasi !== options.wasi) return undefined;
      this.#warmed = undefined;
    }
    this.#called = true;
    this.#idle = undefined;
    const ctx = this.#syncContext(meta);
    this.#wasiOverrides = options.wasi;
    this.#bind(entry.guest, ctx, entry.memory);
    this.#lastMemory = entry.memory;
    let clean = false;
    try {
      snapshot.replay(this.#wasi.imports);
      const value = fn(entry.guest, ctx);
      clean = true;
      return { value };
    } finally {
      this.#unbind();
      this.#putBack(entry, snapshot, clean);
    }
  }

  /**
   * After a fresh call on `entry`: reset to `snapshot` and idle again when the call was `clean`
   * and its memory did not grow; otherwise its memory goes back to the pool (unless it grew: it
   * is dropped, so that new instances start at the snapshot's size).
   */
  #putBack(entry: { guest: Guest; memory: WebAssembly.Memory; target: SnapshotTarget }, snapshot: Snapshot, clean: boolean): void {
    const shape = this.#memShape!;
    if (clean && snapshot.restore(entry.target)) this.#idle = entry;
    else if (entry.memory.buffer.byteLength <= snapshot.memoryBytes) this.#memoryPool.release(shape.initial, shape.maximum, entry.memory);
  }

  /**
   * A new instance bound to `ctx`, with a pooled memory, set to `snapshot` (the caller unbinds).
   * @throws what instantiating throws (the memory is then back in the pool)
   */
  #newAtSnapshot(ctx: HostCallContext, snapshot: Snapshot): { guest: Guest; memory: WebAssembly.Memory; target: SnapshotTarget } {
    const shape = this.#memShape!;
    let memory = this.#memoryPool.acquire(shape.initial, shape.maximum);
    if (memory.buffer.byteLength > snapshot.memoryBytes) {
      // a pooled memory that grew under another instance: this one must start at the snapshot's size
      this.#memoryPool.release(shape.initial, shape.maximum, memory);
      memory = new WebAssembly.Memory({ initial: shape.initial, maximum: shape.maximum });
    }
    try {
      const { guest, instance } = this.#instantiate(ctx, memory);
      const target = snapshotTarget(this.#plan!, instance, memory);
      snapshot.restore(target);
      return { guest, memory, target };
    } catch (e) {
      this.#memoryPool.release(shape.initial, shape.maximum, memory);
      throw e;
    }
  }

  // Made once: they write wherever the current call's output goes (#capture, read at call time).
  readonly #stdout = (t: string | Uint8Array) => this.#write('stdout', t);
  readonly #stderr = (t: string | Uint8Array) => this.#write('stderr', t);
  readonly #log = (t: string) => this.#write('log', t);
  static readonly #noStdin = new Uint8Array(0);

  #context(meta: InvocationMeta): CallContext {
    return new CallContext(this.#generation, this.#env, this.spec, this.#stdout, this.#log, this.#service, meta);
  }

  /**
   * `#context` for a synchronous call: the instance's one context object, set for `meta`. Its
   * `callData` is kept (GuestInstances.withReadyGuestSync): emptying a Map costs more than a new one.
   */
  #syncContext(meta: InvocationMeta): HostCallContext {
    const ctx = this.#syncCtx;
    if (!ctx) return (this.#syncCtx = this.#context(meta));
    ctx.set(meta);
    return ctx;
  }

  #write(kind: 'stdout' | 'stderr' | 'log', t: string | Uint8Array): void {
    if (this.#capturing) {
      (this.#capture ??= new Capture(this.spec.settings.maxLogBytes)).add(kind, typeof t === 'string' ? t : decoder.decode(t));
      return;
    }
    if (kind === 'log') writeAllSync(2, `${new Date().toISOString()} : ${t}\n`);
    else writeAllSync(kind === 'stdout' ? 1 : 2, t);
  }

  #wasiConfig(): WasiConfig {
    const overrides = this.#wasiOverrides;
    const made = this.#wasiMade;
    if (made && overrides !== undefined && made.overrides === overrides) return made.config;
    const config: WasiConfig = {
      args: overrides?.args ?? [],
      env: overrides?.env ?? this.#env,
      stdin: overrides?.stdin ?? ModuleInstances.#noStdin,
      stdout: overrides?.stdout ?? this.#stdout,
      stderr: this.#stderr,
      mounts: this.spec.settings.mounts,
    };
    if (overrides !== undefined) this.#wasiMade = { overrides, config };
    return config;
  }

  #bind(guest: Guest | undefined, ctx: HostCallContext, memory: WebAssembly.Memory | undefined): void {
    this.#state.guest = guest;
    this.#state.ctx = ctx;
    this.#wasi.bind(memory ?? guest?.memory, this.#wasiConfig());
  }

  #unbind(keepFiles = false): void {
    this.#state.guest = undefined;
    this.#state.ctx = undefined;
    this.#wasi.unbind(keepFiles);
  }

  /** The import object of an instance (the memory, when given, under the module's memory import). */
  #imports(memory: WebAssembly.Memory | undefined): WebAssembly.Imports {
    const shape = this.#memShape;
    const imports: WebAssembly.Imports = { ...this.#namespaces };
    // linked modules in order, each seeing the ones before it (extism-abi.md §1)
    for (const l of this.spec.linked ?? []) imports[l.name] = new WebAssembly.Instance(l.compiled, imports).exports;
    if (shape && memory) imports[shape.module] = { ...(imports[shape.module] ?? {}), [shape.name]: memory };
    return imports;
  }

  /**
   * A new instance bound to this call, with a pooled memory or `given` (which the caller then
   * owns, also when this throws).
   */
  #instantiate(ctx: HostCallContext, given?: WebAssembly.Memory): { guest: Guest; memory?: WebAssembly.Memory; instance: WebAssembly.Instance } {
    const shape = this.#memShape;
    const memory = given ?? (shape ? this.#memoryPool.acquire(shape.initial, shape.maximum) : undefined);
    this.#bind(undefined, ctx, memory);
    let instance: WebAssembly.Instance;
    try {
      instance = this.#newInstance(() => this.#imports(memory));
    } catch (e) {
      if (memory && shape && !given) this.#memoryPool.release(shape.initial, shape.maximum, memory);
      if (e instanceof WebAssembly.LinkError) throw new CapsuleError('BAD_MODULE', `${this.spec.name}: cannot link: ${e.message}`);
      throw e;
    }
    const guest = new Guest(this.#guarded(this.#hideExports ? hideSnapshotExports(instance) : instance), memory, this.#jspi, this.#gate);
    this.#state.guest = guest;
    this.#lastMemory = guest.memory;
    if (!memory) this.#wasi.setMemory(guest.memory);
    return { guest, memory, instance };
  }

  /** A new instance of the module (linked modules first); under the guard, if any: start functions run guest code. */
  #newInstance(imports: () => WebAssembly.Imports): WebAssembly.Instance {
    const make = () => new WebAssembly.Instance(this.spec.compiled, imports());
    return this.#guard && this.spec.instantiationRunsCode !== false ? this.#guard.run(make) : make();
  }

  /** `instance` itself, or with a guard an instance whose exported functions run under it (same `length`). */
  #guarded(instance: WebAssembly.Instance): WebAssembly.Instance {
    const guard = this.#guard;
    if (!guard) return instance;
    const exports: Record<string, unknown> = Object.create(null);
    for (const [name, value] of Object.entries(instance.exports)) {
      if (typeof value !== 'function') {
        exports[name] = value;
        continue;
      }
      const f = value as (...a: unknown[]) => unknown;
      // an export without parameters (every Extism plugin function) is entered with no closure or array per call
      const entry = f.length === 0 ? () => guard.run(f) : (...a: unknown[]) => guard.run(() => f(...a));
      exports[name] = Object.defineProperty(entry, 'length', { value: f.length });
    }
    return Object.create(instance, { exports: { value: Object.freeze(exports), enumerable: true } }) as WebAssembly.Instance;
  }

  /** Maps anything thrown during a call to a runner error code (conventions.md §4). */
  #classify(e: unknown): CallError {
    if (e instanceof CapsuleError) return e.toJSON();
    const atCap = (): boolean => {
      const mem = this.#lastMemory;
      const max = this.#memShape?.maximum;
      // Guests grow in steps (allocators double, or add what they need): a trap with memory past
      // half the cap is reported as the cap being reached.
      return mem !== undefined && max !== undefined && mem.buffer.byteLength * 2 > max * PAGE;
    };
    if (e instanceof WasiExit) return { code: 'TRAP', message: `the function exited with code ${e.code}` };
    if (e instanceof GuestFault || e instanceof UserFunctionFailure) return { code: 'TRAP', message: e.message };
    if (e instanceof WebAssembly.RuntimeError || e instanceof RangeError) {
      const msg = e.message;
      if (/memory|out of bounds|unreachable|allocat/i.test(msg) && atCap()) {
        const used = this.#lastMemory!.buffer.byteLength;
        return { code: 'MEMORY', message: `the function trapped (${msg}) with ${formatBytes(used)} of linear memory, near its limit of ${formatBytes(this.#memShape!.maximum * PAGE)} (--max-memory): it most likely ran out of memory` };
      }
      return { code: 'TRAP', message: `the function trapped: ${msg}` };
    }
    return { code: 'INTERNAL', message: `host error: ${(e as Error)?.message ?? String(e)}` };
  }
}

/**
 * The `HostCallContext` of a call: what all calls of the module share, and the call's own facts
 * (`set`). Its `callData` Map is made when first read: most calls never read it.
 */
class CallContext implements HostCallContext {
  readonly generation: 1 | 2;
  readonly env: ReadonlyMap<string, string>;
  readonly capsuleVersion: string;
  readonly settings: FunctionSettings;
  readonly kind: HostCallContext['kind'];
  readonly stdout: HostCallContext['stdout'];
  readonly log: HostCallContext['log'];
  readonly service: ServiceCaller;
  requestId?: string;
  trigger: HostCallContext['trigger'] = NO_TRIGGER;
  exit?: { error: string; code: number };
  #callData?: Map<string, unknown>;

  constructor(generation: 1 | 2, env: ReadonlyMap<string, string>, spec: WorkerModule, stdout: HostCallContext['stdout'], log: HostCallContext['log'], service: ServiceCaller, meta: InvocationMeta) {
    this.generation = generation;
    this.env = env;
    this.capsuleVersion = spec.settings.capsuleVersion;
    this.settings = spec.settings;
    this.kind = spec.detection.kind;
    this.stdout = stdout;
    this.log = log;
    this.service = service;
    this.set(meta);
  }

  /** Takes `meta`'s request id, trigger facts and exit (a reused context's next call). */
  set(meta: InvocationMeta): void {
    this.requestId = meta.requestId;
    this.trigger = meta.trigger ?? NO_TRIGGER;
    this.exit = meta.exit;
  }

  get callData(): Map<string, unknown> {
    return (this.#callData ??= new Map());
  }
}

/** The captured output, or undefined when the guest printed nothing (saves a clone per call). */
function logsOf(c: Capture): CallLogs | undefined {
  if (c.bytes === 0 && !c.truncated) return undefined;
  return { stdout: c.stdout, stderr: c.stderr, log: c.log, truncated: c.truncated };
}
