/**
 * The proxy's YAML routes file (`capsule proxy --config routes.yaml`, faas-api.md §1):
 *
 * ```yaml
 * functions:
 *   hello:
 *     default: [http://localhost:9091, http://localhost:7071]
 *     orange: [http://localhost:6061]
 * ```
 * `filters:` (parsed but unused by Go Capsule) is ignored with a warning; any other top-level key,
 * a revision without URLs or a URL that is not http(s) is an error naming the file.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { CapsuleError } from '../../base/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import type { RouteTable } from './table.ts';

/** Function → revision → upstream URLs. */
export type StaticRoutes = Record<string, Record<string, string[]>>;

const NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** True for an absolute http(s) URL. */
export function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** True for a function or revision name the proxy accepts (`[A-Za-z0-9._-]`, 1–128). */
export function isRouteName(text: string): boolean {
  return NAME.test(text) && text !== '.' && text !== '..';
}

/**
 * Reads and checks a routes file.
 * @throws CapsuleError USAGE naming the file (and the key) when it cannot be read, is not YAML or
 *   has the wrong shape
 */
export function loadRoutesConfig(path: string, logger: Logger): StaticRoutes {
  const fail = (m: string) => new CapsuleError('USAGE', `--config ${path}: ${m}`);
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw fail(err.code === 'ENOENT' ? 'no such file' : `not valid YAML: ${err.message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw fail('expected a mapping with a "functions:" key');
  const routes: StaticRoutes = {};
  for (const [key, value] of Object.entries(doc)) {
    if (key === 'filters') {
      logger.warn({ config: path }, '"filters:" is ignored (Go Capsule parsed it but never used it)');
      continue;
    }
    if (key !== 'functions') throw fail(`unknown key "${key}" (expected functions, filters)`);
    if (value === null) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw fail('"functions" must map function names to revisions');
    for (const [fn, revs] of Object.entries(value as Record<string, unknown>)) {
      if (!isRouteName(fn)) throw fail(`function name "${fn}" must match [A-Za-z0-9._-]`);
      if (revs === null || typeof revs !== 'object' || Array.isArray(revs)) throw fail(`functions.${fn} must map revision names to URL lists`);
      routes[fn] = {};
      for (const [rev, urls] of Object.entries(revs as Record<string, unknown>)) {
        if (!isRouteName(rev)) throw fail(`revision name "${fn}.${rev}" must match [A-Za-z0-9._-]`);
        const list = typeof urls === 'string' ? [urls] : urls;
        if (!Array.isArray(list) || list.length === 0) throw fail(`functions.${fn}.${rev} must be a list of URLs`);
        for (const u of list) if (typeof u !== 'string' || !isHttpUrl(u)) throw fail(`functions.${fn}.${rev}: "${String(u)}" is not an http(s) URL`);
        routes[fn][rev] = list as string[];
      }
      if (Object.keys(routes[fn]).length === 0) throw fail(`functions.${fn} has no revision`);
    }
  }
  return routes;
}

/** Loads static routes into a table (a function already there keeps its routes and gets the new revisions). */
export function applyRoutes(table: RouteTable, routes: StaticRoutes): void {
  for (const [fn, revs] of Object.entries(routes)) {
    for (const [rev, urls] of Object.entries(revs)) {
      if (!table.has(fn)) table.registerFunction(fn, rev, urls[0]!);
      else if (table.urls(fn, rev) === null) table.addRevision(fn, rev, urls[0]!);
      else table.addUrl(fn, rev, urls[0]!);
      for (const u of urls.slice(1)) table.addUrl(fn, rev, u);
    }
  }
}
