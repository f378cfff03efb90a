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
 *
 * This file is the MQTT adapter of the message-trigger skeleton (`../message/index.ts`):
 * connect, subscribe, reply, close; the skeleton does the rest.
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { InvocationMeta, MessageInput } from '../../base/invocation.ts';
import { loadMqtt, mqttHub, mqttUrl } from '../../capabilities/mqtt/service.ts';
import { MQTT_TRIGGER_KEYS } from '../../capabilities/mqtt/index.ts';
import { settleWithin } from '../lifecycle.ts';
import { Backoff, serveMessages, type MessageAdapter, type MessageContext, type MessageOutcome, type RunningMessageTrigger } from '../message/index.ts';
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
export async function serveMqtt(fn: CapsuleFunction, options: MqttTriggerOptions): Promise<RunningMessageTrigger> {
  if (options.topics.length === 0) throw new CapsuleError('USAGE', 'give at least one --topic');
  return serveMessages(fn, new MqttAdapter(options, fn), options);
}

/** MQTT 5 under the message-trigger skeleton. */
class MqttAdapter implements MessageAdapter<PublishPacket> {
  readonly source = 'mqtt';
  /** Filled in by `connect` (a bad URL is a USAGE error there, after the handler check). */
  server = '';
  readonly facts: Record<string, string>;
  readonly maxPending = 0; // QoS 0 pauses the broker (TCP backpressure) instead of queueing
  readonly #options: MqttTriggerOptions;
  readonly #fn: CapsuleFunction;
  readonly #qos: 0 | 1 | 2;
  readonly #clientId: string;
  readonly #backoff: Backoff;
  #ctx!: MessageContext<PublishPacket>;
  #client!: MqttClient;
  #subscribed = false;
  #online = true; // one warning per lost connection, not one per failed attempt

  constructor(options: MqttTriggerOptions, fn: CapsuleFunction) {
    this.#options = options;
    this.#fn = fn;
    this.#qos = options.qos ?? 0;
    this.#clientId = options.clientId ?? `capsule-${randomBytes(6).toString('hex')}`;
    this.#backoff = new Backoff(options.reconnect?.minMs ?? 100, options.reconnect?.maxMs ?? 5000);
    this.facts = { [MQTT_TRIGGER_KEYS.server]: options.server, [MQTT_TRIGGER_KEYS.topic]: options.topics[0]!, [MQTT_TRIGGER_KEYS.clientId]: this.#clientId };
  }

  async connect(ctx: MessageContext<PublishPacket>): Promise<void> {
    this.#ctx = ctx;
    const o = this.#options;
    if (o.persistentSession && !o.clientId) throw new CapsuleError('USAGE', '--persistent-session needs a fixed --client-id (the broker keeps the session under it)');
    try {
      this.server = mqttUrl(o.server);
    } catch (e) {
      throw new CapsuleError('USAGE', (e as Error).message);
    }
    const mqtt = await loadMqtt();
    this.#client = mqtt.connect(this.server, {
      clientId: this.#clientId,
      protocolVersion: 5,
      clean: !o.persistentSession,
      properties: o.persistentSession ? { sessionExpiryInterval: 0xffffffff } : undefined,
      reconnectPeriod: this.#backoff.next(),
      connectTimeout: CONNECT_TIMEOUT_MS,
      resubscribe: true,
      // QoS 1/2: acknowledged once the handler returned (PUBACK / PUBREC follow `done`).
      customHandleAcks: (_topic, _message, packet: PublishPacket, done) => {
        if (ctx.stopping) return; // not acknowledged: the broker redelivers it to the next session
        void this.#runInOrder(packet).then(() => done(0));
      },
    });
    // QoS 0 arrives here (QoS 1/2 were handled in customHandleAcks; let the client acknowledge).
    this.#client.handleMessage = (packet: PublishPacket, callback: (error?: Error) => void) => {
      if (packet.qos > 0 || ctx.stopping) {
        callback();
        return;
      }
      this.#runWhenFree(packet, callback);
    };
    await this.#firstConnection();
    const hub = mqttHub(this.#fn.pool);
    hub.attach(this.#client, o.server, this.#qos);
    hub.onError = (m) => ctx.log.warn(m);
    this.#watchConnection();
  }

  async subscribe(): Promise<void> {
    const granted = await this.#client.subscribeAsync(Object.fromEntries(this.#options.topics.map((t) => [t, { qos: this.#qos }])));
    const refused = granted.filter((g) => g.qos >= 0x80);
    if (refused.length > 0) throw new Error(`the broker refused ${refused.map((g) => g.topic).join(', ')}`);
    this.#subscribed = true;
  }

  reply(packet: PublishPacket, outcome: MessageOutcome): void {
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
    const properties = { ...(correlationData ? { correlationData } : {}), ...(userProperties ? { userProperties } : {}) };
    // Not awaited: the broker's PUBACK is read after this message is acknowledged.
    this.#client.publish(responseTopic, payload, { qos: this.#qos, properties }, (e) => {
      if (e) this.#ctx.log.warn({ topic: packet.topic, responseTopic }, `cannot publish the reply: ${e.message}`);
    });
  }

  notReady(): string | undefined {
    return this.#client.connected && this.#subscribed ? undefined : 'reconnecting to the MQTT broker';
  }

  readyInfo(): Record<string, unknown> {
    return { server: this.server, topics: this.#options.topics, clientId: this.#clientId, qos: this.#qos, inflight: this.#ctx.dispatcher.inflight };
  }

  describe(): Record<string, unknown> {
    return { server: this.server, topics: this.#options.topics, clientId: this.#clientId, qos: this.#qos, persistentSession: this.#options.persistentSession === true };
  }

  /**
   * A persistent session keeps its subscriptions for the next run; otherwise unsubscribe so a
   * shared subscription's messages go to the other runners.
   */
  async unsubscribe(): Promise<void> {
    if (!this.#options.persistentSession && this.#client.connected) {
      await settleWithin(this.#client.unsubscribeAsync(this.#options.topics), 1000);
    }
  }

  async close(): Promise<void> {
    mqttHub(this.#fn.pool).detach(this.#client);
    await settleWithin(this.#client.endAsync(), 1000);
    this.#client.end(true);
  }

  async abort(): Promise<void> {
    mqttHub(this.#fn.pool).detach(this.#client);
    this.#client.end(true);
  }

  /** QoS ≥ 1: waits for a slot, runs the message and replies; the caller then acknowledges it. */
  async #runInOrder(packet: PublishPacket): Promise<void> {
    const { dispatcher } = this.#ctx;
    await dispatcher.slot();
    this.reply(packet, await dispatcher.run(mqttInput(packet), this.#meta(packet)));
  }

  /** QoS 0: starts the message once a slot is free, then reads the next packet (`callback`). */
  #runWhenFree(packet: PublishPacket, callback: () => void): void {
    const { dispatcher } = this.#ctx;
    const input = mqttInput(packet);
    void dispatcher.slot().then(() => {
      void dispatcher.run(input, this.#meta(packet)).then((outcome) => this.reply(packet, outcome));
      callback(); // read the next packet
    });
  }

  #meta(packet: PublishPacket): InvocationMeta {
    const topics = this.#options.topics;
    const filter = topics.find((f) => topicMatches(f, packet.topic)) ?? topics[0]!;
    return { trigger: { ...this.facts, [MQTT_TRIGGER_KEYS.topic]: filter } };
  }

  /** The first connection: fail fast when the broker cannot be reached. @throws CapsuleError LOAD */
  async #firstConnection(): Promise<void> {
    const client = this.#client;
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
      throw new CapsuleError('LOAD', `cannot connect to the MQTT broker ${this.server}: ${(e as Error).message}`);
    }
    this.#backoff.reset();
    client.options.reconnectPeriod = this.#backoff.next();
  }

  /** Logs the connection's ups and downs (once per loss) and grows the reconnect wait. */
  #watchConnection(): void {
    const client = this.#client;
    const server = this.server;
    const backoff = this.#backoff;
    const ctx = this.#ctx;
    client.on('connect', (connack) => {
      this.#online = true;
      backoff.reset();
      client.options.reconnectPeriod = backoff.next();
      ctx.log.info({ server, sessionPresent: connack.sessionPresent }, 'reconnected to the MQTT broker');
    });
    client.on('close', () => {
      if (ctx.stopping) return;
      if (this.#online) ctx.log.warn({ server, retryInMs: client.options.reconnectPeriod }, 'lost the MQTT connection; reconnecting');
      else ctx.log.debug({ server, retryInMs: client.options.reconnectPeriod }, 'MQTT reconnect attempt failed');
      this.#online = false;
    });
    client.on('reconnect', () => {
      client.options.reconnectPeriod = backoff.next(); // the wait after this attempt, if it fails
    });
    client.on('error', (e) => {
      if (!ctx.stopping && this.#online) ctx.log.warn({ server }, `MQTT: ${e.message}`);
    });
  }
}

/** An MQTT 5 publish packet as the function's input (`Headers` = user properties, `ReplyTo` = response topic). */
function mqttInput(packet: PublishPacket): MessageInput {
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
