/**
 * CLI flags of the host capabilities (commander wiring) and their conversion to
 * `CapabilitySettings`, both over the declarations of `CAPABILITY_SETTINGS` (functions/spec.ts).
 * Grants of files (`--dir`) and hosts (`--allowed-hosts`) and the environment flags are declared
 * with the other module flags in main.ts.
 */
import { Option, type Command } from 'commander';
import type { CapabilitySettings } from '../base/settings.ts';
import { parseAllowedHosts } from '../capabilities/http/allow-list.ts';
import { flagName, readCapabilitySettings, SETTING_DECLARATIONS } from '../functions/spec.ts';

/** The parsed values of the capability flags (strings as commander keeps them), by config key. */
export interface CapabilityFlags {
  config?: string;
  allowedHosts: string[];
  [key: string]: unknown;
}

/** Adds `--config` and the capability flags (one per declared setting) to a command that loads a module. */
export function capabilityOptions(cmd: Command): Command {
  cmd.option('--config <file>', 'YAML config file (keys: the long flag names in camelCase); default: <module>.capsule.yaml beside the module');
  for (const d of SETTING_DECLARATIONS) {
    const o = new Option(d.flag, d.description);
    if (d.default !== undefined) o.default(d.default);
    if (d.choices) o.choices(d.choices);
    cmd.addOption(o);
  }
  return cmd;
}

/**
 * Converts the capability flags to settings (checks them all).
 * @param env the runner's environment (CouchBase defaults)
 * @throws CapsuleError USAGE naming the flag with a bad value
 */
export function capabilitySettings(f: CapabilityFlags, env: NodeJS.ProcessEnv = process.env): CapabilitySettings {
  parseAllowedHosts(f.allowedHosts); // refuse a bad entry before anything runs
  const defaults = new Set(SETTING_DECLARATIONS.filter((d) => d.default !== undefined).map((d) => d.key));
  const get = (key: string): string | undefined => {
    const v = f[key];
    if (v === undefined || (v === '' && !defaults.has(key))) return undefined;
    return String(v);
  };
  return readCapabilitySettings(get, flagName, env);
}
