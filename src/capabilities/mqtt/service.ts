/**
 * Main-thread side of the `mqtt` capability: the MQTT clients host functions use.
 *
 * Guests run on worker threads; MQTT clients live in the main thread (conventions.md §3). An
 * async host function asks the `mqtt` service (`ctx.service(MQTT_SERVICE, request)`, the guest
 * suspended with JSPI meanwhile); the service answers with an {@link MqttServiceReply}.
 *
 * - `publish` uses the client of the MQTT trigger (`capsule mqtt`), attached with
 *   {@link mqttHub}(pool).attach(…). QoS 0 resolves once the packet is written; QoS 1 and 2
 *   resolve once the packet is queued (the client delivers it, across reconnects): waiting for
 *   the broker's acknowledgement would deadlock while the trigger holds back the acknowledgement
 *   of the message being handled (the client reads packets one at a time).
 * - `connectPublish` opens an ad-hoc client (gen-1 `hostMqttConnectPublish`), publishes at
 *   QoS 0, and closes it.
 *
 * The MQTT client is imported lazily, so a runner that never uses MQTT never loads it.
 */
import type { MqttClient } from 'mqtt';
import type { ServiceHost } from '../../base/services.ts';
import { poolHub } from '../service-calls.ts';
import { importOnFirstUse, TriggerConnection } from '../broker-functions.ts';

/** Name of the service (see `ServiceHost.provide`). */
export const MQTT_SERVICE = 'mqtt';

/** What a host function asks the `mqtt` service. `qos` absent = the trigger's configured QoS. */
export type MqttServiceRequest =
  | { op: 'publish'; topic: string; data: Uint8Array; qos?: 0 | 1 | 2 }
  | { op: 'connectPublish'; server: string; clientId: string; topic: string; data: Uint8Array };

/** The answer: done, or an error text. */
export type MqttServiceReply = { ok: true } | { ok: false; error: string };

/** Longest wait for an ad-hoc client to connect and publish (ms). */
const AD_HOC_MS = 5000;

/** The MQTT client module, imported on first use. */
export const loadMqtt: () => Promise<typeof import('mqtt')> = importOnFirstUse(() => import('mqtt'));

/**
 * Turns a server given as Go Capsule users wrote it into a URL the client accepts:
 * `host:port` → `mqtt://host:port`; `tcp://` → `mqtt://`; `ssl://`, `tls://` → `mqtts://`;
 * `mqtt://`, `mqtts://`, `ws://`, `wss://` unchanged.
 * @throws Error for another scheme
 */
export function mqttUrl(server: string): string {
  const s = server.trim();
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
  if (!m) return `mqtt://${s}`;
  const scheme = m[1]!.toLowerCase();
  const rest = s.slice(m[0].length);
  if (scheme === 'tcp') return `mqtt://${rest}`;
  if (scheme === 'ssl' || scheme === 'tls') return `mqtts://${rest}`;
  if (['mqtt', 'mqtts', 'ws', 'wss'].includes(scheme)) return `${scheme}://${rest}`;
  throw new Error(`${server}: unsupported MQTT server scheme ${scheme}:// (use mqtt://, mqtts://, ws://, wss://, tcp:// or host:port)`);
}

/**
 * The MQTT state of one worker pool: the trigger's client (if any) and the service that host
 * functions reach.
 */
export class MqttHub extends TriggerConnection<MqttClient> {
  #qos: 0 | 1 | 2 = 0;
  /** Receives errors of fire-and-forget publishes (QoS ≥ 1). */
  onError: (message: string) => void = () => undefined;

  /**
   * The trigger's client, used by `publish`.
   * @param qos the QoS of publishes that name none (the trigger's `--qos`)
   */
  override attach(client: MqttClient, server: string, qos: 0 | 1 | 2 = 0): void {
    super.attach(client, server);
    this.#qos = qos;
  }

  /** Handles one service request. Never throws: failures are `{ ok: false }`. */
  async handle(req: MqttServiceRequest): Promise<MqttServiceReply> {
    try {
      switch (req.op) {
        case 'publish': {
          const client = this.connection;
          if (!client) {
            return { ok: false, error: 'no MQTT connection: this host function uses the client of the MQTT trigger (capsule mqtt --mqtt-server=… --topic=…)' };
          }
          const qos = req.qos ?? this.#qos;
          const payload = Buffer.from(req.data.buffer, req.data.byteOffset, req.data.byteLength);
          if (qos === 0) {
            if (!client.connected) return { ok: false, error: `not connected to the MQTT broker ${this.server} (reconnecting)` };
            await client.publishAsync(req.topic, payload, { qos: 0, retain: false });
            return { ok: true };
          }
          client.publish(req.topic, payload, { qos, retain: false }, (e) => {
            if (e) this.onError(`publish to ${req.topic} failed: ${e.message}`);
          });
          return { ok: true };
        }
        case 'connectPublish':
          return await connectPublish(req.server, req.clientId, req.topic, req.data);
      }
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }
}

async function connectPublish(server: string, clientId: string, topic: string, data: Uint8Array): Promise<MqttServiceReply> {
  const mqtt = await loadMqtt();
  let url: string;
  try {
    url = mqttUrl(server);
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
  const client = mqtt.connect(url, { clientId, reconnectPeriod: 0, connectTimeout: AD_HOC_MS, clean: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer from ${server} within ${AD_HOC_MS} ms`)), AD_HOC_MS);
      client.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      client.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      client.once('close', () => {
        clearTimeout(timer);
        reject(new Error('connection closed'));
      });
    });
  } catch (e) {
    client.end(true);
    return { ok: false, error: `cannot connect to MQTT server ${server}: ${(e as Error).message}` };
  }
  try {
    await client.publishAsync(topic, Buffer.from(data), { qos: 0, retain: false });
    return { ok: true };
  } finally {
    await client.endAsync().catch(() => undefined);
  }
}

/**
 * The MQTT hub of a pool; the first call registers the `mqtt` service on the pool.
 * Safe to call more than once.
 */
export function mqttHub(pool: ServiceHost): MqttHub {
  return poolHub(pool, MQTT_SERVICE, () => new MqttHub());
}
