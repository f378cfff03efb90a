/**
 * The exponential backoff the message triggers (NATS, MQTT) use to reconnect to their broker.
 */

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
