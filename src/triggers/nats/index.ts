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
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CallLogs } from '../../engine/runtime.ts';
import type { MessageInput } from '../../base/invocation.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { loadNats, natsHub } from '../../capabilities/nats/service.ts';
import { NATS_TRIGGER_KEYS } from '../../capabilities/nats/index.ts';
import { checkMessageHandler, MessageDispatcher, type MessageOutcome } from '../shared/messages.ts';
import { logGuestOutput, startRunnerHttp, type RunnerHttp } from '../shared/runner-routes.ts';
import { Backoff, type RunningMessageTrigger } from '../shared/trigger.ts';
import { natsDisplayUrl, type NatsTriggerOptions } from './options.ts';

export type { NatsTriggerOptions } from './options.ts';

const encoder = new TextEncoder();

/**
 * Connects, runs `OnLoad` (gen 1), subscribes, and serves messages until `shutdown`.
 * @throws CapsuleError BAD_MODULE when the module has no message handler, LOAD when the server
 *   cannot be reached at start, USAGE for an invalid
 *   subject or queue name
 */
export async function serveNats(fn: CapsuleFunction, o: NatsTriggerOptions): Promise<RunningMessageTrigger> {
  const log = o.logger;
  const fname = fn.module.name;
  const server = natsDisplayUrl(o.server);
  if (o.subjects.length === 0) throw new CapsuleError('USAGE', 'give at least one --subject');
  checkMessageHandler(fn, 'nats');
  const metrics = new RunnerMetrics(() => fn.pool.busy, fn.pool.size);
  fn.pool.on('timeout', () => metrics.timeouts.inc({ function: fname }));
  fn.pool.on('worker-exit', (message: string) => log.warn({ function: fname }, `worker replaced: ${message}`));
  const dispatcher = new MessageDispatcher({
    fn, source: 'nats', logger: log, metrics,
    maxInflight: o.maxConcurrency ?? fn.pool.size * 2,
    maxPending: o.maxPending ?? 1000,
  });
  const graceMs = o.graceMs ?? 10_000;
  const baseFacts = { [NATS_TRIGGER_KEYS.server]: o.server, [NATS_TRIGGER_KEYS.subject]: o.subjects[0]! };
  const logGuest = (logs: CallLogs | undefined, requestId: string) => logGuestOutput(log, logs, { requestId, function: fname });

  const nats = await loadNats();
  const backoff = new Backoff(o.reconnect?.minMs ?? 100, o.reconnect?.maxMs ?? 5000);
  let nc: NatsConnection;
  try {
    nc = await nats.connect({
      servers: o.server.split(',').map((s) => s.trim()).filter(Boolean),
      name: `capsule ${fname}`,
      reconnect: true,
      maxReconnectAttempts: -1,
      // the client asks for the wait several times per attempt: it grows on each dial ('reconnecting')
      reconnectDelayHandler: () => backoff.current,
      waitOnFirstConnect: false,
    });
  } catch (e) {
    throw new CapsuleError('LOAD', `cannot connect to the NATS server ${server}: ${(e as Error).message}`);
  }
  const hub = natsHub(fn.pool);
  hub.attach(nc, o.server);
  let connected = true;
  let stopping = false;

  // Gen 1 (§4.5): OnLoad once at start, in its own instance; a failure is logged, not fatal.
  const onLoad = await fn.lifecycle('OnLoad');
  logGuest(onLoad.logs, 'OnLoad');
  if (onLoad.error) log.error({ code: onLoad.error.code }, `OnLoad failed: ${onLoad.error.message}`);

  const reply = (msg: Msg, outcome: MessageOutcome) => {
    if (!outcome.reply || !msg.reply || nc.isClosed()) return;
    try {
      if (outcome.kind === 'ok') {
        nc.publish(msg.reply, outcome.payload);
        return;
      }
      const h = nats.headers();
      h.set('Capsule-Error', 'true');
      if (outcome.kind === 'failed') {
        nc.publish(msg.reply, outcome.payload, { headers: h });
      } else {
        h.set('Capsule-Error-Code', outcome.error.code);
        nc.publish(msg.reply, encoder.encode(outcome.error.message), { headers: h });
      }
    } catch (e) {
      log.warn({ subject: msg.subject, replyTo: msg.reply }, `cannot publish the reply: ${(e as Error).message}`);
    }
  };

  const subscriptions: Subscription[] = [];
  try {
    for (const subject of o.subjects) {
      const facts = { ...baseFacts, [NATS_TRIGGER_KEYS.subject]: subject };
      subscriptions.push(nc.subscribe(subject, {
        queue: o.queue,
        callback: (err, msg) => {
          if (err) {
            log.warn({ subject }, `subscription error: ${err.message}`);
            return;
          }
          if (stopping) return;
          const input: MessageInput = {
            type: 'message', source: 'nats', subject: msg.subject,
            // a copy: the client's view shares a larger read buffer, which would be cloned whole
            data: msg.data.slice(),
            headers: natsHeaders(msg),
            replyTo: msg.reply || undefined,
          };
          dispatcher.offer(input, { trigger: { ...facts, [NATS_TRIGGER_KEYS.replyTo]: msg.reply ?? '' } }, (outcome) => reply(msg, outcome));
        },
      }));
    }
    await nc.flush(); // the server has the subscriptions
  } catch (e) {
    await nc.close().catch(() => undefined);
    hub.detach(nc);
    throw new CapsuleError('USAGE', `cannot subscribe: ${(e as Error).message}`);
  }

  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          connected = false;
          if (!stopping) log.warn({ server: s.server }, 'lost the NATS connection; reconnecting');
          break;
        case 'reconnecting':
          backoff.next();
          break;
        case 'reconnect':
          connected = true;
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
  })().catch(() => undefined);

  let http: RunnerHttp | undefined;
  if (o.http) {
    http = await startRunnerHttp({
      fn, metrics, trigger: baseFacts, logGuest,
      notReady: () => (stopping ? 'shutting down' : connected ? undefined : 'reconnecting to NATS'),
      readyInfo: () => ({ server, subjects: o.subjects, ...(o.queue ? { queue: o.queue } : {}), inflight: dispatcher.inflight, pending: dispatcher.pending }),
    }, { ...o.http, logger: log });
  }
  log.info({ module: fname, kind: fn.module.detection.kind, server, subjects: o.subjects, queue: o.queue, workers: fn.pool.size }, 'subscribed');

  let closedResolve!: (code: number) => void;
  const closed = new Promise<number>((r) => (closedResolve = r));
  let shuttingDown: Promise<void> | undefined;
  let exitCode = 0;

  function shutdown(reason: string): Promise<void> {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      log.info({ reason, inflight: dispatcher.inflight, pending: dispatcher.pending }, 'shutting down');
      stopping = true;
      for (const sub of subscriptions) {
        try {
          sub.unsubscribe();
        } catch {
          // the connection is already closed
        }
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([dispatcher.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      const left = dispatcher.discardPending();
      if (left > 0) log.warn({ discarded: left }, 'grace period over: waiting messages discarded');
      for (const name of ['OnStop', 'OnExit'] as const) {
        const r = await fn.lifecycle(name);
        logGuest(r.logs, name);
        if (r.error) log.error({ code: r.error.code }, `${name} failed: ${r.error.message}`);
      }
      if (!nc.isClosed()) {
        await Promise.race([nc.flush(), new Promise((r) => setTimeout(r, 1000).unref())]).catch(() => undefined);
        await nc.close().catch(() => undefined);
      }
      hub.detach(nc);
      await http?.close();
      await fn.close();
      closedResolve(exitCode);
    })();
    return shuttingDown;
  }

  void nc.closed().then((err) => {
    if (stopping) return;
    exitCode = 1;
    log.error(`the NATS connection closed${err ? `: ${err.message}` : ''}`);
    void shutdown('NATS connection closed');
  });

  return { server, httpUrl: http?.url, metrics, shutdown, closed };
}

/** NATS headers as name/value pairs (one pair per value). */
function natsHeaders(msg: Msg): [string, string][] {
  const h = msg.headers;
  if (!h) return [];
  const out: [string, string][] = [];
  for (const k of h.keys()) for (const v of h.values(k)) out.push([k, v]);
  return out;
}
