/**
 * The Extism kernel of one plugin in one worker thread (extism-abi.md §3, §4, §6): the block
 * memory that lives outside the guest's linear memory, the call's input, output and error, and
 * the plugin's variables.
 *
 * Blocks follow the JS SDK design of §4 with a 32-bit offset: block `i` (index 0 reserved, so no
 * handle is 0) has handle `i · 2³²`, and address `handle + k` is its byte `k`. Addresses stay
 * below 2⁵³, so they are exact as JavaScript numbers. Every access is checked against the live
 * block it falls in: anything else fails the call (`ExtismFailure`), as the JS SDK does.
 */

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
  #blocks: (Uint8Array | undefined)[] = [undefined];
  /** A DataView per live block (same index), for the 8-byte loads and stores PDKs make in loops. */
  #views: (DataView | undefined)[] = [undefined];
  /** Bytes held by live blocks. */
  #held = 0;
  /** Cap on `#held` (the function's memory cap): `alloc` past it returns 0. */
  maxBlockBytes = 256 * 1024 * 1024;
  input = 0;
  output = { handle: 0, length: 0 };
  error = 0;
  readonly vars = new Map<string, Uint8Array>();
  #varBytes = 0;
  maxVarBytes = DEFAULT_MAX_VAR_BYTES;
  httpStatus = 0;
  httpHeaders?: Record<string, string>;

  /** Bytes held by live blocks (`memory_bytes`, informative). */
  get heldBytes(): number {
    return this.#held;
  }

  /** The index of the next block `alloc` makes (its handle is `index · 2³²`). */
  get nextIndex(): number {
    return this.#blocks.length;
  }

  /** `reset` (§3): frees every block and clears input, output and error. */
  reset(): void {
    this.#blocks = [undefined];
    this.#views = [undefined];
    this.#held = 0;
    this.input = 0;
    this.output = { handle: 0, length: 0 };
    this.error = 0;
  }

  /** A new block of `n` bytes (zeroed), or 0 for `n = 0` or past the cap. */
  alloc(n: number): number {
    if (n <= 0 || this.#held + n > this.maxBlockBytes || this.#blocks.length >= 2 ** 20) return 0;
    this.#held += n;
    const bytes = new Uint8Array(n);
    this.#blocks.push(bytes);
    this.#views.push(new DataView(bytes.buffer));
    return (this.#blocks.length - 1) * SLOT;
  }

  /** A new block holding a copy of `bytes` (one bulk copy), or 0 when empty (§2). */
  allocBytes(bytes: Uint8Array | string): number {
    const data = typeof bytes === 'string' ? encoder.encode(bytes) : bytes;
    const h = this.alloc(data.length);
    if (h !== 0) this.#blocks[h / SLOT]!.set(data);
    else if (data.length > 0) throw new ExtismFailure(`cannot allocate ${data.length} bytes of block memory (memory cap reached)`);
    return h;
  }

  /** `free`: unknown handles and 0 are ignored (double free included). */
  free(h: number): void {
    const i = h / SLOT;
    const b = Number.isInteger(i) ? this.#blocks[i] : undefined;
    if (!b) return;
    this.#held -= b.length;
    this.#blocks[i] = undefined;
    this.#views[i] = undefined;
    if (h === this.input) this.input = 0;
  }

  /** Used length of the block starting at `h`; 0 for 0 and unknown handles. */
  length(h: number): number {
    const i = h / SLOT;
    return Number.isInteger(i) ? this.#blocks[i]?.length ?? 0 : 0;
  }

  /**
   * The block bytes `[a, a + n)` (a view, no copy).
   * @throws ExtismFailure when the range is not inside one live block (§4)
   */
  view(a: number, n: number): Uint8Array {
    const i = Math.floor(a / SLOT);
    const off = a - i * SLOT;
    const b = this.#blocks[i];
    if (!b || off + n > b.length) throw new ExtismFailure(`the plugin accessed block memory at ${a} (+${n} bytes) outside a live block`);
    return b.subarray(off, off + n);
  }

  /**
   * The DataView of the block holding `[a, a + n)` and the offset of `a` in it (the hot path of
   * `load_*`/`store_*`: no allocation per call).
   * @throws ExtismFailure when the range is not inside one live block (§4)
   */
  #at(a: number, n: number): DataView {
    const i = Math.floor(a / SLOT);
    const d = this.#views[i];
    this.#off = a - i * SLOT;
    if (d === undefined || this.#off + n > d.byteLength) throw new ExtismFailure(`the plugin accessed block memory at ${a} (+${n} bytes) outside a live block`);
    return d;
  }

  #off = 0;

  /** `load_u8`. @throws ExtismFailure outside a live block */
  loadU8(a: number): number {
    const d = this.#at(a, 1);
    return d.getUint8(this.#off);
  }

  /** `load_u64` (little-endian). @throws ExtismFailure outside a live block */
  loadU64(a: number): bigint {
    const d = this.#at(a, 8);
    return d.getBigUint64(this.#off, true);
  }

  /** `store_u8` (the low byte of `v`). @throws ExtismFailure outside a live block */
  storeU8(a: number, v: number): void {
    const d = this.#at(a, 1);
    d.setUint8(this.#off, v & 0xff);
  }

  /** `store_u64` (little-endian). @throws ExtismFailure outside a live block */
  storeU64(a: number, v: bigint): void {
    const d = this.#at(a, 8);
    d.setBigUint64(this.#off, v, true);
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

  /** The error message set by `error_set`, or undefined when none (or empty). */
  errorText(): string | undefined {
    if (this.error === 0) return undefined;
    const b = this.#blocks[this.error / SLOT];
    return b && b.length > 0 ? decoder.decode(b) : undefined;
  }
}
