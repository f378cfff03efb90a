/**
 * The message-trigger skeleton NATS and MQTT share (`nats/index.ts` and `mqtt/index.ts` are
 * adapters over it): check the module handles messages, connect (the adapter reconnects with
 * {@link Backoff}), run `OnLoad`, subscribe, run each message in a fresh instance with a bound
 * on messages in flight ({@link MessageDispatcher}), reply through the adapter, serve the
 * runner routes on an optional `--http-port`, and shut down gracefully: stop taking messages,
 * give those in flight the grace period, `OnStop`/`OnExit`, close the broker connection, the
 * routes and the function.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { InvocationMeta, MessageInput } from '../../base/invocation.ts';
import type { Logger } from '../../observability/logger.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { runLifecycle, runStopExports, settleWithin, Shutdown } from '../lifecycle.ts';
import { logGuestOutput, startRunnerHttp, type RunnerHttp } from '../shared/runner-routes.ts';
import { checkMessageHandler, MessageDispatcher, type MessageOutcome } from './dispatcher.ts';
import type { MessageTriggerOptions, RunningMessageTrigger } from './options.ts';

export { Backoff } from './backoff.ts';
export type { MessageTriggerOptions, RunningMessageTrigger } from './options.ts';
export type { MessageOutcome } from './dispatcher.ts';

/** What the skeleton gives an adapter once, at `connect`. */
export interface MessageContext<M> {
  readonly log: Logger;
  readonly dispatcher: MessageDispatcher;
  /** True once shutdown began (or subscribing failed): take no new message. */
  readonly stopping: boolean;
  /** Runs a message now, keeps it waiting or drops it ({@link MessageDispatcher.offer}); the outcome goes to `reply`. */
  offer(msg: M, input: MessageInput, meta: InvocationMeta): void;
  /** The broker connection is gone for good: logs `message`, shuts down, exit code 1. */
  lost(message: string, reason: string): void;
}

/**
 * A broker as the skeleton sees it (`M`: the broker's message type). Methods are called in
 * this order: `connect`, `subscribe` (or `abort` when it failed), then at shutdown
 * `unsubscribe` and `close`.
 */
export interface MessageAdapter<M> {
  /** The `trigger` label of metrics and logs; the handler export the module needs. */
  readonly source: 'nats' | 'mqtt';
  /** The broker as a URL (ready line, logs). */
  readonly server: string;
  /** Trigger facts passed to `OnHealthCheck` / `OnMetrics` (`InvocationMeta.trigger`). */
  readonly facts: Record<string, string>;
  /** Messages kept waiting beyond those running; 0 when the adapter pauses its broker instead. */
  readonly maxPending: number;
  /** Connects (fails fast when the broker cannot be reached). @throws CapsuleError LOAD or USAGE */
  connect(ctx: MessageContext<M>): Promise<void>;
  /** Subscribes; messages may arrive from now on. @throws Error when the broker refuses */
  subscribe(): Promise<void>;
  /** Publishes a message's outcome to its reply subject / response topic when it asks for one. */
  reply(msg: M, outcome: MessageOutcome): void;
  /** Why the trigger is not ready (the broker is away…), or undefined. */
  notReady(): string | undefined;
  /** Fields of the `/capsule/ready` answer. */
  readyInfo(): Record<string, unknown>;
  /** Fields of the `subscribed` log line. */
  describe(): Record<string, unknown>;
  /** At shutdown: stop the broker sending messages. */
  unsubscribe(): Promise<void>;
  /** At shutdown, once the messages in flight are done: close the connection. */
  close(): Promise<void>;
  /** Subscribing failed: close the connection at once. */
  abort(): Promise<void>;
}

/**
 * Runs a message trigger over `adapter` until `shutdown` (see the module comment).
 * @throws CapsuleError BAD_MODULE when the module has no message handler, LOAD when the broker
 *   cannot be reached at start, USAGE when subscribing fails (and what the adapter's `connect` throws)
 */
export async function serveMessages<M>(fn: CapsuleFunction, adapter: MessageAdapter<M>, o: MessageTriggerOptions): Promise<RunningMessageTrigger> {
  const log = o.logger;
  const fname = fn.module.name;
  checkMessageHandler(fn, adapter.source);
  const metrics = new RunnerMetrics(() => fn.pool.busy, () => fn.pool.threads);
  fn.pool.on('timeout', () => metrics.timeouts.inc({ function: fname }));
  fn.pool.on('worker-exit', (message: string) => log.warn({ function: fname }, `worker replaced: ${message}`));
  const dispatcher = new MessageDispatcher({
    fn, source: adapter.source, logger: log, metrics,
    maxInflight: o.maxConcurrency ?? fn.pool.size * 2,
    maxPending: adapter.maxPending,
  });
  let stopping = false;
  let exitCode = 0;
  let http: RunnerHttp | undefined;
  const shutdown = new Shutdown(async (reason) => {
    log.info({ reason, inflight: dispatcher.inflight, ...(adapter.maxPending > 0 ? { pending: dispatcher.pending } : {}) }, 'shutting down');
    await adapter.unsubscribe();
    stopping = true;
    await drain(dispatcher, o.graceMs ?? 10_000, log);
    await runStopExports(fn, log);
    await adapter.close();
    await http?.close();
    await fn.close();
    return exitCode;
  });
  await adapter.connect({
    log, dispatcher,
    get stopping() { return stopping; },
    offer: (msg, input, meta) => dispatcher.offer(input, meta, (outcome) => adapter.reply(msg, outcome)),
    lost: (message, reason) => {
      if (stopping) return;
      exitCode = 1;
      log.error(message);
      void shutdown.run(reason);
    },
  });
  // Gen 1 (§4.5): OnLoad once at start, in its own instance; a failure is logged, not fatal.
  await runLifecycle(fn, 'OnLoad', log);
  try {
    await adapter.subscribe();
  } catch (e) {
    stopping = true;
    await adapter.abort();
    throw new CapsuleError('USAGE', `cannot subscribe: ${(e as Error).message}`);
  }
  if (o.http) {
    http = await startRunnerHttp({
      fn, metrics, trigger: adapter.facts,
      logGuest: (logs, requestId) => logGuestOutput(log, logs, { requestId, function: fname }),
      notReady: () => (stopping || shutdown.started ? 'shutting down' : adapter.notReady()),
      readyInfo: () => adapter.readyInfo(),
    }, { ...o.http, logger: log });
  }
  log.info({ module: fname, kind: fn.module.detection.kind, ...adapter.describe(), workers: fn.pool.size }, 'subscribed');
  return { server: adapter.server, httpUrl: http?.url, metrics, shutdown: (reason) => shutdown.run(reason), closed: shutdown.closed };
}

/** Gives the messages in flight up to `graceMs`, then forgets those still waiting. */
async function drain(dispatcher: MessageDispatcher, graceMs: number, log: Logger): Promise<void> {
  await settleWithin(dispatcher.idle(), graceMs);
  const left = dispatcher.discardPending();
  if (left > 0) log.warn({ discarded: left }, 'grace period over: waiting messages discarded');
}
