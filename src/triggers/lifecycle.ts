/**
 * The lifecycle every trigger shares, written once: the guest's lifecycle exports (`OnLoad`,
 * `OnStart`, `OnStop`, `OnExit`, capsule-abi.md §4.5), the grace period given to work in flight
 * at shutdown, an idempotent shutdown with its `closed` promise, and the process side of a
 * serving command (signals, the ready line on stdout, the exit code).
 */
import type { CapsuleFunction } from '../engine/function.ts';
import { flushLogger, type Logger } from '../observability/logger.ts';
import { logGuestOutput } from './shared/runner-routes.ts';

/** A lifecycle export of a Capsule module (capsule-abi.md §4.5). */
export type LifecycleExport = 'OnLoad' | 'OnStart' | 'OnStop' | 'OnExit';

/** Runs a lifecycle export and logs its output and failure (never throws; a failure is not fatal). */
export async function runLifecycle(fn: CapsuleFunction, name: LifecycleExport, log: Logger, fields: Record<string, unknown> = {}): Promise<void> {
  const r = await fn.lifecycle(name);
  logGuestOutput(log, r.logs, { ...fields, lifecycle: name, function: fn.module.name });
  if (r.error) log.error({ ...fields, code: r.error.code }, `${name} failed: ${r.error.message}`);
}

/** Runs `OnStop` then `OnExit` (at shutdown, once the work in flight is done). Never throws. */
export async function runStopExports(fn: CapsuleFunction, log: Logger, fields: Record<string, unknown> = {}): Promise<void> {
  for (const name of ['OnStop', 'OnExit'] as const) await runLifecycle(fn, name, log, fields);
}

/** Waits until `done` settles or `ms` have passed, whichever comes first; never rejects. */
export async function settleWithin(done: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((r) => {
    timer = setTimeout(r, ms);
    timer.unref();
  });
  await Promise.race([done, late]).catch(() => undefined);
  clearTimeout(timer);
}

/**
 * An idempotent shutdown: the first `run(reason)` runs the steps, later calls return the same
 * promise; `closed` resolves with what the steps returned (an exit code, or nothing).
 */
export class Shutdown<T> {
  /** Resolves once the steps are done. */
  readonly closed: Promise<T>;
  readonly #steps: (reason: string) => Promise<T>;
  #resolve!: (value: T) => void;
  #running: Promise<void> | undefined;

  constructor(steps: (reason: string) => Promise<T>) {
    this.#steps = steps;
    this.closed = new Promise<T>((r) => (this.#resolve = r));
  }

  /** True once `run` was called. */
  get started(): boolean {
    return this.#running !== undefined;
  }

  /** Runs the steps once. */
  run(reason: string): Promise<void> {
    this.#running ??= (async () => {
      this.#resolve(await this.#steps(reason));
    })();
    return this.#running;
  }
}

/** What a serving command waits on (an HTTP or a message trigger). */
export interface ServingTrigger {
  shutdown(reason: string): Promise<void>;
  /** Resolves once shut down: with the exit code, or nothing for 0. */
  readonly closed: Promise<number | void>;
}

/**
 * The process side of a serving command: SIGTERM and SIGINT shut the trigger down gracefully,
 * the log lines of the start are written out (they are batched), then the ready line goes to
 * stdout, and once closed the log is flushed.
 *
 * `process.on`, not `once`: a signal may come twice (a terminal's Ctrl-C reaches both the
 * launcher of an old Node and this process; systemd signals the whole group), and a second one
 * must not cut the grace short; `shutdown` is idempotent. The handlers are in place before the
 * ready line: a script may send SIGTERM as soon as it reads it.
 * @returns the exit code (0 unless the trigger closed with another)
 */
export async function serveUntilClosed(trigger: ServingTrigger, readyLine: string, logger: Logger): Promise<number> {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void trigger.shutdown(sig));
  // what the start logged (a config key ignored, the module loaded) is in the log before a
  // script that waits for the ready line looks at it
  await flushLogger(logger);
  process.stdout.write(`${readyLine}\n`);
  const code = await trigger.closed;
  await flushLogger(logger);
  return code ?? 0;
}
