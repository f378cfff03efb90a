/**
 * Capability `nats`: the guest publishes, requests and replies on NATS.
 *
 * Gen 1 (capsule-abi.md §4.7, §7.11): `hostNatsPublish`, `hostNatsConnectPublish`,
 * `hostNatsConnectRequest`, `hostNatsReply`, `hostNatsGetSubject`, `hostNatsGetServer`; results
 * `[OK](<subject>:<data>)`, the reply payload, or `[ERR][0]:<error>`.
 * Gen 2 (§8 extension): `hostNatsPublish` → `S<subject>`, `hostNatsRequest` → `S<reply>` /
 * `Ftimeout` / `F<error>`.
 *
 * The connections live in the main thread (service `nats`, see ./service.ts); these functions are
 * async: the guest is suspended with JSPI until the broker answers. Trigger facts come from
 * `ctx.trigger` (set by the NATS trigger): `natsServer`, `natsSubject` (the subscription that
 * delivered the message), `natsReplyTo` (its reply subject, empty when none).
 */
import { argBytes as bytes, fail, ok, text, type HostCallContext, type HostFunction, type HostResult, type Capability } from '../types.ts';
import { okEcho, triggerFact as fact, triggerGetter } from '../gen1-encodings.ts';
import { publishFunction } from '../broker-functions.ts';
import { natsHub, NATS_SERVICE, type NatsServiceReply, type NatsServiceRequest } from './service.ts';


/** Trigger facts the NATS trigger puts in `InvocationMeta.trigger`. */
export const NATS_TRIGGER_KEYS = { server: 'natsServer', subject: 'natsSubject', replyTo: 'natsReplyTo' } as const;

function ask(ctx: HostCallContext, request: NatsServiceRequest): Promise<NatsServiceReply> {
  return ctx.service(NATS_SERVICE, request) as Promise<NatsServiceReply>;
}


/** Publishes on the trigger's connection. */
const publish = (ctx: HostCallContext, subject: string, data: Uint8Array) => ask(ctx, { op: 'publish', subject, data });

/** Gen-1 errors read like Go's nats client (`nats: timeout`). */
function gen1Error(r: Extract<NatsServiceReply, { ok: false }>): HostResult {
  return fail(r.timeout ? 'nats: timeout' : r.error);
}

const gen1: HostFunction[] = [
  publishFunction('hostNatsPublish', 1, publish, gen1Error),
  {
    name: 'hostNatsConnectPublish', generations: [1], params: ['s', 's', 's'], returns: true, async: true,
    async run(ctx, [server, subject, data]) {
      const s = text(subject);
      const r = await ask(ctx, { op: 'connectPublish', server: text(server), subject: s, data: bytes(data) });
      return r.ok ? okEcho(s, bytes(data)) : gen1Error(r);
    },
  },
  {
    // The timeout is in seconds (§4.7).
    name: 'hostNatsConnectRequest', generations: [1], params: ['s', 's', 's', 'n'], returns: true, async: true,
    async run(ctx, [server, subject, data, timeout]) {
      const timeoutMs = Math.max(1, Number(timeout)) * 1000;
      const r = await ask(ctx, { op: 'connectRequest', server: text(server), subject: text(subject), data: bytes(data), timeoutMs });
      return r.ok ? ok(r.value) : gen1Error(r);
    },
  },
  {
    // §7.11: replies to the message being handled (its reply subject); the timeout is ignored.
    name: 'hostNatsReply', generations: [1], params: ['s', 'n'], returns: true, async: true,
    async run(ctx, [data]) {
      const replyTo = fact(ctx, NATS_TRIGGER_KEYS.replyTo);
      if (!replyTo) return fail('message has no reply subject');
      const r = await ask(ctx, { op: 'publish', subject: replyTo, data: bytes(data) });
      return r.ok ? okEcho(replyTo, bytes(data)) : gen1Error(r);
    },
  },
  triggerGetter('hostNatsGetSubject', NATS_TRIGGER_KEYS.subject),
  triggerGetter('hostNatsGetServer', NATS_TRIGGER_KEYS.server),
];

const gen2: HostFunction[] = [
  publishFunction('hostNatsPublish', 2, publish),
  {
    // The timeout is in milliseconds (§8); a missing reply gives `Ftimeout`.
    name: 'hostNatsRequest', generations: [2], params: ['s', 's', 'n'], returns: true, async: true,
    async run(ctx, [subject, data, timeout]) {
      const r = await ask(ctx, { op: 'request', subject: text(subject), data: bytes(data), timeoutMs: Math.max(1, Number(timeout)) });
      return r.ok ? ok(r.value) : fail(r.error);
    },
  },
];

/** The `nats` capability: gen-1 and gen-2 NATS host functions (one entry per generation and name). */
export const nats: Capability = {
  name: 'nats',
  functions: [...gen1, ...gen2],
  provide: (host) => void natsHub(host), // the trigger's connection and ad-hoc ones
};
