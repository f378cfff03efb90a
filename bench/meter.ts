/**
 * The meter's cost (`npm run bench`; not a test; docs/performance.md "Deadlines without a
 * thread"): guests instrumented by src/wasm/meter.ts against the same guests as built, called
 * on this thread.
 *
 * 1. Compute guest (test/fixtures/meter/compute.c, built to build/fixtures/meter/compute.wasm):
 *    `primes(n)` with n chosen so that one unmetered call takes about 0.7 ms (the compute guest
 *    of issue 18), `fib(n)` (recursion: a check at every call) and `hash(n)` (one tight loop).
 *    Metered and unmetered instances are called in turn, ROUNDS rounds of CALLS calls each
 *    after a warm-up; the median per-call time of each and their ratio are printed. Then
 *    examples/markdown (a Rust WASI command) rendering README.md on a fresh instance per run,
 *    and the gen-2 hello-you handlers (AssemblyScript, Rust, Go) called on one instance.
 * 2. Instrumentation time per KiB of module for guests of each toolchain (C, AssemblyScript,
 *    Rust, Go): the median of several `meterModule` runs, and the size the module grows by.
 * 3. The inline executor (src/engine/inline.ts, `capsule run`/`call`, host SDK `inline: true`)
 *    with a deadline: a call of a metered module (no watchdog) against the same call under the
 *    watchdog (`new InlineExecutor({ meter: false })`, a thread per entry into guest code): an
 *    Extism plugin on its one instance, a gen-2 handler on a fresh instance per call; CPU and
 *    wall time per call, median of the rounds.
 * Times are CPU time of this process (`process.cpuUsage`), not wall time, except instrumentation.
 * The machine is shared: the load average is printed beside the figures; ratios of one run are
 * what count.
 *
 * Options: BENCH_ROUNDS (default 7), BENCH_CALLS (default 200).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './lib.ts';
import { meterImports, meterModule } from '../src/wasm/meter.ts';
import { Wasi, WasiExit } from '../src/wasi/preview1.ts';
import { CapsuleFunction } from '../src/engine/function.ts';
import { InlineExecutor } from '../src/engine/inline.ts';
import type { InvocationInput } from '../src/base/invocation.ts';

const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 7));
const calls = Math.max(1, Number(process.env.BENCH_CALLS ?? 200));
const computePath = join(root, 'build/fixtures/meter/compute.wasm');

type Exports = Record<string, (n: number) => number>;

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * CPU milliseconds of this process since `since` (a `process.cpuUsage()`): on a machine shared
 * with other work, less disturbed than wall time by the scheduler giving the core away.
 */
function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

/** CPU milliseconds per call of `fn(arg)`, over `n` calls. */
function perCall(fn: (n: number) => number, arg: number, n: number): number {
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(arg);
  return cpuMs(t) / n;
}

/** The compute guest, unmetered and metered (deadline far away), each initialised. */
function instances(): { plain: Exports; metered: Exports; checks: () => number } {
  const bytes = new Uint8Array(readFileSync(computePath));
  const m = meterModule(bytes);
  if ('skipped' in m) throw new Error(`the meter skipped the compute guest: ${m.skipped}`);
  const deadline = { at: Infinity, checks: 0 };
  const plain = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as Exports;
  const metered = new WebAssembly.Instance(new WebAssembly.Module(m.bytes), meterImports(deadline)).exports as Exports;
  plain._initialize?.(0);
  metered._initialize?.(0);
  return { plain, metered, checks: () => deadline.checks };
}

/** The argument of `primes` for which one unmetered call takes about `ms`. */
function calibrate(plain: Exports, ms: number): number {
  let n = 10_000;
  perCall(plain.primes!, n, 50); // warm-up
  for (let i = 0; i < 20; i++) {
    const t = perCall(plain.primes!, n, 20); // CPU time: about the wall time of a call on an idle core
    if (Math.abs(t - ms) / ms < 0.1) break;
    n = Math.max(1000, Math.min(1 << 20, Math.round(n * ms / t)));
  }
  return n;
}

function computeBench(): void {
  const { plain, metered, checks } = instances();
  const n = calibrate(plain, 0.7);
  const workloads: [string, number][] = [[`primes(${n})`, n], ['fib(25)', 25], ['hash(40)', 40]];
  console.log(`meter: compute guest, in-thread, ${rounds} rounds × ${calls} calls (load average ${loadavg()})`);
  for (const [label, arg] of workloads) {
    const name = label.slice(0, label.indexOf('('));
    if (plain[name]!(arg) !== metered[name]!(arg)) throw new Error(`${label}: metered answer differs`);
    perCall(plain[name]!, arg, calls);
    perCall(metered[name]!, arg, calls);
    const a: number[] = [];
    const b: number[] = [];
    const before = checks();
    for (let r = 0; r < rounds; r++) { // in turn, the first one alternating
      if (r % 2) b.push(perCall(metered[name]!, arg, calls));
      a.push(perCall(plain[name]!, arg, calls));
      if (r % 2 === 0) b.push(perCall(metered[name]!, arg, calls));
    }
    const ma = median(a);
    const mb = median(b);
    const perCheck = (checks() - before) / (rounds * calls);
    console.log(`  ${label.padEnd(14)} unmetered ${(ma * 1000).toFixed(1)} µs, metered ${(mb * 1000).toFixed(1)} µs: ${(mb / ma).toFixed(3)}× (${perCheck.toFixed(1)} checks per call)`);
  }
  markdownBench();
  handlerBench();
}

/** One run of a WASI command on a fresh instance (the project's Wasi), stdout's length. */
function runCommand(module: WebAssembly.Module, stdin: Uint8Array, deadline: { at: number }): number {
  const wasi = new Wasi();
  let out = 0;
  wasi.bind(undefined, { args: ['markdown'], env: new Map(), stdin, mounts: [], stdout: (b) => { out += b.length; }, stderr: () => {} });
  const imports = { wasi_snapshot_preview1: wasi.imports as unknown as WebAssembly.ModuleImports, ...meterImports(deadline) };
  const instance = new WebAssembly.Instance(module, imports);
  wasi.setMemory(instance.exports.memory as WebAssembly.Memory);
  try {
    (instance.exports._start as () => void)();
  } catch (e) {
    if (!(e instanceof WasiExit) || e.code !== 0) throw e;
  } finally {
    wasi.unbind();
  }
  return out;
}

/** examples/markdown (Rust, WASI command) rendering README.md: a guest doing ordinary work. */
function markdownBench(): void {
  const path = join(root, 'examples/markdown/markdown.wasm');
  if (!existsSync(path)) return console.log('  markdown: not built, skipped');
  const bytes = new Uint8Array(readFileSync(path));
  const m = meterModule(bytes);
  if ('skipped' in m) throw new Error(`markdown: skipped (${m.skipped})`);
  const plain = new WebAssembly.Module(bytes);
  const metered = new WebAssembly.Module(m.bytes);
  const stdin = new Uint8Array(readFileSync(join(root, 'README.md')));
  const deadline = { at: Infinity };
  if (runCommand(plain, stdin, deadline) !== runCommand(metered, stdin, deadline)) throw new Error('markdown: metered output differs');
  const n = Math.max(5, Math.round(calls / 10));
  const a: number[] = [];
  const b: number[] = [];
  const time = (module: WebAssembly.Module) => {
    const t = process.cpuUsage();
    for (let i = 0; i < n; i++) runCommand(module, stdin, deadline);
    return cpuMs(t) / n;
  };
  for (let r = 0; r < rounds + 2; r++) { // in turn, the first one alternating; 2 rounds of warm-up
    const [x, y] = r % 2 ? [metered, plain] : [plain, metered];
    const tx = time(x);
    const ty = time(y);
    if (r < 2) continue;
    a.push(x === plain ? tx : ty);
    b.push(x === plain ? ty : tx);
  }
  const ma = median(a);
  const mb = median(b);
  console.log(`  ${`markdown ${(stdin.length / 1024).toFixed(0)} KiB`.padEnd(14)} unmetered ${(ma * 1000).toFixed(1)} µs, metered ${(mb * 1000).toFixed(1)} µs: ${(mb / ma).toFixed(3)}× (fresh instance per run)`);
}

/** An initialised instance of a gen-2 guest: WASI (the project's) and a stub answering 0 for other imports. */
function handlerInstance(module: WebAssembly.Module, deadline: { at: number }): Record<string, (...a: number[]) => unknown> {
  const wasi = new Wasi();
  wasi.bind(undefined, { args: [''], env: new Map(), stdin: new Uint8Array(0), mounts: [], stdout: () => {}, stderr: () => {} });
  const imports: Record<string, Record<string, WebAssembly.ImportValue>> = { ...meterImports(deadline), wasi_snapshot_preview1: wasi.imports as unknown as Record<string, WebAssembly.ImportValue> };
  for (const i of WebAssembly.Module.imports(module)) {
    imports[i.module] ??= {};
    imports[i.module]![i.name] ??= () => 0;
  }
  const instance = new WebAssembly.Instance(module, imports);
  wasi.setMemory(instance.exports.memory as WebAssembly.Memory);
  const ex = instance.exports as Record<string, (...a: number[]) => unknown>;
  ex._initialize?.();
  return ex;
}

/** One gen-2 handler call (capsule-abi.md §2.3): malloc, the input written, the handler, the result's length. */
function callHandler(ex: Record<string, (...a: number[]) => unknown>, name: string, input: Uint8Array): number {
  const ptr = ex.malloc!(input.length) as number;
  new Uint8Array((ex.memory as unknown as WebAssembly.Memory).buffer).set(input, ptr);
  const r = ex[name]!(ptr, input.length) as bigint;
  ex.free?.(ptr);
  return Number(r & 0xffffffffn);
}

/** Small gen-2 handlers called on one instance: the calls issue 18 is about. */
function handlerBench(): void {
  const cases: [string, string, string][] = [
    ['AS hello-you callHandleHTTP', 'examples/hello-you/hello-you.wasm', 'callHandleHTTP'],
    ['Rust hello-you callHandleHTTP', 'examples/rust/hello-you/hello-you.wasm', 'callHandleHTTP'],
    ['Go hello-world callHandle', 'examples/go/hello-world/hello-world.wasm', 'callHandle'],
  ];
  const http = '{"Body":"{\\"name\\":\\"Bob Morane\\",\\"age\\":42}","JSONBody":"","TextBody":"","URI":"http://localhost/","Method":"POST","Headers":"{\\"Content-Type\\":\\"application/json\\"}"}';
  for (const [label, file, name] of cases) {
    const path = join(root, file);
    if (!existsSync(path)) {
      console.log(`  ${label}: not built, skipped`);
      continue;
    }
    const bytes = new Uint8Array(readFileSync(path));
    const m = meterModule(bytes);
    if ('skipped' in m) throw new Error(`${label}: skipped (${m.skipped})`);
    const deadline = { at: Infinity };
    const input = new TextEncoder().encode(name === 'callHandle' ? 'Bob Morane' : http);
    const plain = handlerInstance(new WebAssembly.Module(bytes), deadline);
    const metered = handlerInstance(new WebAssembly.Module(m.bytes), deadline);
    if (callHandler(plain, name, input) !== callHandler(metered, name, input)) throw new Error(`${label}: metered answer differs`);
    const n = calls * 50;
    const time = (ex: typeof plain) => {
      const t = process.cpuUsage();
      for (let i = 0; i < n; i++) callHandler(ex, name, input);
      return cpuMs(t) / n;
    };
    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < rounds + 2; r++) {
      const first = r % 2 ? metered : plain;
      const tf = time(first);
      const ts = time(first === plain ? metered : plain);
      if (r < 2) continue;
      a.push(first === plain ? tf : ts);
      b.push(first === plain ? ts : tf);
    }
    const ma = median(a);
    const mb = median(b);
    console.log(`  ${label.padEnd(30)} unmetered ${(ma * 1000).toFixed(2)} µs, metered ${(mb * 1000).toFixed(2)} µs: ${(mb / ma).toFixed(3)}× (one instance)`);
  }
}

function instrumentBench(): void {
  const guests: [string, string][] = [
    ['C compute', computePath],
    ['C hello-world-c', join(root, 'examples/hello-world-c/hello-world-c.wasm')],
    ['AssemblyScript hello-you', join(root, 'examples/hello-you/hello-you.wasm')],
    ['Rust hello-you', join(root, 'examples/rust/hello-you/hello-you.wasm')],
    ['Go hello-you', join(root, 'examples/go/hello-you/hello-you.wasm')],
  ];
  console.log(`meter: instrumentation time (load average ${loadavg()})`);
  for (const [label, path] of guests) {
    if (!existsSync(path)) {
      console.log(`  ${label}: not built, skipped`);
      continue;
    }
    const bytes = new Uint8Array(readFileSync(path));
    const times: number[] = [];
    let out = 0;
    let code = 0;
    for (let i = 0; i < 7; i++) {
      const t = performance.now();
      const m = meterModule(bytes);
      times.push(performance.now() - t);
      if ('skipped' in m) throw new Error(`${label}: skipped (${m.skipped})`);
      out = m.bytes.length;
      code = m.stats.loops + m.stats.entries + m.stats.indirect;
    }
    const kib = bytes.length / 1024;
    const ms = median(times);
    console.log(`  ${label.padEnd(26)} ${kib.toFixed(0).padStart(5)} KiB: ${ms.toFixed(2)} ms, ${(ms * 1000 / kib).toFixed(1)} µs/KiB; ${code} check points; ${bytes.length} → ${out} bytes (debug sections dropped)`);
  }
}

/** Part 3: per-call cost of the inline executor with a deadline, metered against the watchdog. */
async function inlineBench(): Promise<void> {
  const enc = (t: string) => new TextEncoder().encode(t);
  const cases: [string, string, InvocationInput][] = [
    ['Extism AS count_vowels', 'build/fixtures/extism-as.wasm', { type: 'cli', params: enc('Hello, World!'), args: [], entrypoint: 'count_vowels' }],
    ['gen-2 WAT echo (fresh)', 'build/fixtures/gen2-behaviours.wasm', { type: 'cli', params: enc('hello'), args: [] }],
  ];
  console.log(`meter: inline executor, timeoutMs 5000, ${rounds} rounds × ${calls * 5} calls (load average ${loadavg()})`);
  for (const [label, file, input] of cases) {
    const path = join(root, file);
    if (!existsSync(path)) {
      console.log(`  ${label}: not built, skipped`);
      continue;
    }
    const fn = await CapsuleFunction.load({ path }, { inline: true, timeoutMs: 5000, stdio: 'capture' });
    const sides = [true, false].map((meter) => {
      const ex = new InlineExecutor({ meter });
      return { ex, entry: ex.register(fn.module, fn.settings) };
    });
    const time = async (side: (typeof sides)[number]) => {
      const n = calls * 5;
      const t = process.cpuUsage();
      const w = performance.now();
      for (let i = 0; i < n; i++) await side.ex.call(side.entry, input, { timeoutMs: 5000 });
      return { cpu: cpuMs(t) / n, wall: (performance.now() - w) / n };
    };
    const got: { cpu: number; wall: number }[][] = [[], []];
    for (let r = 0; r < rounds + 1; r++) { // in turn, the first one alternating; a round of warm-up
      const order = r % 2 ? [1, 0] : [0, 1];
      for (const k of order) {
        const x = await time(sides[k]!);
        if (r > 0) got[k]!.push(x);
      }
    }
    const [m, w] = got.map((xs) => ({ cpu: median(xs.map((x) => x.cpu)), wall: median(xs.map((x) => x.wall)) }));
    console.log(`  ${label.padEnd(24)} metered ${(m!.cpu * 1000).toFixed(1)} µs CPU / ${(m!.wall * 1000).toFixed(1)} µs wall, watchdog ${(w!.cpu * 1000).toFixed(1)} µs CPU / ${(w!.wall * 1000).toFixed(1)} µs wall per call: ${(w!.cpu / m!.cpu).toFixed(1)}× the CPU`);
    for (const side of sides) await side.ex.close();
    await fn.close();
  }
}

if (!existsSync(computePath)) {
  console.log('meter: build/fixtures/meter/compute.wasm is not built (npm run build:guests, needs clang and wasi-libc): skipped');
} else {
  computeBench();
  instrumentBench();
}
await inlineBench();
