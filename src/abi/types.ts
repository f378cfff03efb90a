/**
 * The contract of an ABI (one folder per module kind under src/abi/): check a module at load,
 * turn an invocation into guest calls, and turn the guest's result back into an output.
 */
import type { ParsedModule, ValType } from '../wasm/binary.ts';
import type { Detection, ModuleKind } from '../base/kinds.ts';
import type { HostCallContext, HostFunction } from '../capabilities/types.ts';
import type { InvocationInput, InvocationMeta, InvocationOutput } from '../base/invocation.ts';
import type { Guest } from './guest.ts';
import type { WasiConfig } from '../wasi/preview1.ts';
import type { CallState } from './host-imports.ts';

/**
 * Per-call WASI settings an ABI may set (WASI commands: argv, stdin, env, and a stdout sink for
 * CGI; Capsule ABI modules: argv `[""]`, capsule-abi.md §2.2). Unset fields keep the engine's: no
 * argv, the function's environment, empty stdin, stdout/stderr to the call's log capture.
 */
export interface GuestOptions {
  wasi?: Partial<Pick<WasiConfig, 'args' | 'stdin' | 'env' | 'stdout'>>;
}

/**
 * A function a module kind may import from module `env` besides Capsule host functions (WASI
 * commands: the `log_i32` / `log_string` compatibility imports of wasi-cgi.md §2.4). Checked at
 * load against the declared signature; built once per (worker, module).
 */
export interface EnvImport {
  readonly params: readonly ValType[];
  readonly results: readonly ValType[];
  /** @param moduleName the module's display name; `state` holds the running call's guest and context */
  make(state: CallState, moduleName: string): (...args: number[]) => unknown;
}

/** What the engine offers an ABI inside a worker, for one module. */
export interface GuestRuntime {
  /**
   * The module as the worker received it (`name`: its file name, WASI argv[0]; `settings.env`:
   * the function's configured environment).
   */
  readonly spec: { readonly name: string; readonly settings: { readonly env: readonly [string, string][] } };
  /**
   * Runs `fn` on an instance initialised with `Abi.initialise` (fresh, or reused with --reuse)
   * and releases it afterwards.
   */
  withGuest<T>(meta: InvocationMeta, fn: (guest: Guest, ctx: HostCallContext) => Promise<T>, options?: GuestOptions): Promise<T>;
}

export interface Abi {
  /** Kinds this ABI serves. */
  readonly kinds: readonly ModuleKind[];
  /** Generation whose host functions the module may import from `env`; none for plain WASI. */
  generation(detection: Detection): 1 | 2 | undefined;
  /**
   * Load-time checks beyond the host imports (entry exports, import modules). `options.entrypoint`:
   * the export a WASI route calls instead of `_start`.
   * @throws CapsuleError BAD_MODULE naming what is wrong
   */
  check(parsed: ParsedModule, detection: Detection, name: string, options?: { entrypoint?: string }): void;
  /** First calls on a new instance (`_initialize`/`_start`, then OnStart for gen 2). */
  initialise(guest: Guest): Promise<void>;
  /** Runs one invocation. */
  invoke(rt: GuestRuntime, input: InvocationInput, meta: InvocationMeta, detection: Detection): Promise<InvocationOutput>;
  /** Extra `env` imports this kind may declare (none for Capsule ABI kinds: they use host functions). */
  readonly envImports?: Readonly<Record<string, EnvImport>>;
  /** Host functions checked against the module (filled by the engine). */
  readonly hostFunctions?: HostFunction[];
}
