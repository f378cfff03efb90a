/**
 * Options every message trigger (NATS, MQTT) takes, and the shape a running one returns.
 */
import type { Logger } from '../../observability/logger.ts';
import type { RunnerMetrics } from '../../observability/metrics.ts';

/** Options of every message trigger; `nats/options.ts` and `mqtt/options.ts` add the broker's own. */
export interface MessageTriggerOptions {
  /** Messages handled at once (default: 2 × workers). */
  maxConcurrency?: number;
  /** Time given to in-flight messages on SIGTERM, ms (default 10 000). */
  graceMs?: number;
  /** Serve the runner routes (/capsule/health, /capsule/ready, /capsule/metrics) on this address. */
  http?: { host: string; port: number };
  /** Reconnect backoff: first wait and cap, ms (default 100 → 5000, doubling, with jitter). */
  reconnect?: { minMs: number; maxMs: number };
  logger: Logger;
}

/** A subscribed message trigger. */
export interface RunningMessageTrigger {
  /** The broker, as a URL (`nats://…`, `mqtt://…`). */
  readonly server: string;
  /** The runner routes' URL when `--http-port` was given. */
  readonly httpUrl?: string;
  readonly metrics: RunnerMetrics;
  /**
   * Stops taking messages, waits for those in flight (up to the grace period), runs
   * `OnStop`/`OnExit`, closes the broker connection and the function.
   */
  shutdown(reason: string): Promise<void>;
  /** Resolves with the process exit code once shut down: 0, or 1 when the broker connection was lost for good. */
  readonly closed: Promise<number>;
}
