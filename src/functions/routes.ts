/**
 * Routes of a multi-function server (wasi-cgi.md §9, conventions.md §1, §4): what functions
 * exist, with their own grants and limits, and which request paths lead to them. Three sources,
 * all producing the same `RouteTable`:
 *
 * - a **functions directory** (`--functions ./functions`, seed 003): `<name>.wasm` is function
 *   `<name>`, served at `/<name>` and below; `<name>/<revision>.wasm` is one of its revisions,
 *   served at `/functions/<name>/<revision>`. `<name>.capsule.yaml` beside a module holds that
 *   function's settings (the keys of a YAML function below, without `wasm`/`route`/`revisions`).
 *   The same file is read by `capsule run <name>.wasm`, so it may also hold keys of other
 *   commands: those that are server-wide (`maxBody`, `reuse`, `workers`…) are ignored here with a
 *   warning (`otherKeys` of `scanFunctionsDir`).
 * - WAGI's **modules.toml**, read as it is (`--routes modules.toml`): `[[module]]` tables with
 *   `route`, `module`, `entrypoint`, `argv`, `volumes`, `allowed_hosts` (warned: no
 *   wasi_experimental_http), `http_max_concurrency`, `repository`/`bindle_server` (warned), and
 *   the Capsule extensions `environment` and `kind`. Module paths are relative to the working
 *   directory, as in WAGI.
 * - Capsule's **YAML** routes file (`--routes routes.yaml`): a `functions:` map of name →
 *   settings whose keys are the long flag names in camelCase (`wasm`, `kind`, `env`, `envFile`,
 *   `dir`, `allowedHosts`, `timeout`, `maxMemory`, `maxConcurrency`, and the capability settings
 *   `httpTimeout`, `maxResponse`, `cacheMaxEntries`, `cacheMaxBytes`, `kv`, `redisUri`,
 *   `couchbaseCluster`, `couchbaseUser`, `couchbaseBucket`: every `SETTING_KEYS`) plus
 *   `route`, `entrypoint`, `argv` and `revisions` (name → module path). Paths are relative to the
 *   file.
 *
 * Unknown keys and values of the wrong shape are errors that name the key and the file.
 * Functions are named `[A-Za-z0-9._-]+`; `capsule` and `functions` are reserved.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { parse as parseToml } from 'smol-toml';
import { CapsuleError } from '../base/errors.ts';
import { checkKeys, FUNCTION_SPEC_KEYS, isMap, readFunctionSpec, readText, SettingsReader, usage, type Doc, type FunctionSpec } from './spec.ts';

/** Function names (conventions.md §4). */
export const FUNCTION_NAME = /^[A-Za-z0-9._-]+$/;
/** Names that would shadow the reserved `/capsule/…` and `/functions/…` paths. */
const RESERVED_NAMES = new Set(['capsule', 'functions']);

/** One function of a table: a module, where it is defined, and its settings (`FunctionSpec`). */
export interface FunctionDef extends FunctionSpec {
  /** Unique key: `<name>`, `<name>@<revision>`, or `<module>#<n>` for WAGI tables. */
  key: string;
  /** Name shown in logs and metrics (`function` label). */
  name: string;
  /** Revision name, for `/functions/<name>/<revision>`; undefined for a WAGI table. */
  revision?: string;
  /** Absolute path of the module, or the unsupported reference as written (see `unsupported`). */
  module: string;
  /** Why the module cannot be loaded at all (`oci:`, `bindle:`, `.wat`): served as a 500. */
  unsupported?: string;
  /** WASI commands: the export its table route calls instead of `_start`, checked at load. */
  entrypoint?: string;
  /** Where it was defined, for messages (`modules.toml [[module]] #2`). */
  source: string;
}

/** One route: a path pattern leading to a function. */
export interface RouteDef {
  /** `/hello` (exact) or `/hello/...` (the prefix and everything below it). */
  route: string;
  /** `FunctionDef.key`. */
  function: string;
  /** Export to call instead of `_start`. */
  entrypoint?: string;
  /** WAGI argv template. */
  argv?: string;
  /** Run the module's `_routes` export at load to add sub-routes (WAGI tables). */
  subRoutes?: boolean;
}

/** Everything a multi-function server serves. */
export interface RouteTable {
  functions: FunctionDef[];
  /** In matching order (first match wins). */
  routes: RouteDef[];
  /** Files and directories whose changes matter (modules are watched separately). */
  watch: string[];
  /** Things accepted but ignored (WAGI `allowed_hosts`, `repository`…), to log once. */
  warnings: string[];
}

/** A route must start with `/`; `/...` may only end it. @throws CapsuleError USAGE */
function checkRoute(route: string, file: string, key: string): void {
  if (!route.startsWith('/')) throw usage(file, `"${key}" must start with "/", not ${JSON.stringify(route)}`);
  if (route.slice(0, route.endsWith('/...') ? -4 : undefined).includes('...')) throw usage(file, `"${key}": "/..." may only end a route: ${JSON.stringify(route)}`);
  if (route === '/capsule' || route.startsWith('/capsule/')) throw usage(file, `"${key}": ${route} is reserved for the runner's routes (/capsule/…)`);
}


/** Keys of a YAML function (and of a `<name>.capsule.yaml` beside a module, minus the first three). */
const FUNCTION_KEYS = ['wasm', 'route', 'revisions', 'entrypoint', 'argv', ...FUNCTION_SPEC_KEYS];
const BESIDE_KEYS = FUNCTION_KEYS.filter((k) => !['wasm', 'route', 'revisions'].includes(k));

/** A route key of a table (checked). @throws CapsuleError USAGE naming the key and the file */
function readRoute(r: SettingsReader, key: string): string | undefined {
  const v = r.string(key);
  if (v !== undefined) checkRoute(v, r.file, `${r.where}${key}`);
  return v;
}

function checkName(name: string, file: string, what: string): void {
  if (!FUNCTION_NAME.test(name)) throw usage(file, `${what} "${name}" must match [A-Za-z0-9._-]+`);
  if (RESERVED_NAMES.has(name)) throw usage(file, `${what} "${name}" is reserved (/capsule/… and /functions/… are the runner's)`);
}

/** Routes every named function gets: `/functions/<name>` (+ `/<revision>/...`), and its own route. */
function namedRoutes(name: string, key: string, route: string | undefined, revisions: { revision: string; key: string }[]): RouteDef[] {
  const out: RouteDef[] = [];
  for (const r of revisions) out.push({ route: `/functions/${name}/${r.revision}/...`, function: r.key });
  out.push({ route: `/functions/${name}`, function: key });
  out.push({ route: route ?? `/${name}/...`, function: key });
  return out;
}

/**
 * Reads Capsule's YAML routes file (see the module comment).
 * @throws CapsuleError USAGE naming the file and key
 */
export function parseYamlRoutes(text: string, file: string): RouteTable {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw usage(file, `not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!isMap(doc)) throw usage(file, 'expected a map with a "functions" key');
  checkKeys(doc, ['functions'], file, '');
  const fns = doc['functions'] ?? {};
  if (!isMap(fns)) throw usage(file, '"functions" must be a map of name → settings');
  const base = dirname(resolve(file));
  const table: RouteTable = { functions: [], routes: [], watch: [file], warnings: [] };
  const named: RouteDef[][] = [];
  for (const [name, value] of Object.entries(fns)) {
    checkName(name, file, 'function');
    const where = `functions.${name}.`;
    const spec = typeof value === 'string' ? { wasm: value } : value;
    if (!isMap(spec)) throw usage(file, `"functions.${name}" must be a module path or a map of settings`);
    checkKeys(spec, FUNCTION_KEYS, file, where);
    const r = new SettingsReader(spec, file, where);
    const wasm = r.string('wasm');
    if (!wasm) throw usage(file, `"${where}wasm" is required (the module's path)`);
    const settings = readFunctionSpec(r, base);
    const def: FunctionDef = { key: name, name, module: resolve(base, wasm), ...settings, entrypoint: r.string('entrypoint'), source: `${file} functions.${name}` };
    table.functions.push(def);
    const revs: { revision: string; key: string }[] = [];
    const revisions = spec['revisions'] ?? {};
    if (!isMap(revisions)) throw usage(file, `"${where}revisions" must be a map of revision → module path`);
    for (const [rev, path] of Object.entries(revisions)) {
      checkName(rev, file, `revision of ${name}`);
      if (typeof path !== 'string' || !path) throw usage(file, `"${where}revisions.${rev}" must be a module path`);
      const key = `${name}@${rev}`;
      table.functions.push({ ...def, key, revision: rev, module: resolve(base, path), source: `${file} ${where}revisions.${rev}` });
      revs.push({ revision: rev, key });
    }
    const own = namedRoutes(name, name, readRoute(r, 'route'), revs);
    for (const route of own) {
      route.entrypoint = r.string('entrypoint');
      route.argv = r.string('argv');
    }
    named.push(own);
  }
  // /functions/… routes first (they are reserved), then each function's own route in file order.
  table.routes = [...named.flatMap((rs) => rs.filter((r) => r.route.startsWith('/functions/'))), ...named.flatMap((rs) => rs.filter((r) => !r.route.startsWith('/functions/')))];
  return table;
}

const WAGI_KEYS = ['route', 'module', 'entrypoint', 'argv', 'volumes', 'allowed_hosts', 'http_max_concurrency', 'repository', 'bindle_server', 'environment', 'kind'];

/**
 * Reads WAGI's `modules.toml` as it is (wasi-cgi.md §9; see the module comment).
 * @param cwd what relative module and volume paths resolve against (WAGI: the working directory)
 * @throws CapsuleError USAGE naming the file and key
 */
export function parseModulesToml(text: string, file: string, cwd = process.cwd()): RouteTable {
  let doc: Doc;
  try {
    doc = parseToml(text) as Doc;
  } catch (e) {
    throw usage(file, `not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  checkKeys(doc, ['module'], file, '');
  const modules = doc['module'] ?? [];
  if (!Array.isArray(modules)) throw usage(file, 'expected [[module]] tables');
  const table: RouteTable = { functions: [], routes: [], watch: [file], warnings: [] };
  modules.forEach((m: unknown, i: number) => {
    const where = `module[${i}].`;
    if (!isMap(m)) throw usage(file, `[[module]] #${i + 1} must be a table`);
    checkKeys(m, WAGI_KEYS, file, where);
    const r = new SettingsReader(m, file, where);
    const route = readRoute(r, 'route');
    if (!route) throw usage(file, `"${where}route" is required`);
    const ref = r.string('module');
    if (!ref) throw usage(file, `"${where}module" is required`);
    let module: string;
    let unsupported: string | undefined;
    if (/^file:/i.test(ref)) {
      module = fileURLToPath(ref);
    } else if (/^(oci|bindle):/i.test(ref)) {
      module = ref;
      unsupported = `${ref}: ${ref.split(':')[0]} module references are not supported by Capsule; use a file path or file:// URL`;
    } else {
      module = resolve(cwd, ref);
    }
    if (!unsupported && extname(module).toLowerCase() === '.wat') unsupported = `${ref}: .wat modules are not run directly by Capsule; compile it with wat2wasm`;
    for (const key of ['allowed_hosts', 'repository', 'bindle_server']) {
      if (m[key] === undefined) continue;
      table.warnings.push(key === 'allowed_hosts'
        ? `${file}: route ${route}: allowed_hosts is accepted and ignored (Capsule does not provide wasi_experimental_http)`
        : `${file}: route ${route}: ${key} is ignored (reserved in WAGI)`);
    }
    const volumes = m['volumes'] ?? {};
    if (!isMap(volumes)) throw usage(file, `"${where}volumes" must be a table of "guest path" = "host path"`);
    const dirs = Object.entries(volumes).map(([guest, host]) => {
      if (typeof host !== 'string' || !host) throw usage(file, `"${where}volumes.${guest}" must be a host directory path`);
      return `${resolve(cwd, host)}:${guest}`;
    });
    const name = basename(module).replace(/\.wasm$/i, '').replace(/[^A-Za-z0-9._-]/g, '_') || `module-${i + 1}`;
    const key = `${name}#${i + 1}`;
    table.functions.push({
      key, name, module, unsupported, kind: r.kind('kind'), entrypoint: r.string('entrypoint'), env: r.env('environment'), dirs, allowedHosts: [],
      maxConcurrency: r.positive('http_max_concurrency'), source: `${file} [[module]] #${i + 1} (route ${route})`,
    });
    table.routes.push({ route, function: key, entrypoint: r.string('entrypoint'), argv: r.string('argv'), subRoutes: true });
  });
  return table;
}

/**
 * Reads a routes file: `.toml` is WAGI's modules.toml, `.yaml`/`.yml` Capsule's YAML.
 * @throws CapsuleError USAGE (unreadable, unknown extension, or a bad key)
 */
export function loadRoutesFile(file: string): RouteTable {
  const text = readText(file);
  const ext = extname(file).toLowerCase();
  if (ext === '.toml') return parseModulesToml(text, file);
  if (ext === '.yaml' || ext === '.yml') return parseYamlRoutes(text, file);
  throw usage(file, 'a routes file is WAGI\'s modules.toml (.toml) or Capsule YAML (.yaml, .yml)');
}

/**
 * Scans a functions directory (see the module comment). Files that are not `.wasm`, and names
 * that are not valid or are reserved, are skipped with a warning.
 * @param o.otherKeys config keys of other commands (`allConfigKeys`): accepted in a
 *   `<name>.capsule.yaml` and ignored with a warning; any other unknown key is an error
 * @throws CapsuleError USAGE when `dir` is not a directory, or a `<name>.capsule.yaml` is invalid
 */
export function scanFunctionsDir(dir: string, o: { otherKeys?: ReadonlySet<string> } = {}): RouteTable {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new CapsuleError('USAGE', `--functions ${dir}: not a directory`);
  const table: RouteTable = { functions: [], routes: [], watch: [root], warnings: [] };
  const entries = readdirSync(root).sort();
  const names = new Set<string>();
  for (const e of entries) {
    const p = join(root, e);
    if (e.endsWith('.wasm') && statSync(p).isFile()) names.add(e.slice(0, -5));
    else if (statSync(p).isDirectory()) names.add(e);
  }
  const fromRoutes: RouteDef[] = [];
  const ownRoutes: RouteDef[] = [];
  for (const name of [...names].sort()) {
    if (!FUNCTION_NAME.test(name) || RESERVED_NAMES.has(name)) {
      table.warnings.push(`${join(root, name)}: skipped: function names match [A-Za-z0-9._-]+ and are not "capsule" or "functions"`);
      continue;
    }
    const settings = besideSettings(join(root, name), table, o.otherKeys ?? new Set());
    const file = join(root, `${name}.wasm`);
    const revDir = join(root, name);
    const revs: { revision: string; key: string }[] = [];
    let defaultModule = existsSync(file) ? file : undefined;
    if (existsSync(revDir) && statSync(revDir).isDirectory()) {
      table.watch.push(revDir);
      for (const f of readdirSync(revDir).sort()) {
        if (!f.endsWith('.wasm')) continue;
        const rev = f.slice(0, -5);
        if (!FUNCTION_NAME.test(rev)) {
          table.warnings.push(`${join(revDir, f)}: skipped: revision names match [A-Za-z0-9._-]+`);
          continue;
        }
        const key = `${name}@${rev}`;
        table.functions.push({ key, name, revision: rev, module: join(revDir, f), ...settings, source: join(revDir, f) });
        revs.push({ revision: rev, key });
        if (rev === 'default' && !defaultModule) defaultModule = join(revDir, f);
      }
    }
    if (defaultModule) table.functions.push({ key: name, name, module: defaultModule, ...settings, source: defaultModule });
    for (const r of namedRoutes(name, name, undefined, revs)) {
      if (!defaultModule && !r.route.startsWith(`/functions/${name}/`)) continue;
      (r.route.startsWith('/functions/') ? fromRoutes : ownRoutes).push(r);
    }
  }
  table.routes = [...fromRoutes, ...ownRoutes];
  return table;
}

/** `<name>.capsule.yaml` (or `.yml`) beside a function in a functions directory. */
function besideSettings(stem: string, table: RouteTable, otherKeys: ReadonlySet<string>): FunctionSpec {
  for (const ext of ['yaml', 'yml']) {
    const file = `${stem}.capsule.${ext}`;
    if (!existsSync(file)) continue;
    table.watch.push(file);
    let doc: unknown;
    try {
      doc = parseYaml(readText(file));
    } catch (e) {
      throw usage(file, `not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    if (doc === null || doc === undefined) break;
    if (!isMap(doc)) throw usage(file, 'expected a map of settings');
    const ignored = Object.keys(doc).filter((k) => !BESIDE_KEYS.includes(k) && otherKeys.has(k));
    if (ignored.length > 0) table.warnings.push(`${file}: ${ignored.join(', ')}: not a setting of one function in --functions (server-wide, or of another command); ignored`);
    for (const k of ignored) delete doc[k];
    checkKeys(doc, BESIDE_KEYS, file, '');
    const r = new SettingsReader(doc, file, '');
    const s = readFunctionSpec(r, dirname(file));
    if (r.string('entrypoint') || r.string('argv')) table.warnings.push(`${file}: entrypoint and argv apply to routes files only; ignored`);
    return s;
  }
  return { env: [], dirs: [], allowedHosts: [] };
}

/** Concatenates tables (a routes file first, then a functions directory): functions must not clash. */
export function mergeRouteTables(tables: RouteTable[]): RouteTable {
  const out: RouteTable = { functions: [], routes: [], watch: [], warnings: [] };
  const keys = new Set<string>();
  for (const t of tables) {
    for (const f of t.functions) {
      if (keys.has(f.key)) throw new CapsuleError('USAGE', `function ${f.key} is defined twice (${f.source})`);
      keys.add(f.key);
      out.functions.push(f);
    }
    out.routes.push(...t.routes);
    out.watch.push(...t.watch);
    out.warnings.push(...t.warnings);
  }
  return out;
}
