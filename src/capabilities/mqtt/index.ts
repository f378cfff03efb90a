/**
 * Capability `mqtt`: the guest publishes on MQTT.
 *
 * Gen 1 (capsule-abi.md §4.7): `hostMqttPublish` (the trigger's client, QoS 0, not retained),
 * `hostMqttConnectPublish` (an ad-hoc client), results `[OK](<topic>:<data>)` or
 * `[ERR][0]:<error>`; `hostMqttGetTopic`, `hostMqttGetServer`, `hostMqttGetClientId`.
 * Gen 2 (§8 extension): `hostMqttPublish` → `S<topic>` / `F<error>`, at the QoS the trigger was
 * configured with (`--qos`, default 0), not retained.
 *
 * The clients live in the main thread (service `mqtt`, see ./service.ts); publishing functions
 * are async (the guest is suspended with JSPI). Trigger facts come from `ctx.trigger` (set by the
 * MQTT trigger): `mqttServer`, `mqttTopic` (the subscription that delivered the message),
 * `mqttClientId`.
 */
import { argBytes as bytes, fail, text, type HostCallContext, type HostFunction, type Capability } from '../types.ts';
import { okEcho, triggerGetter } from '../gen1-encodings.ts';
import { publishFunction } from '../broker-functions.ts';
import { mqttHub, MQTT_SERVICE, type MqttServiceReply, type MqttServiceRequest } from './service.ts';


/** Trigger facts the MQTT trigger puts in `InvocationMeta.trigger`. */
export const MQTT_TRIGGER_KEYS = { server: 'mqttServer', topic: 'mqttTopic', clientId: 'mqttClientId' } as const;

function ask(ctx: HostCallContext, request: MqttServiceRequest): Promise<MqttServiceReply> {
  return ctx.service(MQTT_SERVICE, request) as Promise<MqttServiceReply>;
}



const gen1: HostFunction[] = [
  // gen 1 publishes at QoS 0 whatever the trigger's --qos
  publishFunction('hostMqttPublish', 1, (ctx, topic, data) => ask(ctx, { op: 'publish', topic, data, qos: 0 })),
  {
    name: 'hostMqttConnectPublish', generations: [1], params: ['s', 's', 's', 's'], returns: true, async: true,
    async run(ctx, [server, clientId, topic, data]) {
      const t = text(topic);
      const r = await ask(ctx, { op: 'connectPublish', server: text(server), clientId: text(clientId), topic: t, data: bytes(data) });
      return r.ok ? okEcho(t, bytes(data)) : fail(r.error);
    },
  },
  triggerGetter('hostMqttGetTopic', MQTT_TRIGGER_KEYS.topic),
  triggerGetter('hostMqttGetServer', MQTT_TRIGGER_KEYS.server),
  triggerGetter('hostMqttGetClientId', MQTT_TRIGGER_KEYS.clientId),
];

const gen2: HostFunction[] = [
  publishFunction('hostMqttPublish', 2, (ctx, topic, data) => ask(ctx, { op: 'publish', topic, data })),
];

/** The `mqtt` capability: gen-1 and gen-2 MQTT host functions (one entry per generation and name). */
export const mqtt: Capability = {
  name: 'mqtt',
  functions: [...gen1, ...gen2],
  provide: (host) => void mqttHub(host), // the trigger's client and ad-hoc ones
};
