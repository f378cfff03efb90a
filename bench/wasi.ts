/**
 * Per-instance cost of Capsule's WASI (src/wasi/preview1.ts) against node:wasi. Not a test.
 *
 *   node bench/wasi.ts [instances=3000]
 *
 * For each implementation and each module, N times: make the WASI context for one call,
 * instantiate the compiled module with it, run `_start`, release it. Capsule's way is the
 * engine's: one `Wasi` per (worker, module) built once, `bind`/`unbind` per call. node:wasi
 * needs a new `WASI` per instance (`start()` may be called once per object).
 * Modules: a tiny hand-written command importing 13 WASI functions (what a C hello world
 * imports) and, when built, the C guest build/fixtures/wasi-basic.wasm (`return 0`).
 */
import { WASI } from 'node:wasi';
import { existsSync, openSync, readFileSync } from 'node:fs';
import wabtInit from 'wabt';
import { Wasi } from '../src/wasi/preview1.ts';
import { root } from './lib.ts';

const N = Number(process.argv[2] ?? 3000);

const TINY = `(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hi\\n")
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 8)))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))`;

const wabt = await wabtInit();
const tinyBytes = Uint8Array.from(wabt.parseWat('tiny.wat', TINY).toBinary({}).buffer);
const modules: [string, WebAssembly.Module][] = [['tiny (13 imports)', new WebAssembly.Module(tinyBytes)]];
const cGuest = `${root}build/fixtures/wasi-basic.wasm`;
if (existsSync(cGuest)) modules.push(['C guest wasi-basic.wasm', new WebAssembly.Module(readFileSync(cGuest))]);
else process.stderr.write(`(${cGuest} is not built: C guest skipped)\n`);

const devNull = openSync('/dev/null', 'w');
const args = ['prog', 'return', '0'];
const env = new Map([['MESSAGE', 'hi']]);

function ours(module: WebAssembly.Module, n: number): number {
  const wasi = new Wasi();
  const imports = { wasi_snapshot_preview1: wasi.imports as unknown as WebAssembly.ModuleImports };
  const config = { args, env, stdin: new Uint8Array(0), stdout: () => {}, stderr: () => {}, mounts: [] };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    wasi.bind(undefined, config);
    const inst = new WebAssembly.Instance(module, imports);
    wasi.setMemory(inst.exports.memory as WebAssembly.Memory);
    try {
      (inst.exports._start as () => void)();
    } catch (e) {
      if ((e as Error).name !== 'WasiExit') throw e;
    }
    wasi.unbind();
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

/** Instantiation alone with do-nothing imports: the floor that neither WASI can go below. */
function baseline(module: WebAssembly.Module, n: number): number {
  const stub: Record<string, () => number> = {};
  for (const imp of WebAssembly.Module.imports(module)) stub[imp.name] = () => 0;
  const imports = { wasi_snapshot_preview1: stub };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) new WebAssembly.Instance(module, imports);
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

function nodeWasi(module: WebAssembly.Module, n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const w = new WASI({ version: 'preview1', args, env: { MESSAGE: 'hi' }, stdout: devNull, stderr: devNull, returnOnExit: true });
    const inst = new WebAssembly.Instance(module, w.getImportObject() as WebAssembly.Imports);
    w.start(inst);
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

process.stdout.write(`WASI per-instance cost (bind, instantiate, _start, unbind), ${N} instances, Node ${process.version}\n`);
for (const [name, module] of modules) {
  baseline(module, Math.min(300, N));
  ours(module, Math.min(300, N));
  nodeWasi(module, Math.min(300, N));
  const z = baseline(module, N);
  const a = ours(module, N);
  const b = nodeWasi(module, N);
  const f = (x: number) => `${x.toFixed(1).padStart(7)} µs`;
  process.stdout.write(`${name}\n  instantiate, no WASI  ${f(z)}\n  capsule               ${f(a)}  (above the floor ${f(a - z)})\n  node:wasi             ${f(b)}  (above the floor ${f(b - z)})\n  node:wasi / capsule   ${(b / a).toFixed(1)}x per instance, ${((b - z) / Math.max(0.1, a - z)).toFixed(0)}x above the floor\n`);
}
