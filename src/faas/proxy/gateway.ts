/**
 * The proxy route `ANY /functions/:name[/:revision[/rest]]` (faas-api.md §9.2–§9.4): parses the
 * path, asks the {@link RouteTable} for the revision and its upstream order, forwards with
 * {@link forwardRequest}, feeds passive health, per-revision metrics and one log line per request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../../observability/logger.ts';
import { FaasError } from '../shared/service.ts';
import { forwardRequest, sendError, type ForwardOptions, type ForwardResult } from './forward.ts';
import { LATTICE_TARGET } from './backends/store.ts';
import type { UpstreamHealth } from './health.ts';
import type { RouteTable } from './table.ts';

/** A parsed proxy path: function, revision when named, and the path+query to forward. */
export interface ProxyTarget {
  function: string;
  revision?: string;
  /** `/rest?query` (`/` when there is no rest). */
  path: string;
}

/**
 * Splits `/functions/<name>[/<revision>[/<rest>]][?query]` (§9.3): `/functions/hello?x=1` →
 * default revision, path `/?x=1`; `/functions/hello/blue/api/items?x=1` → `blue`, `/api/items?x=1`.
 * @returns undefined when the URL is not under `/functions/<name>`
 */
export function parseProxyPath(url: string): ProxyTarget | undefined {
  if (!url.startsWith('/functions/')) return undefined;
  const q = url.indexOf('?');
  const end = q < 0 ? url.length : q;
  const query = q < 0 ? '' : url.slice(q);
  const start = '/functions/'.length;
  let slash = url.indexOf('/', start);
  if (slash < 0 || slash > end) slash = end;
  const fn = decodeSegment(url.slice(start, slash));
  if (fn === '') return undefined;
  if (slash === end) return { function: fn, revision: undefined, path: `/${query}` };
  let next = url.indexOf('/', slash + 1);
  if (next < 0 || next > end) next = end;
  const rev = next === slash + 1 ? undefined : decodeSegment(url.slice(slash + 1, next));
  return { function: fn, revision: rev, path: next === end ? `/${query}` : url.slice(next, end) + query };
}

/** A path segment percent-decoded (kept as is when it is not valid percent-encoding). */
function decodeSegment(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The proxy's Prometheus metrics (per function and revision). */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'capsule_proxy_requests_total', help: 'Proxied requests, by function, revision and status', labelNames: ['function', 'revision', 'status'], registers: [this.registry] });
  readonly errors = new Counter({ name: 'capsule_proxy_errors_total', help: 'Proxied requests the proxy answered itself or cut: unreachable (502), timeout (504), broken (cut mid-response), not_found (404); nats: targets also too_large (413) and busy (503, every node over its cap)', labelNames: ['function', 'revision', 'reason'], registers: [this.registry] });
  readonly duration = new Histogram({
    name: 'capsule_proxy_request_duration_seconds', help: 'Time to the end of the proxied response, seconds', labelNames: ['function', 'revision'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
  });
  readonly inflight = new Gauge({ name: 'capsule_proxy_inflight_requests', help: 'Proxied requests in progress', labelNames: ['function', 'revision'], registers: [this.registry] });
  readonly latticeRetries = new Counter({ name: 'capsule_lattice_retries_total', help: 'Requests to nats: targets sent again: no node subscribed (no-responders), every node busy (busy), no answer in time (timeout, GET/HEAD/OPTIONS only)', labelNames: ['reason'], registers: [this.registry] });
  readonly unreachable = new Counter({ name: 'capsule_proxy_upstream_failures_total', help: 'Connection failures to an upstream (each takes it out of the rotation until a probe succeeds)', labelNames: ['upstream'], registers: [this.registry] });
  readonly #byRevision = new Map<string, RevisionMetrics>();
  constructor(downCount: () => number) {
    new Gauge({ name: 'capsule_proxy_upstreams_down', help: 'Upstreams out of the rotation now', registers: [this.registry], collect() { this.set(downCount()); } });
  }

  /**
   * The series of one registered revision, looked up once (label hashing per request was a
   * measurable part of a proxied request). Only called for registered names: unknown ones are
   * counted under `(unknown)`, so random paths cannot grow the series without bound.
   */
  revision(fn: string, rev: string): RevisionMetrics {
    const key = `${fn}\0${rev}`;
    let m = this.#byRevision.get(key);
    if (!m) {
      const statuses = new Map<number, ReturnType<Counter['labels']>>();
      m = {
        inflight: this.inflight.labels(fn, rev),
        duration: this.duration.labels(fn, rev),
        status: (code) => {
          let c = statuses.get(code);
          if (!c) statuses.set(code, (c = this.requests.labels(fn, rev, String(code))));
          return c;
        },
        error: (reason) => this.errors.inc({ function: fn, revision: rev, reason }),
      };
      this.#byRevision.set(key, m);
    }
    return m;
  }
}

/** The metric series of one revision. */
export interface RevisionMetrics {
  inflight: ReturnType<Gauge['labels']>;
  duration: ReturnType<Histogram['labels']>;
  status(code: number): ReturnType<Counter['labels']>;
  error(reason: 'unreachable' | 'timeout' | 'broken' | 'too_large' | 'busy'): void;
}

/** What {@link Gateway} needs. */
export interface GatewayOptions {
  table: RouteTable;
  health: UpstreamHealth;
  metrics: ProxyMetrics;
  logger: Logger;
  /** Upstream response-header and idle-body timeout, ms. */
  timeoutMs: number;
  /** Invokes `nats:` targets (cluster mode, ./backends/nats.ts); without it they answer 502 NO_INSTANCE. */
  lattice?: { forward(req: IncomingMessage, res: ServerResponse, fn: string, rev: string, path: string): Promise<ForwardResult> };
}

/** Serves proxied requests. */
export class Gateway {
  readonly #o: GatewayOptions;
  /** Forwarding options, the same for every request (made once, not per request). */
  readonly #forward: ForwardOptions;
  constructor(o: GatewayOptions) {
    this.#o = o;
    this.#forward = {
      logger: o.logger, timeoutMs: o.timeoutMs,
      onUnreachable: (url, err) => {
        o.metrics.unreachable.inc({ upstream: url });
        o.health.markDown(url, (err as NodeJS.ErrnoException).code ?? err.message);
      },
    };
  }

  /** Handles one request under `/functions/` (never rejects; every outcome is a reply). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.#handle(req, res);
    } catch (e) {
      this.#o.logger.error({ url: req.url, err: (e as Error).message }, 'proxy route failed');
      if (!res.headersSent) sendError(res, 500, 'ERROR', 'the proxy failed to handle the request');
      else res.destroy();
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const o = this.#o;
    const start = performance.now();
    const target = parseProxyPath(req.url ?? '/');
    if (!target) return sendError(res, 404, 'PAGE_NOT_FOUND', '😢 Page not found 🥵');
    const hint = req.headers['x-capsule-revision'];
    let resolved;
    try {
      resolved = o.table.resolve(target.function, target.revision, { revision: typeof hint === 'string' ? hint : undefined, headers: req.headers }, o.health.isUp);
    } catch (e) {
      if (!(e instanceof FaasError)) throw e;
      req.resume();
      // names from the URL are not labels: random paths would grow the series without bound
      o.metrics.errors.inc({ function: o.table.has(target.function) ? target.function : '(unknown)', revision: '(unknown)', reason: 'not_found' });
      o.logger.info({ function: target.function, revision: target.revision ?? 'default', status: e.status }, e.message);
      return sendError(res, e.status, e.code, e.message);
    }
    const m = o.metrics.revision(target.function, resolved.revision);
    m.inflight.inc();
    const urls = resolved.urls;
    const r = urls[0] === LATTICE_TARGET
      ? await this.#lattice(req, res, target, resolved.revision)
      : await forwardRequest(req, res, urls.includes(LATTICE_TARGET) ? urls.filter((u) => u !== LATTICE_TARGET) : urls, target.path, this.#forward);
    const seconds = (performance.now() - start) / 1000;
    m.inflight.dec();
    m.status(r.status).inc();
    m.duration.observe(seconds);
    if (r.error) m.error(r.status === 502 ? 'unreachable' : r.status === 504 ? 'timeout' : r.status === 413 ? 'too_large' : r.status === 503 ? 'busy' : 'broken');
    const line = { function: target.function, revision: resolved.revision, method: req.method, path: target.path, upstream: r.upstream, status: r.status, ms: Math.round(seconds * 10000) / 10 };
    if (r.error) o.logger.warn({ ...line, error: r.error, unreachable: r.unreachable }, 'proxied request failed');
    else o.logger.info(line, 'proxied');
  }

  /** A `nats:` target: over NATS in cluster mode, else 502 (a route written by a cluster into a shared store). */
  async #lattice(req: IncomingMessage, res: ServerResponse, target: ProxyTarget, revision: string): Promise<ForwardResult> {
    if (this.#o.lattice) return this.#o.lattice.forward(req, res, target.function, revision, target.path);
    req.resume();
    const message = `${target.function}/${revision} is served by cluster nodes (nats:); this proxy is not in cluster mode (--backend nats --cluster URLS)`;
    sendError(res, 502, 'NO_INSTANCE', message);
    return { status: 502, unreachable: [], error: message };
  }
}
