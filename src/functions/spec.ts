/**
 * The reader of a function's declared settings: whatever the source (CLI flags, a YAML file beside
 * a module, `CAPSULE_*` variables, a routes file entry, an API body), the same keys go through the
 * same declaration (`CAPABILITY_SETTINGS`, each beside its capability), with the same checks and
 * messages naming the key and its source.
 */
import type { CapabilitySettings, SettingDeclaration } from '../base/settings.ts';
import { CAPABILITY_SETTINGS } from '../capabilities/settings.ts';

/** Every declared setting, flattened. */
export const SETTING_DECLARATIONS: readonly SettingDeclaration[] = CAPABILITY_SETTINGS.flatMap((c) => c.settings);

/** The config keys of the declared settings (`httpTimeout`, `redisUri`, …). */
export const SETTING_KEYS: readonly string[] = SETTING_DECLARATIONS.map((d) => d.key);

/** The long flag of a declaration (`--http-timeout`). */
export function flagName(d: SettingDeclaration): string {
  return d.flag.split(' ')[0]!;
}

/**
 * Reads the declared capability settings from one source.
 * @param get the raw value of a key in this source, undefined when absent
 * @param nameOf how messages name a key of this source (`--http-timeout`, `f.yaml: "httpTimeout"`)
 * @param env the runner's environment (CouchBase defaults)
 * @returns the settings given (empty when none)
 * @throws CapsuleError USAGE naming the key and the source of a bad value
 */
export function readCapabilitySettings(get: (key: string) => string | undefined, nameOf: (d: SettingDeclaration) => string, env: NodeJS.ProcessEnv = process.env): CapabilitySettings {
  const out: CapabilitySettings = {};
  for (const capability of CAPABILITY_SETTINGS) {
    const names = new Map<string, string>();
    for (const d of capability.settings) {
      const value = get(d.key);
      if (value === undefined) continue;
      names.set(d.key, nameOf(d));
      d.apply(out, value, nameOf(d));
    }
    if (names.size > 0) capability.complete?.(out, env, names);
  }
  return out;
}
