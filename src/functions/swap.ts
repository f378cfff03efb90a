/**
 * Hot swap of a serving function (faas-api.md §8, §9.8; issue 12 point 5): a function's module
 * is replaced while it serves, with no failed request.
 *
 * - A version (`FunctionVersion`) counts its calls in flight.
 * - Swapping makes the new version take every call that starts from then on, at once (the
 *   switch is synchronous); calls already running finish on the old version.
 * - The old version is then retired: once its last call has returned, its stop exports run
 *   (`OnStop`, `OnExit`: whatever the caller's `stop` runs, in a throw-away instance) and it
 *   is closed (unregistered from the worker pool).
 *
 * `SwappableFunction` is the one-function form (the single-module HTTP server's
 * `POST /load-wasm-module` and `serve --watch`); the function table (table.ts) keeps one version
 * per entry with the same `invokeVersion` / `retireVersion`, and `FunctionTable.replaceModule`
 * swaps one entry (the node's `PUT /functions/revisions/module`).
 */
import type { InvocationInput, InvocationMeta } from '../base/invocation.ts';
import type { CapsuleFunction } from '../engine/function.ts';
import type { CallResult } from '../engine/pool.ts';

/** A loaded version of a function. */
export interface FunctionVersion {
  readonly fn: CapsuleFunction;
  /** `sha256:…` of the module ('' to force the next load to swap). */
  digest: string;
  /** Calls running on this version now. */
  inflight: number;
  /** True once replaced or removed: it takes no new call. */
  retired: boolean;
  /** Set by `retireVersion`: resolves once the version is stopped and closed. */
  closed?: Promise<void>;
  /** Set by `retireVersion` while it waits for the calls in flight. */
  onIdle?: () => void;
}

/** Runs the stop exports of a retired version (e.g. `OnStop` then `OnExit`); never throws. */
export type StopExports = (fn: CapsuleFunction) => Promise<void>;

/** A version of `fn` (digest: its module's). */
export function newVersion(fn: CapsuleFunction, digest: string = fn.module.digest): FunctionVersion {
  return { fn, digest, inflight: 0, retired: false };
}

/**
 * Runs one call on a version, counted in flight until it settles. Callers pick the version at
 * the moment the call starts (the one serving then).
 * @throws CapsuleError whatever the call throws (TRAP, TIMEOUT, MEMORY, OVERLOADED…)
 */
export function invokeVersion(v: FunctionVersion, input: InvocationInput, meta: InvocationMeta): Promise<CallResult> {
  v.inflight++;
  return v.fn.invoke(input, meta).finally(() => {
    if (--v.inflight === 0) v.onIdle?.();
  });
}

/**
 * Retires a version: it takes no new call (callers stop picking it), its calls in flight
 * finish, then `stop` runs (OnStop/OnExit) and it is closed. Idempotent.
 * @param stop the stop exports to run; none when undefined
 * @returns resolves once closed (never rejects: a failing close is reported to `onError`)
 */
export function retireVersion(v: FunctionVersion, stop?: StopExports, onError?: (e: Error) => void): Promise<void> {
  if (v.closed) return v.closed;
  v.retired = true;
  const idle = v.inflight === 0 ? Promise.resolve() : new Promise<void>((r) => (v.onIdle = r));
  v.closed = idle
    .then(() => stop?.(v.fn))
    .then(() => v.fn.close())
    .catch((e: unknown) => onError?.(e as Error));
  return v.closed;
}

/** What a `SwappableFunction` runs around a swap. */
export interface SwapOptions {
  /** Stop exports of a replaced version and of the last one at `close` (OnStop, OnExit). */
  stop?: StopExports;
  /** Receives a failure to close a retired version (the swap itself has happened). */
  onError?: (e: Error) => void;
}

/**
 * One function whose module can be replaced while it serves (see the module comment). It is
 * what a trigger calls instead of a `CapsuleFunction`: `invoke` runs on the version serving when
 * the call starts.
 */
export class SwappableFunction {
  readonly #o: SwapOptions;
  readonly #retiring = new Set<Promise<void>>();
  #current: FunctionVersion;
  #closed = false;

  /** @param fn the first version (its `OnLoad`, if any, is the caller's to run) */
  constructor(fn: CapsuleFunction, o: SwapOptions = {}) {
    this.#current = newVersion(fn);
    this.#o = o;
  }

  /** The function serving now (the latest version). */
  get fn(): CapsuleFunction {
    return this.#current.fn;
  }

  /**
   * Runs one call on the version serving now.
   * @throws CapsuleError as `CapsuleFunction.invoke`
   */
  invoke(input: InvocationInput, meta: InvocationMeta = {}): Promise<CallResult> {
    return invokeVersion(this.#current, input, meta);
  }

  /**
   * Makes `next` the version serving: every call that starts from now on runs on it (the switch
   * is synchronous); calls in flight finish on the old version, whose stop exports then run
   * before it is closed. Run `OnLoad` (and any check) on `next` before swapping. When `next`
   * shares the old version's worker pool and the old one owned it, the pool passes to `next`.
   * @returns the retirement of the old version: resolves once it is stopped and closed (never
   *   rejects; `close` waits for it too)
   * @throws Error when the function is closed (then `next` is not used: close it yourself)
   */
  swap(next: CapsuleFunction): { old: CapsuleFunction; retired: Promise<void> } {
    if (this.#closed) throw new Error('the function is closed: it cannot take a new version');
    const old = this.#current;
    if (next.pool === old.fn.pool) old.fn.handPoolTo(next);
    this.#current = newVersion(next);
    const retired = retireVersion(old, this.#o.stop, this.#o.onError);
    this.#retiring.add(retired);
    void retired.finally(() => this.#retiring.delete(retired));
    return { old: old.fn, retired };
  }

  /**
   * Closes: waits for retiring versions, runs the stop exports of the current one (when
   * `runStop`, default true) and closes it (and its pool when it owns it). Idempotent.
   */
  async close(runStop = true): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#retiring);
    await retireVersion(this.#current, runStop ? this.#o.stop : undefined, this.#o.onError);
  }
}
