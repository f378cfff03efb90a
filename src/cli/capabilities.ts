/**
 * CLI flags of the host capabilities (commander wiring), one per declaration of
 * `CAPABILITY_SETTINGS`; functions/spec.ts `functionSpecFromFlags` reads them.
 * Grants of files (`--dir`) and hosts (`--allowed-hosts`) and the environment flags are declared
 * with the other module flags in main.ts.
 */
import { Option, type Command } from 'commander';
import type { SettingDeclaration } from '../base/settings.ts';
import { SETTING_DECLARATIONS } from '../functions/spec.ts';

/** The parsed values of the capability flags (strings as commander keeps them), by config key. */
export interface CapabilityFlags {
  config?: string;
  allowedHosts: string[];
  [key: string]: unknown;
}

/** Adds one option per declaration (flag, help, default, choices). */
export function settingOptions(cmd: Command, declarations: readonly SettingDeclaration<never>[]): Command {
  for (const d of declarations) {
    const o = new Option(d.flag, d.description);
    if (d.default !== undefined) o.default(d.default);
    if (d.choices) o.choices(d.choices);
    cmd.addOption(o);
  }
  return cmd;
}

/** Adds `--config` and the capability flags (one per declared setting) to a command that loads a module. */
export function capabilityOptions(cmd: Command): Command {
  cmd.option('--config <file>', 'YAML config file (keys: the long flag names in camelCase); default: <module>.capsule.yaml beside the module');
  return settingOptions(cmd, SETTING_DECLARATIONS);
}
