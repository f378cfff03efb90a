/**
 * `CapsuleFunction`: a loaded module with its grants and limits, bound to a worker pool (or run
 * in the calling thread: `inline`). This is
 * the host SDK's main entry: triggers (CLI, HTTP, …) are thin layers over `invoke`.
 */
import { CapsuleError } from '../base/errors.ts';
import { loadModule, type LoadedModule, type LoadOptions, type UrlSource } from './load.ts';
import { WorkerPool, type CallOptions, type CallResult, type PoolModule } from './pool.ts';
import { InlineExecutor, type CallExecutor } from './inline.ts';
import type { FunctionSettings } from '../base/settings.ts';
import type { InvocationInput, InvocationMeta } from '../base/invocation.ts';
import type { ExtismMode, Mount } from '../base/settings.ts';
import { CAPSULE_VERSION } from '../base/version.ts';
import { provideCapabilityServices } from '../capabilities/index.ts';
import { abiFor } from '../abi/index.ts';
import { declareUserFunctions, provideUserFunctions } from '../abi/user-functions.ts';
import { pickCapabilitySettings } from '../capabilities/settings.ts';
import { type CapabilitySettings } from '../base/settings.ts';

/** Defaults of conventions.md §1. */
export const DEFAULTS = {
  timeoutMs: 30_000,
  maxMemoryBytes: 256 * 1024 * 1024,
  maxBodyBytes: 10 * 1024 * 1024,
  maxLogBytes: 64 * 1024,
} as const;

/** Options of a function; the capability settings (`CapabilitySettings`) are optional. */
export interface FunctionOptions extends LoadOptions, CapabilitySettings {
  /** Guest-visible environment, already resolved (see `buildGuestEnv`). */
  env?: [string, string][];
  /** Granted directories (see `parseDirGrant`). */
  mounts?: Mount[];
  /** Outbound HTTP allow-list (conventions.md §2). */
  allowedHosts?: string[];
  /** Per-call deadline, ms (default 30 000; `Infinity`: none). */
  timeoutMs?: number;
  /** Linear-memory cap per instance, bytes (default 256 MiB). */
  maxMemoryBytes?: number;
  /** Keep long-lived instances (gen 2 only; ignored with a warning otherwise). */
  reuse?: boolean;
  /**
   * Extism plugins: a fresh instance per call instead of one long-lived instance per worker
   * thread (the default for plugins, extism-abi.md §11; vars live in the host either way).
   */
  fresh?: boolean;
  /** Extism plugins over HTTP: `raw` (default) or `capsule` JSON (extism-abi.md §11). */
  extismMode?: ExtismMode;
  /** `inherit` (CLI) or `capture` (servers, default). */
  stdio?: 'inherit' | 'capture';
  /** Cap on captured guest output per call, bytes (default 64 KiB). */
  maxLogBytes?: number;
  /** A pool shared with other functions; otherwise the function makes its own. Not with `inline`. */
  pool?: WorkerPool;
  /**
   * Run the calls in the calling thread instead of on worker threads (engine/inline.ts): no
   * thread starts and no call hops to one, which is what a one-shot command (`capsule run`,
   * `capsule call`) or an embedder calling a plugin from its own loop wants. Calls are
   * serialised (one at a time). The deadline: a module the meter can instrument checks it
   * itself (`meter`); any other is stopped with V8's TerminateExecution (a watchdog thread per
   * entry into the guest, ~0.2 ms each), and when it imports a host function that suspends (an
   * async capability, `hostFunctions`) its calls that have a deadline run on one worker thread,
   * started at the first of them, as do those of a WASI command that may read stdin.
   * `timeoutMs: Infinity` runs with no deadline check at all. Extism plugins keep one instance
   * whose vars survive calls; a trap or a deadline gives the next call a fresh one.
   * @throws Error from `load`/`fromModule` when given with `pool`
   */
  inline?: boolean;
  /**
   * With `inline`: whether a module the meter can instrument runs metered (default true, unless
   * CAPSULE_METER=0; engine/inline.ts). Metering costs once per module what many calls under the
   * watchdog cost (Go hello-world: ~100 ms); a one-shot command passes false.
   */
  meter?: boolean;
  /** Workers of its own pool (default: CPU cores). */
  workers?: number;
  /** Receives warnings (e.g. --reuse ignored). */
  onWarning?: (message: string) => void;
}

export class CapsuleFunction {
  readonly module: LoadedModule;
  readonly settings: FunctionSettings;
  readonly timeoutMs: number;
  /** What runs its calls: its worker pool, or the inline executor (`inline`). */
  readonly executor: CallExecutor;
  readonly #entry: PoolModule;
  #ownPool: boolean;
  #lastFatal?: { error: string; code: number };
  #plainCall?: CallOptions;

  private constructor(module: LoadedModule, options: FunctionOptions) {
    this.module = module;
    // Abi.reuse: Extism plugins keep one instance per worker thread unless `fresh` (extism-abi.md §11)
    const policy = abiFor(module.detection.kind, module.name).reuse;
    let reuse = policy === 'by-default' ? options.fresh !== true : options.reuse ?? false;
    if (reuse && policy === undefined) {
      options.onWarning?.(`--reuse applies to gen-2 Capsule modules only; ${module.name} is ${module.detection.kind}: using a fresh instance per call`);
      reuse = false;
    }
    this.settings = {
      env: options.env ?? [],
      mounts: options.mounts ?? [],
      allowedHosts: options.allowedHosts ?? [],
      maxMemoryBytes: options.maxMemoryBytes ?? DEFAULTS.maxMemoryBytes,
      reuse,
      stdio: options.stdio ?? 'capture',
      maxLogBytes: options.maxLogBytes ?? DEFAULTS.maxLogBytes,
      capsuleVersion: CAPSULE_VERSION,
      ...(options.extismMode !== undefined ? { extismMode: options.extismMode } : {}),
      ...pickCapabilitySettings(options),
    };
    const limits = module.pooledMemory ?? module.importedMemory?.limits;
    if (limits && limits.min * 65536 > this.settings.maxMemoryBytes) {
      throw new CapsuleError('MEMORY', `${module.name} needs ${limits.min * 64} KiB of linear memory at start, above --max-memory (${this.settings.maxMemoryBytes} bytes)`);
    }
    this.timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
    if (options.inline && options.pool) throw new Error(`${module.name}: inline and pool exclude each other (an inline function runs its calls in this thread)`);
    this.#ownPool = !options.pool;
    this.executor = options.pool ?? (options.inline ? new InlineExecutor({ meter: options.meter }) : new WorkerPool({ workers: options.workers }));
    if (options.hostFunctions) {
      // defined functions stay in this thread: a service of the executor (abi/user-functions.ts)
      const service = provideUserFunctions(this.executor, options.hostFunctions);
      this.settings.userFunctions = declareUserFunctions(options.hostFunctions, module.parsed, service);
    }
    this.#entry = this.executor.register(module, this.settings);
    provideCapabilityServices(this.executor);
  }

  /**
   * Its worker pool (servers share it, read its size and events).
   * @throws Error for an `inline` function, which has none
   */
  get pool(): WorkerPool {
    if (this.executor instanceof InlineExecutor) throw new Error(`${this.module.name} runs inline: it has no worker pool`);
    return this.executor as WorkerPool;
  }

  /**
   * Loads, validates and compiles a module from a file path or URL, and registers it.
   * @throws CapsuleError LOAD / BAD_MODULE / MEMORY with a message naming the module
   */
  static async load(from: { path: string } | UrlSource, options: FunctionOptions = {}): Promise<CapsuleFunction> {
    const module = await loadModule(from, options);
    return new CapsuleFunction(module, options);
  }

  /** Wraps an already loaded module. */
  static fromModule(module: LoadedModule, options: FunctionOptions = {}): CapsuleFunction {
    return new CapsuleFunction(module, options);
  }

  /**
   * Runs one invocation with this function's deadline.
   * @throws CapsuleError TRAP / TIMEOUT / MEMORY / BAD_RESULT / OVERLOADED (with `.logs`)
   */
  invoke(input: InvocationInput, meta?: InvocationMeta): Promise<CallResult> {
    if (input.type === 'lifecycle' && this.#lastFatal) meta = { ...meta, exit: this.#lastFatal };
    // the options of a call without meta are made once (nothing writes to them)
    const options = meta === undefined ? (this.#plainCall ??= { timeoutMs: this.timeoutMs, meta: {} }) : { timeoutMs: this.timeoutMs, meta };
    const call = this.executor.call(this.#entry, input, options);
    if (input.type !== 'message') return call;
    // Gen 1 (§4.5): a message handler that traps sets the error OnExit reads with hostGetExitError.
    return call.catch((e: unknown) => {
      if (e instanceof CapsuleError && e.code !== 'OVERLOADED') this.#lastFatal = { error: e.message, code: e.code === 'TIMEOUT' ? 124 : 1 };
      throw e;
    });
  }

  /**
   * Runs a lifecycle export (OnLoad, OnStart, OnStop, OnExit) in its own instance if the module
   * exports it. Failures are returned, not thrown (a lifecycle trap never stops the runner).
   * @returns undefined when it ran (or does not exist), else the error
   */
  async lifecycle(name: 'OnLoad' | 'OnExit' | 'OnStop' | 'OnStart'): Promise<{ error?: CapsuleError; logs?: CallResult['logs'] }> {
    if (!this.exports(name)) return {};
    try {
      const r = await this.invoke({ type: 'lifecycle', export: name });
      return { logs: r.logs };
    } catch (e) {
      return { error: e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message), logs: (e as { logs?: CallResult['logs'] }).logs };
    }
  }

  /** Whether the module exports a function (e.g. `OnHealthCheck`). */
  exports(name: string): boolean {
    return this.module.parsed.exports.some((e) => e.name === name && e.kind === 'function');
  }

  /**
   * Hands this function's own worker pool over to `next`, a new version of it registered on the
   * same pool (hot reload, functions/swap.ts): closing this one then only unregisters its module,
   * closing `next` closes the pool. Nothing happens when this one does not own its pool.
   * @throws Error when `next` runs on another pool
   */
  handPoolTo(next: CapsuleFunction): void {
    if (next.executor !== this.executor) throw new Error(`${next.module.name} runs on another worker pool than ${this.module.name}`);
    if (!this.#ownPool || next === this) return;
    this.#ownPool = false;
    next.#ownPool = true;
  }

  /** Unregisters it; closes its pool or inline executor if it owns it. */
  async close(): Promise<void> {
    this.executor.unregister(this.#entry);
    if (this.#ownPool) await this.executor.close();
  }
}
