/**
 * NATS trigger (`capsule nats`): subscribes to subjects (optionally in a queue group) and runs
 * each message in a fresh instance of the function.
 *
 * - Gen 2: `callHandleMessage` with the JSON envelope of capsule-abi.md §8; an `S` result is
 *   published to the message's reply subject when it has one (so `nats request` gets an answer);
 *   an `F` result, a trap or a timeout is replied with its text and the header
 *   `Capsule-Error: true`. Gen 1: `callNatsMessageHandle` with the raw payload (§4.4); its result
 *   is ignored (it replies with `hostNatsReply`, conventions.md §4).
 * - Backpressure: at most `maxConcurrency` messages run at once, `maxPending` more wait; beyond
 *   that messages are dropped and counted (NATS core delivers at most once; no unbounded queue).
 * - Broker loss: the client reconnects forever with exponential backoff and restores the
 *   subscriptions. NATS core keeps nothing for a subscriber that is away (no JetStream here).
 * - The connection lives in the main thread; host functions reach it through the `nats` service
 *   (src/capabilities/nats/service.ts).
 *
 * This file is the NATS adapter of the message-trigger skeleton (`../message/index.ts`):
 * connect, subscribe, reply, close; the skeleton does the rest.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { MessageInput } from '../../base/invocation.ts';
import { loadNats, natsHub } from '../../capabilities/nats/service.ts';
import { NATS_TRIGGER_KEYS } from '../../capabilities/nats/index.ts';
import { settleWithin } from '../lifecycle.ts';
import { Backoff, serveMessages, type MessageAdapter, type MessageContext, type MessageOutcome, type RunningMessageTrigger } from '../message/index.ts';
import { natsDisplayUrl, type NatsTriggerOptions } from './options.ts';

export type { NatsTriggerOptions } from './options.ts';

const encoder = new TextEncoder();

/**
 * Connects, runs `OnLoad` (gen 1), subscribes, and serves messages until `shutdown`.
 * @throws CapsuleError BAD_MODULE when the module has no message handler, LOAD when the server
 *   cannot be reached at start, USAGE for an invalid
 *   subject or queue name
 */
export async function serveNats(fn: CapsuleFunction, options: NatsTriggerOptions): Promise<RunningMessageTrigger> {
  if (options.subjects.length === 0) throw new CapsuleError('USAGE', 'give at least one --subject');
  return serveMessages(fn, new NatsAdapter(options, fn), options);
}

type NatsModule = Awaited<ReturnType<typeof loadNats>>;

/** NATS core under the message-trigger skeleton. */
class NatsAdapter implements MessageAdapter<Msg> {
  readonly source = 'nats';
  readonly server: string;
  readonly facts: Record<string, string>;
  readonly maxPending: number;
  readonly #options: NatsTriggerOptions;
  readonly #fn: CapsuleFunction;
  readonly #subscriptions: Subscription[] = [];
  #ctx!: MessageContext<Msg>;
  #nats!: NatsModule;
  #nc!: NatsConnection;
  #connected = true;

  constructor(options: NatsTriggerOptions, fn: CapsuleFunction) {
    this.#options = options;
    this.#fn = fn;
    this.server = natsDisplayUrl(options.server);
    this.facts = { [NATS_TRIGGER_KEYS.server]: options.server, [NATS_TRIGGER_KEYS.subject]: options.subjects[0]! };
    this.maxPending = options.maxPending ?? 1000;
  }

  async connect(ctx: MessageContext<Msg>): Promise<void> {
    this.#ctx = ctx;
    this.#nats = await loadNats();
    const backoff = new Backoff(this.#options.reconnect?.minMs ?? 100, this.#options.reconnect?.maxMs ?? 5000);
    try {
      this.#nc = await this.#nats.connect({
        servers: this.#options.server.split(',').map((s) => s.trim()).filter(Boolean),
        name: `capsule ${this.#fn.module.name}`,
        reconnect: true,
        maxReconnectAttempts: -1,
        // the client asks for the wait several times per attempt: it grows on each dial ('reconnecting')
        reconnectDelayHandler: () => backoff.current,
        waitOnFirstConnect: false,
      });
    } catch (e) {
      throw new CapsuleError('LOAD', `cannot connect to the NATS server ${this.server}: ${(e as Error).message}`);
    }
    natsHub(this.#fn.pool).attach(this.#nc, this.#options.server);
    void this.#watchStatus(backoff);
  }

  async subscribe(): Promise<void> {
    for (const subject of this.#options.subjects) {
      const facts = { ...this.facts, [NATS_TRIGGER_KEYS.subject]: subject };
      this.#subscriptions.push(this.#nc.subscribe(subject, {
        queue: this.#options.queue,
        callback: (err, msg) => {
          if (err) {
            this.#ctx.log.warn({ subject }, `subscription error: ${err.message}`);
            return;
          }
          if (this.#ctx.stopping) return;
          this.#ctx.offer(msg, natsInput(msg), { trigger: { ...facts, [NATS_TRIGGER_KEYS.replyTo]: msg.reply ?? '' } });
        },
      }));
    }
    await this.#nc.flush(); // the server has the subscriptions
    void this.#nc.closed().then((err) => {
      this.#ctx.lost(`the NATS connection closed${err ? `: ${err.message}` : ''}`, 'NATS connection closed');
    });
  }

  reply(msg: Msg, outcome: MessageOutcome): void {
    const nc = this.#nc;
    if (!outcome.reply || !msg.reply || nc.isClosed()) return;
    try {
      if (outcome.kind === 'ok') {
        nc.publish(msg.reply, outcome.payload);
        return;
      }
      const h = this.#nats.headers();
      h.set('Capsule-Error', 'true');
      if (outcome.kind === 'failed') {
        nc.publish(msg.reply, outcome.payload, { headers: h });
      } else {
        h.set('Capsule-Error-Code', outcome.error.code);
        nc.publish(msg.reply, encoder.encode(outcome.error.message), { headers: h });
      }
    } catch (e) {
      this.#ctx.log.warn({ subject: msg.subject, replyTo: msg.reply }, `cannot publish the reply: ${(e as Error).message}`);
    }
  }

  notReady(): string | undefined {
    return this.#connected ? undefined : 'reconnecting to NATS';
  }

  readyInfo(): Record<string, unknown> {
    const { dispatcher } = this.#ctx;
    return { server: this.server, subjects: this.#options.subjects, ...(this.#options.queue ? { queue: this.#options.queue } : {}), inflight: dispatcher.inflight, pending: dispatcher.pending };
  }

  describe(): Record<string, unknown> {
    return { server: this.server, subjects: this.#options.subjects, queue: this.#options.queue };
  }

  async unsubscribe(): Promise<void> {
    for (const sub of this.#subscriptions) {
      try {
        sub.unsubscribe();
      } catch {
        // the connection is already closed
      }
    }
  }

  async close(): Promise<void> {
    if (!this.#nc.isClosed()) {
      await settleWithin(this.#nc.flush(), 1000);
      await this.#nc.close().catch(() => undefined);
    }
    natsHub(this.#fn.pool).detach(this.#nc);
  }

  async abort(): Promise<void> {
    await this.#nc.close().catch(() => undefined);
    natsHub(this.#fn.pool).detach(this.#nc);
  }

  /** Logs the connection's ups and downs and grows the reconnect wait; keeps `#connected`. */
  async #watchStatus(backoff: Backoff): Promise<void> {
    const log = this.#ctx.log;
    try {
      for await (const s of this.#nc.status()) {
        switch (s.type) {
          case 'disconnect':
            this.#connected = false;
            if (!this.#ctx.stopping) log.warn({ server: s.server }, 'lost the NATS connection; reconnecting');
            break;
          case 'reconnecting':
            backoff.next();
            break;
          case 'reconnect':
            this.#connected = true;
            backoff.reset();
            log.info({ server: s.server }, 'reconnected to NATS; subscriptions restored');
            break;
          case 'error':
            log.warn(`NATS: ${s.error.message}`);
            break;
          case 'slowConsumer':
            log.warn({ pending: s.pending }, 'NATS: slow consumer');
            break;
          default:
            break;
        }
      }
    } catch {
      // the connection is closed
    }
  }
}

/** A NATS message as the function's input. */
function natsInput(msg: Msg): MessageInput {
  return {
    type: 'message', source: 'nats', subject: msg.subject,
    // a copy: the client's view shares a larger read buffer, which would be cloned whole
    data: msg.data.slice(),
    headers: natsHeaders(msg),
    replyTo: msg.reply || undefined,
  };
}

/** NATS headers as name/value pairs (one pair per value). */
function natsHeaders(msg: Msg): [string, string][] {
  const h = msg.headers;
  if (!h) return [];
  const out: [string, string][] = [];
  for (const k of h.keys()) for (const v of h.values(k)) out.push([k, v]);
  return out;
}
