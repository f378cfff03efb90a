/**
 * Reads the parts of a WebAssembly binary that the host needs before instantiating it: the
 * layer/version header, function signatures of imports and exports, and the memory declaration.
 * `WebAssembly.Module.imports()/exports()` give names and kinds only, so the type, import,
 * function, memory and export sections are parsed here (spec README §1).
 *
 * It also rewrites a module's own memory into an import (`rewriteMemoryAsImport`) so that the
 * engine can hand each fresh instance a pooled, capped `WebAssembly.Memory`, and can add exports
 * (`addExports`, used by snapshot.ts). `readGlobals` and `readInstruction`
 * decode the global and code sections for snapshot.ts's load-time checks and meter.ts's rewrite;
 * `ByteWriter` writes bytes and LEB128 integers for the rewrites.
 */
import { CapsuleError } from '../base/errors.ts';
import { concatBytes } from '../base/bytes.ts';

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref' | 'ref';

/** A function signature. */
export interface FuncType {
  params: ValType[];
  results: ValType[];
}

/** Linear-memory limits, in 64 KiB pages. */
export interface MemoryLimits {
  min: number;
  max?: number;
  shared: boolean;
  memory64: boolean;
}

export interface ImportEntry {
  module: string;
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  /** Set for functions when the type section could be read. */
  type?: FuncType;
  memory?: MemoryLimits;
}

export interface ExportEntry {
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  index: number;
  /** Set for functions when the type section could be read. */
  type?: FuncType;
}

/** What `parseModule` learns from a binary. */
export interface ParsedModule {
  /** `core` for a core module; `component` for a component-model binary (layer 1). */
  layer: 'core' | 'component';
  version: number;
  imports: ImportEntry[];
  exports: ExportEntry[];
  /** Memories defined by the module itself (not imported). */
  memories: MemoryLimits[];
  /** Byte ranges of each top-level section, for rewriting. */
  sections: { id: number; start: number; contentStart: number; end: number }[];
}

const VALTYPES: Record<number, ValType> = {
  0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref',
};
const EXTERN_KINDS = ['function', 'table', 'memory', 'global', 'tag'] as const;

/** Decodes names (imports, exports, custom sections): one decoder for every read (a module has hundreds). */
const NAME_DECODER = new TextDecoder('utf-8', { fatal: false });

/** A cursor over a byte range of a module, with the LEB128 and type readers of the binary format. */
export class Reader {
  pos: number;
  readonly bytes: Uint8Array;
  readonly end: number;
  constructor(bytes: Uint8Array, pos = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }
  fail(what: string): never {
    throw new CapsuleError('BAD_MODULE', `malformed WebAssembly binary: ${what} at byte ${this.pos}`);
  }
  u8(): number {
    if (this.pos >= this.end) this.fail('unexpected end');
    return this.bytes[this.pos++]!;
  }
  /** Unsigned LEB128 of at most `bits` bits (32 or 64; a 64-bit value may lose precision). */
  uleb(bits: 32 | 64 = 32): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) break;
      shift += 7;
      if (shift >= bits + 7) this.fail('LEB128 integer too long');
    }
    return result;
  }
  u32(): number {
    return this.uleb(32);
  }
  /** Reads past one u32 (LEB128); returns the position after it. */
  skipU32(): number {
    this.u32();
    return this.pos;
  }
  name(): string {
    const len = this.u32();
    if (this.pos + len > this.end) this.fail('name past the end of its section');
    const s = NAME_DECODER.decode(this.bytes.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }
  valtype(): ValType {
    const b = this.u8();
    const t = VALTYPES[b];
    if (t) return t;
    // GC proposal reference types: (ref null? ht) — skip the heap type.
    if (b === 0x63 || b === 0x64) {
      this.s33();
      return 'ref';
    }
    if (b >= 0x69 && b <= 0x74) return 'ref';
    return this.fail(`unknown value type 0x${b.toString(16)}`);
  }
  /** A vector: its u32 length, then `read` once per element. */
  vec<T>(read: (i: number) => T): T[] {
    const n = this.u32();
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(read(i));
    return out;
  }
  /** An external kind byte (function, table, memory, global, tag) of an import or export. */
  externKind(of: 'import' | 'export'): ExportEntry['kind'] {
    const k = this.u8();
    return EXTERN_KINDS[k] ?? this.fail(`unknown ${of} kind ${k}`);
  }
  s33(): void {
    for (;;) if ((this.u8() & 0x80) === 0) return;
  }
  limits(): MemoryLimits {
    const flags = this.u8();
    if (flags > 0x07) this.fail(`unknown limits flags 0x${flags.toString(16)}`);
    const memory64 = (flags & 0x04) !== 0;
    const min = this.uleb(memory64 ? 64 : 32);
    const max = flags & 0x01 ? this.uleb(memory64 ? 64 : 32) : undefined;
    return { min, max, shared: (flags & 0x02) !== 0, memory64 };
  }
}

/**
 * Parses the sections the host needs.
 * @throws CapsuleError BAD_MODULE when the bytes are not a WebAssembly binary or a section is
 *   malformed (the message names the byte offset).
 */
export function parseModule(bytes: Uint8Array): ParsedModule {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new CapsuleError('BAD_MODULE', 'not a WebAssembly binary (it does not start with the bytes 00 61 73 6D, "\\0asm")');
  }
  const version = bytes[4]! | (bytes[5]! << 8);
  const layer = bytes[6]! | (bytes[7]! << 8);
  const parsed: ParsedModule = { layer: 'core', version, imports: [], exports: [], memories: [], sections: [] };
  if (layer === 1) {
    parsed.layer = 'component';
    return parsed;
  }
  if (layer !== 0 || version !== 1) {
    throw new CapsuleError('BAD_MODULE', `unknown core module version ${version} (layer ${layer}); expected version 1`);
  }
  const state: ParseState = { parsed, types: [], typesReadable: true, funcTypeIndices: [], rawExports: [] };
  const r = new Reader(bytes, 8);
  while (r.pos < bytes.length) {
    const start = r.pos;
    const id = r.u8();
    const size = r.u32();
    const contentStart = r.pos;
    const end = contentStart + size;
    if (end > bytes.length) {
      throw new CapsuleError('BAD_MODULE', `truncated WebAssembly binary: section ${id} at byte ${start} claims ${size} bytes but only ${bytes.length - contentStart} remain`);
    }
    parsed.sections.push({ id, start, contentStart, end });
    readSection(id, new Reader(bytes, contentStart, end), state);
    r.pos = end;
  }
  for (const e of state.rawExports) {
    const entry: ExportEntry = { ...e };
    if (e.kind === 'function' && state.typesReadable) entry.type = state.types[state.funcTypeIndices[e.index]!];
    parsed.exports.push(entry);
  }
  return parsed;
}

/** What `parseModule` gathers while it reads the sections. */
interface ParseState {
  parsed: ParsedModule;
  types: (FuncType | undefined)[];
  /** False when the type section uses GC rec/sub types: signatures then stay unknown. */
  typesReadable: boolean;
  /** The type index of every function, imported ones first. */
  funcTypeIndices: number[];
  rawExports: { name: string; kind: ExportEntry['kind']; index: number }[];
}

/** Reads the one section `parseModule` needs from `s` (type, import, function, memory, export). */
function readSection(id: number, s: Reader, state: ParseState): void {
  switch (id) {
    case 1: // type
      try {
        s.vec(() => {
          if (s.u8() !== 0x60) throw new Error('non-function type');
          const params = s.vec(() => s.valtype());
          state.types.push({ params, results: s.vec(() => s.valtype()) });
        });
      } catch {
        state.typesReadable = false; // GC rec/sub types: signatures stay unknown
      }
      break;
    case 2: // import
      s.vec(() => state.parsed.imports.push(readImport(s, state)));
      break;
    case 3: // function
      s.vec(() => state.funcTypeIndices.push(s.u32()));
      break;
    case 5: // memory
      s.vec(() => state.parsed.memories.push(s.limits()));
      break;
    case 7: // export
      s.vec(() => {
        const name = s.name();
        state.rawExports.push({ name, kind: s.externKind('export'), index: s.u32() });
      });
      break;
    default:
      break;
  }
}

/** One import entry; a function's type index joins `state.funcTypeIndices`. */
function readImport(s: Reader, state: ParseState): ImportEntry {
  const module = s.name();
  const name = s.name();
  const kind = s.externKind('import');
  const entry: ImportEntry = { module, name, kind };
  if (kind === 'function') {
    const ti = s.u32();
    state.funcTypeIndices.push(ti);
    if (state.typesReadable) entry.type = state.types[ti];
  } else if (kind === 'table') {
    s.valtype();
    s.limits();
  } else if (kind === 'memory') {
    entry.memory = s.limits();
  } else if (kind === 'global') {
    s.valtype();
    s.u8();
  } else {
    s.u8();
    s.u32();
  }
  return entry;
}

/**
 * A growable byte buffer for writing a module: bytes, byte ranges of another buffer and unsigned
 * LEB128 integers (used by meter.ts to rewrite code without building arrays of numbers).
 */
export class ByteWriter {
  #buf: Uint8Array<ArrayBuffer>;
  length = 0;
  constructor(capacity = 1024) {
    this.#buf = new Uint8Array(Math.max(16, capacity));
  }
  #room(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.length + n));
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
  }
  byte(b: number): void {
    this.#room(1);
    this.#buf[this.length++] = b;
  }
  /** Appends `src[start, end)`. */
  range(src: Uint8Array, start = 0, end = src.length): void {
    this.#room(end - start);
    this.#buf.set(src.subarray(start, end), this.length);
    this.length += end - start;
  }
  /** Unsigned LEB128 of a non-negative integer (up to 2^53). */
  uleb(n: number): void {
    this.#room(8);
    do {
      let b = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) b |= 0x80;
      this.#buf[this.length++] = b;
    } while (n > 0);
  }
  /** Signed LEB128 of an integer (up to ±2^53). */
  sleb(n: number): void {
    this.#room(8);
    for (;;) {
      const b = ((n % 128) + 128) % 128;
      n = Math.floor(n / 128);
      if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
        this.#buf[this.length++] = b;
        return;
      }
      this.#buf[this.length++] = b | 0x80;
    }
  }
  /** Signed LEB128 of a 64-bit integer (an `i64.const`'s immediate; taken modulo 2^64, as signed). */
  sleb64(n: bigint): void {
    let v = BigInt.asIntN(64, n);
    this.#room(10);
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) {
        this.#buf[this.length++] = b;
        return;
      }
      this.#buf[this.length++] = b | 0x80;
    }
  }
  /** A name: its UTF-8 length (LEB128), then its bytes. */
  name(s: string): void {
    const b = new TextEncoder().encode(s);
    this.uleb(b.length);
    this.range(b);
  }
  /** The bytes written so far (a view: copy it before writing more if it must stay). */
  view(): Uint8Array<ArrayBuffer> {
    return this.#buf.subarray(0, this.length);
  }
  /** Forgets what was written, keeping the buffer. */
  clear(): void {
    this.length = 0;
  }
}

function leb(n: number): number[] {
  const w = new ByteWriter(16);
  w.uleb(n);
  return Array.from(w.view());
}

function encodeName(s: string): number[] {
  const w = new ByteWriter(s.length * 3 + 8);
  w.name(s);
  return Array.from(w.view());
}

/** A section: its id, its size (LEB128) and `content`. */
function encodeSection(id: number, content: readonly number[] | Uint8Array): Uint8Array {
  return Uint8Array.from([id, ...leb(content.length), ...content]);
}

/**
 * The vector section `id` (imports 2, exports 7) of a module with `count` more entries, already
 * encoded in `entries`, after its own; a new section holding only them when the module has none.
 */
function withEntries(bytes: Uint8Array, parsed: ParsedModule, id: number, count: number, entries: readonly number[]): Uint8Array {
  const own = parsed.sections.find((s) => s.id === id);
  if (!own) return encodeSection(id, [...leb(count), ...entries]);
  const r = new Reader(bytes, own.contentStart, own.end);
  const n = r.u32();
  return encodeSection(id, [...leb(n + count), ...bytes.subarray(r.pos, own.end), ...entries]);
}

/** Import module and name under which a rewritten module receives its memory. */
export const MEMORY_IMPORT = { module: 'capsule', name: 'memory' } as const;

/**
 * Turns the module's single own memory into an import `capsule.memory` (minimum pages kept, no
 * maximum, so any host memory at least that large fits). Returns undefined when the module
 * cannot be rewritten (it imports its memory already, has several, or a shared/64-bit one).
 */
export function rewriteMemoryAsImport(bytes: Uint8Array, parsed: ParsedModule): Uint8Array | undefined {
  if (parsed.layer !== 'core' || parsed.memories.length !== 1) return undefined;
  if (parsed.imports.some((i) => i.kind === 'memory')) return undefined;
  const mem = parsed.memories[0]!;
  if (mem.shared || mem.memory64) return undefined;
  const memImport = [...encodeName(MEMORY_IMPORT.module), ...encodeName(MEMORY_IMPORT.name), 0x02, 0x00, ...leb(mem.min)];
  const chunks: Uint8Array[] = [bytes.subarray(0, 8)];
  let inserted = false;
  const insertImports = () => {
    if (inserted) return;
    inserted = true;
    chunks.push(withEntries(bytes, parsed, 2, 1, memImport));
  };
  for (const s of parsed.sections) {
    // Known sections are ordered; the import section (2) comes after custom(0)/type(1) ones.
    if (s.id === 2) {
      insertImports();
      continue;
    }
    if (!inserted && s.id !== 0 && s.id !== 1) insertImports();
    if (s.id === 5) continue; // the memory section had exactly one entry: drop it
    chunks.push(bytes.subarray(s.start, s.end));
  }
  insertImports();
  return concatBytes(chunks);
}

/** A global the module defines itself (imported globals are not listed). */
export interface GlobalEntry {
  type: ValType;
  mutable: boolean;
}

/** Raised by `readInstruction` for an opcode it does not know (GC proposal, future ones). */
export class UnknownInstruction extends Error {
  readonly opcode: number;
  constructor(opcode: number, at: number) {
    super(`unknown instruction 0x${opcode.toString(16)} at byte ${at}`);
    this.name = 'UnknownInstruction';
    this.opcode = opcode;
  }
}

/** Skips a memory immediate (alignment with the multi-memory flag, optional memory index, offset). */
function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32();
  r.uleb(64);
}

/** Skips a block type: empty (0x40), a value type, or a type index (s33). */
function skipBlockType(r: Reader): void {
  const b = r.u8();
  if (b === 0x63 || b === 0x64) return r.s33();
  r.pos--;
  r.s33();
}

/**
 * Reads one instruction (opcode and immediates) at `r.pos` and leaves `r.pos` after it.
 * @returns the opcode; prefixed ones as `prefix * 0x1000 + sub-opcode` (e.g. `0xfc009`,
 *   data.drop)
 * @throws UnknownInstruction for an opcode outside MVP, sign-extension, saturating truncation,
 *   bulk memory, reference types, multi-value, tail calls, exceptions (legacy and exnref),
 *   typed function references, SIMD (with relaxed), threads and multi-memory
 * @throws CapsuleError BAD_MODULE when the code runs past the end of its range
 */
export function readInstruction(r: Reader): number {
  const at = r.pos;
  const op = r.u8();
  if ((op >= 0x45 && op <= 0xc4) || op === 0x00 || op === 0x01 || op === 0x05 || op === 0x0a || op === 0x0b || op === 0x0f
    || op === 0x19 || op === 0x1a || op === 0x1b || op === 0xd1 || op === 0xd3 || op === 0xd4) return op;
  if (op >= 0x28 && op <= 0x3e) { // loads and stores
    skipMemarg(r);
    return op;
  }
  switch (op) {
    case 0x02: case 0x03: case 0x04: case 0x06: // block, loop, if, try
      skipBlockType(r);
      return op;
    case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: case 0x10: case 0x12: case 0x14: case 0x15: case 0x18:
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26:
    case 0x3f: case 0x40: case 0xd2: case 0xd5: case 0xd6:
      r.u32();
      return op;
    case 0x11: case 0x13: // call_indirect, return_call_indirect: type, table
      r.u32();
      r.u32();
      return op;
    case 0x0e: { // br_table
      const n = r.u32();
      for (let i = 0; i <= n; i++) r.u32();
      return op;
    }
    case 0x1c: { // select t*
      const n = r.u32();
      for (let i = 0; i < n; i++) r.valtype();
      return op;
    }
    case 0x1f: { // try_table
      skipBlockType(r);
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const kind = r.u8();
        if (kind === 0 || kind === 1) r.u32();
        r.u32();
      }
      return op;
    }
    case 0x41: case 0x42: // i32.const, i64.const (signed LEB128)
      r.s33();
      return op;
    case 0x43:
      r.pos += 4;
      if (r.pos > r.end) r.fail('unexpected end');
      return op;
    case 0x44:
      r.pos += 8;
      if (r.pos > r.end) r.fail('unexpected end');
      return op;
    case 0xd0: // ref.null heaptype
      r.s33();
      return op;
    case 0xfc: case 0xfd: case 0xfe: {
      const code = readPrefixed(op, r);
      if (code !== undefined) return code;
      break;
    }
    default:
      break;
  }
  throw new UnknownInstruction(op, at);
}

/**
 * The immediates of a prefixed instruction (0xFC misc, 0xFD SIMD, 0xFE threads).
 * @returns `prefix * 0x1000 + sub-opcode`, or undefined for a sub-opcode outside those proposals
 */
function readPrefixed(op: number, r: Reader): number | undefined {
  switch (op) {
    case 0xfc: {
      const sub = r.u32();
      if (sub <= 7) return 0xfc000 + sub;
      if (sub > 17) return undefined;
      r.u32();
      if (sub === 8 || sub === 10 || sub === 12 || sub === 14) r.u32();
      return 0xfc000 + sub;
    }
    case 0xfd: {
      const sub = r.u32();
      if (sub <= 11 || sub === 92 || sub === 93) skipMemarg(r);
      else if (sub === 12 || sub === 13) {
        r.pos += 16;
        if (r.pos > r.end) r.fail('unexpected end');
      } else if (sub >= 21 && sub <= 34) r.u8();
      else if (sub >= 84 && sub <= 91) {
        skipMemarg(r);
        r.u8();
      } else if (sub > 0x113) return undefined;
      return 0xfd000 + sub;
    }
    case 0xfe: {
      const sub = r.u32();
      if (sub === 0x03) r.u8();
      else if (sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e)) skipMemarg(r);
      else return undefined;
      return 0xfe000 + sub;
    }
    default:
      return undefined;
  }
}

/**
 * The globals the module defines (global section), in index order after the imported ones.
 * @throws UnknownInstruction when an initialiser uses an unknown instruction
 * @throws CapsuleError BAD_MODULE when the section is malformed
 */
export function readGlobals(bytes: Uint8Array, parsed: ParsedModule): GlobalEntry[] {
  const s = parsed.sections.find((x) => x.id === 6);
  if (!s) return [];
  const r = new Reader(bytes, s.contentStart, s.end);
  const out: GlobalEntry[] = [];
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    const type = r.valtype();
    const mutable = r.u8() === 1;
    while (readInstruction(r) !== 0x0b) { /* constant expression, up to its `end` */ }
    out.push({ type, mutable });
  }
  return out;
}

/**
 * Calls `visit` with the opcode (as `readInstruction` returns it) of every instruction of every
 * function body (code section).
 * @throws UnknownInstruction, CapsuleError BAD_MODULE as `readInstruction`
 */
export function forEachInstruction(bytes: Uint8Array, parsed: ParsedModule, visit: (opcode: number) => void): void {
  const s = parsed.sections.find((x) => x.id === 10);
  if (!s) return;
  const r = new Reader(bytes, s.contentStart, s.end);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    if (end > s.end) r.fail('function body past the end of the code section');
    const body = new Reader(bytes, r.pos, end);
    const groups = body.u32();
    for (let g = 0; g < groups; g++) {
      body.u32();
      body.valtype();
    }
    while (body.pos < end) visit(readInstruction(body));
    r.pos = end;
  }
}

/** Order of the known sections (custom sections, id 0, may go anywhere). */
export const SECTION_ORDER: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

/**
 * Adds exports (appended to the export section, which is created when missing). Indices are not
 * checked: the caller passes indices of items the module defines.
 */
export function addExports(bytes: Uint8Array, parsed: ParsedModule, extra: readonly { name: string; kind: 'function' | 'table' | 'memory' | 'global'; index: number }[]): Uint8Array {
  const encoded = extra.flatMap((e) => [...encodeName(e.name), EXTERN_KINDS.indexOf(e.kind), ...leb(e.index)]);
  const chunks: Uint8Array[] = [bytes.subarray(0, 8)];
  let done = false;
  const exportSection = parsed.sections.find((s) => s.id === 7);
  const emit = () => {
    if (done) return;
    done = true;
    chunks.push(withEntries(bytes, parsed, 7, extra.length, encoded));
  };
  for (const s of parsed.sections) {
    if (s.id === 7) {
      emit();
      continue;
    }
    if (!exportSection && extra.length > 0 && s.id !== 0 && (SECTION_ORDER[s.id] ?? 99) > SECTION_ORDER[7]!) emit();
    chunks.push(bytes.subarray(s.start, s.end));
  }
  if (exportSection || extra.length > 0) emit();
  return concatBytes(chunks);
}
