/**
 * Config files (conventions.md §1): YAML whose keys are the long flag names in camelCase
 * (`allowedHosts`, `maxMemory`, `timeout`, …) of the command being run, and the `CAPSULE_*`
 * environment variables of the same settings. Precedence: CLI flags > config file > `CAPSULE_*`
 * environment variables > defaults.
 *
 * - `--config <file>` names the file; otherwise `<module>.capsule.yaml` (or `.yml`) beside the
 *   module is read when it exists (`hello.wasm` → `hello.capsule.yaml`).
 * - The schema is the command's own options; a key of another command (`maxBody` or `reuse`, of
 *   `serve`, read by `run`) is accepted and ignored, so one file can serve every command. A key
 *   that is no command's is an error naming the key and the file; so is a value of the wrong
 *   shape. Flags that take a value accept a
 *   string or a number; switches (`reuse`, `inheritEnv`) a boolean; repeatable flags (`dir`,
 *   `env`, `envFile`, `allowedHosts`) a string or a list of strings, and `env` also a map
 *   `{NAME: value}`.
 * - Relative host paths in `dir`, `envFile`, `wasm`, `crt` and `key` resolve against the file's
 *   directory.
 * - Repeatable settings add up: the file's entries come first, then the flags' (for `env`, a
 *   flag's value of the same variable wins); every other setting given as a flag wins over the
 *   file, and the file wins over a `CAPSULE_*` variable.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { Command, Option } from 'commander';
import { createRequire } from 'node:module';
import { CapsuleError } from '../base/errors.ts';
import { rebaseDirGrant } from '../wasi/mounts.ts';
import { LIMIT_SETTINGS, SETTING_DECLARATIONS } from './spec.ts';

/** Options that never get a `CAPSULE_*` variable or a config key (identity of the module and of one call). */
const NOT_SETTINGS = new Set(['help', 'version', 'config', 'params', 'paramsFile', 'json']);

/** Single host paths, resolved against the config file's directory. */
const PATHS = new Set(['wasm', 'crt', 'key', 'functions', 'routes']);

/** Settings whose values are checked when the file is read, by the parser every other source uses. */
const CHECKED = new Map<string, (text: string, name: string) => unknown>([
  ...LIMIT_SETTINGS.map((d) => [d.key, (text: string, name: string) => d.apply({ env: [], dirs: [], allowedHosts: [] }, text, name)] as const),
  ...SETTING_DECLARATIONS.map((d) => [d.key, (text: string, name: string) => d.apply({}, text, name)] as const),
]);

/**
 * Checks a function setting's value now, so the message names the file and the key rather than
 * the flag it becomes. @throws CapsuleError USAGE
 */
function checkValue(key: string, value: string, path: string): void {
  CHECKED.get(key)?.(value, `config file ${path}: "${key}"`);
}

/** A loaded and validated config file. */
export interface ConfigFile {
  path: string;
  /** Option attribute name → value, converted to what the option's parser would produce. */
  values: Map<string, string | boolean | string[]>;
}

/**
 * The `CAPSULE_*` name of an option: its long flag in upper snake case (`--max-memory` →
 * `CAPSULE_MAX_MEMORY`, `--no-inherit-env` → `CAPSULE_NO_INHERIT_ENV`). A switch is on when its
 * variable is set, whatever the value (commander's rule).
 */
export function envVarName(o: Option): string {
  return 'CAPSULE_' + o.long!.replace(/^--/, '').replace(/-/g, '_').toUpperCase();
}

/**
 * Gives every setting option of `cmd` its `CAPSULE_*` environment variable (commander reads it
 * when the flag is absent). Call after all options are added.
 */
export function addEnvVars(cmd: Command): void {
  for (const o of cmd.options) {
    if (!o.long || o.envVar || NOT_SETTINGS.has(o.attributeName())) continue;
    o.env(envVarName(o));
    // commander wires an option's variable when the option is added: wire it here, the same way
    cmd.on(`optionEnv:${o.name()}`, (raw?: string) => {
      const key = o.attributeName();
      let value: unknown = raw === undefined ? !o.negate : raw;
      if (raw !== undefined && o.parseArg) {
        try {
          value = o.parseArg(raw, cmd.getOptionValue(key));
        } catch (e) {
          throw new CapsuleError('USAGE', `${o.envVar}: ${(e as Error).message}`);
        }
      }
      cmd.setOptionValueWithSource(key, value, 'env');
    });
  }
}

/** `<dir>/<name>.capsule.yaml` (or `.yml`) beside a module path, when it exists. */
export function configBeside(modulePath: string): string | undefined {
  const name = basename(modulePath).replace(/\.wasm$/i, '');
  for (const ext of ['yaml', 'yml']) {
    const p = join(dirname(modulePath), `${name}.capsule.${ext}`);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function optionFor(cmd: Command, key: string): Option | undefined {
  return cmd.options.find((o) => o.long && o.attributeName() === key && !NOT_SETTINGS.has(key));
}

/**
 * Every config key of the program `cmd` belongs to (the settings of all its commands), e.g. for
 * a per-function file that `run` and `serve --functions` both read.
 */
export function allConfigKeys(cmd: Command): Set<string> {
  let root = cmd;
  while (root.parent) root = root.parent;
  const keys = new Set<string>(OTHER_COMMANDS_KEYS.get(root));
  for (const c of [root, ...root.commands]) {
    for (const o of c.options) if (o.long && !NOT_SETTINGS.has(o.attributeName())) keys.add(o.attributeName());
  }
  return keys;
}

/** Keys of commands a program does not declare (`declareOtherCommandsKeys`). */
const OTHER_COMMANDS_KEYS = new WeakMap<Command, readonly string[]>();

/**
 * Tells `allConfigKeys` the keys of commands `program` does not declare: the program of
 * `capsule run` alone (cli/module-command.ts) accepts, as the whole program does, a config file
 * that also holds settings of serve, nats, mqtt… (its bundle gets them at build time).
 */
export function declareOtherCommandsKeys(program: Command, keys: readonly string[]): void {
  OTHER_COMMANDS_KEYS.set(program, keys);
}

/**
 * Reads and validates a config file against the options of `cmd`.
 * @throws CapsuleError USAGE naming the file (and the key) when it cannot be read, is not YAML,
 *   is not a map, has an unknown key or a value of the wrong shape
 */
export function loadConfigFile(path: string, cmd: Command): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CapsuleError('USAGE', `config file ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let doc: unknown;
  try {
    // the YAML parser is loaded when a config file is read, not at every start (docs/performance.md)
    doc = (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text);
  } catch (e) {
    throw new CapsuleError('USAGE', `config file ${path}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return { path, values: new Map() };
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new CapsuleError('USAGE', `config file ${path}: expected a map of settings (key: value)`);
  const base = dirname(resolve(path));
  const values = new Map<string, string | boolean | string[]>();
  const known = () => cmd.options.filter((o) => o.long && !NOT_SETTINGS.has(o.attributeName())).map((o) => o.attributeName()).sort().join(', ');
  let others: Set<string> | undefined;
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const o = optionFor(cmd, key);
    if (!o && (others ??= allConfigKeys(cmd)).has(key)) continue; // another command's setting
    if (!o) throw new CapsuleError('USAGE', `config file ${path}: unknown key "${key}" (known keys: ${known()})`);
    const bad = (expected: string) => new CapsuleError('USAGE', `config file ${path}: "${key}" must be ${expected}, not ${JSON.stringify(value)}`);
    if (o.isBoolean() || o.negate) {
      if (typeof value !== 'boolean') throw bad('true or false');
      values.set(key, value);
      continue;
    }
    const scalar = (v: unknown): string => {
      if (typeof v === 'string') return v;
      if (typeof v === 'number' && Number.isFinite(v)) return String(v);
      throw bad(Array.isArray(o.defaultValue) ? 'a string or a list of strings' : 'a string or a number');
    };
    if (Array.isArray(o.defaultValue)) {
      let items: string[];
      if (key === 'env' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
        items = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
          if (v === null || typeof v === 'object') throw bad('a map of NAME: value (strings or numbers)');
          return `${k}=${String(v)}`;
        });
      } else {
        items = (Array.isArray(value) ? value : [value]).map(scalar);
      }
      if (key === 'dir') items = items.map((d) => rebaseDirGrant(d, base));
      if (key === 'envFile') items = items.map((f) => (isAbsolute(f) ? f : resolve(base, f)));
      if (key === 'allowedHosts') items = items.flatMap((h) => h.split(',').map((s) => s.trim()).filter(Boolean));
      values.set(key, items);
      continue;
    }
    let v = scalar(value);
    if (PATHS.has(key) && !isAbsolute(v)) v = resolve(base, v);
    if (o.argChoices && !o.argChoices.includes(v)) throw bad(`one of ${o.argChoices.join(', ')}`);
    checkValue(key, v, path);
    values.set(key, v);
  }
  return { path, values };
}


/**
 * Applies a config file to the parsed options of `cmd` with the precedence of the module
 * comment: a setting from the command line stays (repeatable ones get the file's entries in
 * front), a `CAPSULE_*` variable or a default is replaced.
 */
export function applyConfig(cmd: Command, config: ConfigFile): void {
  for (const [key, value] of config.values) {
    const source = cmd.getOptionValueSource(key);
    if (Array.isArray(value)) {
      const current = cmd.getOptionValue(key) as string[] | undefined;
      if (source === 'cli') cmd.setOptionValueWithSource(key, [...value, ...(current ?? [])], 'cli');
      else cmd.setOptionValueWithSource(key, value, 'config');
      continue;
    }
    if (source === 'cli') continue;
    cmd.setOptionValueWithSource(key, value, 'config');
  }
}

/**
 * Finds and applies the config file of a command about to run: `--config`, else the file beside
 * the module (`modulePath`), else nothing.
 * @returns the file applied, if any
 * @throws CapsuleError USAGE (see `loadConfigFile`)
 */
export function applyConfigFor(cmd: Command, modulePath: string | undefined): string | undefined {
  const explicit = cmd.getOptionValue('config') as string | undefined;
  const path = explicit ?? (modulePath ? configBeside(modulePath) : undefined);
  if (!path) return undefined;
  // `serve --config modules.toml` is WAGI's routes file (wasi-cgi.md §9), read by the server.
  if (/\.toml$/i.test(path) && cmd.name() === 'serve') return undefined;
  applyConfig(cmd, loadConfigFile(path, cmd));
  return path;
}
