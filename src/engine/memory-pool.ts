/**
 * Host-owned linear memories, reused across fresh instances. Allocating one
 * `WebAssembly.Memory` per instance makes V8's GC thrash (~0.10× plain HTTP throughput measured
 * here); reusing zeroed memories keeps a fresh instance per call affordable.
 *
 * A memory is zeroed when it is released, so `acquire` hands out all-zero memory, as a fresh
 * instance would see. Memories that grew large are dropped instead of zeroed.
 */
export const PAGE = 65536;

export class MemoryPool {
  readonly #free = new Map<string, WebAssembly.Memory[]>();
  readonly #keepMaxBytes: number;
  readonly #perKey: number;

  /**
   * @param keepMaxBytes memories larger than this (bytes) are not kept on release
   * @param perKey how many idle memories to keep per (initial, maximum) shape
   */
  constructor(keepMaxBytes = 16 * 1024 * 1024, perKey = 4) {
    this.#keepMaxBytes = keepMaxBytes;
    this.#perKey = perKey;
  }

  /**
   * A zeroed memory of at least `initial` pages that cannot grow past `maximum` pages.
   * @throws RangeError when V8 cannot reserve it
   */
  acquire(initial: number, maximum: number): WebAssembly.Memory {
    const list = this.#free.get(`${initial}:${maximum}`);
    const m = list?.pop();
    if (m) return m;
    return new WebAssembly.Memory({ initial, maximum });
  }

  /** Returns a memory after the instance that used it is finished with. */
  release(initial: number, maximum: number, memory: WebAssembly.Memory): void {
    const size = memory.buffer.byteLength;
    if (size > this.#keepMaxBytes) return;
    const key = `${initial}:${maximum}`;
    let list = this.#free.get(key);
    if (!list) this.#free.set(key, (list = []));
    if (list.length >= this.#perKey) return;
    new Uint8Array(memory.buffer).fill(0);
    list.push(memory);
  }
}
