/**
 * The contract between capabilities (what the host lends a guest) and ABIs (how a guest asks).
 *
 * A capability describes each host function once, in terms of decoded arguments and a result
 * value or failure text. The ABI layer (src/abi/) reads the arguments out of linear memory,
 * calls `run`, and frames the result for the module's generation (capsule-abi.md §2.4, §4.7,
 * §5.7): gen 2 `S<value>` / `F<error>` (or the raw value for `frame: 'raw'`), gen 1 the value or
 * `[ERR][0]:<error>`.
 */

import type { FunctionSettings } from '../base/settings.ts';
import type { ModuleKind } from '../base/kinds.ts';
import type { ServiceHost } from '../base/services.ts';

/** A decoded host-function argument: `s` = (ptr, len) string read as bytes, `n` = one i32. */
export type ParamKind = 's' | 'n';

/** Result of a host function: a value, or a failure text (framed per generation). */
export type HostResult = { ok: true; value: Uint8Array | string } | { ok: false; error: string };

/** Per-invocation facts a host function may use. One per guest call. */
export interface HostCallContext {
  /** The ABI generation of the calling module (1 or 2). */
  readonly generation: 1 | 2;
  /** The guest-visible environment (conventions.md §2). */
  readonly env: ReadonlyMap<string, string>;
  /** Request id of the invocation (HTTP `X-Request-Id`), if any. */
  readonly requestId?: string;
  /** Version string of this runner. */
  readonly capsuleVersion: string;
  /** Writes to the guest's standard output (passed through by the CLI, logged by servers). */
  stdout(text: string | Uint8Array): void;
  /** Writes one line to the function log. */
  log(text: string): void;
  /** Facts about the trigger (HTTP port, NATS server…), for gen-1 getters. */
  readonly trigger: Readonly<Record<string, string | number>>;
  /** The function's settings: grants (mounts, allowedHosts…) and limits. */
  readonly settings: FunctionSettings;
  /**
   * Asks a service that lives in the main thread (state shared by all workers: memory cache,
   * broker connections). Only from `async` host functions: the guest is suspended (JSPI) until
   * the reply. Rejects with the service's error message.
   */
  service(name: string, request: unknown): Promise<unknown>;
  /** Per-invocation values an ABI hands to its host functions (gen-1 request parameters). */
  readonly callData: Map<string, unknown>;
  /**
   * The module's kind. Gen-1 host functions whose separators changed between sub-generations
   * look here: `capsule-1a` joins lists with `|` (and `°`), later ones with `²` (§4.1).
   */
  readonly kind: ModuleKind;
  /** Gen 1: the last fatal error of a message handler, for hostGetExitError/Code (§4.5). */
  readonly exit?: { error: string; code: number };
}

/** One host function, as seen by every ABI. */
export interface HostFunction {
  /** Import name in module `env`, e.g. `hostGetEnv`. */
  readonly name: string;
  /** ABI generations that import it under this name with this meaning. */
  readonly generations: readonly (1 | 2)[];
  /** Arguments before the optional return pair. */
  readonly params: readonly ParamKind[];
  /** Whether the last two i32 parameters are (retPtrAddr, retLenAddr) (capsule-abi.md §2.4). */
  readonly returns: boolean;
  /** Gen 2 only: `raw` = no S/F frame (hostGetEnv, hostTalk); a failure yields an empty value. */
  readonly frame?: 'raw';
  /** True when `run` returns a Promise (the guest is suspended with JSPI while it waits). */
  readonly async?: boolean;
  /**
   * Whether this function needs its capability's grant (`Capability.grant`); unset = always
   * granted. The function itself refuses when the grant is missing, with a failure naming it.
   */
  readonly grant?: true;
  /**
   * Does the work. Arguments arrive as bytes (`s`) or numbers (`n`), in declaration order.
   * May return a Promise: the engine then suspends the guest with JSPI until it settles.
   */
  run(ctx: HostCallContext, args: (Uint8Array | number)[]): HostResult | void | Promise<HostResult | void>;
}

/**
 * An operation on a key-value store (the memory cache, a Redis server), as the cache, KV and Redis
 * host functions send it to the store's main-thread service; `Increment` names the increment
 * operation in the store's own words (`incr`, `incrby`).
 */
export type KeyValueRequest<Increment extends string> =
  | { op: 'set'; key: string; value: Uint8Array }
  | { op: 'get'; key: string }
  | { op: 'del'; key: string }
  | { op: 'keys'; pattern: string }
  | { op: Increment; key: string; delta: string };

/**
 * What a grant lends a guest and how a user gives it, as `capsule inspect` prints it
 * (`files: files inside granted directories, for hostReadFile — give it with --dir …`).
 */
export interface GrantInfo {
  readonly lends: string;
  readonly how: string;
}

/**
 * A capability: what the host lends a guest, one folder under src/capabilities/ and one line in
 * src/capabilities/index.ts. Its settings (flag, config key, variable, default) are declared in
 * the folder's settings.ts; its backends (Redis, CouchBase clients) sit beside it.
 */
export interface Capability {
  /** Its name; also the grant's name in `capsule inspect` and messages. */
  readonly name: string;
  /** Its host functions, each once per name with the generations that import it. */
  readonly functions: readonly HostFunction[];
  /**
   * The grant its functions marked `grant: true` need (files: `--dir`, http: `--allowed-hosts`,
   * redis / couchbase: the server settings); unset when it lends nothing a user must give.
   */
  readonly grant?: GrantInfo;
  /**
   * Registers its main-thread services (state shared by every worker thread: the memory cache,
   * broker connections, Redis clients) on a worker pool; the engine calls it for every capability
   * of the list on every pool it makes. Must be idempotent.
   */
  provide?(host: ServiceHost): void;
}

const decoder = new TextDecoder();
/** Decodes an `s` argument as UTF-8 (invalid bytes become U+FFFD). */
export function text(arg: Uint8Array | number | undefined): string {
  return arg instanceof Uint8Array ? decoder.decode(arg) : String(arg ?? '');
}
/** An `s` argument as bytes (empty for anything else). */
export function argBytes(a: Uint8Array | number | undefined): Uint8Array {
  return a instanceof Uint8Array ? a : new Uint8Array(0);
}
/** Shorthands for results. */
export const ok = (value: Uint8Array | string): HostResult => ({ ok: true, value });
export const fail = (error: string): HostResult => ({ ok: false, error });
