/**
 * The contract of an ABI (one folder per module kind under src/abi/): recognise a module, say
 * which import namespaces it may use and what fills them, check it at load, turn an invocation
 * into guest calls, and turn the guest's result back into an output.
 *
 * Adding an ABI: a folder `src/abi/<kind>/` whose index.ts exports one `Abi` object, and one line
 * in src/abi/index.ts (the position in that list is the detection order, spec README §1). The
 * engine (detect.ts, load.ts, instance.ts) only loops over the list: it names no kind and no
 * namespace. A new kind name also goes into `ModuleKind` (src/base/kinds.ts).
 */
import type { ParsedModule, ValType } from '../wasm/binary.ts';
import type { Detection, ModuleKind } from '../base/kinds.ts';
import type { HostCallContext } from '../capabilities/types.ts';
import type { InvocationInput, InvocationMeta, InvocationOutput } from '../base/invocation.ts';
import type { Guest } from './guest.ts';
import type { WasiConfig } from '../wasi/preview1.ts';
import type { CallState } from './host-imports.ts';
import type { ExtismMode } from '../base/settings.ts';

/**
 * Per-call WASI settings an ABI may set (WASI commands: argv, stdin, env, and a stdout sink for
 * CGI; Capsule ABI modules: argv `[""]`, capsule-abi.md §2.2). Unset fields keep the engine's: no
 * argv, the function's environment, empty stdin, stdout/stderr to the call's log capture.
 * The `wasi` object is read, not copied: the engine reuses what it made of it while later calls
 * pass the same object, so do not change one once passed (make a new one).
 */
export interface GuestOptions {
  wasi?: Partial<Pick<WasiConfig, 'args' | 'stdin' | 'env' | 'stdout'>>;
}

/**
 * A function an ABI itself provides under one of its import namespaces (WASI commands: the
 * `env.log_i32` / `env.log_string` compatibility imports of wasi-cgi.md §2.4). Checked at load
 * against the declared signature; built once per (worker thread, module).
 */
export interface EnvImport {
  readonly params: readonly ValType[];
  readonly results: readonly ValType[];
  /** Whether it suspends the guest (a `WebAssembly.Suspending`): a module importing it runs its exports with JSPI. */
  readonly async?: boolean;
  /** @param moduleName the module's display name; `state` holds the running call's guest and context */
  make(state: CallState, moduleName: string): (...args: number[]) => unknown;
}

/** What the engine offers an ABI inside a worker thread, for one module: its instances. */
export interface GuestInstances {
  /**
   * The module as the worker received it (`name`: its file name, WASI argv[0]; `settings.env`:
   * the function's configured environment; `settings.extismMode`: how a plugin sees HTTP).
   */
  readonly spec: { readonly name: string; readonly settings: { readonly env: readonly [string, string][]; readonly extismMode?: ExtismMode } };
  /**
   * What the module's import functions act on (one per module per worker thread, for all its
   * instances): an ABI's imports (`EnvImport.make`) and its `invoke` both know it.
   */
  readonly callState: CallState;
  /**
   * Runs `fn` on an instance initialised with `Abi.initialise` (fresh, or reused with --reuse)
   * and releases it afterwards.
   */
  withGuest<T>(meta: InvocationMeta, fn: (guest: Guest, ctx: HostCallContext) => Promise<T>, options?: GuestOptions): Promise<T>;
  /**
   * `withGuest` run synchronously when it can be: nothing the module imports suspends and an
   * initialised instance is ready (with reuse, the one it keeps; fresh, an idle one at its
   * snapshot, reset after the call). Undefined when it cannot (then `withGuest`). For
   * `Abi.invokeSync`; absent where calls are never run that way. Its calls share one context
   * per instance set, fresh ones too: `ctx.callData` keeps what an earlier one set (set what a
   * call needs on each call, or keep there only what is the same for every call).
   */
  withReadyGuestSync?<T>(meta: InvocationMeta, fn: (guest: Guest, ctx: HostCallContext) => T, options?: GuestOptions): { value: T } | undefined;
}

/**
 * What fills one import namespace of a module:
 * - `'wasi-preview1'`: the engine's WASI preview1 (src/wasi/preview1.ts), any of its functions;
 * - `'host-functions'`: the Capsule host functions of the module's generation (the capabilities'
 *   host functions, src/capabilities/index.ts), each checked against its declared type;
 * - a record: exactly these functions, provided by the ABI itself (`EnvImport`).
 */
export type ImportProvider = 'wasi-preview1' | 'host-functions' | Readonly<Record<string, EnvImport>>;

/**
 * One ABI: an object exported by src/abi/<name>/index.ts and listed once in src/abi/index.ts.
 * Required: `kinds`, `imports`, `detect`, `checkKind`, `expects`, `generation`, `check`,
 * `initialise`, `invoke`; the optional fields default to "always a fresh, new instance" and the
 * kind's own name in `capsule inspect`.
 */
export interface Abi {
  /** Kinds this ABI serves (part of `--kind` and config `kind:`; also in `ModuleKind`). */
  readonly kinds: readonly ModuleKind[];
  /**
   * Import namespaces a module of this kind may import functions from, and what fills each
   * (`{ wasi_snapshot_preview1: 'wasi-preview1', env: 'host-functions' }` for the Capsule ABI).
   * A function import from any other namespace is refused at load, naming the accepted ones.
   * Memory imports are not checked here (the engine supplies the memory).
   */
  readonly imports: Readonly<Record<string, ImportProvider>>;
  /**
   * The detection rule (spec README §1): the module's kind when this ABI recognises it, or
   * undefined to let the next ABI of the list try. Runs on modules that are core modules.
   * @param name the module's display name, for messages
   * @throws CapsuleError BAD_MODULE when the module is recognisably of this ABI but cannot run
   *   (a pre-1.0 Extism plugin, a gen-1 `callHandleHttp` of an unknown arity)
   */
  detect(parsed: ParsedModule, name: string): Detection | undefined;
  /**
   * Checks a kind set explicitly (`--kind`, config `kind:`) against the module's exports.
   * @throws CapsuleError BAD_MODULE naming the export the kind needs
   */
  checkKind(parsed: ParsedModule, kind: ModuleKind, name: string): Detection;
  /** What `capsule inspect` calls each kind ("Capsule ABI gen 2 (Go Capsule v0.3.4 – v0.4.2)"); the kind itself when unset. */
  readonly titles?: Readonly<Partial<Record<ModuleKind, string>>>;
  /** What the ABI accepts, for the message when no ABI recognises a module ("a WASI command (_start)"). */
  readonly expects: string;
  /**
   * Whether instances may live on between calls (capsule-abi.md §3): `'on-request'` = fresh per
   * call unless `--reuse` (gen 2); `'by-default'` = one long-lived instance per worker thread
   * unless `fresh` (Extism, extism-abi.md §11); unset = always fresh (`--reuse` is refused with a
   * warning).
   */
  readonly reuse?: 'on-request' | 'by-default';
  /**
   * Whether `initialise` runs apart from the call (start-up exports), so that a fresh call may be
   * served by an initialised instance reset to its state after initialisation (engine/snapshot.ts).
   * Unset: the module starts in its handler (WASI commands), a fresh call gets a new instance.
   */
  readonly resettable?: boolean;
  /**
   * The options every call of a resettable ABI passes to `withGuest` (the same object): a worker's
   * warm-up probes the initialisation with them (engine/instance.ts `warm`), so that its snapshot
   * is the one a first call would have taken. Unset: the warm-up's snapshot serves only calls
   * passing no options.
   */
  readonly guestOptions?: GuestOptions;
  /**
   * Grants a module of this ABI needs besides those of its Capsule host functions, for
   * `capsule inspect` (an Extism plugin importing `http_request` needs `--allowed-hosts`).
   */
  grants?(parsed: ParsedModule): { grant: string; lends: string; how: string; functions: string[] }[];
  /** Generation whose host functions the module may import (`'host-functions'`); none for plain WASI. */
  generation(detection: Detection): 1 | 2 | undefined;
  /**
   * Load-time checks beyond the host imports (entry exports, import modules). `options.entrypoint`:
   * the export a WASI route calls instead of `_start`.
   * @throws CapsuleError BAD_MODULE naming what is wrong
   */
  check(parsed: ParsedModule, detection: Detection, name: string, options?: { entrypoint?: string }): void;
  /** First calls on a new instance (`_initialize`/`_start`, then OnStart for gen 2). */
  initialise(guest: Guest): Promise<void>;
  /**
   * What the ABI adds to a call of a host function the embedder defined (abi/user-functions.ts):
   * Extism sends the blocks of its handle arguments along and makes the stored blocks real.
   */
  readonly userCallHooks?: UserCallHooks;
  /** Runs one invocation. */
  invoke(instances: GuestInstances, input: InvocationInput, meta: InvocationMeta, detection: Detection): Promise<InvocationOutput>;
  /**
   * `invoke` without a promise, for a call that can run synchronously
   * (`GuestInstances.withReadyGuestSync`); undefined when it cannot (then `invoke`). Optional: a
   * warm call costs a few `async` layers less (the inline executor, engine/inline.ts).
   */
  invokeSync?(instances: GuestInstances, input: InvocationInput, meta: InvocationMeta, detection: Detection): InvocationOutput | undefined;
}

/** One call of a defined function, from a worker to the main thread. */
export interface UserCallRequest {
  ns: string;
  name: string;
  args: (number | bigint | Uint8Array)[];
  /** Extism: blocks passed as arguments, by handle. */
  blocks?: [number, Uint8Array][];
  /** Extism: the handle the next stored block gets, then one slot further per block. */
  next?: number;
}

/** The reply: the result, the blocks stored (Extism), in order. */
export interface UserCallReply {
  result?: number | bigint | string | Uint8Array;
  stores?: Uint8Array[];
}

/**
 * What an ABI adds to a plain call (Extism: the blocks of its arguments, and the stores of the
 * reply made real): `before` fills the request, `after` maps the reply's result.
 */
export interface UserCallHooks {
  before(ctx: HostCallContext, req: UserCallRequest): void;
  after(ctx: HostCallContext, req: UserCallRequest, reply: UserCallReply): UserCallReply['result'];
}
