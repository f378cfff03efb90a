/**
 * The shape every message trigger (NATS, MQTT) returns, and the exponential backoff they use to
 * reconnect.
 */
import type { RunnerMetrics } from '../../observability/metrics.ts';

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

/**
 * Exponential backoff with jitter: `next()` gives waits of min, 2·min, 4·min… up to max, each
 * scaled by a random factor in [0.5, 1]; `current` repeats the last one (min before the first
 * `next()`); `reset()` after a success.
 */
export class Backoff {
  readonly minMs: number;
  readonly maxMs: number;
  #attempt = 0;
  #current: number;

  constructor(minMs = 100, maxMs = 5000) {
    this.minMs = Math.max(1, minMs);
    this.maxMs = Math.max(this.minMs, maxMs);
    this.#current = this.minMs;
  }

  /** The next wait, ms. */
  next(): number {
    const base = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    this.#current = Math.round(base * (0.5 + Math.random() / 2));
    return this.#current;
  }

  /** The wait `next()` gave last, ms. */
  get current(): number {
    return this.#current;
  }

  reset(): void {
    this.#attempt = 0;
    this.#current = this.minMs;
  }
}
