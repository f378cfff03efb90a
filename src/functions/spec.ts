/**
 * `FunctionSpec`: every setting of one function (its kind, environment, grants, limits and
 * capability settings), and its readers. Whatever the source (CLI flags, a YAML file beside a
 * module, `CAPSULE_*` variables, a routes file entry, a JSON API body), the same keys go through
 * the same checks, with messages naming the key and its source. The capability settings are
 * declarations beside each capability (`CAPABILITY_SETTINGS`): a new one is one entry there.
 *
 * Keys of a map (`FUNCTION_SPEC_KEYS`, the long flag names in camelCase): `kind`, `env` (a map
 * NAME: value or a list of NAME=value), `envFile`, `dir`, `allowedHosts` (a string or a list),
 * `timeout`, `maxMemory`, `maxConcurrency`, `extismMode`, and every declared capability setting (`httpTimeout`,
 * `maxResponse`, `cacheMaxEntries`, `cacheMaxBytes`, `kv`, `redisUri`, `couchbaseCluster`,
 * `couchbaseUser`, `couchbaseBucket`).
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { CapsuleError } from '../base/errors.ts';
import type { ModuleKind } from '../base/kinds.ts';
import { KINDS } from '../abi/index.ts';
import type { CapabilitySettings, ExtismMode, SettingDeclaration } from '../base/settings.ts';
import { parseDuration, parseSize } from '../base/units.ts';
import { parseDirGrant, rebaseDirGrant } from '../wasi/mounts.ts';
import { CAPABILITY_SETTINGS } from '../capabilities/settings.ts';
import { parseAllowedHosts } from '../capabilities/http/allow-list.ts';
import type { FunctionOptions } from '../engine/function.ts';
import { buildGuestEnv, parseEnvFile, parseEnvPair } from './guest-env.ts';

/** Every setting of one function, whatever its source. */
export interface FunctionSpec {
  kind?: ModuleKind;
  /** Variables of this function (env files first, then `env`), in order. */
  env: [string, string][];
  /**
   * Directory grants `HOST:GUEST[:ro]` (conventions.md §2): HOST absolute from files and API
   * bodies; as written (relative to the working directory) from `--dir`.
   */
  dirs: string[];
  allowedHosts: string[];
  timeoutMs?: number;
  maxMemoryBytes?: number;
  /** Calls in progress at once for this function (WAGI `http_max_concurrency`). */
  maxConcurrency?: number;
  /** Capability settings of this function (`httpTimeout`, `redisUri`…), over the runner's. */
  capabilities?: CapabilitySettings;
  /** Extism plugins over HTTP: `raw` or `capsule` (extism-abi.md §11); unset = the server's, else raw. */
  extismMode?: ExtismMode;
}

/** Every declared setting, flattened. */
export const SETTING_DECLARATIONS: readonly SettingDeclaration[] = CAPABILITY_SETTINGS.flatMap((c) => c.settings);

/** The config keys of the declared settings (`httpTimeout`, `redisUri`, …). */
export const SETTING_KEYS: readonly string[] = SETTING_DECLARATIONS.map((d) => d.key);

/**
 * The limits of one call, declared like the capability settings (flag, key, default, parser):
 * `--timeout` / `timeout`, `--max-memory` / `maxMemory`.
 */
export const LIMIT_SETTINGS: readonly SettingDeclaration<FunctionSpec>[] = [
  { key: 'timeout', flag: '--timeout <duration>', default: '30s', apply: (s, v, name) => { s.timeoutMs = parseDuration(v, name); }, description: 'deadline of one call (250ms, 30s, 2m)' },
  { key: 'maxMemory', flag: '--max-memory <size>', default: '256MiB', apply: (s, v, name) => { s.maxMemoryBytes = parseSize(v, name); }, description: 'linear memory cap per instance (64MiB, 1GiB)' },
];

/**
 * How an Extism plugin sees HTTP requests (extism-abi.md §11): `--extism-mode` (`capsule serve`) /
 * `extismMode`. `raw`: the body in, the output as the body; `capsule`: the gen-2 request JSON in,
 * the output read as the gen-2 response JSON (capsule-abi.md §5.3, §5.4).
 */
export const EXTISM_MODE_SETTING: SettingDeclaration<FunctionSpec> = {
  key: 'extismMode', flag: '--extism-mode <mode>', choices: ['raw', 'capsule'],
  description: 'Extism plugins over HTTP: raw (the body in, the output out) or capsule (the gen-2 request/response JSON)',
  apply: (s, v, name) => {
    if (v !== 'raw' && v !== 'capsule') throw new CapsuleError('USAGE', `${name} must be raw or capsule, not ${JSON.stringify(v)}`);
    s.extismMode = v;
  },
};

/** Keys of a function's settings in a map (see the module comment). */
export const FUNCTION_SPEC_KEYS: readonly string[] = ['kind', 'env', 'envFile', 'dir', 'allowedHosts', ...LIMIT_SETTINGS.map((d) => d.key), 'maxConcurrency', EXTISM_MODE_SETTING.key, ...SETTING_KEYS];

/** The long flag of a declaration (`--http-timeout`). */
export function flagName(d: SettingDeclaration<never>): string {
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

/** A USAGE error whose message starts with its source (`routes.yaml: …`). */
export function usage(file: string, message: string): CapsuleError {
  return new CapsuleError('USAGE', `${file}: ${message}`);
}

/** A map of settings as parsed from YAML, TOML or JSON. */
export type Doc = Record<string, unknown>;

/** Whether a parsed value is a map (not a list, a date or null). */
export function isMap(v: unknown): v is Doc {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date);
}

/** Checks that a map has only `allowed` keys. @throws CapsuleError USAGE naming the key and file */
export function checkKeys(doc: Doc, allowed: readonly string[], file: string, where: string): void {
  for (const key of Object.keys(doc)) {
    if (!allowed.includes(key)) throw usage(file, `unknown key "${where}${key}" (known keys: ${allowed.join(', ')})`);
  }
}

/** Typed readers of one table's values; each error names the key and the file. */
export class SettingsReader {
  readonly doc: Doc;
  readonly file: string;
  readonly where: string;
  constructor(doc: Doc, file: string, where: string) {
    this.doc = doc;
    this.file = file;
    this.where = where;
  }
  #bad(key: string, expected: string): CapsuleError {
    return usage(this.file, `"${this.where}${key}" must be ${expected}, not ${JSON.stringify(this.doc[key])}`);
  }
  string(key: string): string | undefined {
    const v = this.doc[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw this.#bad(key, 'a non-empty string');
    return v;
  }
  scalar(key: string): string | undefined {
    const v = this.doc[key];
    if (v === undefined) return undefined;
    if (typeof v === 'number' || typeof v === 'bigint') return String(v);
    return this.string(key);
  }
  positive(key: string): number | undefined {
    const v = this.doc[key];
    if (v === undefined) return undefined;
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw this.#bad(key, 'a whole number ≥ 1');
    return n;
  }
  list(key: string): string[] {
    const v = this.doc[key];
    if (v === undefined) return [];
    const items = Array.isArray(v) ? v : [v];
    if (!items.every((i) => typeof i === 'string')) throw this.#bad(key, 'a string or a list of strings');
    return items as string[];
  }
  /** A map of NAME → string/number value (TOML tables, YAML maps), or YAML `NAME=value` items. */
  env(key: string): [string, string][] {
    const v = this.doc[key];
    if (v === undefined) return [];
    if (Array.isArray(v)) {
      return v.map((item) => {
        const s = typeof item === 'string' ? item : '';
        const i = s.indexOf('=');
        if (i <= 0) throw this.#bad(key, 'a map of NAME: value, or a list of NAME=value');
        return [s.slice(0, i), s.slice(i + 1)] as [string, string];
      });
    }
    if (!isMap(v)) throw this.#bad(key, 'a map of NAME: value');
    return Object.entries(v).map(([k, val]) => {
      if (typeof val !== 'string' && typeof val !== 'number' && typeof val !== 'boolean' && typeof val !== 'bigint') throw this.#bad(key, 'a map of NAME: value (strings or numbers)');
      return [k, String(val)];
    });
  }
  kind(key: string): ModuleKind | undefined {
    const v = this.string(key);
    if (v !== undefined && !KINDS.includes(v as ModuleKind)) throw this.#bad(key, `one of ${KINDS.join(', ')}`);
    return v as ModuleKind | undefined;
  }
}


/** A file's text. @throws CapsuleError USAGE naming the file */
export function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new CapsuleError('USAGE', `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}



/**
 * Reads a function's settings from one map (a YAML routes entry, a file beside a module, a JSON
 * API body): the keys of `FUNCTION_SPEC_KEYS`. Relative host paths (`dir`, `envFile`) resolve
 * against `base`; `envFile` files are read here.
 * @throws CapsuleError USAGE naming the key and the source
 */
export function readFunctionSpec(r: SettingsReader, base: string): FunctionSpec {
  const env: [string, string][] = [];
  for (const f of r.list('envFile')) {
    const path = isAbsolute(f) ? f : resolve(base, f);
    env.push(...parseEnvFile(readText(path), path));
  }
  env.push(...r.env('env'));
  const spec: FunctionSpec = {
    kind: r.kind('kind'),
    env,
    dirs: r.list('dir').map((d) => rebaseDirGrant(d, base)),
    allowedHosts: r.list('allowedHosts').flatMap((h) => h.split(',').map((s) => s.trim()).filter(Boolean)),
    maxConcurrency: r.positive('maxConcurrency'),
    capabilities: capabilitySettingsOf(r),
  };
  applyLimits(spec, (key) => r.scalar(key), (d) => `${r.file}: "${r.where}${d.key}"`);
  return spec;
}

/** Applies the `LIMIT_SETTINGS` a source gives. @throws CapsuleError USAGE naming key and source */
function applyLimits(spec: FunctionSpec, get: (key: string) => string | undefined, nameOf: (d: SettingDeclaration<FunctionSpec>) => string): void {
  for (const d of [...LIMIT_SETTINGS, EXTISM_MODE_SETTING]) {
    const v = get(d.key);
    if (v !== undefined) d.apply(spec, v, nameOf(d));
  }
}

/** The capability settings a function table sets (the declared settings), or undefined when none. */
function capabilitySettingsOf(r: SettingsReader): CapabilitySettings | undefined {
  const out = readCapabilitySettings((key) => r.scalar(key), (d) => `${r.file}: "${r.where}${d.key}"`);
  return Object.keys(out).length > 0 ? out : undefined;
}


/**
 * Reads a function's settings from a JSON body (a deploy API): a map of `FUNCTION_SPEC_KEYS`.
 * @param source names the body in messages (`PUT /functions/hello`)
 * @param base what relative host paths resolve against
 * @throws CapsuleError USAGE naming the key and `source` (unknown key, wrong shape, bad value)
 */
export function functionSpecFromBody(body: unknown, source: string, base = process.cwd()): FunctionSpec {
  if (!isMap(body)) throw usage(source, 'expected a map of settings');
  checkKeys(body, FUNCTION_SPEC_KEYS, source, '');
  return readFunctionSpec(new SettingsReader(body, source, ''), base);
}

/** The flags of a command that loads a module, as commander keeps them (cli/main.ts). */
export interface FunctionFlags {
  kind?: ModuleKind;
  env: string[];
  envFile: string[];
  dir: string[];
  allowedHosts: string[];
  timeout: string;
  maxMemory: string;
  /** The declared capability settings, by key (`httpTimeout`…). */
  [key: string]: unknown;
}

/**
 * Reads a function's settings from the CLI flags (after config files and `CAPSULE_*` variables
 * were applied to them). Messages name the flag (`--timeout: "soon" is not a duration`).
 * @param inherit pass the runner's environment minus secrets (single-module runs)
 * @throws CapsuleError USAGE naming the flag with a bad value
 */
export function functionSpecFromFlags(f: FunctionFlags, inherit: boolean, env: NodeJS.ProcessEnv = process.env): FunctionSpec {
  parseAllowedHosts(f.allowedHosts); // refuse a bad entry before anything runs
  const defaults = new Set([...LIMIT_SETTINGS, ...SETTING_DECLARATIONS].filter((d) => d.default !== undefined).map((d) => d.key));
  const get = (key: string): string | undefined => {
    const v = f[key];
    if (v === undefined || (v === '' && !defaults.has(key))) return undefined;
    return String(v);
  };
  const spec: FunctionSpec = {
    kind: f.kind,
    env: buildGuestEnv({ inherit, envFiles: f.envFile, env: f.env.map(parseEnvPair), processEnv: env }),
    dirs: f.dir,
    allowedHosts: f.allowedHosts,
  };
  applyLimits(spec, get, flagName);
  spec.capabilities = readCapabilitySettings(get, flagName, env);
  return spec;
}

/**
 * The engine's options of a function: `base` (a server's settings for all its functions), then
 * the function's own. Lists add up (`env`, grants, hosts: the base's first); every other setting
 * of the function wins over the base's.
 * @param baseDirs directory grants given to every function before its own
 * @throws CapsuleError USAGE when a directory grant is not valid (see `parseDirGrant`)
 */
export function functionOptionsOf(spec: FunctionSpec, base: FunctionOptions = {}, baseDirs: readonly string[] = []): FunctionOptions {
  const own = spec.capabilities ?? {};
  const out: FunctionOptions = {
    ...base,
    env: [...(base.env ?? []), ...spec.env],
    mounts: [...(base.mounts ?? []), ...[...baseDirs, ...spec.dirs].map((d) => parseDirGrant(d))],
    allowedHosts: [...(base.allowedHosts ?? []), ...spec.allowedHosts],
    timeoutMs: spec.timeoutMs ?? base.timeoutMs,
    maxMemoryBytes: spec.maxMemoryBytes ?? base.maxMemoryBytes,
  };
  const extismMode = spec.extismMode ?? base.extismMode;
  if (extismMode !== undefined) out.extismMode = extismMode;
  if (own.http || base.http) out.http = { ...base.http, ...own.http };
  if (own.cache || base.cache) out.cache = { ...base.cache, ...own.cache };
  for (const key of ['kv', 'redis', 'couchbase'] as const) {
    const v = own[key] ?? base[key];
    if (v !== undefined) (out as Record<string, unknown>)[key] = v;
  }
  return out;
}
