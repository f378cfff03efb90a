/**
 * Snapshot-style reset of an initialised instance (capsule-abi.md §3 instance policy: "a fresh
 * instance per invocation"). Instead of a new `WebAssembly.Instance` plus `_initialize` /
 * `_start` / `OnStart` for every call, the engine keeps one initialised instance per module per
 * worker and, after each call, puts it back into exactly the state a new instance has right
 * after its initialisation — the idea of Wizer and of wasmtime's pooling allocator.
 *
 * The state of a core instance is its linear memory, its mutable globals, its tables and the
 * dropped flags of its passive data/elem segments. Here:
 * - memory: the bytes present after initialisation are kept (up to the last non-zero byte) and
 *   written back, the rest zeroed; a memory that grew during a call cannot shrink, so that
 *   instance is discarded;
 * - mutable globals: exported at load under reserved names (`SNAPSHOT_EXPORT_PREFIX`), their
 *   values captured after initialisation and set back;
 * - tables and segments: not reset; a module whose code contains table.set / table.grow /
 *   table.fill / table.copy / table.init / elem.drop / data.drop is not snapshotted at all.
 *
 * Two phases:
 * - Load (`prepareSnapshot`, main thread): decides whether a module qualifies and, if so, adds
 *   the global exports; the plan naming them goes to the workers with the module
 *   (`LoadedModule.snapshot`, `WorkerModule.snapshot`).
 * - Worker (`probeImports`, `Snapshot`, `snapshotTarget`, `hideSnapshotExports`):
 *   the first call initialises a probe instance whose imports are stubs that refuse to run,
 *   except the side-effect-free WASI functions of `SIDE_EFFECT_FREE`, which run for real; if
 *   initialisation called no other import, its state is the snapshot. If it called any (a log
 *   line, a host function, a write, `poll_oneoff`, `proc_exit`), the module keeps a new instance
 *   per call for good.
 *
 * Running initialisation once instead of per call is unobservable for imports that answer the
 * same on every call of a function (argv, environment, stdio and preopen descriptions). For the
 * clocks and random bytes it is not: their values are those of the first call, frozen in the
 * snapshot. A time read at start-up is harmless (an older start time); random bytes read at
 * start-up seed pseudo-random state that then repeats on every call. Go's runtime does this
 * (map hash seeds, the generator behind math/rand's top-level functions): every fresh call of a
 * Go module starts from the same pseudo-random state, as a --reuse instance keeps one for all
 * its calls. Random bytes read during a call (crypto/rand, WASI random_get) are fresh. The Go
 * MDK's README says so; a module that needs per-call pseudo-random state seeds it in the call.
 */
import { addExports, ByteWriter, forEachInstruction, readGlobals, UnknownInstruction, type ParsedModule } from '../wasm/binary.ts';
import type { ModuleKind } from '../base/kinds.ts';
import { PAGE } from './memory-pool.ts';
import { abiFor } from '../abi/index.ts';
import { METER_IMPORT } from '../wasm/meter.ts';

/** Prefix of the export names added at load; hidden from the ABI layer by `hideSnapshotExports`. */
export const SNAPSHOT_EXPORT_PREFIX = 'capsule.snapshot:';

/** What a worker needs to capture and restore an instance: export names of the mutable globals, and their types. */
export interface SnapshotPlan {
  globals: string[];
  /** The value type of each global of `globals` (`i32`, `i64`, `f32`, `f64`, `funcref`, `externref`). */
  types: string[];
}

/** Global value types JavaScript can read and write through `WebAssembly.Global.value`. */
const GLOBAL_TYPES: ReadonlySet<string> = new Set(['i32', 'i64', 'f32', 'f64', 'funcref', 'externref']);
/** Opcodes that change table contents or segment state: table.set, table.init, elem.drop, table.copy, table.grow, table.fill, data.drop. */
const STATEFUL_OPS: ReadonlyMap<number, string> = new Map([
  [0x26, 'table.set'], [0xfc00c, 'table.init'], [0xfc00d, 'elem.drop'], [0xfc00e, 'table.copy'],
  [0xfc00f, 'table.grow'], [0xfc011, 'table.fill'], [0xfc009, 'data.drop'],
]);

/**
 * Load time: whether a module can be snapshotted, and the bytes to compile.
 * @param bytes the module as it will be compiled (after `rewriteMemoryAsImport`)
 * @param parsed `parseModule(bytes)` of those same bytes
 * @returns `bytes` with the global exports added and the plan, when the module qualifies;
 *   otherwise `bytes` unchanged and `refused`, the reason
 * @throws CapsuleError BAD_MODULE when a section it reads is malformed
 */
export function prepareSnapshot(bytes: Uint8Array, parsed: ParsedModule, kind: ModuleKind): { bytes: Uint8Array; plan?: SnapshotPlan; refused?: string } {
  const refuse = (refused: string) => ({ bytes, refused });
  // Abi.resettable: the ABI initialises its modules apart from the call (WASI commands start in their handler)
  if (!abiFor(kind, 'module').resettable) return refuse(`${kind} modules start in their handler`);
  const memories = parsed.memories.length + parsed.imports.filter((i) => i.kind === 'memory').length;
  const memory = parsed.memories[0] ?? parsed.imports.find((i) => i.kind === 'memory')?.memory;
  if (memories !== 1 || !memory) return refuse(`it has ${memories} memories (one is needed)`);
  if (memory.shared || memory.memory64) return refuse('its memory is shared or 64-bit');
  const imported = parsed.imports.find((i) => i.kind === 'global' || i.kind === 'table');
  if (imported) return refuse(`it imports a ${imported.kind}`);
  if (parsed.exports.some((e) => e.name.startsWith(SNAPSHOT_EXPORT_PREFIX))) return refuse(`it exports names starting with ${SNAPSHOT_EXPORT_PREFIX}`);
  let globals;
  let stateful: string | undefined;
  try {
    globals = readGlobals(bytes, parsed);
    forEachInstruction(bytes, parsed, (op) => {
      stateful ??= STATEFUL_OPS.get(op);
    });
  } catch (e) {
    if (e instanceof UnknownInstruction) return refuse(`its code uses an instruction not checked here (${e.message})`);
    throw e;
  }
  if (stateful) return refuse(`its code uses ${stateful}`);
  const extra: { name: string; kind: 'global'; index: number }[] = [];
  const types: string[] = [];
  for (const [i, g] of globals.entries()) {
    if (!g.mutable) continue;
    if (!GLOBAL_TYPES.has(g.type)) return refuse(`it has a mutable ${g.type} global`);
    extra.push({ name: `${SNAPSHOT_EXPORT_PREFIX}global:${i}`, kind: 'global', index: i });
    types.push(g.type);
  }
  const plan: SnapshotPlan = { globals: extra.map((e) => e.name), types };
  return { bytes: addExports(bytes, parsed, extra), plan };
}

/** Thrown by a probe stub: initialisation called an import. */
class ImportCalled extends Error {}

/** A WASI call of the initialisation whose effect on the call's WASI state is repeated for every call. */
export type WasiReplay = readonly [name: string, args: readonly number[]];

type ArgCheck = (args: readonly unknown[], memory: WebAssembly.Memory | undefined) => boolean;
const STDIO: ArgCheck = (args) => typeof args[0] === 'number' && args[0] >= 0 && args[0] <= 2;
const ALWAYS: ArgCheck = () => true;
/** poll_oneoff(in, out, nsubscriptions, nevents) that only waits for clocks (a sleep, or a yield). */
const CLOCKS_ONLY: ArgCheck = ([inPtr, , n], memory) => {
  if (!memory || typeof inPtr !== 'number' || typeof n !== 'number' || n < 1 || inPtr + 48 * n > memory.buffer.byteLength) return false;
  const view = new Uint8Array(memory.buffer);
  for (let i = 0; i < n; i++) if (view[inPtr + 48 * i + 8] !== 0) return false; // subscription tag 0 = clock
  return true;
};
/**
 * `wasi_snapshot_preview1` functions an initialisation may call and keep its snapshot, with the
 * arguments they may have: they read the function's fixed configuration (argv, environment,
 * stdio and preopen descriptions; preopens are the function's mounts), the clocks or random
 * bytes (frozen in the snapshot: see the module comment), or yield or sleep (`poll_oneoff` on
 * clocks only: Go's scheduler does when a garbage collection runs during initialisation).
 * `fd_fdstat_set_flags` on stdio (Go's runtime makes stdio non-blocking) changes only the call's
 * WASI descriptor table, so it is recorded and replayed on every call (`Snapshot.replay`).
 */
const SIDE_EFFECT_FREE: ReadonlyMap<string, ArgCheck> = new Map([
  ['args_sizes_get', ALWAYS], ['args_get', ALWAYS], ['environ_sizes_get', ALWAYS], ['environ_get', ALWAYS],
  ['clock_time_get', ALWAYS], ['clock_res_get', ALWAYS], ['random_get', ALWAYS], ['sched_yield', ALWAYS],
  ['poll_oneoff', CLOCKS_ONLY], ['fd_prestat_get', ALWAYS], ['fd_prestat_dir_name', ALWAYS], ['fd_fdstat_get', STDIO],
  ['fd_fdstat_set_flags', STDIO],
]);
const REPLAYED: ReadonlySet<string> = new Set(['fd_fdstat_set_flags']);
const WASI = 'wasi_snapshot_preview1';

/**
 * Imports for the probe instance: every function replaced by a stub that records the call and
 * throws before doing anything (so nothing observable happens), except the WASI functions of
 * `SIDE_EFFECT_FREE` called with arguments it accepts, which run for real (the `Wasi` behind
 * `imports` must be bound to the probe's memory, which `imports` must hold); memories and other
 * values kept. `called()`
 * stays true even if the guest catches the exception (wasm exception handling); `replay` lists
 * the calls `Snapshot.replay` repeats.
 */
export function probeImports(imports: WebAssembly.Imports): { imports: WebAssembly.Imports; called: () => boolean; replay: WasiReplay[] } {
  let called = false;
  const replay: WasiReplay[] = [];
  const out: WebAssembly.Imports = {};
  const memory = Object.values(imports).flatMap((fields) => Object.values(fields)).find((v) => v instanceof WebAssembly.Memory);
  for (const [module, fields] of Object.entries(imports)) {
    const stubs: WebAssembly.ModuleImports = {};
    for (const [name, value] of Object.entries(fields)) {
      // the meter's deadline check (src/wasm/meter.ts) runs for real: it has no effect but a TIMEOUT
      if (value instanceof WebAssembly.Memory || value instanceof WebAssembly.Global || value instanceof WebAssembly.Table || (module === METER_IMPORT.module && name === METER_IMPORT.name)) {
        stubs[name] = value;
        continue;
      }
      const allowed = module === WASI && typeof value === 'function' ? SIDE_EFFECT_FREE.get(name) : undefined;
      stubs[name] = (...args: unknown[]) => {
        if (allowed?.(args, memory) && !called) {
          if (REPLAYED.has(name)) replay.push([name, args as number[]]);
          return (value as (...a: unknown[]) => unknown)(...args);
        }
        called = true;
        throw new ImportCalled(`${module}.${name} called during initialisation`);
      };
    }
    out[module] = stubs;
  }
  return { imports: out, called: () => called, replay };
}

/** An instance's memory and mutable globals, as `Snapshot` reads and writes them. */
export interface SnapshotTarget {
  memory: WebAssembly.Memory;
  globals: WebAssembly.Global[];
  /** The value type of each of `globals` (`SnapshotPlan.types`); absent: the globals are set from JavaScript. */
  types?: readonly string[];
}

/**
 * The handles of an instance built from a module `prepareSnapshot` rewrote.
 * @throws Error when an export of the plan is missing (the plan does not belong to the module)
 */
export function snapshotTarget(plan: SnapshotPlan, instance: WebAssembly.Instance, memory: WebAssembly.Memory): SnapshotTarget {
  const globals = plan.globals.map((name) => {
    const g = instance.exports[name];
    if (!(g instanceof WebAssembly.Global)) throw new Error(`snapshot: the instance does not export ${name}`);
    return g;
  });
  return { memory, globals, types: plan.types };
}

/**
 * An instance whose `exports` lack the names added by `prepareSnapshot` (for `Guest`: the ABI
 * layer sees the module's own exports only). Everything else is the instance's own.
 */
export function hideSnapshotExports(instance: WebAssembly.Instance): WebAssembly.Instance {
  const exports: Record<string, unknown> = Object.create(null);
  for (const [name, value] of Object.entries(instance.exports)) if (!name.startsWith(SNAPSHOT_EXPORT_PREFIX)) exports[name] = value;
  return Object.create(instance, { exports: { value: Object.freeze(exports), enumerable: true } }) as WebAssembly.Instance;
}

/** The state of an instance right after its initialisation. */
export class Snapshot {
  /** Size of linear memory after initialisation, bytes (a multiple of 64 KiB). */
  readonly memoryBytes: number;
  /** Memory content from byte 0 up to the last non-zero byte; the rest was zero. */
  readonly #data: Uint8Array;
  /** Values of the plan's globals, in plan order (i64 as BigInt). */
  readonly #globals: unknown[];
  /** The module that sets the numeric globals back (`globalsReset`), and the plan indices of those it leaves to JavaScript. */
  readonly #reset?: { module: WebAssembly.Module; indices: number[]; others: number[] };
  /** Per target this snapshot restored: the instance of `#reset.module` bound to its globals (made at its first restore). */
  readonly #resets = new WeakMap<SnapshotTarget, () => void>();
  /** WASI calls of the initialisation to repeat on every call (`probeImports`). */
  readonly #replay: readonly WasiReplay[];

  private constructor(memoryBytes: number, data: Uint8Array, globals: unknown[], replay: readonly WasiReplay[], types?: readonly string[]) {
    this.memoryBytes = memoryBytes;
    this.#data = data;
    this.#globals = globals;
    this.#replay = replay;
    if (types && types.length === globals.length) {
      const indices = [...types.keys()].filter((i) => WASM_TYPES[types[i]!] !== undefined);
      const others = [...types.keys()].filter((i) => WASM_TYPES[types[i]!] === undefined);
      if (indices.length > 0) this.#reset = { module: globalsReset(indices.map((i) => types[i]!), indices.map((i) => globals[i])), indices, others };
    }
  }

  /** Copies the state of an initialised instance; `replay` as `probeImports` recorded it. */
  static capture(target: SnapshotTarget, replay: readonly WasiReplay[] = []): Snapshot {
    const view = new Uint8Array(target.memory.buffer);
    // the last non-zero byte, found 4 bytes at a time (a memory's size is a multiple of 64 KiB):
    // a byte loop in a cold function took 1–2 ms per 64 KiB in each worker
    const words = new Uint32Array(target.memory.buffer);
    let w = words.length;
    while (w > 0 && words[w - 1] === 0) w--;
    let last = w * 4;
    while (last > 0 && view[last - 1] === 0) last--;
    return new Snapshot(view.length, view.slice(0, last), target.globals.map((g) => g.value as unknown), replay, target.types);
  }

  /**
   * Repeats the initialisation's recorded WASI calls on `wasi` (the WASI imports, bound to the
   * call), so that the call's descriptor table looks as it did after initialisation.
   */
  replay(wasi: Readonly<Record<string, (...args: never[]) => unknown>>): void {
    for (const [name, args] of this.#replay) (wasi[name] as (...a: readonly number[]) => unknown)(...args);
  }

  /**
   * Puts an instance of the same module back into the captured state. A memory smaller than
   * `memoryBytes` (a new instance) is grown to it first.
   * @returns false, changing nothing, when the memory is larger than `memoryBytes` (it grew:
   *   memories cannot shrink, so the caller discards the instance)
   * @throws RangeError when a smaller memory cannot grow to `memoryBytes`
   */
  restore(target: SnapshotTarget): boolean {
    const size = target.memory.buffer.byteLength;
    if (size > this.memoryBytes) return false;
    if (size < this.memoryBytes) target.memory.grow((this.memoryBytes - size) / PAGE);
    const view = new Uint8Array(target.memory.buffer);
    view.set(this.#data, 0);
    view.fill(0, this.#data.length);
    const globals = target.globals;
    const reset = this.#reset;
    if (!reset) {
      for (let i = 0; i < globals.length; i++) globals[i]!.value = this.#globals[i];
      return true;
    }
    let run = this.#resets.get(target);
    if (!run) this.#resets.set(target, (run = this.#resetOf(target, reset)));
    run();
    for (const i of reset.others) globals[i]!.value = this.#globals[i];
    return true;
  }

  /** The instance of `reset.module` bound to `target`'s globals: its export sets them back. */
  #resetOf(target: SnapshotTarget, reset: { module: WebAssembly.Module; indices: number[] }): () => void {
    const g: Record<string, WebAssembly.Global> = {};
    for (const [k, i] of reset.indices.entries()) g[k] = target.globals[i]!;
    return new WebAssembly.Instance(reset.module, { g }).exports['r'] as () => void;
  }
}

/** Value type codes of the global types a constant can set (binary format §5.3.1). */
const WASM_TYPES: Readonly<Record<string, number>> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c };

/**
 * A module importing mutable globals `g.0`, `g.1`… of `types` (numeric ones) and exporting `r`,
 * which sets each to its value of `values` (constants in its code). Setting 30-odd globals
 * through `WebAssembly.Global.value` from JavaScript, one API call each, cost about as much as
 * copying the memory; one call of `r` costs one call. f32/f64 values are those JavaScript read
 * (as `Global.value` would set them: a NaN's payload is not kept either way).
 */
function globalsReset(types: readonly string[], values: readonly unknown[]): WebAssembly.Module {
  const out = new ByteWriter(64 + types.length * 16);
  out.range(Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00));
  const s = new ByteWriter();
  const section = (id: number): void => {
    out.byte(id);
    out.uleb(s.length);
    out.range(s.view());
    s.clear();
  };
  s.range(Uint8Array.of(1, 0x60, 0, 0)); // one type: [] -> []
  section(1);
  s.uleb(types.length);
  for (const [k, t] of types.entries()) {
    s.name('g');
    s.name(String(k));
    s.range(Uint8Array.of(0x03, WASM_TYPES[t]!, 1)); // a mutable global
  }
  section(2);
  s.range(Uint8Array.of(1, 0)); // one function, of type 0
  section(3);
  s.uleb(1);
  s.name('r');
  s.range(Uint8Array.of(0x00, 0)); // function 0
  section(7);
  const code = new ByteWriter(16 + types.length * 12);
  code.byte(0); // no locals
  for (const [k, t] of types.entries()) {
    writeConst(code, t, values[k]);
    code.byte(0x24); // global.set
    code.uleb(k);
  }
  code.byte(0x0b);
  s.uleb(1);
  s.uleb(code.length);
  s.range(code.view());
  section(10);
  return new WebAssembly.Module(out.view());
}

/** The instruction that pushes `value` as a constant of numeric type `type`. */
function writeConst(w: ByteWriter, type: string, value: unknown): void {
  if (type === 'i32') {
    w.byte(0x41);
    w.sleb((value as number) | 0);
  } else if (type === 'i64') {
    w.byte(0x42);
    w.sleb64(value as bigint);
  } else {
    const bytes = new DataView(new ArrayBuffer(8));
    if (type === 'f32') bytes.setFloat32(0, value as number, true);
    else bytes.setFloat64(0, value as number, true);
    w.byte(type === 'f32' ? 0x43 : 0x44);
    w.range(new Uint8Array(bytes.buffer, 0, type === 'f32' ? 4 : 8));
  }
}
