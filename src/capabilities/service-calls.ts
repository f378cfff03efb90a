/**
 * What host functions and their main-thread services share: calling a service from a worker
 * thread, naming the calling function and its generation in the main thread, and the one hub
 * per pool of a broker connection service.
 */
import type { ServiceCallerModule, ServiceHost } from '../base/services.ts';
import { fail, type HostCallContext, type HostResult } from './types.ts';

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
