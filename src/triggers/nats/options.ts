/**
 * Options of the NATS trigger (`capsule nats`).
 */
import type { MessageTriggerOptions } from '../message/options.ts';

/** Options of the NATS trigger (the common ones: {@link MessageTriggerOptions}). */
export interface NatsTriggerOptions extends MessageTriggerOptions {
  /**
   * NATS server as Go Capsule's `-natssrv` took it: `nats://host:port`, `tls://host:port` or
   * `host:port`; several, comma-separated, for a cluster.
   */
  server: string;
  /** Subjects to subscribe to (wildcards `*` and `>` allowed); at least one. */
  subjects: string[];
  /** Queue group: runners with the same queue share the messages of a subject. */
  queue?: string;
  /** Messages kept waiting beyond `maxConcurrency`; more are dropped and counted (default 1000). */
  maxPending?: number;
}

/** `host:port` → `nats://host:port`; URLs with a scheme are kept (for the ready line and logs). */
export function natsDisplayUrl(server: string): string {
  return server.split(',').map((s) => s.trim()).filter(Boolean)
    .map((s) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `nats://${s}`)).join(',');
}
