/**
 * What the message triggers (NATS, MQTT) share: running one message in a fresh instance (the
 * engine does it), a bound on messages in flight, logging and metrics of each outcome.
 *
 * A message that traps, times out or fails (`F` / `[ERR]`) is logged with its subject and
 * counted (`capsule_messages_total{outcome}`, `capsule_errors_total{code}`); the trigger keeps
 * going. Backpressure: at most `maxInflight` messages run at once; `offer` keeps up to
 * `maxPending` more waiting and drops the rest (counted in `capsule_messages_dropped_total`),
 * `slot` lets a trigger that can pause its broker (MQTT) wait instead.
 */
import { randomUUID } from 'node:crypto';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CallLogs } from '../../engine/instance.ts';
import type { InvocationMeta, MessageInput, MessageOutput } from '../../base/invocation.ts';
import type { Logger } from '../../observability/logger.ts';
import type { RunnerMetrics } from '../../observability/metrics.ts';
import { logGuestOutput } from '../shared/runner-routes.ts';

/**
 * How a message went. `reply` is true when the trigger must publish the outcome to the
 * message's reply subject / response topic: gen-2 modules with a `ReplyTo` (capsule-abi.md §8);
 * gen-1 handlers reply themselves with `hostNatsReply` (conventions.md §4).
 */
export type MessageOutcome =
  /** An `S` result (gen 2) or a result that is not `[ERR]` (gen 1). */
  | { kind: 'ok'; payload: Uint8Array; reply: boolean }
  /** An `F` result (gen 2) or an `[ERR]` result (gen 1): the guest's own failure text. */
  | { kind: 'failed'; payload: Uint8Array; reply: boolean }
  /** A runner error: trap, timeout, memory cap, bad result, overload. */
  | { kind: 'error'; error: CapsuleError; reply: boolean };

/** Settings of a {@link MessageDispatcher}. */
export interface MessageDispatcherOptions {
  fn: CapsuleFunction;
  source: 'nats' | 'mqtt';
  logger: Logger;
  metrics: RunnerMetrics;
  /** Messages running at once (≥ 1). */
  maxInflight: number;
  /** Messages `offer` keeps waiting beyond `maxInflight` before it drops (≥ 0). */
  maxPending: number;
}

interface Waiting {
  input: MessageInput;
  meta: InvocationMeta;
  after: (outcome: MessageOutcome) => void;
}

const decoder = new TextDecoder();

/** Runs messages through a function with a bound on how many run at once. */
export class MessageDispatcher {
  readonly #o: MessageDispatcherOptions;
  readonly #gen2: boolean;
  readonly #fname: string;
  readonly #pending: Waiting[] = [];
  readonly #slotWaiters: (() => void)[] = [];
  readonly #idleWaiters: (() => void)[] = [];
  #inflight = 0;
  #droppedSinceWarn = 0;
  #warnTimer: NodeJS.Timeout | undefined;

  constructor(o: MessageDispatcherOptions) {
    this.#o = o;
    // gen 2 and Extism plugins (extism-abi.md §11) answer a request; gen 1 publishes itself
    this.#gen2 = o.fn.module.detection.kind === 'capsule-2' || o.fn.module.detection.kind === 'extism';
    this.#fname = o.fn.module.name;
  }

  /** Messages running now. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Messages waiting (offered while `maxInflight` were running). */
  get pending(): number {
    return this.#pending.length;
  }

  /** Whether another message may start now. */
  get hasSlot(): boolean {
    return this.#inflight < this.#o.maxInflight;
  }

  /**
   * Runs the message now, or keeps it waiting, or drops it when `maxPending` are waiting.
   * `after` gets the outcome once it ran.
   * @returns false when the message was dropped
   */
  offer(input: MessageInput, meta: InvocationMeta, after: (outcome: MessageOutcome) => void): boolean {
    if (this.hasSlot) {
      void this.run(input, meta).then(after);
      return true;
    }
    if (this.#pending.length < this.#o.maxPending) {
      this.#pending.push({ input, meta, after });
      return true;
    }
    this.#o.metrics.dropped.inc({ function: this.#fname, trigger: this.#o.source });
    this.#droppedSinceWarn++;
    this.#warnTimer ??= setTimeout(() => {
      this.#o.logger.warn({ dropped: this.#droppedSinceWarn, maxInflight: this.#o.maxInflight, maxPending: this.#o.maxPending },
        `dropped ${this.#droppedSinceWarn} message(s): ${this.#o.maxInflight} running and ${this.#o.maxPending} waiting (--max-concurrency, --max-pending)`);
      this.#droppedSinceWarn = 0;
      this.#warnTimer = undefined;
    }, 1000);
    this.#warnTimer.unref();
    return false;
  }

  /** Resolves when fewer than `maxInflight` messages run (for triggers that pause their broker). */
  slot(): Promise<void> {
    if (this.hasSlot) return Promise.resolve();
    return new Promise((resolve) => this.#slotWaiters.push(resolve));
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (this.#inflight === 0 && this.#pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Forgets the waiting messages (at shutdown, when the grace period is over). @returns how many */
  discardPending(): number {
    return this.#pending.splice(0).length;
  }

  /**
   * Runs one message in a fresh instance now (the caller checked `hasSlot` or awaited `slot`).
   * Never rejects: failures are outcomes, logged and counted here.
   */
  async run(input: MessageInput, meta: InvocationMeta): Promise<MessageOutcome> {
    const { logger: log, metrics, source } = this.#o;
    const fname = this.#fname;
    const requestId = meta.requestId ?? randomUUID();
    const fields = { requestId, function: fname, [source === 'mqtt' ? 'topic' : 'subject']: input.subject };
    const reply = this.#gen2 && Boolean(input.replyTo);
    this.#inflight++;
    metrics.inflight.inc();
    const start = performance.now();
    let outcome: MessageOutcome;
    try {
      const r = await this.#o.fn.invoke(input, { ...meta, requestId });
      logGuestOutput(log, r.logs, fields);
      const out = r.output as MessageOutput;
      outcome = out.ok ? { kind: 'ok', payload: out.payload, reply } : { kind: 'failed', payload: out.payload, reply };
    } catch (e) {
      const error = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
      logGuestOutput(log, (e as { logs?: CallLogs }).logs, fields);
      outcome = { kind: 'error', error, reply };
    }
    const ms = performance.now() - start;
    const durationMs = Math.round(ms * 1000) / 1000;
    metrics.duration.observe({ function: fname }, ms / 1000);
    switch (outcome.kind) {
      case 'ok':
        metrics.messages.inc({ function: fname, trigger: source, outcome: 'ok' });
        log.info({ ...fields, durationMs }, 'message');
        break;
      case 'failed':
        metrics.messages.inc({ function: fname, trigger: source, outcome: 'failed' });
        log.warn({ ...fields, durationMs, outcome: 'failed' }, `the handler failed: ${decoder.decode(outcome.payload)}`);
        break;
      case 'error':
        metrics.messages.inc({ function: fname, trigger: source, outcome: 'error' });
        metrics.errors.inc({ function: fname, code: outcome.error.code });
        log.warn({ ...fields, durationMs, code: outcome.error.code }, `message on ${input.subject} failed: ${outcome.error.message}`);
        break;
    }
    this.#inflight--;
    metrics.inflight.dec();
    this.#next();
    return outcome;
  }

  #next(): void {
    while (this.hasSlot && this.#pending.length > 0) {
      const w = this.#pending.shift()!;
      void this.run(w.input, w.meta).then(w.after);
    }
    // each waiter takes one free slot (it starts its message in a later microtask)
    let free = this.#o.maxInflight - this.#inflight;
    while (free-- > 0 && this.#slotWaiters.length > 0) this.#slotWaiters.shift()!();
    if (this.#inflight === 0 && this.#pending.length === 0) this.#idleWaiters.splice(0).forEach((f) => f());
  }
}

/**
 * Checks at start that the module can handle messages from `source`: gen 2 exports
 * `callHandleMessage` (capsule-abi.md §8), gen 1 `callNatsMessageHandle` / `callMqttMessageHandle`
 * (§4.4).
 * @throws CapsuleError BAD_MODULE naming the missing export
 */
export function checkMessageHandler(fn: CapsuleFunction, source: 'nats' | 'mqtt'): void {
  const kind = fn.module.detection.kind;
  const name = fn.module.name;
  if (kind === 'capsule-2') {
    if (!fn.exports('callHandleMessage')) {
      throw new CapsuleError('BAD_MODULE', `${name} exports no callHandleMessage: a gen-2 module handles ${source.toUpperCase()} messages with it (capsule-abi.md §8; AssemblyScript: export { callHandleMessage } from "@capsule/mdk-assemblyscript/exports-message")`);
    }
    return;
  }
  if (kind === 'capsule-1a' || kind === 'capsule-1b' || kind === 'capsule-1c') {
    const entry = source === 'mqtt' ? 'callMqttMessageHandle' : 'callNatsMessageHandle';
    if (!fn.exports(entry)) throw new CapsuleError('BAD_MODULE', `${name} exports no ${entry}: it cannot handle ${source.toUpperCase()} messages (capsule-abi.md §4.4)`);
    return;
  }
  if (kind === 'extism') {
    // extism-abi.md §11: the plugin's `handle` gets the §8 JSON envelope, its output is the reply
    if (!fn.exports('handle')) throw new CapsuleError('BAD_MODULE', `${name} exports no handle: an Extism plugin handles ${source.toUpperCase()} messages with it (extism-abi.md §11)`);
    return;
  }
  throw new CapsuleError('BAD_MODULE', `${name} is a ${kind} module: only Capsule modules (gen 1 or gen 2 with callHandleMessage) handle ${source.toUpperCase()} messages`);
}
