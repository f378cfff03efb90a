/**
 * Settings of the host capabilities that go beyond grants of files and hosts: outbound HTTP
 * limits, the memory cache and KV backend, Redis and CouchBase. They are part of a function's
 * `FunctionSettings` (and `FunctionOptions`), so they travel to the workers and reach the
 * main-thread services with the calling module (`ServiceCallerModule.settings`).
 *
 * Every field is optional: an embedder that sets none gets the defaults below, and the Redis and
 * CouchBase clients then read the Go Capsule environment variables of the runner's process
 * (capsule-abi.md §4.7, §5.7). The types are on the ground floor (base/settings.ts).
 */
import type { CapabilitySettingDeclarations, CapabilitySettings } from '../base/settings.ts';
import { httpSettings } from './http/settings.ts';
import { cacheSettings } from './cache/settings.ts';
import { kvSettings } from './kv/settings.ts';
import { redisSettings } from './redis/settings.ts';
import { couchbaseSettings } from './couchbase/settings.ts';

/**
 * The settings every capability declares (key, flag, default, parser, help), in help order.
 * The CLI flags, config files, `CAPSULE_*` variables, routes files and API bodies all loop over
 * this list (functions/spec.ts): a new setting is one entry in its capability's `settings.ts`.
 */
export const CAPABILITY_SETTINGS: readonly CapabilitySettingDeclarations[] = [httpSettings, cacheSettings, kvSettings, redisSettings, couchbaseSettings];

/** The declared defaults (`10s`, `10MiB`…) applied through their own parsers: one source for the flags' help and the engine. */
function declaredDefaults(): CapabilitySettings {
  const out: CapabilitySettings = {};
  for (const c of CAPABILITY_SETTINGS) for (const d of c.settings) if (d.default !== undefined) d.apply(out, d.default, d.key);
  return out;
}
const declared = declaredDefaults();

/** Defaults of the capability settings (documented in the README's "Capabilities" section), from the declarations. */
export const CAPABILITY_DEFAULTS = {
  httpTimeoutMs: declared.http!.timeoutMs!,
  maxResponseBytes: declared.http!.maxResponseBytes!,
  cacheMaxEntries: declared.cache!.maxEntries!,
  cacheMaxBytes: declared.cache!.maxBytes!,
} as const;

/** Copies the capability settings out of a larger options object (only the fields that are set). */
export function pickCapabilitySettings(o: CapabilitySettings): CapabilitySettings {
  const out: CapabilitySettings = {};
  if (o.name !== undefined) out.name = o.name;
  if (o.http !== undefined) out.http = o.http;
  if (o.cache !== undefined) out.cache = o.cache;
  if (o.kv !== undefined) out.kv = o.kv;
  if (o.redis !== undefined) out.redis = o.redis;
  if (o.couchbase !== undefined) out.couchbase = o.couchbase;
  return out;
}
