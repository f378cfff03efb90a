import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

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

  /** Bytes held by the idle memories kept for reuse (what `trim` gives back). */
  get pooledBytes(): number {
    let bytes = 0;
    for (const list of this.#free.values()) for (const m of list) bytes += m.buffer.byteLength;
    return bytes;
  }

  /**
   * Lets go of every idle memory (a thread idle after a burst: docs/performance.md, "Memory");
   * the next `acquire` of each shape makes a new one.
   * @returns the bytes let go of
   */
  trim(): number {
    const bytes = this.pooledBytes;
    this.#free.clear();
    return bytes;
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

/** V8's `gc` function (enabled at the first `reduceHeap`), or null where it cannot be had. */
let gcFunction: ((options: object) => void) | null | undefined;
/** This thread's V8 total heap size right after its last `reduceHeap` (bytes; 0: none yet). */
let heapAfterReduce = 0;

/**
 * After a burst, gives the calling thread's idle V8 heap back to the system: a full garbage
 * collection that also shrinks the young generation (V8's "last resort" collection, which its
 * own memory reducer runs only ~8–10 s after a burst). A burst grows the young generation of
 * a thread up to 2 × 64 MiB (docs/performance.md, "Memory"); this brings it back to ~1 MiB. It
 * runs only when the heap grew by `growthBytes` since the last reduction of this thread, so an
 * idle thread or a few requests pay nothing. Blocks the thread for the collection (two full
 * collections, 20–50 ms for a server's main thread on a busy 2-core machine): call it only when
 * the thread is idle. V8's `gc` is taken from a context made while `--expose-gc` is set at run
 * time, then unset: no other context of the process, and no thread started later, gets a
 * global `gc`.
 * @param growthBytes heap growth (V8 total heap size, bytes) since the last reduction below
 *   which nothing is done (default: 8 MiB or a quarter of the heap left by the last reduction,
 *   whichever is more)
 * @returns whether it collected
 */
export function reduceHeap(growthBytes = Math.max(8 * 1024 * 1024, heapAfterReduce / 4)): boolean {
  const size = getHeapStatistics().total_heap_size;
  if (size < heapAfterReduce + growthBytes) return false;
  if (gcFunction === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gcFunction = runInNewContext('gc') as (options: object) => void;
      setFlagsFromString('--no-expose-gc'); // contexts and threads made later get no global gc
    } catch {
      gcFunction = null;
    }
  }
  if (!gcFunction) return false;
  gcFunction({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  heapAfterReduce = getHeapStatistics().total_heap_size;
  return true;
}

/**
 * What a thread that runs guests gives back after a burst (docs/performance.md, "Memory"): it
 * says `busy()` when it starts running calls and `idle()` when it has none left; once it has been
 * idle `idleMs`, its pool's idle memories are let go (`MemoryPool.trim`; a thread without one,
 * the worker pool's main thread, passes undefined) and its heap reduced if it grew
 * (`reduceHeap`). Both calls cost a flag and a clock read (they run per batch of calls): one
 * timer, re-armed when it fires early, does the waiting. The timer does not keep the thread alive.
 */
export class IdleTrim {
  readonly #pool: MemoryPool | undefined;
  readonly #idleMs: number;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  /** When the thread last became idle (ms, Date.now clock). */
  #idleSince = 0;

  /** @param idleMs idleness before the trim, ms (default 500) */
  constructor(pool: MemoryPool | undefined, idleMs = 500) {
    this.#pool = pool;
    this.#idleMs = idleMs;
  }

  /** The thread runs calls: no trim until it is idle again. */
  busy(): void {
    this.#busy = true;
  }

  /** The thread has no call left: trims `idleMs` from now unless `busy` comes first. */
  idle(): void {
    this.#busy = false;
    this.#idleSince = Date.now();
    if (!this.#timer) this.#arm(this.#idleMs);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#fire(), ms);
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    if (this.#busy) return; // its next idle() arms the timer again
    const left = this.#idleSince + this.#idleMs - Date.now();
    if (left > 0) {
      this.#arm(left);
      return;
    }
    this.#pool?.trim();
    reduceHeap();
  }

  /** Stops waiting (the thread's owner is closing). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#busy = true;
  }
}
