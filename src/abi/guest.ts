/**
 * One instantiated guest and the memory protocol every Capsule ABI generation shares
 * (capsule-abi.md §2.3 invocation, §2.4 return buffer).
 */
import { CapsuleError } from '../base/errors.ts';

/** Raised when a guest hands the host a (ptr, len) outside its memory: fails this call only. */
export class GuestFault extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestFault';
  }
}

/**
 * An instance plus helpers to move bytes across the boundary. `call` runs an export, wrapping
 * it with `WebAssembly.promising` when the module imports an async host function (JSPI).
 */
export class Guest {
  readonly instance: WebAssembly.Instance;
  readonly memory: WebAssembly.Memory;
  readonly exports: WebAssembly.Exports;
  readonly jspi: boolean;
  readonly #gate?: YieldGate;
  /** `WebAssembly.promising` of the exports `call` ran (made once: an instance reset to its snapshot serves many calls). */
  readonly #promised = new Map<string, (...a: number[]) => Promise<unknown>>();
  readonly #toFree: number[] = [];

  /**
   * @param gate with `jspi`: opened while an export runs through `call` and closed while one runs
   *   through `callSync` (src/wasm/meter.ts, `meterImports` with `yieldEveryMs`)
   */
  constructor(instance: WebAssembly.Instance, memory: WebAssembly.Memory | undefined, jspi: boolean, gate?: YieldGate) {
    this.instance = instance;
    this.#gate = jspi ? gate : undefined;
    this.exports = instance.exports;
    const mem = memory ?? (instance.exports['memory'] as WebAssembly.Memory | undefined);
    // A module without memory (Extism test plugins, extism-abi.md §1) gets an empty one: any
    // (ptr, len) it hands over is then outside memory (GuestFault), as for a too-small memory.
    this.memory = mem instanceof WebAssembly.Memory ? mem : new WebAssembly.Memory({ initial: 0, maximum: 0 });
    this.jspi = jspi;
  }

  has(name: string): boolean {
    return typeof this.exports[name] === 'function';
  }

  /** Calls an export; awaits it when JSPI is in use. */
  async call(name: string, ...args: number[]): Promise<unknown> {
    const f = this.exports[name];
    if (typeof f !== 'function') throw new CapsuleError('BAD_MODULE', `the module does not export ${name}`);
    if (!this.jspi) return (f as (...a: number[]) => unknown)(...args);
    const gate = this.#gate;
    let run = this.#promised.get(name);
    if (!run) this.#promised.set(name, (run = (WebAssembly as unknown as JspiApi).promising(f as (...a: number[]) => unknown)));
    if (!gate) return await run(...args);
    const was = gate.yieldable;
    gate.yieldable = true;
    try {
      return await run(...args);
    } finally {
      gate.yieldable = was;
    }
  }

  /** Calls an export synchronously (malloc, free, allocateBuffer: never suspend). */
  callSync(name: string, ...args: number[]): unknown {
    const f = this.exports[name];
    if (typeof f !== 'function') throw new CapsuleError('BAD_MODULE', `the module does not export ${name}`);
    const gate = this.#gate;
    if (!gate?.yieldable) return (f as (...a: number[]) => unknown)(...args);
    gate.yieldable = false; // not under `promising` (or under a host function's JS frame)
    try {
      return (f as (...a: number[]) => unknown)(...args);
    } finally {
      gate.yieldable = true;
    }
  }

  #viewOf?: ArrayBuffer;
  #view?: Buffer;

  /**
   * A view of linear memory as a Buffer (no copy). Memory can grow, and growing detaches the old
   * ArrayBuffer, during any call into the guest: take a new view after each one (§2.3).
   */
  bytes(): Buffer {
    const buffer = this.memory.buffer as ArrayBuffer;
    if (buffer !== this.#viewOf) {
      this.#viewOf = buffer;
      this.#view = Buffer.from(buffer);
    }
    return this.#view!;
  }

  /**
   * Copies `memory[ptr..ptr+len)` out of the guest.
   * @throws GuestFault when the range is outside memory (fails the invocation, §2.3)
   */
  read(ptr: number, len: number): Uint8Array {
    return Uint8Array.prototype.slice.call(this.view(ptr, len));
  }

  /**
   * `memory[ptr..ptr+len)` without copying: valid only until the next call into the guest.
   * @throws GuestFault when the range is outside memory (fails the invocation, §2.3)
   */
  view(ptr: number, len: number): Buffer {
    const mem = this.bytes();
    ptr >>>= 0;
    len >>>= 0;
    if (ptr + len > mem.length) throw new GuestFault(`the guest passed bytes ${ptr}..${ptr + len} outside its ${mem.length}-byte memory`);
    return mem.subarray(ptr, ptr + len);
  }

  /**
   * Passes bytes (or a string, as UTF-8) to the guest: `malloc(n)`, copy, and remember to
   * `free` after the export returns (§2.3). Empty input is passed as (0, 0) without calling malloc.
   */
  pass(data: Uint8Array | string): [number, number] {
    const text = typeof data === 'string';
    const size = text ? Buffer.byteLength(data) : data.length;
    if (size === 0) return [0, 0];
    const ptr = (this.callSync('malloc', size) as number) >>> 0;
    if (ptr === 0) throw new CapsuleError('MEMORY', `the guest could not allocate ${size} bytes for its input (malloc returned 0)`);
    const mem = this.bytes();
    if (ptr + size > mem.length) throw new GuestFault(`malloc returned ${ptr}, outside memory`);
    if (text) mem.write(data, ptr, size, 'utf8');
    else mem.set(data, ptr);
    this.#toFree.push(ptr);
    return [ptr, size];
  }

  /** Frees every buffer passed with `pass` since the last call (§2.3). */
  freePassed(): void {
    const list = this.#toFree;
    if (list.length === 0) return;
    try {
      if (!this.has('free')) return;
      for (let i = 0; i < list.length; i++) this.callSync('free', list[i]!);
    } finally {
      list.length = 0; // what a trapped free left is not freed later either
    }
  }

  /** Reads an export's packed i64 result: ptr = R >> 32, len = R & 0xFFFFFFFF (§2.3). */
  unpack(result: unknown): Uint8Array {
    return Uint8Array.prototype.slice.call(this.unpackView(result));
  }

  /** `unpack` without the copy: valid only until the next call into the guest. */
  unpackView(result: unknown): Buffer {
    if (typeof result !== 'bigint') throw new CapsuleError('BAD_RESULT', `the handler returned ${typeof result}, expected an i64 (ptr << 32 | len)`);
    // its two halves through a shared 8-byte buffer: no BigInt made per call (u64[0] takes it modulo 2^64)
    u64[0] = result;
    const ptr = u32[HIGH]!;
    const len = u32[1 - HIGH]!;
    if (len === 0) return Buffer.alloc(0);
    return this.view(ptr, len);
  }

  /**
   * Returns bytes to the guest through (retPtrAddr, retLenAddr) (§2.4): allocateBuffer(n) only
   * when n > 0, write, then store ptr and len as u32 little-endian.
   */
  writeReturn(retPtrAddr: number, retLenAddr: number, data: Uint8Array | string): void {
    const text = typeof data === 'string';
    const size = text ? Buffer.byteLength(data) : data.length;
    let ptr = 0;
    if (size > 0) {
      ptr = (this.callSync('allocateBuffer', size) as number) >>> 0;
      const mem = this.bytes();
      if (ptr === 0 || ptr + size > mem.length) throw new GuestFault(`allocateBuffer(${size}) returned ${ptr}, outside memory`);
      if (text) mem.write(data, ptr, size, 'utf8');
      else mem.set(data, ptr);
    }
    const mem = this.bytes();
    if ((retPtrAddr >>> 0) + 4 > mem.length || (retLenAddr >>> 0) + 4 > mem.length) {
      throw new GuestFault(`return slots ${retPtrAddr}/${retLenAddr} are outside memory`);
    }
    mem.writeUInt32LE(ptr, retPtrAddr >>> 0);
    mem.writeUInt32LE(size, retLenAddr >>> 0);
  }
}

/** The 8 bytes `unpackView` splits an i64 in; `HIGH`: the index of its upper half in `u32` (1 on little-endian machines). */
const u64 = new BigUint64Array(1);
const u32 = new Uint32Array(u64.buffer);
const HIGH = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1 ? 1 : 0;

/** Whether the guest code running now may be suspended by a yielding deadline check (`MeterDeadline.yieldable`). */
export interface YieldGate {
  yieldable?: boolean;
}

/** JSPI entry points (Node 24 has them; @types/node may not declare them). */
export interface JspiApi {
  Suspending: new (fn: (...args: never[]) => unknown) => object;
  promising: (fn: (...args: number[]) => unknown) => (...args: number[]) => Promise<unknown>;
}
