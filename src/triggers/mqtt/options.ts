/**
 * Options of the MQTT trigger (`capsule mqtt`).
 */
import type { MessageTriggerOptions } from '../message/options.ts';

/**
 * Options of the MQTT trigger (the common ones: {@link MessageTriggerOptions}; `maxConcurrency`
 * bounds QoS 0 messages, QoS ≥ 1 messages run one at a time).
 */
export interface MqttTriggerOptions extends MessageTriggerOptions {
  /**
   * MQTT broker as Go Capsule's `-mqttsrv` took it: `mqtt://host:port`, `mqtts://…`,
   * `tcp://…`, `ws://…` or `host:port`.
   */
  server: string;
  /** Topic filters (`+`, `#`; `$share/<group>/<filter>` for a shared subscription); at least one. */
  topics: string[];
  /** Client id (default: `capsule-<random>`); required with `persistentSession`. */
  clientId?: string;
  /** Subscription QoS, also the QoS of the guest's gen-2 `hostMqttPublish` (default 0). */
  qos?: 0 | 1 | 2;
  /**
   * Keep the session when the runner is away (clean start off, session expiry "never"): the
   * broker keeps the subscriptions and queues QoS ≥ 1 messages for this client id.
   */
  persistentSession?: boolean;
}

/**
 * Whether an MQTT topic filter matches a topic (`+` one level, `#` the rest; a
 * `$share/<group>/` prefix is ignored; topics starting with `$` match no leading wildcard).
 */
export function topicMatches(filter: string, topic: string): boolean {
  let f = filter;
  if (f.startsWith('$share/')) f = f.split('/').slice(2).join('/');
  const fl = f.split('/');
  const tl = topic.split('/');
  if (topic.startsWith('$') && (fl[0] === '+' || fl[0] === '#')) return false;
  for (let i = 0; i < fl.length; i++) {
    if (fl[i] === '#') return true;
    if (i >= tl.length) return false;
    if (fl[i] !== '+' && fl[i] !== tl[i]) return false;
  }
  return fl.length === tl.length;
}
