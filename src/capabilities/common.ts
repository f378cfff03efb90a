/**
 * Helpers shared by the host capabilities: gen-1 encodings that changed between
 * sub-generations (capsule-abi.md §4.1), main-thread service calls, and the function's name.
 */
import type { ServiceCallerModule, ServiceHost } from '../base/services.ts';
import { fail, type HostCallContext, type HostFunction, type HostResult } from './types.ts';

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

/**
 * Calls a main-thread service and turns a rejection into a failure result whose text is the
 * service's message (prefixed with `prefix` when given).
 */
export async function callService<T>(ctx: HostCallContext, name: string, request: unknown, onValue: (value: T) => HostResult): Promise<HostResult> {
  let value: T;
  try {
    value = (await ctx.service(name, request)) as T;
  } catch (e) {
    return fail((e as Error)?.message ?? String(e));
  }
  return onValue(value);
}

/** The name that namespaces a function's memory cache and memory KV (main thread). */
export function functionName(caller: ServiceCallerModule): string {
  return caller.settings.name ?? caller.module.name;
}

/** The ABI generation of a registered module (main thread), for gen-specific behaviour. */
export function generationOf(caller: ServiceCallerModule): 1 | 2 {
  return caller.module.detection.kind.startsWith('capsule-1') ? 1 : 2;
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

/** An `s` argument as bytes (empty for anything else). */
export function argBytes(a: Uint8Array | number | undefined): Uint8Array {
  return a instanceof Uint8Array ? a : new Uint8Array(0);
}

/** A gen-1 getter `() -> r` returning a trigger fact (hostNatsGetSubject, hostMqttGetTopic, …; §4.7). */
export function triggerGetter(name: string, key: string): HostFunction {
  return { name, generations: [1], params: [], returns: true, run: (ctx) => ({ ok: true, value: triggerFact(ctx, key) }) };
}

const hubs = new WeakMap<ServiceHost, Map<string, unknown>>();

/**
 * The one `T` of a pool for a main-thread service (broker connections): made by `make` at the
 * first call, which also registers `service` on the pool with the hub's `handle`. Safe to call
 * more than once.
 */
export function poolHub<T extends { handle(request: never): unknown }>(pool: ServiceHost, service: string, make: () => T): T {
  let byService = hubs.get(pool);
  if (!byService) hubs.set(pool, (byService = new Map()));
  let hub = byService.get(service) as T | undefined;
  if (!hub) {
    const created = make();
    hub = created;
    byService.set(service, created);
    pool.provide(service, (request) => created.handle(request as never));
  }
  return hub;
}
