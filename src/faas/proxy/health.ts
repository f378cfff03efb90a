/**
 * Passive upstream health for the proxy (issue 12 point 1): an upstream that could not be
 * connected to leaves the rotation at once; it is probed with a TCP connect after 250 ms, then
 * with doubling delays up to 10 s, and rejoins the rotation when a probe connects. A TCP probe
 * fits any upstream (a Capsule function, a Go launcher, any HTTP server), where a health route
 * may not exist.
 */
import { connect } from 'node:net';
import type { Logger } from '../../observability/logger.ts';

/** Probe delays: first, growth factor, ceiling (ms). */
export interface BackoffPolicy {
  firstMs: number;
  maxMs: number;
}

interface Down {
  delay: number;
  timer: NodeJS.Timeout;
}

/** Tracks upstreams out of the rotation and probes them until they answer. */
export class UpstreamHealth {
  readonly #down = new Map<string, Down>();
  readonly #policy: BackoffPolicy;
  readonly #logger: Logger;
  #closed = false;

  constructor(logger: Logger, policy: BackoffPolicy = { firstMs: 250, maxMs: 10_000 }) {
    this.#logger = logger;
    this.#policy = policy;
  }

  /** True unless the upstream failed and has not answered a probe since. */
  isUp = (url: string): boolean => !this.#down.has(url);

  /** Upstreams currently out of the rotation. */
  downList(): string[] {
    return [...this.#down.keys()];
  }

  /** Takes an upstream out of the rotation (it could not be connected to) and starts probing it. */
  markDown(url: string, reason: string): void {
    if (this.#closed || this.#down.has(url)) return;
    this.#logger.warn({ upstream: url, reason }, 'upstream left the rotation');
    this.#schedule(url, this.#policy.firstMs);
  }

  /** Forgets an upstream (removed from the table): no more probes. */
  forget(url: string): void {
    const d = this.#down.get(url);
    if (d) clearTimeout(d.timer);
    this.#down.delete(url);
  }

  /** Stops every probe. */
  close(): void {
    this.#closed = true;
    for (const d of this.#down.values()) clearTimeout(d.timer);
    this.#down.clear();
  }

  #schedule(url: string, delay: number): void {
    const timer = setTimeout(() => void this.#probe(url, delay), delay);
    timer.unref();
    this.#down.set(url, { delay, timer });
  }

  async #probe(url: string, delay: number): Promise<void> {
    if (this.#closed || !this.#down.has(url)) return;
    const ok = await tcpProbe(url, Math.min(2000, this.#policy.maxMs));
    if (this.#closed || !this.#down.has(url)) return;
    if (ok) {
      this.#down.delete(url);
      this.#logger.info({ upstream: url }, 'upstream is back in the rotation');
    } else {
      this.#schedule(url, Math.min(delay * 2, this.#policy.maxMs));
    }
  }
}

/** True when a TCP connection to the URL's host and port opens within `timeoutMs`. */
export function tcpProbe(url: string, timeoutMs: number): Promise<boolean> {
  let host: string;
  let port: number;
  try {
    const u = new URL(url);
    host = u.hostname.replace(/^\[|\]$/g, '');
    port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const sock = connect({ host, port, timeout: timeoutMs });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once('connect', () => done(true));
    sock.once('timeout', () => done(false));
    sock.once('error', () => done(false));
  });
}
