/**
 * Every capability the host provides (see `Capability` in types.ts). Adding a capability = one
 * folder under src/capabilities/ and one line here: its host functions are then found by name,
 * its main-thread services registered on every worker pool, its grant described by
 * `capsule inspect`.
 */
import type { ServiceHost } from '../base/services.ts';
import type { Capability, HostFunction } from './types.ts';
import { log } from './log/index.ts';
import { env } from './env/index.ts';
import { nats } from './nats/index.ts';
import { mqtt } from './mqtt/index.ts';
import { hostInfo } from './host-info/index.ts';
import { files } from './files/index.ts';
import { http } from './http/index.ts';
import { cache } from './cache/index.ts';
import { kv } from './kv/index.ts';
import { redis } from './redis/index.ts';
import { couchbase } from './couchbase/index.ts';

export const CAPABILITIES: readonly Capability[] = [
  log,
  env,
  nats,
  mqtt,
  hostInfo,
  files,
  http,
  cache,
  kv,
  redis,
  couchbase,
];

/**
 * Finds the host function a module of `generation` imports as `env.<name>`.
 * @returns undefined when the host does not provide it for that generation
 */
export function findHostFunction(name: string, generation: 1 | 2): HostFunction | undefined {
  return INDEX.get(`${generation}:${name}`);
}

/** The capability a host function of `generation` belongs to (for its grant). */
export function capabilityOf(name: string, generation: 1 | 2): Capability | undefined {
  return OWNER.get(INDEX.get(`${generation}:${name}`)!);
}

/** Registers the main-thread services of every capability on a worker pool (idempotent). */
export function provideCapabilityServices(host: ServiceHost): void {
  for (const c of CAPABILITIES) c.provide?.(host);
}

/** Names of every host function of a generation (for error messages and `capsule inspect`). */
export function hostFunctionNames(generation: 1 | 2): string[] {
  return [...INDEX.keys()].filter((k) => k.startsWith(`${generation}:`)).map((k) => k.slice(2)).sort();
}

const INDEX = new Map<string, HostFunction>();
const OWNER = new Map<HostFunction, Capability>();
for (const c of CAPABILITIES) {
  for (const f of c.functions) {
    for (const g of f.generations) {
      const key = `${g}:${f.name}`;
      if (INDEX.has(key)) throw new Error(`host function ${f.name} is registered twice for gen ${g}`);
      INDEX.set(key, f);
      OWNER.set(f, c);
    }
  }
}
