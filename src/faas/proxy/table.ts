/**
 * The proxy's routing state (faas-api.md §1, §9.2–§9.4; faas-cluster.md §1.3, §1.5): functions,
 * their revisions and the upstream URLs of each revision, plus the `default` alias with its
 * traffic split. All methods are synchronous and throw {@link FaasError} with the Go codes and
 * statuses of faas-api.md §1 (500 `ERROR_FUNCTION_NOT_FOUND`, …) or the §9 ones. This is the
 * `memory` backend; a shared backend (Redis, NATS KV) wraps the same shape and replays changes
 * through {@link RouteTable.onChange}.
 *
 * `default` is either a concrete revision with its own URLs (Go scripts and YAML files register
 * it so) or an alias set by {@link RouteTable.setTraffic} (`{revision, percent}` targets). Never
 * both: setting traffic replaces a concrete `default`, and a concrete `default` cannot be added
 * while the alias exists (`ERROR_REVISION_ALREADY_EXISTS`, as Go answered for its copy).
 */
import { FaasError } from '../shared/service.ts';
import { DEFAULT_REVISION, trafficProblem, type TrafficTarget } from '../shared/traffic.ts';

export { DEFAULT_REVISION, type TrafficTarget };

/** Where the stickiness key of a split comes from: `header:X-User` or `cookie:capsule-rev`. */
export type StickySpec = { from: 'header' | 'cookie'; name: string };

/** A traffic split as stored and listed. */
export interface Traffic {
  targets: TrafficTarget[];
  /** The original text (`header:X-User`), when set. */
  sticky?: string;
}

/** What changed, for listeners (a shared backend publishes it; health forgets removed URLs). */
export interface RouteChange {
  function: string;
  /** Undefined when the whole function changed (registered, removed, traffic). */
  revision?: string;
}

/** What a request resolved to: the concrete revision chosen and its upstream URLs in order. */
export interface Resolved {
  revision: string;
  urls: readonly string[];
}

/**
 * One function's routes as a shared backend stores them (faas-cluster.md §1.2, KV `fn.<f>`):
 * `{revisions: {<rev>: {targets: [url | "nats:"]}}, aliases: {default: {<rev>: percent}}, sticky?}`.
 * `aliases` is `{}` when `default` is not an alias.
 */
export interface RouteRecord {
  revisions: Record<string, { targets: string[] }>;
  aliases: { default?: Record<string, number> };
  sticky?: string;
}

/** The hints a proxied request gives the choice of a revision on the default route. */
export interface RouteHints {
  /** `X-Capsule-Revision` request header: pick this revision. */
  revision?: string;
  /** The request's headers (lower-case names), read for a sticky split. */
  headers?: Record<string, string | string[] | undefined>;
}

interface FunctionState {
  /** Concrete revisions (a concrete `default` too) → URLs in registration order. */
  revisions: Map<string, string[]>;
  /** Round-robin counter per revision. */
  counters: Map<string, number>;
  traffic?: { targets: TrafficTarget[]; sticky?: StickySpec; text?: string; current: Map<string, number> };
}

const notRegistered = (fn: string, rev?: string) =>
  new FaasError(404, 'FUNCTION_NOT_FOUND', `${rev === undefined ? fn : `${fn}/${rev}`} is not registered`);
const fnNotFound = (fn: string) => new FaasError(500, 'ERROR_FUNCTION_NOT_FOUND', `${fn} does not exist`);
const revNotFound = (rev: string) => new FaasError(500, 'ERROR_REVISION_NOT_FOUND', `${rev} does not exist`);

/**
 * Parses a sticky spec `header:<Name>` or `cookie:<name>`.
 * @throws FaasError 400 ERROR_BAD_TRAFFIC otherwise
 */
export function parseSticky(text: string): StickySpec {
  const m = /^(header|cookie):([A-Za-z0-9!#$%&'*+.^_`|~-]+)$/.exec(text);
  if (!m) throw new FaasError(400, 'ERROR_BAD_TRAFFIC', `sticky "${text}": expected header:<Header-Name> or cookie:<cookie-name>`);
  return { from: m[1] as 'header' | 'cookie', name: m[2]! };
}

/** 32-bit FNV-1a of a string: a stable hash for sticky keys (same key → same bucket, every process). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The value of one cookie in a Cookie header, or undefined. */
function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  for (const line of Array.isArray(header) ? header : header ? [header] : []) {
    for (const part of line.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

/** The in-memory route table of `capsule proxy` (see the file comment). */
export class RouteTable {
  readonly #functions = new Map<string, FunctionState>();
  readonly #listeners = new Set<(change: RouteChange) => void>();

  /**
   * Creates a function with one revision and one URL (`POST …/registration`).
   * @throws FaasError 500 ERROR_FUNCTION_ALREADY_EXISTS
   */
  registerFunction(fn: string, rev: string, url: string): void {
    if (this.#functions.has(fn)) throw new FaasError(500, 'ERROR_FUNCTION_ALREADY_EXISTS', `${fn} already exists`);
    this.#functions.set(fn, { revisions: new Map([[rev, [url]]]), counters: new Map() });
    this.#changed({ function: fn });
  }

  /** Removes a function and all its revisions. @throws FaasError 500 ERROR_FUNCTION_NOT_FOUND */
  removeFunction(fn: string): void {
    if (!this.#functions.delete(fn)) throw fnNotFound(fn);
    this.#changed({ function: fn });
  }

  /**
   * Adds a revision with one URL to a function.
   * @throws FaasError 500 ERROR_FUNCTION_NOT_FOUND, ERROR_REVISION_ALREADY_EXISTS (also for
   *   `default` while it is an alias)
   */
  addRevision(fn: string, rev: string, url: string): void {
    const f = this.#get(fn);
    if (f.revisions.has(rev) || (rev === DEFAULT_REVISION && f.traffic)) {
      throw new FaasError(500, 'ERROR_REVISION_ALREADY_EXISTS', `${rev} already exists`);
    }
    f.revisions.set(rev, [url]);
    this.#changed({ function: fn, revision: rev });
  }

  /**
   * Removes a revision; removing `default` while it is an alias clears the alias.
   * @throws FaasError 500 ERROR_FUNCTION_NOT_FOUND, ERROR_REVISION_NOT_FOUND
   */
  removeRevision(fn: string, rev: string): void {
    const f = this.#get(fn);
    if (rev === DEFAULT_REVISION && f.traffic) {
      f.traffic = undefined;
    } else if (!f.revisions.delete(rev)) {
      throw revNotFound(rev);
    }
    f.counters.delete(rev);
    this.#changed({ function: fn, revision: rev });
  }

  /**
   * Adds a URL to a revision (scale up; a URL may appear twice, as in Go).
   * @throws FaasError 500 ERROR_FUNCTION_NOT_FOUND, ERROR_REVISION_NOT_FOUND; 409
   *   ERROR_DEFAULT_IS_ALIAS when `default` is an alias (add the URL to its revision instead)
   */
  addUrl(fn: string, rev: string, url: string): void {
    const f = this.#get(fn);
    const urls = f.revisions.get(rev);
    if (!urls) {
      if (rev === DEFAULT_REVISION && f.traffic) {
        const to = f.traffic.targets.map((t) => t.revision).join(', ');
        throw new FaasError(409, 'ERROR_DEFAULT_IS_ALIAS', `${fn}/default is an alias of ${to}: add the URL to that revision`);
      }
      throw revNotFound(rev);
    }
    urls.push(url);
    this.#changed({ function: fn, revision: rev });
  }

  /**
   * Removes the first URL equal to `url` (none equal: nothing changes, as in Go). On a `default`
   * alias this does nothing: the URL leaves the default when it leaves its revision.
   * @throws FaasError 500 ERROR_FUNCTION_NOT_FOUND, ERROR_REVISION_NOT_FOUND
   */
  removeUrl(fn: string, rev: string, url: string): void {
    const f = this.#get(fn);
    const urls = f.revisions.get(rev);
    if (!urls) {
      if (rev === DEFAULT_REVISION && f.traffic) return;
      throw revNotFound(rev);
    }
    const i = urls.indexOf(url);
    if (i >= 0) {
      urls.splice(i, 1);
      this.#changed({ function: fn, revision: rev });
    }
  }

  /** The URLs of a revision (`default` resolved through its alias), or null when unknown (Go `null`). */
  urls(fn: string, rev: string): string[] | null {
    const f = this.#functions.get(fn);
    if (!f) return null;
    const urls = f.revisions.get(rev);
    if (urls) return [...urls];
    if (rev === DEFAULT_REVISION && f.traffic) return this.#aliasUrls(f);
    return null;
  }

  /** True when the function is registered. */
  has(fn: string): boolean {
    return this.#functions.has(fn);
  }

  /**
   * Every function → revision → URLs, as Go's `GET /memory/functions/list` shows them: a
   * `default` alias appears as a revision with the URLs of the revisions it aliases.
   */
  list(): Record<string, Record<string, string[]>> {
    const out: Record<string, Record<string, string[]>> = {};
    for (const [fn, f] of this.#functions) {
      const revs: Record<string, string[]> = {};
      for (const [rev, urls] of f.revisions) revs[rev] = [...urls];
      if (f.traffic) revs[DEFAULT_REVISION] = this.#aliasUrls(f);
      out[fn] = revs;
    }
    return out;
  }

  /** The traffic split of a function, or undefined (no alias). */
  traffic(fn: string): Traffic | undefined {
    const t = this.#functions.get(fn)?.traffic;
    return t ? { targets: t.targets.map((x) => ({ ...x })), ...(t.text ? { sticky: t.text } : {}) } : undefined;
  }

  /**
   * Makes `default` an alias splitting traffic between revisions (faas-cluster.md §1.5). A
   * concrete `default` revision is replaced. Targets: concrete revisions (not `default`), each
   * once, integer percents 0–100 summing to 100.
   * @param sticky `header:<Name>` or `cookie:<name>`: a stable hash of that value picks the revision
   * @throws FaasError 500 ERROR_FUNCTION_NOT_FOUND / ERROR_REVISION_NOT_FOUND; 400 ERROR_BAD_TRAFFIC
   */
  setTraffic(fn: string, targets: readonly TrafficTarget[], sticky?: string): void {
    const f = this.#get(fn);
    const problem = trafficProblem(targets);
    if (problem !== undefined) throw new FaasError(400, 'ERROR_BAD_TRAFFIC', problem);
    const unknown = targets.find((t) => !f.revisions.has(t.revision));
    if (unknown) throw revNotFound(unknown.revision);
    const spec = sticky === undefined || sticky === '' ? undefined : parseSticky(sticky);
    f.revisions.delete(DEFAULT_REVISION);
    f.counters.delete(DEFAULT_REVISION);
    f.traffic = {
      targets: targets.map((t) => ({ revision: t.revision, percent: t.percent })),
      sticky: spec, text: spec ? sticky : undefined, current: new Map(),
    };
    this.#changed({ function: fn });
  }

  /** Removes the `default` alias (a concrete `default` revision stays). @throws FaasError 500 ERROR_FUNCTION_NOT_FOUND */
  clearTraffic(fn: string): void {
    const f = this.#get(fn);
    if (!f.traffic) return;
    f.traffic = undefined;
    this.#changed({ function: fn });
  }

  /**
   * Chooses the revision and the upstream order of one proxied request (§9.2–§9.4): a concrete
   * revision as named; `default` through the alias (header `X-Capsule-Revision` first, then the
   * sticky key, then smooth weighted round-robin) or the concrete `default`. The URLs start at
   * the revision's round-robin position and go on in order (the candidates after a failure).
   * @param isUp tells which URLs are in the rotation (the others go last), default: all
   * @throws FaasError 404 FUNCTION_NOT_FOUND naming `<fn>` or `<fn>/<rev>`
   */
  resolve(fn: string, rev: string | undefined, hints: RouteHints = {}, isUp?: (url: string) => boolean): Resolved {
    const f = this.#functions.get(fn);
    if (!f) throw notRegistered(fn);
    let chosen = rev ?? DEFAULT_REVISION;
    if (rev === undefined && hints.revision && hints.revision !== DEFAULT_REVISION) {
      if (!f.revisions.has(hints.revision)) throw notRegistered(fn, hints.revision);
      chosen = hints.revision;
    } else if (chosen === DEFAULT_REVISION && f.traffic) {
      chosen = this.#pickTarget(f, hints.headers) ?? DEFAULT_REVISION;
    }
    const urls = f.revisions.get(chosen);
    if (!urls || urls.length === 0) throw notRegistered(fn, chosen);
    return { revision: chosen, urls: this.#rotate(f, chosen, urls, isUp) };
  }

  /** The registered function names. */
  names(): string[] {
    return [...this.#functions.keys()];
  }

  /** One function's routes as a shared backend stores them, or undefined when it is not registered. */
  snapshot(fn: string): RouteRecord | undefined {
    const f = this.#functions.get(fn);
    if (!f) return undefined;
    const revisions: RouteRecord['revisions'] = {};
    for (const [rev, urls] of f.revisions) revisions[rev] = { targets: [...urls] };
    const record: RouteRecord = { revisions, aliases: {} };
    if (f.traffic) {
      record.aliases.default = Object.fromEntries(f.traffic.targets.map((t) => [t.revision, t.percent]));
      if (f.traffic.text) record.sticky = f.traffic.text;
    }
    return record;
  }

  /**
   * Replaces one function's routes with a record read from a shared backend (undefined removes
   * it), keeping the round-robin positions of revisions that stay. Written by other processes, a
   * record is read leniently: entries of the wrong shape are skipped, a bad sticky spec is dropped.
   * @returns false when the record has no usable shape (nothing changed)
   */
  load(fn: string, record: RouteRecord | undefined): boolean {
    if (record === undefined) {
      if (this.#functions.delete(fn)) this.#changed({ function: fn });
      return true;
    }
    if (!record || typeof record !== 'object' || !record.revisions || typeof record.revisions !== 'object') return false;
    const old = this.#functions.get(fn);
    const revisions = new Map<string, string[]>();
    for (const [rev, r] of Object.entries(record.revisions)) {
      if (Array.isArray(r?.targets)) revisions.set(rev, r.targets.filter((t): t is string => typeof t === 'string'));
    }
    const f: FunctionState = { revisions, counters: new Map() };
    for (const [rev, n] of old?.counters ?? []) if (revisions.has(rev)) f.counters.set(rev, n);
    const alias = record.aliases?.default;
    if (alias && typeof alias === 'object' && Object.keys(alias).length > 0) {
      const targets = Object.entries(alias).filter(([, p]) => Number.isInteger(p) && p >= 0).map(([revision, percent]) => ({ revision, percent }));
      let sticky: StickySpec | undefined;
      try {
        sticky = record.sticky ? parseSticky(record.sticky) : undefined;
      } catch { /* a bad spec from another writer: no stickiness */ }
      const same = old?.traffic && JSON.stringify(old.traffic.targets) === JSON.stringify(targets);
      revisions.delete(DEFAULT_REVISION);
      f.traffic = { targets, sticky, text: sticky ? record.sticky : undefined, current: same ? old.traffic!.current : new Map() };
    }
    this.#functions.set(fn, f);
    this.#changed({ function: fn });
    return true;
  }

  /** Calls `listener` after every change; returns the function that stops it. */
  onChange(listener: (change: RouteChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #get(fn: string): FunctionState {
    const f = this.#functions.get(fn);
    if (!f) throw fnNotFound(fn);
    return f;
  }

  #changed(change: RouteChange): void {
    for (const l of this.#listeners) l(change);
  }

  #aliasUrls(f: FunctionState): string[] {
    return f.traffic!.targets.flatMap((t) => f.revisions.get(t.revision) ?? []);
  }

  /** Own counter per revision, modulo the current number of URLs in the rotation (§9.4). */
  #rotate(f: FunctionState, rev: string, urls: readonly string[], isUp?: (url: string) => boolean): string[] {
    // per request: every URL up is the usual case, so no filtered copy is made for it
    const up = !isUp || urls.every(isUp) ? urls : urls.filter(isUp);
    const ring = up.length > 0 ? up : urls;
    const n = f.counters.get(rev) ?? 0;
    f.counters.set(rev, (n + 1) % 1_000_000_007);
    const start = n % ring.length;
    const ordered: string[] = new Array(ring.length);
    for (let i = 0; i < ring.length; i++) ordered[i] = ring[(start + i) % ring.length]!;
    // URLs out of the rotation are tried last (they may be back before the next probe)
    if (ring !== urls) for (const u of urls) if (!ring.includes(u)) ordered.push(u);
    return ordered;
  }

  /** The target revision of a split: sticky hash when the key is present, else smooth weighted round-robin. */
  #pickTarget(f: FunctionState, headers: RouteHints['headers']): string | undefined {
    const t = f.traffic!;
    const live = t.targets.filter((x) => x.percent > 0 && (f.revisions.get(x.revision)?.length ?? 0) > 0);
    if (live.length === 0) return undefined;
    if (t.sticky && headers) {
      const raw = t.sticky.from === 'header' ? headers[t.sticky.name.toLowerCase()] : cookieValue(headers['cookie'], t.sticky.name);
      const key = Array.isArray(raw) ? raw[0] : raw;
      if (key) {
        const total = live.reduce((s, x) => s + x.percent, 0);
        let bucket = fnv1a(key) % total;
        for (const x of live) {
          if (bucket < x.percent) return x.revision;
          bucket -= x.percent;
        }
      }
    }
    // smooth weighted round-robin (nginx): exact shares over every `total` picks
    let best: TrafficTarget | undefined;
    let total = 0;
    for (const x of live) {
      const cw = (t.current.get(x.revision) ?? 0) + x.percent;
      t.current.set(x.revision, cw);
      total += x.percent;
      if (!best || cw > t.current.get(best.revision)!) best = x;
    }
    t.current.set(best!.revision, t.current.get(best!.revision)! - total);
    return best!.revision;
  }
}
