/**
 * MQTT trigger (`capsule mqtt`): subscribes to topic filters and runs each message in a fresh
 * instance of the function. MQTT 5 (user properties, response topic).
 *
 * - Gen 2: `callHandleMessage` with the JSON envelope of capsule-abi.md §8 (`Topic`; `Headers`
 *   = user properties; `ReplyTo` = response topic); an `S` result is published to the response
 *   topic when there is one (with the request's correlation data), an `F` result, a trap or a
 *   timeout with the user property `Capsule-Error: true`. Gen 1: `callMqttMessageHandle` with the
 *   raw payload (§4.4), result ignored.
 * - Acknowledgement: a QoS 1/2 message is acknowledged (PUBACK / PUBREC) only after its handler
 *   returned, whatever the outcome (a message that traps is logged and counted, not redelivered
 *   forever). The client reads packets one at a time, so QoS ≥ 1 messages run one at a time, in
 *   order, as MQTT requires acknowledgements in order; scale out with several runners and a
 *   shared subscription (`$share/<group>/<filter>`).
 * - Backpressure: QoS 0 messages run up to `maxConcurrency` at once; beyond that the trigger
 *   stops reading from the broker until one finishes (TCP backpressure; no queue of its own).
 * - Broker loss: the client reconnects forever with exponential backoff and subscribes again
 *   (unless the broker kept the session). With `persistentSession` the broker keeps the
 *   subscriptions and queues QoS ≥ 1 messages while the runner is away.
 * - The client lives in the main thread; host functions reach it through the `mqtt` service
 *   (src/capabilities/mqtt/service.ts).
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CallLogs } from '../../engine/runtime.ts';
import type { InvocationMeta, MessageInput } from '../../base/invocation.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { loadMqtt, mqttHub, mqttUrl } from '../../capabilities/mqtt/service.ts';
import { MQTT_TRIGGER_KEYS } from '../../capabilities/mqtt/index.ts';
import { checkMessageHandler, MessageDispatcher, type MessageOutcome } from '../shared/messages.ts';
import { logGuestOutput, startRunnerHttp, type RunnerHttp } from '../shared/runner-routes.ts';
import { Backoff, type RunningMessageTrigger } from '../shared/trigger.ts';
import { topicMatches, type MqttTriggerOptions } from './options.ts';

export type { MqttTriggerOptions } from './options.ts';
export { topicMatches } from './options.ts';

type PublishPacket = Parameters<MqttClient['handleMessage']>[0];

/** Longest wait for the broker at start (ms). */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Connects, runs `OnLoad` (gen 1), subscribes, and serves messages until `shutdown`.
 * @throws CapsuleError BAD_MODULE when the module has no message handler, LOAD when the broker
 *   cannot be reached at start, USAGE for a bad server
 *   URL, a refused subscription or `persistentSession` without a client id
 */
export async function serveMqtt(fn: CapsuleFunction, o: MqttTriggerOptions): Promise<RunningMessageTrigger> {
  const log = o.logger;
  const fname = fn.module.name;
  if (o.topics.length === 0) throw new CapsuleError('USAGE', 'give at least one --topic');
  checkMessageHandler(fn, 'mqtt');
  if (o.persistentSession && !o.clientId) throw new CapsuleError('USAGE', '--persistent-session needs a fixed --client-id (the broker keeps the session under it)');
  let server: string;
  try {
    server = mqttUrl(o.server);
  } catch (e) {
    throw new CapsuleError('USAGE', (e as Error).message);
  }
  const qos = o.qos ?? 0;
  const clientId = o.clientId ?? `capsule-${randomBytes(6).toString('hex')}`;
  const metrics = new RunnerMetrics(() => fn.pool.busy, fn.pool.size);
  fn.pool.on('timeout', () => metrics.timeouts.inc({ function: fname }));
  fn.pool.on('worker-exit', (message: string) => log.warn({ function: fname }, `worker replaced: ${message}`));
  const dispatcher = new MessageDispatcher({
    fn, source: 'mqtt', logger: log, metrics,
    maxInflight: o.maxConcurrency ?? fn.pool.size * 2,
    maxPending: 0,
  });
  const graceMs = o.graceMs ?? 10_000;
  const baseFacts = { [MQTT_TRIGGER_KEYS.server]: o.server, [MQTT_TRIGGER_KEYS.topic]: o.topics[0]!, [MQTT_TRIGGER_KEYS.clientId]: clientId };
  const logGuest = (logs: CallLogs | undefined, requestId: string) => logGuestOutput(log, logs, { requestId, function: fname });
  const backoff = new Backoff(o.reconnect?.minMs ?? 100, o.reconnect?.maxMs ?? 5000);
  let stopping = false;
  let subscribed = false;

  const mqtt = await loadMqtt();
  const client = mqtt.connect(server, {
    clientId,
    protocolVersion: 5,
    clean: !o.persistentSession,
    properties: o.persistentSession ? { sessionExpiryInterval: 0xffffffff } : undefined,
    reconnectPeriod: backoff.next(),
    connectTimeout: CONNECT_TIMEOUT_MS,
    resubscribe: true,
    // QoS 1/2: acknowledged once the handler returned (PUBACK / PUBREC follow `done`).
    customHandleAcks: (_topic, _message, packet: PublishPacket, done) => {
      if (stopping) return; // not acknowledged: the broker redelivers it to the next session
      const input = messageInput(packet);
      void dispatcher.slot()
        .then(() => dispatcher.run(input, meta(packet)))
        .then((outcome) => {
          reply(packet, outcome);
          done(0);
        });
    },
  });

  // QoS 0 arrives here (QoS 1/2 were handled in customHandleAcks; let the client acknowledge).
  client.handleMessage = (packet: PublishPacket, callback: (error?: Error) => void) => {
    if (packet.qos > 0 || stopping) {
      callback();
      return;
    }
    const input = messageInput(packet);
    void dispatcher.slot().then(() => {
      void dispatcher.run(input, meta(packet)).then((outcome) => reply(packet, outcome));
      callback(); // read the next packet
    });
  };

  function messageInput(packet: PublishPacket): MessageInput {
    const props = packet.properties;
    const headers: [string, string][] = [];
    for (const [k, v] of Object.entries(props?.userProperties ?? {})) {
      for (const one of Array.isArray(v) ? v : [v]) headers.push([k, String(one)]);
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    return {
      type: 'message', source: 'mqtt', subject: packet.topic,
      data: new Uint8Array(payload), // a copy (the packet's buffer may be a slice of a larger one)
      headers,
      replyTo: props?.responseTopic || undefined,
    };
  }

  function meta(packet: PublishPacket): InvocationMeta {
    const filter = o.topics.find((f) => topicMatches(f, packet.topic)) ?? o.topics[0]!;
    return { trigger: { ...baseFacts, [MQTT_TRIGGER_KEYS.topic]: filter } };
  }

  function reply(packet: PublishPacket, outcome: MessageOutcome): void {
    const responseTopic = packet.properties?.responseTopic;
    if (!outcome.reply || !responseTopic) return;
    const correlationData = packet.properties?.correlationData;
    let payload: Buffer;
    let userProperties: Record<string, string> | undefined;
    if (outcome.kind === 'ok') {
      payload = Buffer.from(outcome.payload);
    } else if (outcome.kind === 'failed') {
      payload = Buffer.from(outcome.payload);
      userProperties = { 'Capsule-Error': 'true' };
    } else {
      payload = Buffer.from(outcome.error.message);
      userProperties = { 'Capsule-Error': 'true', 'Capsule-Error-Code': outcome.error.code };
    }
    // Not awaited: the broker's PUBACK is read after this message is acknowledged.
    client.publish(responseTopic, payload, { qos, properties: { ...(correlationData ? { correlationData } : {}), ...(userProperties ? { userProperties } : {}) } }, (e) => {
      if (e) log.warn({ topic: packet.topic, responseTopic }, `cannot publish the reply: ${e.message}`);
    });
  }

  // The first connection: fail fast when the broker cannot be reached.
  try {
    await new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        client.off('connect', onConnect);
        client.off('error', onError);
        client.off('close', onClose);
      };
      const onConnect = () => { cleanup(); resolve(); };
      const onError = (e: Error) => { cleanup(); reject(e); };
      const onClose = () => { cleanup(); reject(new Error('the connection closed')); };
      client.on('connect', onConnect);
      client.on('error', onError);
      client.on('close', onClose);
    });
  } catch (e) {
    client.end(true);
    throw new CapsuleError('LOAD', `cannot connect to the MQTT broker ${server}: ${(e as Error).message}`);
  }
  backoff.reset();
  client.options.reconnectPeriod = backoff.next();
  const hub = mqttHub(fn.pool);
  hub.attach(client, o.server, qos);
  hub.onError = (m) => log.warn(m);

  let online = true; // one warning per lost connection, not one per failed attempt
  client.on('connect', (connack) => {
    online = true;
    backoff.reset();
    client.options.reconnectPeriod = backoff.next();
    log.info({ server, sessionPresent: connack.sessionPresent }, 'reconnected to the MQTT broker');
  });
  client.on('close', () => {
    if (stopping) return;
    if (online) log.warn({ server, retryInMs: client.options.reconnectPeriod }, 'lost the MQTT connection; reconnecting');
    else log.debug({ server, retryInMs: client.options.reconnectPeriod }, 'MQTT reconnect attempt failed');
    online = false;
  });
  client.on('reconnect', () => {
    client.options.reconnectPeriod = backoff.next(); // the wait after this attempt, if it fails
  });
  client.on('error', (e) => {
    if (!stopping && online) log.warn({ server }, `MQTT: ${e.message}`);
  });

  // Gen 1 (§4.5): OnLoad once at start, in its own instance; a failure is logged, not fatal.
  const onLoad = await fn.lifecycle('OnLoad');
  logGuest(onLoad.logs, 'OnLoad');
  if (onLoad.error) log.error({ code: onLoad.error.code }, `OnLoad failed: ${onLoad.error.message}`);

  try {
    const granted = await client.subscribeAsync(Object.fromEntries(o.topics.map((t) => [t, { qos }])));
    const refused = granted.filter((g) => g.qos >= 0x80);
    if (refused.length > 0) throw new Error(`the broker refused ${refused.map((g) => g.topic).join(', ')}`);
    subscribed = true;
  } catch (e) {
    stopping = true;
    hub.detach(client);
    client.end(true);
    throw new CapsuleError('USAGE', `cannot subscribe: ${(e as Error).message}`);
  }

  let http: RunnerHttp | undefined;
  if (o.http) {
    http = await startRunnerHttp({
      fn, metrics, trigger: baseFacts, logGuest,
      notReady: () => (stopping ? 'shutting down' : client.connected && subscribed ? undefined : 'reconnecting to the MQTT broker'),
      readyInfo: () => ({ server, topics: o.topics, clientId, qos, inflight: dispatcher.inflight }),
    }, { ...o.http, logger: log });
  }
  log.info({ module: fname, kind: fn.module.detection.kind, server, topics: o.topics, clientId, qos, persistentSession: o.persistentSession === true, workers: fn.pool.size }, 'subscribed');

  let closedResolve!: (code: number) => void;
  const closed = new Promise<number>((r) => (closedResolve = r));
  let shuttingDown: Promise<void> | undefined;

  function shutdown(reason: string): Promise<void> {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      log.info({ reason, inflight: dispatcher.inflight }, 'shutting down');
      // A persistent session keeps its subscriptions for the next run; otherwise unsubscribe so
      // a shared subscription's messages go to the other runners.
      if (!o.persistentSession && client.connected) {
        await Promise.race([client.unsubscribeAsync(o.topics), new Promise((r) => setTimeout(r, 1000).unref())]).catch(() => undefined);
      }
      stopping = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([dispatcher.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const name of ['OnStop', 'OnExit'] as const) {
        const r = await fn.lifecycle(name);
        logGuest(r.logs, name);
        if (r.error) log.error({ code: r.error.code }, `${name} failed: ${r.error.message}`);
      }
      hub.detach(client);
      await Promise.race([client.endAsync(), new Promise((r) => setTimeout(r, 1000).unref())]).catch(() => undefined);
      client.end(true);
      await http?.close();
      await fn.close();
      closedResolve(0);
    })();
    return shuttingDown;
  }

  return { server, httpUrl: http?.url, metrics, shutdown, closed };
}
