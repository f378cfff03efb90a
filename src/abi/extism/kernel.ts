/**
 * The Extism kernel of one plugin in one worker thread (extism-abi.md §3, §4, §6): the block
 * memory that lives outside the guest's linear memory, the call's input, output and error, and
 * the plugin's variables.
 *
 * The block memory is a small wasm module of its own (kernel-wasm.ts) whose functions the plugin
 * imports directly: handle = `index · 2³²`, address `handle + k` = byte `k` of the block, every
 * access checked against the live block it falls in (anything else fails the call with
 * `ExtismFailure`, as the JS SDK does). Addresses stay below 2⁵³, exact as JavaScript numbers.
 */
import { CAPACITY, instantiateKernel, type KernelExports } from './kernel-wasm.ts';

/** A failure of the running call that is the plugin's (bad handle, vars full, refused HTTP): exit 1, not a trap. */
export class ExtismFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExtismFailure';
  }
}

const SLOT = 2 ** 32;
/** Default cap on the bytes of every variable key and value of a plugin (§6). */
export const DEFAULT_MAX_VAR_BYTES = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Block memory, input/output/error and vars of one plugin. */
export class Kernel {
  /** The wasm block memory; its functions are the plugin's imports of the same names. */
  readonly wasm: KernelExports;
  /** The block `output_set` named (one object, updated in place: no allocation per call). */
  readonly output = { handle: 0, length: 0 };
  error = 0;
  readonly vars = new Map<string, Uint8Array>();
  #varBytes = 0;
  /** The block table and the bytes of the kernel memory's current buffer (new ones once it grew and detached them). */
  #table?: Uint32Array;
  #bytes = new Uint8Array(0);
  #maxBlockBytes = -1;
  #inputHandle = 0;
  #inputBig = 0n;
  maxVarBytes = DEFAULT_MAX_VAR_BYTES;
  httpStatus = 0;
  httpHeaders?: Record<string, string>;

  constructor() {
    this.wasm = instantiateKernel((a, n) => {
      throw new ExtismFailure(`the plugin accessed block memory at ${a} (+${n} bytes) outside a live block`);
    });
  }

  /** Cap on the bytes of live blocks (the function's memory cap): `alloc` past it returns 0. */
  set maxBlockBytes(n: number) {
    if (n === this.#maxBlockBytes) return; // set before every call, nearly always to the same cap
    this.#maxBlockBytes = n;
    this.wasm.limit.value = BigInt(Math.max(0, Math.floor(n)));
  }

  /** The input's handle (0: none). */
  get input(): number {
    return Number(this.wasm.input.value as bigint);
  }

  set input(h: number) {
    // nearly always the first block of the call: its BigInt is kept
    if (h !== this.#inputHandle) this.#inputBig = BigInt((this.#inputHandle = h));
    this.wasm.input.value = this.#inputBig;
  }

  /** Bytes held by live blocks (`memory_bytes`, informative). */
  get heldBytes(): number {
    return Number(this.wasm.held.value as bigint);
  }

  /** The index of the next block `alloc` makes (its handle is `index · 2³²`). */
  get nextIndex(): number {
    return this.wasm.count.value as number;
  }

  /** `reset` (§3): frees every block and clears input, output and error. */
  reset(): void {
    this.wasm.reset();
    this.output.handle = 0;
    this.output.length = 0;
    this.error = 0;
  }

  /** A new block of `n` bytes, or 0 for `n = 0`, past the cap or past 1 048 575 blocks in one call. */
  alloc(n: number): number {
    return n <= 0 ? 0 : Number(this.wasm.alloc(BigInt(n)));
  }

  /** A new block holding a copy of `bytes` (one bulk copy), or 0 when empty (§2). */
  allocBytes(bytes: Uint8Array | string): number {
    const data = typeof bytes === 'string' ? encoder.encode(bytes) : bytes;
    const h = this.alloc(data.length);
    if (h !== 0) {
      const table = this.#currentTable(); // first: it renews #bytes after the memory grew
      this.#bytes.set(data, table[(h / SLOT) * 2]!); // a block just made: no range to check
    } else if (data.length > 0) throw new ExtismFailure(`cannot allocate ${data.length} bytes of block memory (memory cap reached)`);
    return h;
  }

  /** `free`: unknown handles and 0 are ignored (double free included). */
  free(h: number): void {
    if (h > 0) this.wasm.free(BigInt(h));
  }

  /** Used length of the block starting at `h`; 0 for 0 and unknown handles. */
  length(h: number): number {
    return h > 0 ? Number(this.wasm.length(BigInt(h))) : 0;
  }

  /**
   * The block bytes `[a, a + n)` (a view of the kernel's memory, valid until the next `alloc`).
   * @throws ExtismFailure when the range is not inside one live block (§4)
   */
  view(a: number, n: number): Uint8Array {
    const at = this.#offset(a, n);
    return new Uint8Array(this.#bytes.buffer, at, n);
  }

  /**
   * Where the block bytes `[a, a + n)` start in the kernel's memory (`#bytes` is then current).
   * @throws ExtismFailure when the range is not inside one live block (§4)
   */
  #offset(a: number, n: number): number {
    const i = Math.floor(a / SLOT);
    const off = a - i * SLOT;
    const table = this.#currentTable();
    const length = i > 0 && i < this.nextIndex ? table[i * 2 + 1]! : 0;
    if (off + n > length) throw new ExtismFailure(`the plugin accessed block memory at ${a} (+${n} bytes) outside a live block`);
    return table[i * 2]! + off;
  }

  /** The block table over the kernel memory's buffer, `#bytes` made current with it. */
  #currentTable(): Uint32Array {
    let table = this.#table;
    // growing the memory detaches its old buffer (and empties the views over it): only then is
    // `memory.buffer` read again
    if (table === undefined || table.length === 0) {
      const buffer = this.wasm.memory.buffer;
      this.#table = table = new Uint32Array(buffer, 0, CAPACITY * 2);
      this.#bytes = new Uint8Array(buffer);
    }
    return table;
  }

  /** The whole block `h` (a view), or an empty array for handle 0. @throws ExtismFailure for an unknown handle */
  block(h: number): Uint8Array {
    if (h === 0) return new Uint8Array(0);
    return this.view(h, this.length(h) || Infinity);
  }

  /** Reads block `h` as UTF-8 and frees it (the host consumes it, §3). */
  take(h: number): string {
    const text = decoder.decode(this.block(h));
    this.free(h);
    return text;
  }

  /**
   * `var_set` (§6): sets (or with `value` undefined deletes) a variable within the cap.
   * @throws ExtismFailure when vars are disabled or the store would exceed the cap
   */
  setVar(key: string, value: Uint8Array | undefined): void {
    const old = this.vars.get(key);
    const keyBytes = Buffer.byteLength(key);
    const before = old ? keyBytes + old.length : 0;
    if (value === undefined) {
      this.vars.delete(key);
      this.#varBytes -= before;
      return;
    }
    if (this.maxVarBytes === 0) throw new ExtismFailure('Vars are disabled by this host');
    const after = this.#varBytes - before + keyBytes + value.length;
    if (after > this.maxVarBytes) throw new ExtismFailure('Variable store is full');
    this.vars.set(key, value.slice());
    this.#varBytes = after;
  }

  /** The call's output bytes (a view of the output block, read when the call returns, §3). */
  outputBytes(): Uint8Array {
    const { handle, length } = this.output;
    if (handle === 0 || length === 0) return new Uint8Array(0);
    return this.view(handle, length);
  }

  /** A copy of the call's output bytes (one allocation: what the host keeps of them). */
  outputCopy(): Uint8Array {
    const { handle, length } = this.output;
    if (handle === 0 || length === 0) return new Uint8Array(0);
    const at = this.#offset(handle, length);
    return this.#bytes.slice(at, at + length);
  }

  /** The error message set by `error_set`, or undefined when none (or empty). */
  errorText(): string | undefined {
    const n = this.length(this.error);
    return n > 0 ? decoder.decode(this.view(this.error, n)) : undefined;
  }
}
