/**
 * Gen-1 encodings shared by the host capabilities (capsule-abi.md §4.1, §4.7): list separators
 * that changed between sub-generations, the `[OK](…)` success texts, and the getters of trigger
 * facts (subject, topic, server).
 */
import type { HostCallContext, HostFunction, HostResult } from './types.ts';

/**
 * The separator of lists inside gen-1 strings (`StrSeparator`, capsule-abi.md §4.1): `|` for
 * 1a modules, `²` for later ones. Gen-1 `hostRedisKeys` of Go Capsule 0.1.9 joined keys with
 * `°`; such modules cannot be told from 0.2.0 ones by their shape, so they get `²`.
 */
export function gen1ListSeparator(ctx: Pick<HostCallContext, 'kind'>): string {
  return ctx.kind === 'capsule-1a' ? '|' : '²';
}

/**
 * Gen-1 `[OK](<key>:<value>)` success text of the set/publish functions (capsule-abi.md §4.7).
 */
export function okPair(key: string, value: string): string {
  return `[OK](${key}:${value})`;
}

const encoder = new TextEncoder();

/** Gen-1 `[OK](<subject or topic>:<data>)` with the data bytes as they are (capsule-abi.md §4.7). */
export function okEcho(subject: string, data: Uint8Array): HostResult {
  const head = encoder.encode(`[OK](${subject}:`);
  const out = new Uint8Array(head.length + data.length + 1);
  out.set(head);
  out.set(data, head.length);
  out[out.length - 1] = 0x29; // ')'
  return { ok: true, value: out };
}

/** A trigger fact (`ctx.trigger[key]`) as text, `''` when absent. */
export function triggerFact(ctx: Pick<HostCallContext, 'trigger'>, key: string): string {
  const v = ctx.trigger[key];
  return v === undefined ? '' : String(v);
}

/** A gen-1 getter `() -> r` returning a trigger fact (hostNatsGetSubject, hostMqttGetTopic, …; §4.7). */
export function triggerGetter(name: string, key: string): HostFunction {
  return { name, generations: [1], params: [], returns: true, run: (ctx) => ({ ok: true, value: triggerFact(ctx, key) }) };
}
