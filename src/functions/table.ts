/**
 * The function table of a multi-function runner (wasi-cgi.md §9, conventions.md §4): many
 * functions of any kind behind one worker pool, each with its own grants and limits, the routes
 * that lead to them, and their versions. Used by `serve --functions` / `--routes` (the HTTP
 * adapter is triggers/http/multi.ts) and meant for a deploy API or a gateway.
 *
 * - `update(table)` applies a route table: unchanged functions stay, new or changed ones are
 *   loaded, the others retired; `deploy(def, routes)` and `retire(key)` change one function.
 * - Modules are compiled once (one compile per file, kind and entrypoint, shared by the routes
 *   that use it) and swapped when their file changes on disk (`watch`, debounced) or by
 *   `replaceModule`: the new version takes new calls, calls already running finish on the old
 *   one, whose `OnStop`/`OnExit` then run before it is closed (functions/swap.ts).
 * - A module that fails to load is kept with its error (`failed()`), the others keep serving; a
 *   changed file that fails to load leaves the previous version serving.
 * - Routing (`route(path)`): routes under `/functions/…` first (named functions and their
 *   revisions), then the other routes in table order, a module's `_routes` sub-routes (WAGI)
 *   before its own route (last output line first); first match wins.
 */
import { CapsuleError } from '../base/errors.ts';
import type { CliOutput, HttpRequestInput, InvocationMeta } from '../base/invocation.ts';
import { CapsuleFunction, type FunctionOptions } from '../engine/function.ts';
import { loadModule, type LoadedModule } from '../engine/load.ts';
import { WorkerPool, type CallResult } from '../engine/pool.ts';
import { routePrefix } from '../abi/wasi-command/cgi.ts';
import type { FunctionDef, RouteDef, RouteTable } from './routes.ts';
import { functionOptionsOf } from './spec.ts';
import { DirectoryWatcher } from './watch.ts';
import { invokeVersion, newVersion, retireVersion, type FunctionVersion } from './swap.ts';

/** What the table logs through (a pino logger fits). */
export interface TableLog {
  info(fields: Record<string, unknown>, message: string): void;
  warn(message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** Lifecycle exports the table runs: `OnLoad` after a load, `OnStop` and `OnExit` at close. */
export type TableLifecycle = (fn: CapsuleFunction, name: 'OnLoad' | 'OnStop' | 'OnExit', fields: Record<string, unknown>) => Promise<void>;

/** What a function table is built from (see `FunctionTable`). */
export interface FunctionTableOptions {
  /** Builds the route table; called again when a watched routes file or directory changes. */
  table(): RouteTable;
  /**
   * Options every function starts from (capability settings, `maxLogBytes`…): `env`, `mounts`
   * and `allowedHosts` here are server-wide and come before each function's own; `timeoutMs` and
   * `maxMemoryBytes` are defaults a function may override.
   */
  defaults: FunctionOptions;
  /** Server-wide directory grants (`--dir`), given to every function before its own. */
  dirs?: string[];
  /** Worker threads of the shared pool (default: CPU cores). */
  workers?: number;
  /** Watch module files, the functions directory and the routes file (default true). */
  watch?: boolean;
  /** Quiet time after a file event before reloading, ms (default 100). */
  debounceMs?: number;
  logger: TableLog;
  /** Runs a lifecycle export and logs its output (the trigger's way). */
  lifecycle: TableLifecycle;
}

/** One function of the table: the version serving now, or why none can. */
export class TableEntry {
  readonly def: FunctionDef;
  /** `<name>` or `<name>@<revision>`: the `function` label of logs and metrics. */
  readonly name: string;
  readonly maxConcurrency?: number;
  current?: FunctionVersion;
  error?: CapsuleError;
  /** Sub-routes from the module's `_routes` export (WAGI), in matching order. */
  subRoutes: RouteDef[] = [];

  constructor(def: FunctionDef) {
    this.def = def;
    this.name = def.revision ? `${def.name}@${def.revision}` : def.name;
    this.maxConcurrency = def.maxConcurrency;
  }

  /**
   * Runs one call on the version serving now.
   * @throws CapsuleError the load error (BAD_MODULE…) when no version is loaded, else the call's
   */
  invoke(input: HttpRequestInput, meta: InvocationMeta): Promise<CallResult> {
    const v = this.current;
    if (!v) return Promise.reject(this.error ?? new CapsuleError('BAD_MODULE', `${this.name} is not loaded`));
    return invokeVersion(v, input, meta);
  }
}

/** A route ready for matching. */
export interface TableRoute {
  readonly def: RouteDef;
  readonly prefix: string;
  readonly wildcard: boolean;
  readonly target: TableEntry;
}

function compileRoute(def: RouteDef, target: TableEntry): TableRoute {
  return { def, prefix: routePrefix(def.route), wildcard: def.route.endsWith('/...'), target };
}

function matches(r: TableRoute, path: string): boolean {
  if (!r.wildcard) return path === r.def.route;
  return r.prefix === '' || path === r.prefix || path.startsWith(r.prefix + '/');
}

/** Whether every path `b` matches is matched by `a` (so `b` after `a` is unreachable). */
function covers(a: TableRoute, b: TableRoute): boolean {
  if (!a.wildcard) return !b.wildcard && a.def.route === b.def.route;
  const p = b.wildcard ? b.prefix : b.def.route;
  return a.prefix === '' || p === a.prefix || p.startsWith(a.prefix + '/');
}

/** Same settings (the parts that need a reload when they change). */
function sameDef(a: FunctionDef, b: FunctionDef): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Functions, their versions and routes, over one worker pool (see the module comment). */
export class FunctionTable {
  readonly pool: WorkerPool;
  readonly #o: FunctionTableOptions;
  readonly #log: TableLog;
  readonly #compiled = new Map<string, Promise<LoadedModule>>();
  readonly #entries = new Map<string, TableEntry>();
  readonly #warned = new Set<string>();
  #table: RouteTable = { functions: [], routes: [], watch: [], warnings: [] };
  #routes: TableRoute[] = [];
  #watcher?: DirectoryWatcher;
  #reloading: Promise<void> = Promise.resolve();
  readonly #retiring = new Set<Promise<void>>();

  constructor(o: FunctionTableOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.pool = new WorkerPool({ workers: o.workers, warm: false }); // idle functions stay cheap (engine/pool.ts `warm`)
  }

  /**
   * Builds the table (`options.table()`), loads every function (failures are kept and logged)
   * and starts watching its files.
   * @throws CapsuleError USAGE when the table cannot be built
   */
  async start(): Promise<void> {
    await this.update(this.#o.table());
    if (this.#o.watch !== false) {
      this.#watcher = new DirectoryWatcher((changed) => this.#reload(changed), this.#o.debounceMs ?? 100, this.#log);
      this.#watchFiles();
    }
  }

  /** Functions in the table (loaded or not). */
  get size(): number {
    return this.#entries.size;
  }

  /** The entries of the table, by key (`<name>`, `<name>@<revision>`, `<module>#<n>`). */
  entries(): ReadonlyMap<string, TableEntry> {
    return this.#entries;
  }

  /** Functions with no version serving, name → why (for readiness). */
  failed(): Record<string, string> {
    return Object.fromEntries([...this.#entries.values()].filter((h) => !h.current && h.error).map((h) => [h.name, h.error!.message]));
  }

  /** The first route matching a request path, or undefined. */
  route(path: string): TableRoute | undefined {
    return this.#routes.find((c) => matches(c, path));
  }

  /**
   * Adds or replaces one function (and its routes, placed before the others of the table); the
   * old version serves until the new one is loaded.
   */
  deploy(def: FunctionDef, routes: RouteDef[]): Promise<void> {
    const t = this.#table;
    const others = (r: RouteDef) => r.function !== def.key;
    return this.update({ ...t, functions: [...t.functions.filter((f) => f.key !== def.key), def], routes: [...routes, ...t.routes.filter(others)] });
  }

  /** Removes one function and its routes (its calls in progress finish). */
  retire(key: string): Promise<void> {
    const t = this.#table;
    return this.update({ ...t, functions: t.functions.filter((f) => f.key !== key), routes: t.routes.filter((r) => r.function !== key) });
  }

  /**
   * Applies a (new) table: keeps unchanged functions, loads new or changed ones, retires the rest.
   * @param changed files changed on disk since the last update (their functions are reloaded)
   */
  async update(next: RouteTable, changed: ReadonlySet<string> = new Set()): Promise<void> {
    this.#table = next;
    for (const w of next.warnings) this.#warnOnce(w);
    const keys = new Set(next.functions.map((f) => f.key));
    for (const [key, h] of this.#entries) {
      if (keys.has(key)) continue;
      this.#entries.delete(key);
      this.#retire(h, h.current);
      this.#log.info({ function: h.name }, 'function removed');
    }
    const loads: Promise<void>[] = [];
    for (const def of next.functions) {
      const h = this.#entries.get(def.key);
      if (h && sameDef(h.def, def)) {
        if (changed.has(def.module) || (!h.current && changed.size > 0)) loads.push(this.#load(h));
        continue;
      }
      const fresh = new TableEntry(def);
      if (h?.current) {
        // new settings: the old version serves until the new one is loaded
        fresh.current = h.current;
        fresh.current.digest = ''; // force the swap
      }
      this.#entries.set(def.key, fresh);
      loads.push(this.#load(fresh));
    }
    this.#rebuildRoutes();
    await Promise.all(loads);
    this.#rebuildRoutes();
  }

  /**
   * Replaces the module of one function with an already loaded (validated) one, e.g. the node's
   * `PUT /functions/revisions/module` (faas-api.md §9.8): a function is made of it with the
   * entry's settings on the table's pool, its `OnLoad` runs, then it takes every call that
   * starts; calls in flight finish on the old version, whose `OnStop`/`OnExit` then run before
   * it is closed (functions/swap.ts). The entry's `def.module` stays: with `watch`, a later
   * change of that file reloads the function from the file.
   * @returns once the new version serves (the old one retires in the background; `close` waits)
   * @throws CapsuleError USAGE when no function has that key or it is removed meanwhile; MEMORY
   *   or BAD_MODULE when the module cannot run with the entry's settings (the old version keeps
   *   serving)
   */
  async replaceModule(key: string, module: LoadedModule): Promise<void> {
    const h = this.#entries.get(key);
    if (!h) throw new CapsuleError('USAGE', `no function ${key} in the table`);
    const fn = CapsuleFunction.fromModule(module, this.#optionsFor(h.def));
    try {
      const subs = await this.#discoverSubRoutes(h, fn);
      if (this.#entries.get(key) !== h) throw new CapsuleError('USAGE', `${h.name} was removed while its new module was loading`);
      await this.#o.lifecycle(fn, 'OnLoad', { function: h.name });
      this.#swap(h, newVersion(fn), subs);
    } catch (e) {
      await fn.close();
      throw e;
    }
  }

  /** Stops watching, waits for retiring versions, runs `OnStop` and `OnExit` of every loaded function, closes the pool. */
  async close(): Promise<void> {
    this.#watcher?.close();
    await this.#reloading;
    for (const h of this.#entries.values()) this.#retire(h, h.current);
    while (this.#retiring.size > 0) await Promise.all(this.#retiring);
    await this.pool.close();
  }

  /** Retires a version of an entry (if any): its calls finish, `OnStop`/`OnExit` run, it is closed. */
  #retire(h: TableEntry, v: FunctionVersion | undefined): void {
    if (!v || v.closed) return;
    const stop = async (fn: CapsuleFunction) => {
      for (const name of ['OnStop', 'OnExit'] as const) await this.#o.lifecycle(fn, name, { function: h.name });
    };
    const done = retireVersion(v, stop, (e) => this.#log.error({ function: h.name }, `closing the previous version failed: ${e.message}`));
    this.#retiring.add(done);
    void done.finally(() => this.#retiring.delete(done));
  }

  #warnOnce(m: string): void {
    if (this.#warned.has(m)) return;
    this.#warned.add(m);
    this.#log.warn(m);
  }

  /** One compile per (file, kind, entrypoint) until the file changes. */
  #compile(def: FunctionDef): Promise<LoadedModule> {
    const key = `${def.module}\0${def.kind ?? ''}\0${def.entrypoint ?? ''}`;
    let p = this.#compiled.get(key);
    if (!p) {
      p = loadModule({ path: def.module }, { kind: def.kind, entrypoint: def.entrypoint });
      this.#compiled.set(key, p);
      p.catch(() => this.#compiled.delete(key)); // retried on the next change
    }
    return p;
  }

  /** The options of one function: the defaults, then its own settings. */
  #optionsFor(def: FunctionDef): FunctionOptions {
    return {
      ...functionOptionsOf(def, this.#o.defaults, this.#o.dirs),
      name: def.name,
      kind: def.kind,
      stdio: 'capture',
      pool: this.pool,
      onWarning: (m) => this.#warnOnce(`${def.source}: ${m}`),
    };
  }

  /** `_routes` (WAGI): run once, each output line `<path> <entrypoint>` is a sub-route. */
  async #discoverSubRoutes(h: TableEntry, fn: CapsuleFunction): Promise<RouteDef[]> {
    const parent = this.#table.routes.find((r) => r.function === h.def.key && r.subRoutes);
    if (!parent || fn.module.detection.kind !== 'wasi' || !fn.exports('_routes')) return [];
    const r = await fn.invoke({ type: 'cli', args: [], stdin: new Uint8Array(0), entrypoint: '_routes' });
    const out = r.output as CliOutput;
    if (out.exitCode !== 0) throw new CapsuleError('BAD_MODULE', `${h.def.source}: _routes exited with code ${out.exitCode}`);
    const base = routePrefix(parent.route);
    const subs: RouteDef[] = [];
    for (const line of (r.logs?.stdout ?? '').split('\n')) {
      const [path, entrypoint] = line.trim().split(/\s+/).filter(Boolean);
      if (path === undefined) continue;
      if (!path.startsWith('/') || !entrypoint) {
        this.#log.warn({ function: h.name }, `_routes: ignored line "${line.trim()}" (expected "<path> <entrypoint>")`);
        continue;
      }
      subs.push({ route: base + path, function: h.def.key, entrypoint, argv: parent.argv });
    }
    return subs.reverse(); // WAGI tries the last line first
  }

  /** Loads (or reloads) a function; on failure keeps the version serving, if any. */
  async #load(h: TableEntry): Promise<void> {
    if (h.def.unsupported) {
      h.error = new CapsuleError('BAD_MODULE', h.def.unsupported);
      this.#log.error({ function: h.name }, `cannot load ${h.def.source}: ${h.error.message}`);
      return;
    }
    let fn: CapsuleFunction | undefined;
    try {
      const module = await this.#compile(h.def);
      if (h.current && h.current.digest === module.digest) return; // touched, not changed
      fn = CapsuleFunction.fromModule(module, this.#optionsFor(h.def));
      const subs = await this.#discoverSubRoutes(h, fn);
      if (this.#entries.get(h.def.key) !== h) { // removed meanwhile
        await fn.close();
        return;
      }
      await this.#o.lifecycle(fn, 'OnLoad', { function: h.name });
      this.#swap(h, newVersion(fn, module.digest), subs);
    } catch (e) {
      if (fn) await fn.close();
      this.#loadFailed(h, e);
    }
  }

  #swap(h: TableEntry, v: FunctionVersion, subs: RouteDef[]): void {
    const old = h.current;
    h.current = v;
    h.error = undefined;
    h.subRoutes = subs;
    this.#retire(h, old);
    const m = v.fn.module;
    this.#log.info({ function: h.name, module: h.def.module, kind: m.detection.kind, digest: m.digest, ...(subs.length ? { subRoutes: subs.map((s) => s.route) } : {}) }, old ? 'function reloaded' : 'function loaded');
    this.#rebuildRoutes();
  }

  #loadFailed(h: TableEntry, e: unknown): void {
    const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
    if (h.current) {
      this.#log.error({ function: h.name, code: err.code }, `${h.def.source}: the changed module cannot be loaded, the previous version keeps serving: ${err.message}`);
    } else {
      h.error = new CapsuleError(err.code === 'USAGE' || err.code === 'LOAD' ? 'BAD_MODULE' : err.code, err.message);
      this.#log.error({ function: h.name, code: err.code }, `cannot load ${h.def.source}: ${err.message}`);
    }
  }

  #rebuildRoutes(): void {
    const list: TableRoute[] = [];
    for (const def of this.#table.routes) {
      const target = this.#entries.get(def.function);
      if (!target) continue;
      for (const sub of target.subRoutes) list.push(compileRoute(sub, target));
      list.push(compileRoute(def, target));
    }
    // The reserved /functions/… routes are tried first, whatever the order of the table.
    const reserved = (r: TableRoute) => r.def.route.startsWith('/functions/');
    const routes = [...list.filter(reserved), ...list.filter((r) => !reserved(r))];
    routes.forEach((r, i) => {
      const shadow = routes.slice(0, i).find((a) => covers(a, r));
      if (shadow) this.#warnOnce(`route ${r.def.route} (${r.target.def.source}) is unreachable: ${shadow.def.route} matches every path it does`);
    });
    this.#routes = routes;
  }

  /** Files changed on disk: forget their compiles, re-read the table, apply it. */
  #reload(changed: Set<string>): void {
    for (const p of changed) for (const key of [...this.#compiled.keys()]) if (key.startsWith(p + '\0')) this.#compiled.delete(key);
    this.#reloading = this.#reloading.then(async () => {
      let next = this.#table;
      try {
        next = this.#o.table();
      } catch (e) {
        this.#log.error(`${(e as Error).message} (the previous routes keep serving)`);
      }
      await this.update(next, changed);
      this.#watchFiles();
    }).catch((e: unknown) => this.#log.error(`reload failed: ${(e as Error).message}`));
  }

  #watchFiles(): void {
    this.#watcher?.update(this.#table.functions.filter((f) => !f.unsupported).map((f) => f.module), this.#table.watch);
  }
}
