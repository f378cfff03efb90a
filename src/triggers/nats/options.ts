/**
 * Options of the NATS trigger (`capsule nats`).
 */
import type { Logger } from '../../observability/logger.ts';

export interface NatsTriggerOptions {
  /**
   * NATS server as Go Capsule's `-natssrv` took it: `nats://host:port`, `tls://host:port` or
   * `host:port`; several, comma-separated, for a cluster.
   */
  server: string;
  /** Subjects to subscribe to (wildcards `*` and `>` allowed); at least one. */
  subjects: string[];
  /** Queue group: runners with the same queue share the messages of a subject. */
  queue?: string;
  /** Messages handled at once (default: 2 × workers). */
  maxConcurrency?: number;
  /** Messages kept waiting beyond those; more are dropped and counted (default 1000). */
  maxPending?: number;
  /** Time given to in-flight messages on SIGTERM, ms (default 10 000). */
  graceMs?: number;
  /** Serve the runner routes (/capsule/health, /capsule/ready, /capsule/metrics) on this address. */
  http?: { host: string; port: number };
  /** Reconnect backoff: first wait and cap, ms (default 100 → 5000, doubling, with jitter). */
  reconnect?: { minMs: number; maxMs: number };
  logger: Logger;
}

/** `host:port` → `nats://host:port`; URLs with a scheme are kept (for the ready line and logs). */
export function natsDisplayUrl(server: string): string {
  return server.split(',').map((s) => s.trim()).filter(Boolean)
    .map((s) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `nats://${s}`)).join(',');
}
