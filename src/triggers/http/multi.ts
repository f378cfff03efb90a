/**
 * The multi-function HTTP server (`capsule serve --functions <dir>` / `--routes <file>`,
 * wasi-cgi.md §9, conventions.md §4): many functions of any kind (Capsule ABI gen 1/2, WASI
 * commands) behind one port and one worker pool, each with its own grants and limits, through
 * the same request pipeline as the single-function server (`servePipeline`).
 *
 * Routing, in order: `/healthz` → `OK` (WAGI); `/capsule/health|ready|metrics` (the runner's);
 * routes under `/functions/…` (named functions and their revisions); then the other routes in
 * table order, a module's `_routes` sub-routes before its own route (last output line first);
 * first match wins. No match → 404 `{"error":"no route for <path>"}`.
 *
 * Modules are compiled once (one compile per file and kind, shared by the routes that use it)
 * and swapped when their file changes on disk (fs.watch on their directories, debounced): the
 * new version takes new requests, calls already running finish on the old one, which is then
 * unregistered. A module that fails to load answers 500 JSON naming the error (logged once) while
 * the others keep serving; a changed file that fails to load leaves the previous version serving.
 * The functions directory and routes file are re-read on change too (functions added, removed,
 * or with new settings). Multi-function servers never pass the runner's environment to guests.
 */
import { watch, type FSWatcher, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CapsuleError } from '../../base/errors.ts';
import { CapsuleFunction, type FunctionOptions } from '../../engine/function.ts';
import { loadModule, type LoadedModule } from '../../engine/load.ts';
import { WorkerPool, type CallResult } from '../../engine/pool.ts';
import type { CliOutput, HttpRequestInput, InvocationMeta } from '../../base/invocation.ts';
import { parseDirGrant } from '../../wasi/mounts.ts';
import type { FunctionDef, RouteDef, RouteTable } from '../../config/routes.ts';
import { routePrefix } from '../../abi/wasi-command/cgi.ts';
import { sendJson } from '../shared/runner-routes.ts';
import { runLifecycle, servePipeline, type HttpDispatch, type HttpTarget, type HttpTriggerOptions, type RunningHttpTrigger } from './server.ts';

export interface MultiServerOptions extends HttpTriggerOptions {
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
}

/** A loaded version of a function. */
interface Version {
  fn: CapsuleFunction;
  digest: string;
  inflight: number;
  retired: boolean;
}

/** One function of the table: the version serving now, or why none can. */
class HotFunction implements HttpTarget {
  readonly def: FunctionDef;
  readonly name: string;
  readonly maxConcurrency?: number;
  current?: Version;
  error?: CapsuleError;
  /** Sub-routes from the module's `_routes` export (WAGI), in matching order. */
  subRoutes: RouteDef[] = [];

  constructor(def: FunctionDef) {
    this.def = def;
    this.name = def.revision ? `${def.name}@${def.revision}` : def.name;
    this.maxConcurrency = def.maxConcurrency;
  }

  invoke(input: HttpRequestInput, meta: InvocationMeta): Promise<CallResult> {
    const v = this.current;
    if (!v) return Promise.reject(this.error ?? new CapsuleError('BAD_MODULE', `${this.name} is not loaded`));
    v.inflight++;
    return v.fn.invoke(input, meta).finally(() => {
      v.inflight--;
      if (v.retired && v.inflight === 0) void v.fn.close();
    });
  }

  /** Stops using a version: closed now if idle, else when its last call returns. */
  static retire(v: Version | undefined): void {
    if (!v || v.retired) return;
    v.retired = true;
    if (v.inflight === 0) void v.fn.close();
  }
}

/** A route ready for matching. */
interface CompiledRoute {
  def: RouteDef;
  prefix: string;
  wildcard: boolean;
  target: HotFunction;
}

function matches(r: CompiledRoute, path: string): boolean {
  if (!r.wildcard) return path === r.def.route;
  return r.prefix === '' || path === r.prefix || path.startsWith(r.prefix + '/');
}

/** Whether every path `b` matches is matched by `a` (so `b` after `a` is unreachable). */
function covers(a: CompiledRoute, b: CompiledRoute): boolean {
  if (!a.wildcard) return !b.wildcard && a.def.route === b.def.route;
  const p = b.wildcard ? b.prefix : b.def.route;
  return a.prefix === '' || p === a.prefix || p.startsWith(a.prefix + '/');
}

/** Same settings (the parts that need a reload when they change). */
function sameDef(a: FunctionDef, b: FunctionDef): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Starts the multi-function server: loads every function of the table (failures are logged and
 * served as 500s), then listens.
 * @throws CapsuleError USAGE when the table cannot be built; Error when the port cannot be bound
 */
export async function serveFunctions(o: MultiServerOptions): Promise<RunningHttpTrigger> {
  const log = o.logger;
  const pool = new WorkerPool({ workers: o.workers });
  const compiled = new Map<string, Promise<LoadedModule>>();
  let table = o.table();
  const functions = new Map<string, HotFunction>();
  let routes: CompiledRoute[] = [];
  const warned = new Set<string>();
  const warnOnce = (m: string) => {
    if (warned.has(m)) return;
    warned.add(m);
    log.warn(m);
  };

  /** One compile per (file, kind, entrypoint) until the file changes. */
  const compile = (def: FunctionDef): Promise<LoadedModule> => {
    const key = `${def.module}\0${def.kind ?? ''}\0${def.entrypoint ?? ''}`;
    let p = compiled.get(key);
    if (!p) {
      p = loadModule({ path: def.module }, { kind: def.kind, entrypoint: def.entrypoint });
      compiled.set(key, p);
      p.catch(() => compiled.delete(key)); // retried on the next change
    }
    return p;
  };

  const optionsFor = (def: FunctionDef): FunctionOptions => {
    const d = o.defaults;
    const own = def.capabilities ?? {};
    return {
      ...d,
      http: own.http ? { ...d.http, ...own.http } : d.http,
      cache: own.cache ? { ...d.cache, ...own.cache } : d.cache,
      kv: own.kv ?? d.kv,
      redis: own.redis ?? d.redis,
      name: def.name,
      kind: def.kind,
      env: [...(d.env ?? []), ...def.env],
      mounts: [...(o.dirs ?? []), ...def.dirs].map((spec) => parseDirGrant(spec)),
      allowedHosts: [...(d.allowedHosts ?? []), ...def.allowedHosts],
      timeoutMs: def.timeoutMs ?? d.timeoutMs,
      maxMemoryBytes: def.maxMemoryBytes ?? d.maxMemoryBytes,
      stdio: 'capture',
      pool,
      onWarning: (m) => warnOnce(`${def.source}: ${m}`),
    };
  };

  /** `_routes` (WAGI): run once, each output line `<path> <entrypoint>` is a sub-route. */
  const discoverSubRoutes = async (h: HotFunction, fn: CapsuleFunction, parent: RouteDef): Promise<RouteDef[]> => {
    if (fn.module.detection.kind !== 'wasi' || !fn.exports('_routes')) return [];
    const r = await fn.invoke({ type: 'cli', args: [], stdin: new Uint8Array(0), entrypoint: '_routes' });
    const out = r.output as CliOutput;
    if (out.exitCode !== 0) throw new CapsuleError('BAD_MODULE', `${h.def.source}: _routes exited with code ${out.exitCode}`);
    const base = routePrefix(parent.route);
    const subs: RouteDef[] = [];
    for (const line of (r.logs?.stdout ?? '').split('\n')) {
      const parts = line.trim().split(/\s+/).filter(Boolean);
      if (parts.length === 0) continue;
      const [path, entrypoint] = parts;
      if (!path!.startsWith('/') || !entrypoint) {
        log.warn({ function: h.name }, `_routes: ignored line "${line.trim()}" (expected "<path> <entrypoint>")`);
        continue;
      }
      subs.push({ route: base + path, function: h.def.key, entrypoint, argv: parent.argv });
    }
    return subs.reverse(); // WAGI tries the last line first
  };

  /** Loads (or reloads) a function; on failure keeps the version serving, if any. */
  const load = async (h: HotFunction): Promise<void> => {
    if (h.def.unsupported) {
      h.error = new CapsuleError('BAD_MODULE', h.def.unsupported);
      log.error({ function: h.name }, `cannot load ${h.def.source}: ${h.error.message}`);
      return;
    }
    let fn: CapsuleFunction | undefined;
    try {
      const module = await compile(h.def);
      if (h.current && h.current.digest === module.digest) return; // touched, not changed
      fn = CapsuleFunction.fromModule(module, optionsFor(h.def));
      const parent = table.routes.find((r) => r.function === h.def.key && r.subRoutes);
      const subs = parent ? await discoverSubRoutes(h, fn, parent) : [];
      if (functions.get(h.def.key) !== h) { // removed meanwhile
        await fn.close();
        return;
      }
      await runLifecycle(fn, 'OnLoad', log, { function: h.name });
      const old = h.current;
      h.current = { fn, digest: module.digest, inflight: 0, retired: false };
      h.error = undefined;
      h.subRoutes = subs;
      HotFunction.retire(old);
      log.info({ function: h.name, module: h.def.module, kind: module.detection.kind, digest: module.digest, ...(subs.length ? { subRoutes: subs.map((s) => s.route) } : {}) }, old ? 'function reloaded' : 'function loaded');
      rebuildRoutes();
    } catch (e) {
      if (fn) await fn.close();
      const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
      if (h.current) {
        log.error({ function: h.name, code: err.code }, `${h.def.source}: the changed module cannot be loaded, the previous version keeps serving: ${err.message}`);
      } else {
        h.error = new CapsuleError(err.code === 'USAGE' || err.code === 'LOAD' ? 'BAD_MODULE' : err.code, err.message);
        log.error({ function: h.name, code: err.code }, `cannot load ${h.def.source}: ${err.message}`);
      }
    }
  };

  const rebuildRoutes = () => {
    const list: CompiledRoute[] = [];
    for (const def of table.routes) {
      const target = functions.get(def.function);
      if (!target) continue;
      for (const sub of target.subRoutes) list.push({ def: sub, prefix: routePrefix(sub.route), wildcard: sub.route.endsWith('/...'), target });
      list.push({ def, prefix: routePrefix(def.route), wildcard: def.route.endsWith('/...'), target });
    }
    // The reserved /functions/… routes are tried first, whatever the order of the table.
    const reserved = list.filter((r) => r.def.route.startsWith('/functions/'));
    routes = [...reserved, ...list.filter((r) => !r.def.route.startsWith('/functions/'))];
    routes.forEach((r, i) => {
      const shadow = routes.slice(0, i).find((a) => covers(a, r));
      if (shadow) warnOnce(`route ${r.def.route} (${r.target.def.source}) is unreachable: ${shadow.def.route} matches every path it does`);
    });
  };

  /** Applies a (new) table: keeps unchanged functions, loads new or changed ones, retires the rest. */
  const apply = async (next: RouteTable, changed: Set<string>): Promise<void> => {
    table = next;
    for (const w of next.warnings) warnOnce(w);
    const loads: Promise<void>[] = [];
    const keys = new Set(next.functions.map((f) => f.key));
    for (const [key, h] of functions) {
      if (keys.has(key)) continue;
      functions.delete(key);
      HotFunction.retire(h.current);
      log.info({ function: h.name }, 'function removed');
    }
    for (const def of next.functions) {
      const h = functions.get(def.key);
      if (h && sameDef(h.def, def)) {
        if (changed.has(def.module) || (!h.current && changed.size > 0)) loads.push(load(h));
        continue;
      }
      const fresh = new HotFunction(def);
      if (h) {
        // new settings: the old version serves until the new one is loaded
        fresh.current = h.current;
        if (fresh.current) fresh.current.digest = ''; // force the swap
      }
      functions.set(def.key, fresh);
      loads.push(load(fresh));
    }
    rebuildRoutes();
    await Promise.all(loads);
    rebuildRoutes();
  };

  await apply(table, new Set());

  // Watching: module directories and the table's own files, debounced.
  const watchers = new Map<string, FSWatcher>();
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let reloading: Promise<void> = Promise.resolve();
  const flush = () => {
    timer = undefined;
    const changed = new Set(pending);
    pending.clear();
    for (const p of changed) for (const key of [...compiled.keys()]) if (key.startsWith(p + '\0')) compiled.delete(key);
    reloading = reloading.then(async () => {
      let next = table;
      try {
        next = o.table();
      } catch (e) {
        log.error(`${(e as Error).message} (the previous routes keep serving)`);
      }
      await apply(next, changed);
      updateWatchers();
    }).catch((e: unknown) => log.error(`reload failed: ${(e as Error).message}`));
  };
  const onEvent = (dir: string, file: string | null) => {
    pending.add(file ? join(dir, file) : dir);
    if (timer) clearTimeout(timer);
    timer = setTimeout(flush, o.debounceMs ?? 100);
  };
  const updateWatchers = () => {
    if (o.watch === false) return;
    const dirs = new Set<string>();
    for (const f of table.functions) if (!f.unsupported) dirs.add(dirname(f.module));
    for (const p of table.watch) {
      const abs = resolve(p);
      dirs.add(existsSync(abs) && statSync(abs).isDirectory() ? abs : dirname(abs));
    }
    for (const [d, w] of watchers) {
      if (dirs.has(d)) continue;
      w.close();
      watchers.delete(d);
    }
    for (const d of dirs) {
      if (watchers.has(d) || !existsSync(d)) continue;
      try {
        const w = watch(d, { persistent: false }, (_event, file) => onEvent(d, file));
        w.on('error', (e) => log.warn(`watching ${d}: ${e.message}`));
        watchers.set(d, w);
      } catch (e) {
        log.warn(`cannot watch ${d}: ${(e as Error).message}`);
      }
    }
  };
  updateWatchers();

  const failed = () => Object.fromEntries([...functions.values()].filter((h) => !h.current && h.error).map((h) => [h.name, h.error!.message]));
  const notFound = (path: string): HttpDispatch => ({
    type: 'answer',
    respond: async (req, res) => {
      req.resume();
      return sendJson(res, 404, { error: `no route for ${path}` });
    },
  });

  return servePipeline({
    pools: [pool],
    dispatch: (path, _req, state) => {
      if (path === '/healthz') {
        return { type: 'answer', runner: true, respond: async (req, res) => {
          req.resume();
          res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2 });
          res.end('OK');
          return 200;
        } };
      }
      if (path.startsWith('/capsule/')) {
        return { type: 'answer', runner: true, respond: async (req, res) => {
          req.resume();
          if (path === '/capsule/health') return sendJson(res, 200, { status: 'ok' });
          if (path === '/capsule/ready') {
            if (state.draining) return sendJson(res, 503, { status: 'shutting down' });
            return sendJson(res, 200, { status: 'ready', functions: functions.size, failed: failed(), workers: pool.size });
          }
          if (path === '/capsule/metrics') {
            const m = await state.metrics.text();
            res.writeHead(200, { 'Content-Type': m.contentType });
            res.end(m.body);
            return 200;
          }
          return sendJson(res, 404, { error: `no route for ${path} (runner routes: /capsule/health, /capsule/ready, /capsule/metrics)`, code: 'NOT_FOUND' });
        } };
      }
      const r = routes.find((c) => matches(c, path));
      if (!r) return notFound(path);
      const h = r.target;
      if (!h.current) return { type: 'error', error: h.error ?? new CapsuleError('BAD_MODULE', `${h.name} is not loaded yet`), name: h.name };
      if (h.current.fn.module.detection.kind !== 'wasi') return { type: 'function', target: h, route: r.def.route };
      return { type: 'function', target: h, route: r.def.route, cgi: { route: r.def.route, entrypoint: r.def.entrypoint, argv: r.def.argv } };
    },
    stop: async () => {
      if (timer) clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      await reloading;
      for (const h of functions.values()) {
        if (!h.current) continue;
        for (const name of ['OnStop', 'OnExit'] as const) await runLifecycle(h.current.fn, name, log, { function: h.name });
        await h.current.fn.close();
      }
      await pool.close();
    },
  }, o);
}
