/**
 * How a function node tells the reverse proxy where its deployments listen (faas-api.md §3: the
 * Go worker registered every deployment in the proxy). Two ways behind one interface:
 * - `httpProxyRegistration(proxyUrl, token)`: over the proxy's `/memory/…` registration API (§1),
 *   as the Go worker did, plus the `PUT/DELETE /memory/functions/:fn/traffic` route for `default`
 *   (faas-cluster.md §1.5: `default` is an alias of a revision, not a copy of its URLs);
 * - `tableProxyRegistration(table)`: straight into the proxy's route table when proxy and node run
 *   in one process (`capsule faas`).
 * A later backend (NATS, issue 13) adds a third implementation of the same interface.
 */
import type { FaasError } from '../shared/service.ts';

/** What a node asks of the proxy. Every method resolves once the proxy has applied the change. */
export interface ProxyRegistration {
  /**
   * Adds a URL to a revision, creating the function and the revision as needed (the Go worker's
   * `registration` → `revision` → `url` choice).
   * @throws Error when the proxy cannot be reached or refuses (message names the route and reply)
   */
  addUrl(fn: string, rev: string, url: string): Promise<void>;
  /** Removes one URL from a revision (nothing when it is not there). @throws Error as addUrl */
  removeUrl(fn: string, rev: string, url: string): Promise<void>;
  /** Removes a revision and its URLs (nothing when it is not there). @throws Error as addUrl */
  removeRevision(fn: string, rev: string): Promise<void>;
  /** Makes `default` of the function an alias of `rev` (100 % of its traffic). @throws Error as addUrl */
  setDefault(fn: string, rev: string): Promise<void>;
  /** Removes the function's `default` alias or split. @throws Error as addUrl */
  removeDefault(fn: string): Promise<void>;
  /**
   * Where `default` of the function sends traffic now (its alias or split, whoever set it), or
   * undefined when it is no alias (a concrete `default` revision, or none, or an unknown function).
   * @throws Error as addUrl
   */
  defaultTraffic(fn: string): Promise<{ revision: string; percent: number }[] | undefined>;
}

/** The part of the proxy's `RouteTable` (src/faas/proxy/table.ts) a node needs; methods throw `FaasError`. */
export interface RegistrationTable {
  registerFunction(fn: string, rev: string, url: string): unknown;
  addRevision(fn: string, rev: string, url: string): unknown;
  removeRevision(fn: string, rev: string): unknown;
  addUrl(fn: string, rev: string, url: string): unknown;
  removeUrl(fn: string, rev: string, url: string): unknown;
  urls(fn: string, rev: string): string[] | null;
  list(): Record<string, Record<string, string[]>>;
  setTraffic(fn: string, targets: { revision: string; percent: number }[], sticky?: string): unknown;
  clearTraffic(fn: string): unknown;
  traffic(fn: string): { targets: { revision: string; percent: number }[] } | undefined;
}

/** Go error codes that mean "already as wanted" for a removal. */
const GONE = new Set(['ERROR_FUNCTION_NOT_FOUND', 'ERROR_REVISION_NOT_FOUND', 'FUNCTION_NOT_FOUND', 'REVISION_NOT_FOUND', 'ERROR_URL_NOT_FOUND', 'URL_NOT_FOUND']);

function codeOf(e: unknown): string | undefined {
  return (e as Partial<FaasError>)?.code;
}

/** Registration straight into an in-process route table (one-process `capsule faas`). */
export function tableProxyRegistration(table: RegistrationTable): ProxyRegistration {
  const removing = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (!GONE.has(codeOf(e) ?? '')) throw e;
    }
  };
  return {
    async addUrl(fn, rev, url) {
      if (!Object.hasOwn(table.list(), fn)) table.registerFunction(fn, rev, url);
      else if (table.urls(fn, rev) === null) table.addRevision(fn, rev, url);
      else table.addUrl(fn, rev, url);
    },
    async removeUrl(fn, rev, url) {
      removing(() => table.removeUrl(fn, rev, url));
    },
    async removeRevision(fn, rev) {
      removing(() => table.removeRevision(fn, rev));
    },
    async setDefault(fn, rev) {
      table.setTraffic(fn, [{ revision: rev, percent: 100 }]);
    },
    async removeDefault(fn) {
      removing(() => table.clearTraffic(fn));
    },
    async defaultTraffic(fn) {
      return table.traffic(fn)?.targets;
    },
  };
}

/** A proxy reply: status and the JSON `code` when there is one. */
interface Reply {
  status: number;
  code?: string;
  text: string;
  json?: unknown;
}

/**
 * Registration over the proxy's HTTP API (faas-api.md §1), with the admin token in the
 * `CAPSULE_REVERSE_PROXY_ADMIN_TOKEN` header when one is given.
 * @param proxyUrl the proxy's base URL (`--reverse-proxy`), e.g. `http://localhost:8080`
 * @param backend the route prefix (`--backend`, Go's `memory`)
 */
export function httpProxyRegistration(proxyUrl: string, token: string | undefined, backend = 'memory', timeoutMs = 10_000): ProxyRegistration {
  const base = `${proxyUrl.replace(/\/+$/, '')}/${backend}/functions`;
  const call = async (method: string, path: string, body?: unknown): Promise<Reply> => {
    const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' };
    if (token) headers.CAPSULE_REVERSE_PROXY_ADMIN_TOKEN = token;
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      throw new Error(`the reverse proxy ${proxyUrl} cannot be reached (${method} ${path}): ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, code: (json as { code?: string } | undefined)?.code, text, json };
  };
  const ok = (r: Reply, what: string, gone = false): void => {
    if (r.status < 300 || (gone && GONE.has(r.code ?? ''))) return;
    throw new Error(`the reverse proxy refused ${what}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  };
  const seg = encodeURIComponent;
  return {
    async addUrl(fn, rev, url) {
      let r = await call('POST', `/${seg(fn)}/${seg(rev)}/url`, { url });
      if (r.code === 'ERROR_FUNCTION_NOT_FOUND' || r.code === 'FUNCTION_NOT_FOUND') {
        r = await call('POST', '/registration', { function: fn, revision: rev, url });
      } else if (r.code === 'ERROR_REVISION_NOT_FOUND' || r.code === 'REVISION_NOT_FOUND') {
        r = await call('POST', `/${seg(fn)}/revision`, { revision: rev, url });
      }
      ok(r, `adding ${url} to ${fn}/${rev}`);
    },
    async removeUrl(fn, rev, url) {
      ok(await call('DELETE', `/${seg(fn)}/${seg(rev)}/url`, { url }), `removing ${url} from ${fn}/${rev}`, true);
    },
    async removeRevision(fn, rev) {
      ok(await call('DELETE', `/${seg(fn)}/revision`, { revision: rev }), `removing ${fn}/${rev}`, true);
    },
    async setDefault(fn, rev) {
      ok(await call('PUT', `/${seg(fn)}/traffic`, { targets: [{ revision: rev, percent: 100 }] }), `setting the default of ${fn} to ${rev}`);
    },
    async removeDefault(fn) {
      ok(await call('DELETE', `/${seg(fn)}/traffic`), `removing the default of ${fn}`, true);
    },
    async defaultTraffic(fn) {
      const r = await call('GET', `/${seg(fn)}/traffic`);
      if (GONE.has(r.code ?? '')) return undefined;
      ok(r, `reading the default of ${fn}`);
      const targets = (r.json as { targets?: { revision: string; percent: number }[] } | undefined)?.targets;
      return targets && targets.length > 0 ? targets : undefined;
    },
  };
}
