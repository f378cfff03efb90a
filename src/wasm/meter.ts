/**
 * Deadlines without a thread (issue 18; docs/performance.md "Deadlines without a thread").
 *
 * Capsule stops a guest that runs past its deadline by terminating the worker thread it runs
 * on. `meterModule` instruments a module instead, the way Wasmtime's fuel and epoch
 * interruption do, so that the guest itself checks its deadline and a call can run on the
 * thread that serves it:
 *
 * - an imported function `capsule_meter.check: [] -> [i32]` is appended after the module's
 *   function imports (every defined function index moves up by one: calls, `ref.func`, element
 *   segments, exports, the start function and the "name" section are rewritten);
 * - a mutable i32 global (the budget) is appended after the module's globals, and an i32 local
 *   after the locals of every function it instruments (no index moves);
 * - a function with loops copies the budget into its local at entry, and every loop header
 *   decrements the local (a register in a tight loop, not a memory access);
 * - a function that can run unbounded without a loop (one that tail-calls, or that can take
 *   part in recursion: a cycle of the call graph, indirect calls going to any function put in a
 *   table, taken by `ref.func` or exported) decrements the global budget itself at entry; when
 *   calls through tables close cycles, the indirect calls on them are checked instead of the
 *   entries they can reach, and of a cycle of direct calls only enough functions to cut every
 *   cycle are checked (`cycleChecks`, `cutCycles`);
 * - when a count reaches 0, `check()` is called and its result becomes the budget. The host's
 *   `check` (`meterImports`) throws a TIMEOUT `CapsuleError` once the call's deadline is past,
 *   and otherwise returns the next budget, sized so that a check comes about every quarter of
 *   a millisecond of a tight loop.
 *
 * What is refused (`{ skipped }`, the caller then keeps the thread): an instruction the walker
 * does not know (GC proposal, future ones), a type section with GC types, a component, a module
 * that already imports `capsule_meter`, and a module that can catch a host exception (legacy
 * `catch_all`, `try_table` catch_all / catch_all_ref, or a catch of an imported tag, which could
 * be JavaScript's tag): it could swallow the TIMEOUT and go on looping. Never a broken module.
 *
 * The call graph assumes host functions do not call back into the guest (Capsule's do not): a
 * recursion through the host would be bounded by the stack only, not by the meter. What blocks
 * without running guest code is not counted either: a host import that waits (see
 * `checkDeadline`) and `memory.atomic.wait` (on a shared memory, which Capsule gives no guest).
 *
 * Custom sections that point into function bodies by byte offset or index and would be stale
 * after the rewrite are dropped: DWARF (`.debug_*`), `linking`/`reloc.*` (object files) and
 * code metadata (`metadata.code.*`, branch hints). The "name" section is kept, renumbered,
 * without its label names.
 */
import { CapsuleError } from '../base/errors.ts';
import { ByteWriter, parseModule, readInstruction, Reader, SECTION_ORDER, UnknownInstruction, type ParsedModule } from './binary.ts';

/** Import module and name of the deadline check that `meterModule` adds. */
export const METER_IMPORT = { module: 'capsule_meter', name: 'check' } as const;

/** The budget (loop iterations and guarded function entries) before the first check of an instance. */
export const INITIAL_BUDGET = 1_000;

/** How much `meterModule` added (for logs and the bench). */
export interface MeterStats {
  /** Loop headers instrumented. */
  loops: number;
  /** Functions checked at entry (tail calls or recursion). */
  entries: number;
  /** Indirect call sites checked (calls through a table that can close a cycle). */
  indirect: number;
  /** Functions the module defines. */
  functions: number;
}

/** What `meterModule` returns: the instrumented module, or why it left the module alone. */
export type MeterResult =
  | { bytes: Uint8Array<ArrayBuffer>; checkImport: { module: string; name: string }; stats: MeterStats }
  | { skipped: string };

/** Raised inside the rewrite for a module that must be left alone; becomes `{ skipped }`. */
class Skip extends Error {}

/** What the rewrite of one module knows. */
interface Ctx {
  bytes: Uint8Array;
  parsed: ParsedModule;
  /** Function imports before the rewrite: the check's index; defined functions move up by one. */
  funcImports: number;
  tagImports: number;
  /** Old indices of functions whose address can reach a table (elem, ref.func, export). */
  taken: Set<number>;
  /** Parameter count of each type. */
  typeParams: number[];
  /** The budget global's index. */
  budget: number;
}

/**
 * Instruments a module so that it checks its own deadline (see the module comment).
 * @param bytes a WebAssembly binary (core module)
 * @returns the instrumented binary, the import to provide (`meterImports`) and what was added;
 *   or `{ skipped }` with the reason when the module cannot be instrumented safely (it is then
 *   to be run as it is, on a thread that can be stopped). Never throws for bad input.
 */
export function meterModule(bytes: Uint8Array): MeterResult {
  try {
    const parsed = parseModule(bytes);
    if (parsed.layer !== 'core') return { skipped: 'it is a component, not a core module' };
    return rewrite({ bytes, parsed, funcImports: 0, tagImports: 0, taken: new Set(), typeParams: [], budget: 0 });
  } catch (e) {
    if (e instanceof Skip) return { skipped: e.message };
    if (e instanceof UnknownInstruction) return { skipped: `its code uses an instruction the meter does not know (${e.message})` };
    if (e instanceof CapsuleError) return { skipped: e.message };
    throw e;
  }
}

/** The body of `meterModule`: every section rewritten, then the module put together. */
function rewrite(ctx: Ctx): MeterResult {
  const { parsed } = ctx;
  for (const i of parsed.imports) {
    if (i.module === METER_IMPORT.module) throw new Skip(`it already imports from ${METER_IMPORT.module}`);
    if (i.kind === 'function') ctx.funcImports++;
    if (i.kind === 'tag') ctx.tagImports++;
  }
  const globalImports = parsed.imports.filter((i) => i.kind === 'global').length;
  const types = typeSection(ctx);
  const replaced = new Map<number, Uint8Array>();
  replaced.set(1, types.content);
  replaced.set(2, importSection(ctx, types.checkType));
  const globals = globalSection(ctx);
  ctx.budget = globalImports + globals.count;
  replaced.set(6, globals.content);
  for (const [id, fn] of [[4, tableSection], [7, exportSection], [8, startSection], [9, elementSection]] as const) {
    const s = section(ctx, id);
    if (s) replaced.set(id, fn(ctx, new Reader(ctx.bytes, s.contentStart, s.end)));
  }
  const code = codeSection(ctx);
  if (code) replaced.set(10, code.content);
  const out = assemble(ctx, replaced);
  return { bytes: out, checkImport: { ...METER_IMPORT }, stats: code?.stats ?? { loops: 0, entries: 0, indirect: 0, functions: 0 } };
}

function section(ctx: Ctx, id: number): ParsedModule['sections'][number] | undefined {
  return ctx.parsed.sections.find((s) => s.id === id);
}

/** The module with its sections replaced by `replaced` (created when missing) and stale custom sections dropped. */
function assemble(ctx: Ctx, replaced: Map<number, Uint8Array>): Uint8Array<ArrayBuffer> {
  const { bytes } = ctx;
  const out = new ByteWriter(bytes.length + 4096);
  out.range(bytes, 0, 8);
  const missing = [1, 2, 6].filter((id) => !section(ctx, id));
  const emit = (id: number, content: Uint8Array) => {
    out.byte(id);
    out.uleb(content.length);
    out.range(content);
  };
  for (const s of ctx.parsed.sections) {
    if (s.id !== 0) {
      while (missing.length > 0 && SECTION_ORDER[missing[0]!]! < (SECTION_ORDER[s.id] ?? 99)) {
        const id = missing.shift()!;
        emit(id, replaced.get(id)!);
      }
      const content = replaced.get(s.id);
      if (content) emit(s.id, content);
      else out.range(bytes, s.start, s.end);
      continue;
    }
    const r = new Reader(bytes, s.contentStart, s.end);
    const name = r.name();
    if (name.startsWith('.debug_') || name === 'linking' || name.startsWith('reloc.') || name.startsWith('metadata.code.')) continue;
    if (name !== 'name') {
      out.range(bytes, s.start, s.end);
      continue;
    }
    const names = nameSection(ctx, r);
    if (names) emit(0, names);
  }
  for (const id of missing) emit(id, replaced.get(id)!);
  return out.view().slice();
}

/** New function index of an old one. */
function remap(ctx: Ctx, index: number): number {
  return index >= ctx.funcImports ? index + 1 : index;
}

/** The type section with `[] -> [i32]` appended when it has none; its index. */
function typeSection(ctx: Ctx): { content: Uint8Array; checkType: number } {
  ctx.typeParams = [];
  const s = section(ctx, 1);
  const w = new ByteWriter(s ? s.end - s.contentStart + 8 : 8);
  let count = 0;
  let checkType = -1;
  if (s) {
    const r = new Reader(ctx.bytes, s.contentStart, s.end);
    count = r.u32();
    const first = r.pos;
    for (let i = 0; i < count; i++) {
      if (r.u8() !== 0x60) throw new Skip('its type section uses GC types (rec/sub), which the meter does not rewrite');
      const params = r.vec(() => r.valtype());
      const results = r.vec(() => r.valtype());
      ctx.typeParams.push(params.length);
      if (checkType < 0 && params.length === 0 && results.length === 1 && results[0] === 'i32') checkType = i;
    }
    if (checkType >= 0) return { content: ctx.bytes.subarray(s.contentStart, s.end), checkType };
    w.uleb(count + 1);
    w.range(ctx.bytes, first, s.end);
  } else {
    w.uleb(1);
  }
  w.range(Uint8Array.of(0x60, 0x00, 0x01, 0x7f));
  return { content: w.view(), checkType: count };
}

/** The import section with the check appended (its function index: the number of function imports). */
function importSection(ctx: Ctx, checkType: number): Uint8Array {
  const s = section(ctx, 2);
  const w = new ByteWriter(s ? s.end - s.contentStart + 32 : 32);
  if (s) {
    const r = new Reader(ctx.bytes, s.contentStart, s.end);
    w.uleb(r.u32() + 1);
    w.range(ctx.bytes, r.pos, s.end);
  } else {
    w.uleb(1);
  }
  w.name(METER_IMPORT.module);
  w.name(METER_IMPORT.name);
  w.byte(0x00);
  w.uleb(checkType);
  return w.view();
}

/** Copies a constant expression up to its `end`, renumbering `ref.func` (whose function becomes taken). */
function copyExpr(ctx: Ctx, r: Reader, w: ByteWriter): void {
  for (;;) {
    const at = r.pos;
    const op = readInstruction(r);
    if (op === 0xd2) {
      const index = new Reader(ctx.bytes, at + 1, r.pos).u32();
      ctx.taken.add(index);
      w.byte(0xd2);
      w.uleb(remap(ctx, index));
    } else {
      w.range(ctx.bytes, at, r.pos);
    }
    if (op === 0x0b) return;
  }
}

/** Copies what `read` reads (a value type, limits...) as it is. */
function copyRead(r: Reader, w: ByteWriter, read: () => unknown): void {
  const at = r.pos;
  read();
  w.range(r.bytes, at, r.pos);
}

/** The global section with the budget appended (`mut i32 = INITIAL_BUDGET`); how many it had. */
function globalSection(ctx: Ctx): { content: Uint8Array; count: number } {
  const s = section(ctx, 6);
  const w = new ByteWriter(s ? s.end - s.contentStart + 16 : 16);
  let count = 0;
  if (s) {
    const r = new Reader(ctx.bytes, s.contentStart, s.end);
    count = r.u32();
    w.uleb(count + 1);
    for (let i = 0; i < count; i++) {
      copyRead(r, w, () => r.valtype());
      w.byte(r.u8());
      copyExpr(ctx, r, w);
    }
  } else {
    w.uleb(1);
  }
  w.range(Uint8Array.of(0x7f, 0x01, 0x41));
  w.sleb(INITIAL_BUDGET);
  w.byte(0x0b);
  return { content: w.view(), count };
}

/**
 * A section that is a vector of entries (table, export, element), copied with `entry` called once
 * per entry to copy (and renumber) it from `r` to `w`; `slack` bytes are reserved for growth.
 */
function copyVector(r: Reader, slack: number, entry: (w: ByteWriter) => void): Uint8Array {
  const w = new ByteWriter(r.end - r.pos + slack);
  const n = r.u32();
  w.uleb(n);
  for (let i = 0; i < n; i++) entry(w);
  return w.view();
}

/** The table section: initialiser expressions of typed-function-reference tables renumbered. */
function tableSection(ctx: Ctx, r: Reader): Uint8Array {
  return copyVector(r, 16, (w) => {
    const withInit = r.bytes[r.pos] === 0x40;
    if (withInit) {
      w.byte(r.u8());
      w.byte(r.u8());
    }
    copyRead(r, w, () => r.valtype());
    copyRead(r, w, () => r.limits());
    if (withInit) copyExpr(ctx, r, w);
  });
}

/** The export section, function indices renumbered; exported functions count as taken (the host may put them in a table). */
function exportSection(ctx: Ctx, r: Reader): Uint8Array {
  return copyVector(r, 16, (w) => {
    copyRead(r, w, () => r.name());
    const kind = r.u8();
    const index = r.u32();
    w.byte(kind);
    if (kind === 0) ctx.taken.add(index);
    w.uleb(kind === 0 ? remap(ctx, index) : index);
  });
}

function startSection(ctx: Ctx, r: Reader): Uint8Array {
  const w = new ByteWriter(8);
  w.uleb(remap(ctx, r.u32()));
  return w.view();
}

/**
 * The element section, all eight segment forms (flags 0–7: active/passive/declarative, explicit
 * table index, function indices or expressions), function indices renumbered.
 */
function elementSection(ctx: Ctx, r: Reader): Uint8Array {
  return copyVector(r, 64, (w) => {
    const flags = r.u32();
    if (flags > 7) r.fail(`unknown element segment flags ${flags}`);
    w.uleb(flags);
    if ((flags & 1) === 0) { // active: [table index], offset
      if (flags & 2) w.uleb(r.u32());
      copyExpr(ctx, r, w);
    }
    if ((flags & 3) !== 0) { // element kind (byte) or reference type
      if (flags & 4) copyRead(r, w, () => r.valtype());
      else w.byte(r.u8());
    }
    const count = r.u32();
    w.uleb(count);
    for (let k = 0; k < count; k++) {
      if (flags & 4) {
        copyExpr(ctx, r, w);
        continue;
      }
      const index = r.u32();
      ctx.taken.add(index);
      w.uleb(remap(ctx, index));
    }
  });
}

/**
 * The "name" section with function indices renumbered in the function (1) and local (2)
 * subsections, and the check named; the label subsection (3) is dropped (labels are numbered by
 * the blocks of a function in order, and a check adds an `if` block); undefined (the section is
 * dropped) when it is malformed.
 */
function nameSection(ctx: Ctx, r: Reader): Uint8Array | undefined {
  const w = new ByteWriter(r.end - r.pos + 64);
  w.name('name');
  try {
    while (r.pos < r.end) {
      const id = r.u8();
      const size = r.u32();
      const end = r.pos + size;
      if (end > r.end) return undefined;
      if (id === 3) {
        r.pos = end;
        continue;
      }
      if (id < 1 || id > 2) {
        w.byte(id);
        w.uleb(size);
        w.range(r.bytes, r.pos, end);
        r.pos = end;
        continue;
      }
      const sub = new ByteWriter(size + 32);
      renumberNameMap(ctx, new Reader(r.bytes, r.pos, end), sub, id);
      w.byte(id);
      w.uleb(sub.length);
      w.range(sub.view());
      r.pos = end;
    }
  } catch {
    return undefined;
  }
  return w.view();
}

/** One function-indexed name map (id 1) or indirect name map (id 2), renumbered. */
function renumberNameMap(ctx: Ctx, r: Reader, w: ByteWriter, id: number): void {
  const n = r.u32();
  w.uleb(id === 1 ? n + 1 : n);
  let named = id !== 1;
  const nameCheck = () => {
    named = true;
    w.uleb(ctx.funcImports);
    w.name(`${METER_IMPORT.module}.${METER_IMPORT.name}`);
  };
  for (let i = 0; i < n; i++) {
    const index = r.u32();
    if (!named && index >= ctx.funcImports) nameCheck();
    w.uleb(remap(ctx, index));
    if (id === 1) copyRead(r, w, () => r.name());
    else copyRead(r, w, () => r.vec(() => [r.u32(), r.name()]));
  }
  if (!named) nameCheck();
  if (r.pos !== r.end) r.fail('name subsection longer than its entries');
}

/**
 * The check at a loop header, on the function's budget local `L`: `L -= 1; if (L <= 0) { L =
 * check(); budget = L }` (local.get L; i32.const 1; i32.sub; local.tee L; i32.const 0; i32.le_s;
 * if; call check; local.tee L; global.set budget; end). A local costs the tight loop no memory
 * access; `<= 0` rather than `== 0` so that after a `check` that threw, every later check point
 * checks again.
 */
function writeLoopCheck(w: ByteWriter, ctx: Ctx, local: number): void {
  w.byte(0x20); w.uleb(local);
  w.byte(0x41); w.byte(0x01);
  w.byte(0x6b);
  w.byte(0x22); w.uleb(local);
  writeTest(w, ctx, local);
}

/** `i32.const 0; i32.le_s; if; call check; local.tee L; global.set budget; end`. */
function writeTest(w: ByteWriter, ctx: Ctx, local: number): void {
  w.byte(0x41); w.byte(0x00);
  w.byte(0x4c);
  w.byte(0x04); w.byte(0x40);
  w.byte(0x10); w.uleb(ctx.funcImports);
  w.byte(0x22); w.uleb(local);
  w.byte(0x24); w.uleb(ctx.budget);
  w.byte(0x0b);
}

/**
 * The function's entry: `L = budget` for a function with loops only; for one checked at entry
 * (tail calls, recursion) the shared budget is spent: `L = budget - 1; budget = L; if (L <= 0) ...`.
 */
function writeEntry(w: ByteWriter, ctx: Ctx, local: number, guarded: boolean): void {
  w.byte(0x23); w.uleb(ctx.budget);
  if (!guarded) {
    w.byte(0x21); w.uleb(local);
    return;
  }
  w.byte(0x41); w.byte(0x01);
  w.byte(0x6b);
  w.byte(0x22); w.uleb(local);
  w.byte(0x24); w.uleb(ctx.budget);
  w.byte(0x20); w.uleb(local);
  writeTest(w, ctx, local);
}

/**
 * A check on the global alone, at the entry of a checked function without loops and before an
 * indirect call that can close a cycle: `budget -= 1; if (budget <= 0) budget = check()`
 * (global.get; i32.const 1; i32.sub; global.set; global.get; i32.const 0; i32.le_s; if; call
 * check; global.set; end). It leaves the operand stack as it was.
 */
function writeGlobalCheck(w: ByteWriter, ctx: Ctx): void {
  w.byte(0x23); w.uleb(ctx.budget);
  w.byte(0x41); w.byte(0x01);
  w.byte(0x6b);
  w.byte(0x24); w.uleb(ctx.budget);
  w.byte(0x23); w.uleb(ctx.budget);
  w.byte(0x41); w.byte(0x00);
  w.byte(0x4c);
  w.byte(0x04); w.byte(0x40);
  w.byte(0x10); w.uleb(ctx.funcImports);
  w.byte(0x24); w.uleb(ctx.budget);
  w.byte(0x0b);
}

/** Where a function body is and what its code does, from the first walk. */
interface Body {
  /** Start of the local declarations, start of the instructions, end of the body. */
  locals: number;
  code: number;
  end: number;
  /** Local declaration groups, and locals declared (parameters not included). */
  groups: number;
  declared: number;
  /** Its range in the patch list. */
  firstPatch: number;
  lastPatch: number;
  loops: number;
  tail: boolean;
  /** It calls through a table or a reference (`call_indirect`, `call_ref`, or their tail calls). */
  indirect: boolean;
  /** It has a non-tail call through a table or a reference: a check may go before it (`cycleChecks`). */
  indirectCall: boolean;
  /** Defined functions it calls directly (old indices minus the function imports). */
  callees: number[];
}

/**
 * Patches of the code: a loop header (`at` = `end`: a check inserted after the loop's block
 * type), an indirect call (`at` = `end`: a check inserted before it, when the call can close a
 * cycle), or a call/ref.func to renumber (`at`..`end`: the instruction).
 */
interface Patches {
  at: number[];
  end: number[];
  /** LOOP, INDIRECT, or the old function index. */
  index: number[];
}

const LOOP = -1;
const INDIRECT = -2;

/** Wasm engines refuse a function with more locals than this (V8, SpiderMonkey, Wasmtime agree). */
const MAX_LOCALS = 50_000;

/** The parameter count of each defined function (function and type sections). */
function paramCounts(ctx: Ctx): number[] {
  const s = section(ctx, 3);
  if (!s) return [];
  const r = new Reader(ctx.bytes, s.contentStart, s.end);
  return r.vec(() => ctx.typeParams[r.u32()] ?? r.fail('function of an unknown type'));
}

/** The code section instrumented; undefined when the module has none. */
function codeSection(ctx: Ctx): { content: Uint8Array; stats: MeterStats } | undefined {
  const s = section(ctx, 10);
  if (!s) return undefined;
  const r = new Reader(ctx.bytes, s.contentStart, s.end);
  const n = r.u32();
  const params = paramCounts(ctx);
  if (params.length !== n) r.fail(`${params.length} functions declared, ${n} bodies`);
  const patches: Patches = { at: [], end: [], index: [] };
  const bodies: Body[] = [];
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    if (end > s.end) r.fail('function body past the end of the code section');
    bodies.push(walkBody(ctx, new Reader(ctx.bytes, r.pos, end), patches));
    r.pos = end;
  }
  const { guarded, indirectChecked } = cycleChecks(ctx, bodies);
  const w = new ByteWriter(s.end - s.contentStart + patches.at.length * 24 + 1024);
  const body = new ByteWriter(4096);
  w.uleb(n);
  const stats: MeterStats = { loops: 0, entries: 0, indirect: 0, functions: n };
  for (let i = 0; i < n; i++) {
    body.clear();
    writeBody(ctx, bodies[i]!, { params: params[i]!, guarded: guarded[i]!, indirect: indirectChecked[i]! }, patches, body, stats);
    w.uleb(body.length);
    w.range(body.view());
  }
  return { content: w.view(), stats };
}

/**
 * One function body, its budget local declared and its checks and renumbered calls in place.
 * @param f its parameter count, whether it is checked at entry and before its indirect calls
 */
function writeBody(ctx: Ctx, b: Body, f: { params: number; guarded: boolean; indirect: boolean }, patches: Patches, w: ByteWriter, stats: MeterStats): void {
  const { guarded } = f;
  const local = f.params + b.declared;
  if (b.loops === 0 && guarded) { // no local needed: the global alone
    w.range(ctx.bytes, b.locals, b.code);
    writeGlobalCheck(w, ctx);
    stats.entries++;
  } else if (b.loops > 0) {
    if (local + 1 > MAX_LOCALS) throw new Skip(`a function would have more than ${MAX_LOCALS} locals with the meter's`);
    w.uleb(b.groups + 1);
    w.range(ctx.bytes, new Reader(ctx.bytes, b.locals, b.code).skipU32(), b.code);
    w.byte(0x01); w.byte(0x7f); // one i32: the budget of this activation
    writeEntry(w, ctx, local, guarded);
    if (guarded) stats.entries++;
  } else {
    w.range(ctx.bytes, b.locals, b.code);
  }
  let pos = b.code;
  for (let p = b.firstPatch; p < b.lastPatch; p++) {
    const at = patches.at[p]!;
    const index = patches.index[p]!;
    w.range(ctx.bytes, pos, at);
    if (index === LOOP) {
      writeLoopCheck(w, ctx, local);
      stats.loops++;
    } else if (index === INDIRECT) {
      if (f.indirect) {
        writeGlobalCheck(w, ctx);
        stats.indirect++;
      }
    } else {
      w.byte(ctx.bytes[at]!);
      w.uleb(remap(ctx, index));
    }
    pos = patches.end[p]!;
  }
  w.range(ctx.bytes, pos, b.end);
}

/**
 * Walks one function body (`r` over it, from its local declarations): records its loop headers
 * and calls in `patches`, its direct callees, tail and indirect calls.
 * @throws Skip when it can catch a host exception; UnknownInstruction for an unknown opcode
 */
function walkBody(ctx: Ctx, r: Reader, patches: Patches): Body {
  const locals = r.pos;
  const groups = r.u32();
  let declared = 0;
  for (let g = 0; g < groups; g++) {
    declared += r.u32();
    r.valtype();
  }
  const body: Body = {
    locals, code: r.pos, end: r.end, groups, declared, firstPatch: patches.at.length, lastPatch: 0, loops: 0, tail: false, indirect: false, indirectCall: false, callees: [],
  };
  const imm = new Reader(ctx.bytes, 0, r.end);
  while (r.pos < r.end) {
    const at = r.pos;
    const op = readInstruction(r);
    switch (op) {
      case 0x03: // loop: a check right after its block type
        patches.at.push(r.pos); patches.end.push(r.pos); patches.index.push(LOOP);
        body.loops++;
        break;
      case 0x10: case 0x12: case 0xd2: { // call, return_call, ref.func
        imm.pos = at + 1;
        const index = imm.u32();
        if (op === 0x12) body.tail = true;
        if (op === 0xd2) ctx.taken.add(index);
        else if (index >= ctx.funcImports) body.callees.push(index - ctx.funcImports);
        if (index >= ctx.funcImports) {
          patches.at.push(at); patches.end.push(r.pos); patches.index.push(index);
        }
        break;
      }
      case 0x13: case 0x15: // return_call_indirect, return_call_ref
        body.tail = true;
        body.indirect = true;
        break;
      case 0x11: case 0x14: // call_indirect, call_ref: maybe a check before it
        body.indirect = true;
        body.indirectCall = true;
        patches.at.push(at); patches.end.push(at); patches.index.push(INDIRECT);
        break;
      case 0x19: // catch_all (legacy exceptions)
        throw new Skip('it can catch host exceptions (catch_all), so it could swallow the deadline\'s TIMEOUT');
      case 0x07: // catch tag
        imm.pos = at + 1;
        if (imm.u32() < ctx.tagImports) throw new Skip('it catches an imported exception tag, which could be the host\'s, so it could swallow the deadline\'s TIMEOUT');
        break;
      case 0x1f:
        checkTryTable(ctx, new Reader(ctx.bytes, at + 1, r.pos));
        break;
      default:
        break;
    }
  }
  body.lastPatch = patches.at.length;
  return body;
}

/** Refuses a `try_table` with a catch_all / catch_all_ref clause, or one catching an imported tag. */
function checkTryTable(ctx: Ctx, r: Reader): void {
  const b = r.u8(); // block type, as readInstruction reads it
  if (b !== 0x63 && b !== 0x64) r.pos--;
  r.s33();
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    if (kind === 2 || kind === 3) throw new Skip('it can catch host exceptions (try_table catch_all), so it could swallow the deadline\'s TIMEOUT');
    if (kind <= 1 && r.u32() < ctx.tagImports) throw new Skip('it catches an imported exception tag, which could be the host\'s, so it could swallow the deadline\'s TIMEOUT');
    r.u32();
  }
}

/**
 * Where the checks that bound recursion go: at the entry of functions with a tail call and of
 * those on a cycle of the call graph; and, when calls through tables close cycles, before those
 * indirect calls instead of at the entry of every function they can reach.
 *
 * Indirect calls go through one extra node, the "table", with an edge to every taken function.
 * When the table is on a cycle, a check before each non-tail indirect call of the functions on
 * that cycle cuts every cycle through it (a tail indirect call's function is checked at entry);
 * the entries to check are then those on cycles of direct calls alone. In Go guests, where every
 * function reaches the table, this checks a few indirect call sites instead of almost every
 * function's entry.
 */
function cycleChecks(ctx: Ctx, bodies: Body[]): { guarded: boolean[]; indirectChecked: boolean[] } {
  const n = bodies.length;
  const table = n;
  const taken = [...ctx.taken].filter((i) => i >= ctx.funcImports).map((i) => i - ctx.funcImports).filter((i) => i < n);
  const guarded = bodies.map((b, v) => b.tail || b.callees.includes(v));
  const indirectChecked = bodies.map(() => false);
  let tableCycle: number[] = [];
  /** Whether the table's edges are left out (the second pass, once checks before indirect calls cut its cycles). */
  let cut = false;
  const degree = (v: number) => (v === table ? (cut ? 0 : taken.length) : bodies[v]!.callees.length + (bodies[v]!.indirect && !cut ? 1 : 0));
  const succ = (v: number, k: number) => (v === table ? taken[k]! : bodies[v]!.callees[k] ?? table);
  components(n + 1, degree, succ, (members) => {
    if (members.length > 1 && members.includes(table)) tableCycle = members;
  });
  for (const v of tableCycle) if (v !== table && bodies[v]!.indirectCall) indirectChecked[v] = true;
  cut = tableCycle.length > 0;
  components(n + 1, degree, succ, (members) => {
    if (members.length > 1) cutCycles(members, bodies, guarded);
  });
  return { guarded, indirectChecked };
}

/**
 * Chooses functions of a strongly connected component of direct calls to check at entry so that
 * every cycle among them goes through one (a feedback vertex set, chosen greedily: the function
 * with the most calls in and out of the rest first, until no cycle is left). Functions already
 * checked (`guarded`: tail calls, self-calls) cut the cycles through them.
 */
function cutCycles(members: number[], bodies: Body[], guarded: boolean[]): void {
  const pending = [members];
  while (pending.length > 0) {
    const group = pending.pop()!.filter((v) => !guarded[v]);
    const local = new Map(group.map((v, i) => [v, i]));
    const succ = group.map((v) => bodies[v]!.callees.map((c) => local.get(c)).filter((c): c is number => c !== undefined));
    const inDegree = new Int32Array(group.length);
    for (const list of succ) for (const c of list) inDegree[c]!++;
    components(group.length, (v) => succ[v]!.length, (v, k) => succ[v]![k]!, (component) => {
      if (component.length < 2) return;
      let best = component[0]!;
      for (const v of component) if (inDegree[v]! * succ[v]!.length > inDegree[best]! * succ[best]!.length) best = v;
      guarded[group[best]!] = true;
      pending.push(component.map((v) => group[v]!));
    });
  }
}

/**
 * Tarjan's strongly connected components, iterative (no recursion: Go guests have thousands of
 * functions): calls `found` with the members of each component.
 * @param count nodes 0..count-1; `degree(v)` successors of v, the k-th being `succ(v, k)`
 */
function components(count: number, degree: (v: number) => number, succ: (v: number, k: number) => number, found: (members: number[]) => void): void {
  const order = new Int32Array(count).fill(-1);
  const low = new Int32Array(count);
  const onStack = new Uint8Array(count);
  const stack: number[] = [];
  const frames: number[] = []; // pairs: node, next successor
  let counter = 0;
  const enter = (v: number) => {
    order[v] = low[v] = counter++;
    stack.push(v);
    onStack[v] = 1;
    frames.push(v, 0);
  };
  for (let root = 0; root < count; root++) {
    if (order[root] !== -1) continue;
    enter(root);
    while (frames.length > 0) {
      const v = frames[frames.length - 2]!;
      const k = frames[frames.length - 1]!;
      if (k < degree(v)) {
        frames[frames.length - 1] = k + 1;
        const w = succ(v, k);
        if (order[w] === -1) enter(w);
        else if (onStack[w]) low[v] = Math.min(low[v]!, order[w]!);
        continue;
      }
      frames.length -= 2;
      if (frames.length > 0) {
        const parent = frames[frames.length - 2]!;
        low[parent] = Math.min(low[parent]!, low[v]!);
      }
      if (low[v] !== order[v]) continue;
      const members = stack.splice(stack.lastIndexOf(v));
      for (const m of members) onStack[m] = 0;
      found(members);
    }
  }
}

/**
 * The deadline of the calls made into one metered instance (or several, one call at a time).
 * The engine sets `at` before each call and `Infinity` after it.
 */
export interface MeterDeadline {
  /** `performance.now()` time (ms) past which `check` throws TIMEOUT; `Infinity`: none. */
  at: number;
  /** The call's timeout in ms, for the error message. */
  timeoutMs?: number;
  /** Checks made so far (the host's side of the budget; for tests and the bench). */
  checks?: number;
  /**
   * Whether the guest code running now may be suspended (`meterImports` with `yieldEveryMs`):
   * true only while an export runs through `WebAssembly.promising` with nothing but guest
   * frames under the check (the `Guest` sets it: `YieldGate`); a suspension elsewhere would
   * throw a SuspendError into the guest.
   */
  yieldable?: boolean;
  /** Times a call gave the thread back (`yieldEveryMs`). */
  yields?: number;
  /**
   * Called when a call that gave the thread back is about to resume (`yieldEveryMs`), on
   * `setImmediate`, with no guest code on the stack: the embedder may start other calls then.
   */
  onYield?: () => void;
}

/** Aimed interval between two checks in a tight loop, ms. */
const CHECK_INTERVAL_MS = 0.25;
/**
 * Largest budget: a check at least every 65 536 loop turns, however fast they were so far, so
 * that a loop whose turns turn slow (a host call in them) overshoots its deadline by at most
 * that many turns. At ~1 ns a turn, one check (~0.1 µs) per 65 µs.
 */
const MAX_BUDGET = 65_536;

/** The TIMEOUT error of a call past its deadline. */
function timeoutError(deadline: MeterDeadline): CapsuleError {
  const within = deadline.timeoutMs !== undefined ? ` within ${deadline.timeoutMs} ms (--timeout)` : ' before its deadline';
  return new CapsuleError('TIMEOUT', `the function did not return${within}; it was stopped by its deadline check`);
}

/**
 * For host imports that can block or run long (a WASI sleep, a wait): throws the same TIMEOUT
 * as `check` once the deadline is past. The meter counts guest work only; a host function that
 * waits must look at the deadline itself (between its sleep slices), or a guest sleeping in a
 * loop overshoots its deadline by a budget's worth of sleeps.
 * @throws CapsuleError TIMEOUT when `performance.now() >= deadline.at`
 */
export function checkDeadline(deadline: MeterDeadline): void {
  if (performance.now() >= deadline.at) throw timeoutError(deadline);
}

/**
 * The imports a module from `meterModule` needs (`{ capsule_meter: { check } }`): merge them
 * into the instance's import object.
 *
 * How the engine uses it: one `deadline` object per worker (or per instance); before a guest
 * call `deadline.at = performance.now() + timeoutMs` (and `deadline.timeoutMs = timeoutMs`),
 * after it `deadline.at = Infinity`. A call past its deadline then throws, from inside the
 * guest, a `CapsuleError` with code TIMEOUT; the instance it ran in must be dropped (its state
 * is wherever the loop was), the thread itself serves on. Host imports that block use
 * `checkDeadline` with the same object.
 *
 * `check` sizes the next budget (loop turns of one function activation, or entries of checked
 * functions) from the time the last one took: aiming at a check every 0.25 ms, growing at most
 * 8× per check, at most `MAX_BUDGET`, and shrunk so that the next check comes before the
 * deadline. The first check of a call (a new `deadline.at`) keeps the budget as it was.
 * @param deadline read at every check; mutate it, do not replace it
 * @param yieldEveryMs when set, a call that has run this long (ms) since it started or last
 *   resumed gives the thread back at its next check while `deadline.yieldable` (JSPI: its
 *   export must run through `WebAssembly.promising`): the guest resumes on `setImmediate`, so
 *   that the event loop serves other work between its slices; past its deadline it resumes
 *   with the TIMEOUT. See `yielding`.
 */
export function meterImports(deadline: MeterDeadline, yieldEveryMs?: number): { [METER_IMPORT.module]: { [METER_IMPORT.name]: () => number } } {
  let last = 0;
  let lastAt = Number.NaN;
  let budget = INITIAL_BUDGET;
  /** When the running call last started or resumed (`yieldEveryMs`). */
  let sliceStart = 0;
  const check = (): number => {
    const now = performance.now();
    deadline.checks = (deadline.checks ?? 0) + 1;
    if (now >= deadline.at) throw timeoutError(deadline);
    const elapsed = now - last;
    last = now;
    if (deadline.at !== lastAt) { // a new call: the time since the last check is not this call's
      lastAt = deadline.at;
      sliceStart = now;
      return budget;
    }
    // 0: the helper module suspends the guest (`yielding`)
    if (yieldEveryMs !== undefined && deadline.yieldable === true && now - sliceStart >= yieldEveryMs) return 0;
    const perUnit = elapsed / budget; // ms per loop turn or checked entry, as last measured
    let next = perUnit > 0 ? CHECK_INTERVAL_MS / perUnit : budget * 8;
    next = Math.min(next, budget * 8, perUnit > 0 ? (deadline.at - now) / perUnit : Infinity);
    budget = Math.max(1, Math.min(MAX_BUDGET, Math.floor(next)));
    return budget;
  };
  if (yieldEveryMs === undefined) return { [METER_IMPORT.module]: { [METER_IMPORT.name]: check } };
  const resume = (): Promise<number> => new Promise((resolve, reject) => {
    deadline.yields = (deadline.yields ?? 0) + 1;
    setImmediate(() => {
      deadline.onYield?.();
      const now = performance.now();
      if (now >= deadline.at) return reject(timeoutError(deadline));
      last = sliceStart = now; // the time it waited is not the guest's
      resolve(budget);
    });
  });
  return { [METER_IMPORT.module]: { [METER_IMPORT.name]: yielding(check, resume) } };
}

/**
 * The helper module of a yielding check, hand-written (wat2wasm of):
 * ```wat
 * (module
 *   (import "h" "check" (func $c (result i32)))
 *   (import "h" "pause" (func $p (result i32)))
 *   (func (export "check") (result i32)
 *     (local $b i32)
 *     (local.set $b (call $c))
 *     (if (result i32) (local.get $b) (then (local.get $b)) (else (call $p)))))
 * ```
 */
const YIELD_HELPER = Uint8Array.of(
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x02, 0x15, 0x02, 0x01, 0x68,
  0x05, 0x63, 0x68, 0x65, 0x63, 0x6b, 0x00, 0x00, 0x01, 0x68, 0x05, 0x70, 0x61, 0x75, 0x73, 0x65, 0x00, 0x00, 0x03, 0x02,
  0x01, 0x00, 0x07, 0x09, 0x01, 0x05, 0x63, 0x68, 0x65, 0x63, 0x6b, 0x00, 0x02, 0x0a, 0x14, 0x01, 0x12, 0x01, 0x01, 0x7f,
  0x10, 0x00, 0x21, 0x00, 0x20, 0x00, 0x04, 0x7f, 0x20, 0x00, 0x05, 0x10, 0x01, 0x0b, 0x0b,
);
let yieldHelper: WebAssembly.Module | undefined;

/**
 * A check that can give the thread back (JSPI): a WebAssembly function that calls `check` and,
 * when it answers 0, the suspending `resume` (`WebAssembly.Suspending`), whose promise settles on
 * `setImmediate` with the next budget. On Node 24 a `Suspending` import called outside
 * `WebAssembly.promising` throws even when it would not suspend, so the guest must never reach
 * it there: the suspending import sits behind this wasm function, and `check` answers 0 only
 * when `MeterDeadline.yieldable` says a suspension is allowed (wasm frames only, no JS frame
 * between the guest and the check).
 */
function yielding(check: () => number, resume: () => Promise<number>): () => number {
  const jspi = WebAssembly as unknown as { Suspending: new (fn: () => Promise<number>) => object };
  yieldHelper ??= new WebAssembly.Module(YIELD_HELPER);
  const helper = new WebAssembly.Instance(yieldHelper, { h: { check, pause: new jspi.Suspending(resume) as () => number } });
  return helper.exports['check'] as () => number;
}
