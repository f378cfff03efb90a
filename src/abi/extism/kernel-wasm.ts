/**
 * The block memory of the Extism kernel as a small WebAssembly module (extism-abi.md §4), built
 * here byte by byte (no compiler at run time), so that a plugin's `load_*`, `store_*`,
 * `input_load_*`, `length`, `alloc` and `free` are wasm-to-wasm calls: no JavaScript between, no
 * BigInt made per call. PDKs move bytes 8 at a time through these, so this is what sets the
 * speed of large inputs and outputs.
 *
 * Memory layout: the block table at 0 (entry `i` at `8·i`: base u32, length u32; `CAPACITY`
 * entries), the blocks' bytes from `TABLE_BYTES` on, bump-allocated and 8-aligned; `reset`
 * empties both. Handles are `index · 2³²` (index 0 reserved), address `handle + k` is byte `k`
 * of the block. A freed block keeps its entry with length 0, so every access to it fails. An
 * access outside a live block calls the import `host.oob(address, size)`, which throws.
 *
 * Exports: the functions above with the types of `extism:host/env` (§3), `reset`, `memory`, and
 * the mutable globals `input` (i64, the input's handle), `held` (i64, bytes of live blocks),
 * `limit` (i64, the cap on `held`), `count` (i32, table entries in use).
 */

/** Block table entries (index 0 reserved): at most `CAPACITY - 1` blocks per call. */
export const CAPACITY = 2 ** 20;
/** Bytes of the block table at the start of the kernel's memory. */
export const TABLE_BYTES = CAPACITY * 8;

const I32 = 0x7f;
const I64 = 0x7e;
const EMPTY = 0x40;

function uleb(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return out;
}

function sleb(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const str = (s: string): number[] => vec([...Buffer.from(s)].map((b) => [b]));
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

// instructions
const get = (i: number) => [0x20, ...uleb(i)];
const set = (i: number) => [0x21, ...uleb(i)];
const gget = (i: number) => [0x23, ...uleb(i)];
const gset = (i: number) => [0x24, ...uleb(i)];
const i32c = (n: number) => [0x41, ...sleb(n)];
const i64c = (n: number | bigint) => [0x42, ...sleb(n)];
const call = (f: number) => [0x10, ...uleb(f)];
const mem = (op: number, align: number, offset = 0) => [op, align, ...uleb(offset)];
const ifThen = (type: number, then: number[], otherwise?: number[]) => [0x04, type, ...then, ...(otherwise ? [0x05, ...otherwise] : []), 0x0b];
const RETURN = 0x0f;
const UNREACHABLE = 0x00;
const [I32_EQZ, I32_GE_U, I32_ADD, I32_SUB, I32_MUL, I32_OR, I32_SHR_U] = [0x45, 0x4f, 0x6a, 0x6b, 0x6c, 0x72, 0x76];
const [I64_EQZ, I64_EQ, I64_GT_U, I64_ADD, I64_SUB, I64_AND, I64_SHL, I64_SHR_U] = [0x50, 0x51, 0x56, 0x7c, 0x7d, 0x83, 0x86, 0x88];
const [WRAP, EXTEND_U] = [0xa7, 0xad];
const [I32_LOAD, I64_LOAD, I32_LOAD8_U, I32_STORE, I64_STORE, I32_STORE8] = [0x28, 0x29, 0x2d, 0x36, 0x37, 0x3a];
const MEMORY_SIZE = [0x3f, 0x00];
const MEMORY_GROW = [0x40, 0x00];

// globals
const G_INPUT = 0;
const G_HELD = 1;
const G_LIMIT = 2;
const G_COUNT = 3;
const G_TOP = 4;

// functions (index 0 is the import host.oob)
const F_OOB = 0;
const F_ADDR = 1;
const F_LENGTH = 2;

/** `index` of handle/address `a` (local 0): `i32.wrap(a >> 32)`. */
const indexOf = (a: number[]) => [...a, ...i64c(32), I64_SHR_U, WRAP];

/** `$addr(a i64, n i32) -> i32`: the memory address of `[a, a + n)` inside a live block, else oob. */
const addrBody = (): number[] => {
  // locals: 0 a, 1 n, 2 idx (i32), 3 entry (i32)
  const locals = [[1, I32], [1, I32]];
  const code = [
    ...indexOf(get(0)), ...set(2),
    ...get(2), I32_EQZ, ...get(2), ...gget(G_COUNT), I32_GE_U, I32_OR,
    ...ifThen(EMPTY, [...get(0), ...get(1), ...call(F_OOB), UNREACHABLE]),
    ...get(2), ...i32c(8), I32_MUL, ...set(3),
    // (a & 0xffffffff) + n > length → oob
    ...get(0), ...i64c(0xffffffffn), I64_AND, ...get(1), EXTEND_U, I64_ADD, ...get(3), ...mem(I32_LOAD, 2, 4), EXTEND_U, I64_GT_U,
    ...ifThen(EMPTY, [...get(0), ...get(1), ...call(F_OOB), UNREACHABLE]),
    ...get(3), ...mem(I32_LOAD, 2, 0), ...get(0), WRAP, I32_ADD,
    0x0b,
  ];
  return [...vec(locals), ...code];
};

/** `length(h i64) -> i64`: the length of the block starting at `h`, 0 for anything else. */
const lengthBody = (): number[] => [
  ...vec([[1, I32]]), // local 1: idx
  ...get(0), ...i64c(0xffffffffn), I64_AND, I64_EQZ, I32_EQZ, ...ifThen(EMPTY, [...i64c(0), RETURN]),
  ...indexOf(get(0)), ...set(1),
  ...get(1), I32_EQZ, ...get(1), ...gget(G_COUNT), I32_GE_U, I32_OR, ...ifThen(EMPTY, [...i64c(0), RETURN]),
  ...get(1), ...i32c(8), I32_MUL, ...mem(I32_LOAD, 2, 4), EXTEND_U,
  0x0b,
];

/** `alloc(n i64) -> i64`: a new block of `n` bytes, 0 for `n = 0`, past `limit`, or when full. */
const allocBody = (): number[] => [
  ...vec([[1, I64], [1, I32]]), // local 1: end (i64), 2: entry (i32)
  ...get(0), I64_EQZ, ...ifThen(EMPTY, [...i64c(0), RETURN]),
  ...gget(G_HELD), ...get(0), I64_ADD, ...gget(G_LIMIT), I64_GT_U, ...ifThen(EMPTY, [...i64c(0), RETURN]),
  ...gget(G_COUNT), ...i32c(CAPACITY), I32_GE_U, ...ifThen(EMPTY, [...i64c(0), RETURN]),
  ...gget(G_TOP), EXTEND_U, ...get(0), I64_ADD, ...set(1),
  ...get(1), ...i64c(0xfffffff8n), I64_GT_U, ...ifThen(EMPTY, [...i64c(0), RETURN]),
  // grow to hold [top, end)
  ...get(1), ...MEMORY_SIZE, EXTEND_U, ...i64c(16), I64_SHL, I64_GT_U,
  ...ifThen(EMPTY, [
    ...get(1), ...MEMORY_SIZE, EXTEND_U, ...i64c(16), I64_SHL, I64_SUB, ...i64c(65535), I64_ADD, ...i64c(16), I64_SHR_U, WRAP,
    ...MEMORY_GROW, ...i32c(-1), 0x46 /* i32.eq */, ...ifThen(EMPTY, [...i64c(0), RETURN]),
  ]),
  ...gget(G_COUNT), ...i32c(8), I32_MUL, ...set(2),
  ...get(2), ...gget(G_TOP), ...mem(I32_STORE, 2, 0),
  ...get(2), ...get(0), WRAP, ...mem(I32_STORE, 2, 4),
  ...get(1), ...i64c(7), I64_ADD, ...i64c(-8n), I64_AND, WRAP, ...gset(G_TOP),
  ...gget(G_HELD), ...get(0), I64_ADD, ...gset(G_HELD),
  ...gget(G_COUNT), EXTEND_U, ...i64c(32), I64_SHL,
  ...gget(G_COUNT), ...i32c(1), I32_ADD, ...gset(G_COUNT),
  0x0b,
];

/** `free(h i64)`: 0, unknown handles and freed blocks are ignored; freeing the input clears it. */
const freeBody = (): number[] => [
  ...vec([[1, I64]]), // local 1: length
  ...get(0), ...call(F_LENGTH), ...set(1),
  ...get(1), I64_EQZ, ...ifThen(EMPTY, [RETURN]),
  ...indexOf(get(0)), ...i32c(8), I32_MUL, ...i32c(0), ...mem(I32_STORE, 2, 4),
  ...gget(G_HELD), ...get(1), I64_SUB, ...gset(G_HELD),
  ...get(0), ...gget(G_INPUT), I64_EQ, ...ifThen(EMPTY, [...i64c(0), ...gset(G_INPUT)]),
  0x0b,
];

const noLocals = vec([]);
const access = (load: number[], n: number, offsetInput = false): number[] => [
  ...noLocals, ...get(0), ...(offsetInput ? [...gget(G_INPUT), I64_ADD] : []), ...i32c(n), ...call(F_ADDR), ...load, 0x0b,
];
const store = (op: number, n: number): number[] => [...noLocals, ...get(0), ...i32c(n), ...call(F_ADDR), ...get(1), ...mem(op, n === 8 ? 3 : 0, 0), 0x0b];

/** The kernel module's bytes. */
export function kernelModuleBytes(): Uint8Array {
  const types = [
    [0x60, ...vec([[I64], [I32]]), ...vec([])], // 0 (i64, i32) -> ()
    [0x60, ...vec([[I64], [I32]]), ...vec([[I32]])], // 1 (i64, i32) -> i32
    [0x60, ...vec([[I64]]), ...vec([[I64]])], // 2 (i64) -> i64
    [0x60, ...vec([[I64]]), ...vec([[I32]])], // 3 (i64) -> i32
    [0x60, ...vec([[I64], [I32]]), ...vec([])], // 4 (i64, i32) -> ()
    [0x60, ...vec([[I64], [I64]]), ...vec([])], // 5 (i64, i64) -> ()
    [0x60, ...vec([]), ...vec([[I64]])], // 6 () -> i64
    [0x60, ...vec([[I64]]), ...vec([])], // 7 (i64) -> ()
    [0x60, ...vec([]), ...vec([])], // 8 () -> ()
  ];
  const input = gget(G_INPUT);
  // [name, type, body]; function index = 1 + position (after the import)
  const fns: [string | undefined, number, number[]][] = [
    [undefined, 1, addrBody()],
    ['length', 2, lengthBody()],
    ['load_u8', 3, access(mem(I32_LOAD8_U, 0, 0), 1)],
    ['load_u64', 2, access(mem(I64_LOAD, 3, 0), 8)],
    ['store_u8', 4, store(I32_STORE8, 1)],
    ['store_u64', 5, store(I64_STORE, 8)],
    ['input_load_u8', 3, access(mem(I32_LOAD8_U, 0, 0), 1, true)],
    ['input_load_u64', 2, access(mem(I64_LOAD, 3, 0), 8, true)],
    ['input_length', 6, [...noLocals, ...input, ...call(F_LENGTH), 0x0b]],
    ['input_offset', 6, [...noLocals, ...input, 0x0b]],
    ['alloc', 2, allocBody()],
    ['free', 7, freeBody()],
    ['reset', 8, [...noLocals, ...i32c(1), ...gset(G_COUNT), ...i32c(TABLE_BYTES), ...gset(G_TOP), ...i64c(0), ...gset(G_HELD), ...i64c(0), ...gset(G_INPUT), 0x0b]],
  ];
  const globals = [
    [I64, 1, ...i64c(0), 0x0b], // input
    [I64, 1, ...i64c(0), 0x0b], // held
    [I64, 1, ...i64c(2 ** 31), 0x0b], // limit
    [I32, 1, ...i32c(1), 0x0b], // count
    [I32, 1, ...i32c(TABLE_BYTES), 0x0b], // top
  ];
  const exports: number[][] = [
    [...str('memory'), 0x02, 0],
    ...['input', 'held', 'limit', 'count'].map((n, i) => [...str(n), 0x03, i]),
    ...fns.flatMap(([name], i) => (name ? [[...str(name), 0x00, ...uleb(i + 1)]] : [])),
  ];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec([[...str('host'), ...str('oob'), 0x00, 0]])),
    ...section(3, vec(fns.map(([, t]) => uleb(t)))),
    ...section(5, vec([[0x00, ...uleb(TABLE_BYTES / 65536 + 1)]])),
    ...section(6, vec(globals)),
    ...section(7, vec(exports)),
    ...section(10, vec(fns.map(([, , body]) => [...uleb(body.length), ...body]))),
  ]);
}

/** The exports of a kernel instance. */
export interface KernelExports {
  memory: WebAssembly.Memory;
  input: WebAssembly.Global;
  held: WebAssembly.Global;
  limit: WebAssembly.Global;
  count: WebAssembly.Global;
  length(h: bigint): bigint;
  alloc(n: bigint): bigint;
  free(h: bigint): void;
  reset(): void;
  [name: string]: unknown;
}

let compiled: WebAssembly.Module | undefined;

/**
 * A new kernel instance (the module is compiled once per thread).
 * @param oob called for an access outside a live block; must throw
 */
export function instantiateKernel(oob: (address: bigint, size: number) => never): KernelExports {
  compiled ??= new WebAssembly.Module(kernelModuleBytes() as Uint8Array<ArrayBuffer>);
  return new WebAssembly.Instance(compiled, { host: { oob } }).exports as unknown as KernelExports;
}
