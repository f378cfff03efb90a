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
import { fail, ok, text, type HostCallContext, type HostFunction, type HostResult, type Capability } from '../types.ts';
import { argBytes as bytes, okEcho, triggerGetter } from '../common.ts';
import { MQTT_SERVICE, type MqttServiceReply, type MqttServiceRequest } from './service.ts';


/** Trigger facts the MQTT trigger puts in `InvocationMeta.trigger`. */
export const MQTT_TRIGGER_KEYS = { server: 'mqttServer', topic: 'mqttTopic', clientId: 'mqttClientId' } as const;

function ask(ctx: HostCallContext, request: MqttServiceRequest): Promise<MqttServiceReply> {
  return ctx.service(MQTT_SERVICE, request) as Promise<MqttServiceReply>;
}



const gen1: HostFunction[] = [
  {
    name: 'hostMqttPublish', generations: [1], params: ['s', 's'], returns: true, async: true,
    async run(ctx, [topic, data]) {
      const t = text(topic);
      const r = await ask(ctx, { op: 'publish', topic: t, data: bytes(data), qos: 0 });
      return r.ok ? okEcho(t, bytes(data)) : fail(r.error);
    },
  },
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
  {
    name: 'hostMqttPublish', generations: [2], params: ['s', 's'], returns: true, async: true,
    async run(ctx, [topic, data]) {
      const t = text(topic);
      const r = await ask(ctx, { op: 'publish', topic: t, data: bytes(data) });
      return r.ok ? ok(t) : fail(r.error);
    },
  },
];

/** The `mqtt` capability: gen-1 and gen-2 MQTT host functions (one entry per generation and name). */
export const mqtt: Capability = {
  name: 'mqtt',
  functions: [...gen1, ...gen2],
};
