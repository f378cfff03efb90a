/**
 * The Go worker's `-httpPortCounter` (faas-api.md §3): each deployment listens on the next port
 * (counter + 1 for the first, as Go incremented before use). A port another program holds is
 * skipped. Counter 0 means "a free port chosen by the system" for every replica (a Capsule
 * addition, handy for tests and for several nodes on one machine).
 */
import { createServer } from 'node:net';

/** Hands out replica ports. */
export class PortCounter {
  #counter: number;
  readonly #host: string;

  /** @param start the counter (Go default 10000); 0 = free ports */
  constructor(start: number, host: string) {
    this.#counter = start;
    this.#host = host;
  }

  /**
   * The next port that can be bound now (0 when the counter is 0).
   * @throws Error when no port is free up to 65535
   */
  async next(): Promise<number> {
    if (this.#counter === 0) return 0;
    while (this.#counter < 65535) {
      const port = ++this.#counter;
      if (await canBind(port, this.#host)) return port;
    }
    throw new Error('no free port left above --http-port-counter');
  }
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}
