/**
 * The meter (src/wasm/meter.ts): every built guest still validates once instrumented and gives
 * the same answers, and a guest that never returns is stopped at its deadline on the thread that
 * runs it (this test's own main thread), which then serves on.
 *
 * Guests are run by a small harness, not the engine (the engine does not use the meter yet):
 * WASI through the project's Wasi, every other function import a stub answering 0; a WASI command
 * runs `_start`, a reactor `_initialize` and then its gen-2 handlers with a fixed input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CapsuleError } from '../src/base/errors.ts';
import { parseModule, Reader, readInstruction, rewriteMemoryAsImport, type FuncType } from '../src/wasm/binary.ts';
import { checkDeadline, meterImports, meterModule, METER_IMPORT, type MeterDeadline } from '../src/wasm/meter.ts';
import { Wasi, WasiExit } from '../src/wasi/preview1.ts';
import { encodeHttpRequest } from '../src/abi/capsule2/http.ts';
import { example, fixture, missing, root } from './helpers.ts';

const meterFixture = (name: string) => join(root, 'build/fixtures/meter', `${name}.wasm`);

/** Every built guest: fixtures (conformance included) and examples (Go and Rust MDK ones included). */
function allGuests(): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory() && depth > 0 && e.name !== 'node_modules') walk(p, depth - 1);
      else if (e.isFile() && e.name.endsWith('.wasm')) out.push(p);
    }
  };
  walk(join(root, 'build/fixtures'), 1);
  walk(join(root, 'examples'), 2);
  return out.sort();
}

/** The instrumented bytes of a guest; fails the test when the meter skipped it. */
function metered(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const m = meterModule(bytes);
  if ('skipped' in m) assert.fail(`skipped: ${m.skipped}`);
  return m.bytes;
}

/** What a run of a guest shows: its output and how each step ended. */
interface Outcome {
  stdout: string;
  stderr: string;
  steps: string[];
}

const zero = (t: FuncType | undefined) => (t?.results[0] === 'i64' ? 0n : 0);

/**
 * The project's WASI with fixed random bytes and a clock that moves 1 ms per reading, so that two
 * runs can be compared.
 */
function deterministic(wasi: Wasi, memory: () => WebAssembly.Memory): Record<string, WebAssembly.ImportValue> {
  let now = 1_700_000_000_000_000_000n;
  const bytes = (ptr: number, len: number) => new Uint8Array(memory().buffer, ptr >>> 0, len >>> 0);
  return {
    ...(wasi.imports as unknown as Record<string, WebAssembly.ImportValue>),
    random_get: (ptr: number, len: number) => {
      bytes(ptr, len).fill(7);
      return 0;
    },
    clock_time_get: (_id: number, _precision: bigint, out: number) => {
      new DataView(memory().buffer).setBigUint64(out >>> 0, now += 1_000_000n, true);
      return 0;
    },
  };
}

/** Import object: WASI (the project's, deterministic), the meter's check, and a stub answering 0 for every other function. */
function harnessImports(bytes: Uint8Array, wasi: Wasi, memory: () => WebAssembly.Memory, deadline: MeterDeadline): WebAssembly.Imports | undefined {
  const imports: Record<string, Record<string, WebAssembly.ImportValue>> = {};
  for (const i of parseModule(bytes).imports) {
    if (i.kind !== 'function') return undefined; // memory, table, global imports: not run here
    imports[i.module] ??= {};
    if (i.module === 'wasi_snapshot_preview1') imports[i.module] = deterministic(wasi, memory);
    else if (i.module === METER_IMPORT.module) Object.assign(imports, meterImports(deadline));
    else imports[i.module]![i.name] = () => zero(i.type);
  }
  return imports;
}

const HTTP_REQUEST = encodeHttpRequest({
  type: 'http', method: 'POST', url: 'http://localhost/hello', headers: [['content-type', 'application/json']],
  body: new TextEncoder().encode('{"name":"Bob Morane","age":42}'), remoteAddress: '127.0.0.1', remotePort: 40000,
});
const HANDLER_INPUTS = [['callHandle', 'Bob Morane'], ['callHandleJSON', '{"name":"Bob Morane","age":42}'], ['callHandleHTTP', HTTP_REQUEST]] as const;

/**
 * Runs a guest: `_start` (argv `guest ...args`) or `_initialize`, then `callHandle` and
 * `callHandleJSON` and `callHandleHTTP` when they have the gen-2 signature (ptr, len) → i64;
 * stdin holds a little Markdown (examples/markdown reads it). Each step of a metered module gets
 * its own deadline, `o.timeoutMs` (default 60 s) from its start; `_initialize` always 60 s.
 * @returns undefined when the module imports something other than functions
 */
function runGuest(bytes: Uint8Array<ArrayBuffer>, o: { args?: string[]; timeoutMs?: number } = {}): Outcome | undefined {
  const out: Outcome = { stdout: '', stderr: '', steps: [] };
  const wasi = new Wasi();
  const dec = new TextDecoder();
  wasi.bind(undefined, {
    args: ['guest', ...(o.args ?? [])], env: new Map(), stdin: new TextEncoder().encode('# Title\n\n*Bob* Morane\n'), mounts: [],
    stdout: (b) => { out.stdout += dec.decode(b); }, stderr: (b) => { out.stderr += dec.decode(b); },
  });
  const timeoutMs = o.timeoutMs ?? 60_000;
  const deadline: MeterDeadline = { at: Infinity, timeoutMs };
  let instance: WebAssembly.Instance | undefined;
  const imports = harnessImports(bytes, wasi, () => instance!.exports.memory as WebAssembly.Memory, deadline);
  if (!imports) return undefined;
  instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
  const ex = instance.exports as Record<string, (...a: unknown[]) => unknown>;
  if (instance.exports.memory instanceof WebAssembly.Memory) wasi.setMemory(instance.exports.memory);
  const step = (name: string, fn: () => unknown) => {
    // each call its own deadline, as the engine's; initialisation is not what is measured
    deadline.at = performance.now() + (name === '_initialize' ? 60_000 : timeoutMs);
    try {
      out.steps.push(`${name}: ${String(fn())}`);
      return true;
    } catch (e) {
      if (e instanceof WasiExit) out.steps.push(`${name}: exit ${e.code}`);
      else out.steps.push(`${name}: ${(e as Error).name} ${(e as Error).message}`);
      return e instanceof WasiExit && e.code === 0;
    }
  };
  if (ex._start) return step('_start', () => ex._start!()), out;
  if (ex._initialize && !step('_initialize', () => ex._initialize!())) return out;
  const types = new Map(parseModule(bytes).exports.map((e) => [e.name, e.type]));
  for (const [name, input] of HANDLER_INPUTS) {
    const t = types.get(name);
    if (!t || t.params.join() !== 'i32,i32' || t.results.join() !== 'i64' || !ex.malloc) continue;
    step(name, () => {
      const data = new TextEncoder().encode(input);
      const ptr = ex.malloc!(data.length) as number;
      new Uint8Array((instance.exports.memory as WebAssembly.Memory).buffer).set(data, ptr);
      const r = BigInt.asUintN(64, ex[name]!(ptr, data.length) as bigint);
      const mem = new Uint8Array((instance.exports.memory as WebAssembly.Memory).buffer);
      return dec.decode(mem.subarray(Number(r >> 32n), Number(r >> 32n) + Number(r & 0xffffffffn)));
    });
  }
  return out;
}

test('every built guest validates once metered, keeps its exports, and answers as before', (t) => {
  const guests = allGuests();
  if (guests.length === 0) return t.skip('no guest built (npm run build:guests)');
  let ran = 0;
  for (const path of guests) {
    const name = path.replace(root, '');
    const bytes = new Uint8Array(readFileSync(path));
    const m = meterModule(bytes);
    if (name.includes('/meter/catch-all') || name.includes('/gen2-unmetered')) {
      assert.ok('skipped' in m, `${name}: a module that catches every exception must be skipped`);
      continue;
    }
    if ('skipped' in m) assert.fail(`${name}: skipped (${m.skipped})`);
    assert.ok(WebAssembly.validate(m.bytes), `${name}: the metered module does not validate`);
    const before = new WebAssembly.Module(bytes);
    const after = new WebAssembly.Module(m.bytes);
    assert.deepEqual(WebAssembly.Module.exports(after), WebAssembly.Module.exports(before), name);
    assert.deepEqual(WebAssembly.Module.imports(after), [...WebAssembly.Module.imports(before), { ...METER_IMPORT, kind: 'function' }], name);
    // guests that never return, run metered by the tests below (unmetered, they would hang this file)
    if (/spin|catch-all|wasi-gate|init-loop|meter\/(loops|tail|compute)/.test(name)) continue;
    const plain = runGuest(bytes);
    if (!plain) continue;
    assert.deepEqual(runGuest(m.bytes), plain, `${name}: metered run differs`);
    ran++;
  }
  assert.ok(ran >= 40, `only ${ran} guests were run`);
});

/** Runs `fn` and returns the error it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return assert.fail('it returned');
}

function isTimeout(e: unknown): boolean {
  return e instanceof CapsuleError && e.code === 'TIMEOUT';
}

/** A metered instance of a built guest, its deadline `ms` after instantiation (stubs for other imports). */
function meteredInstance(path: string, ms: number, imports: WebAssembly.Imports = {}): { exports: Record<string, (...a: number[]) => number>; deadline: MeterDeadline } {
  const deadline: MeterDeadline = { at: Infinity, timeoutMs: ms };
  const bytes = metered(new Uint8Array(readFileSync(path)));
  const all: Record<string, Record<string, WebAssembly.ImportValue>> = { ...meterImports(deadline) };
  for (const i of WebAssembly.Module.imports(new WebAssembly.Module(bytes))) {
    if (i.kind !== 'function' || i.module === METER_IMPORT.module) continue;
    all[i.module] ??= {};
    all[i.module]![i.name] ??= ((imports[i.module] as Record<string, WebAssembly.ImportValue> | undefined)?.[i.name]) ?? (() => 0);
  }
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), all);
  deadline.at = performance.now() + ms;
  return { exports: instance.exports as Record<string, (...a: number[]) => number>, deadline };
}

test('WAT loops: an endless loop is stopped at its deadline with TIMEOUT, and the thread serves on', { skip: missing(meterFixture('loops')) }, () => {
  const path = meterFixture('loops');
  const spin = meteredInstance(path, 150);
  const e = thrown(() => spin.exports.spin!());
  assert.ok(isTimeout(e), String(e));
  assert.match((e as Error).message, /within 150 ms/);
  assert.ok(spin.deadline.checks! > 1, 'the budget was never checked more than once');
  let notes = 0;
  const calling = meteredInstance(path, 150, { env: { note: () => void notes++ } });
  assert.ok(isTimeout(thrown(() => calling.exports.spin_calling!())));
  assert.ok(notes > 0);
  // the same thread, a fresh instance: answers as the unmetered module does
  const plain = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(path)), { env: { note: () => {} } }).exports as Record<string, (...a: number[]) => number>;
  const next = meteredInstance(path, 10_000);
  for (const [name, args] of [['sum', [100_000]], ['halve', [1_000_000]], ['grid', [300, 200]]] as const) {
    assert.equal(next.exports[name]!(...args), plain[name]!(...args), name);
  }
});

test('a start function that never returns is stopped during instantiation', { skip: missing(meterFixture('start-spin')) }, () => {
  const module = new WebAssembly.Module(metered(new Uint8Array(readFileSync(meterFixture('start-spin')))));
  const deadline: MeterDeadline = { at: performance.now() + 100, timeoutMs: 100 };
  assert.ok(isTimeout(thrown(() => new WebAssembly.Instance(module, meterImports(deadline)))));
});

test('tail calls and recursion without a loop are stopped too; terminating ones answer as before', { skip: missing(meterFixture('tail')) }, () => {
  const path = meterFixture('tail');
  for (const [name, arg] of [['forever', 0], ['bounce', 0], ['fib', 60], ['fib_indirect', 60], ['mutual', 60]] as const) {
    const i = meteredInstance(path, 100);
    const e = thrown(() => i.exports[name]!(arg));
    assert.ok(isTimeout(e), `${name}: ${String(e)}`);
  }
  const plain = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(path))).exports as Record<string, (n: number) => number>;
  const i = meteredInstance(path, 10_000);
  assert.equal(i.exports.even!(1_000_001), plain.even!(1_000_001));
  assert.equal(i.exports.fib!(22), plain.fib!(22));
  assert.equal(i.exports.fib_indirect!(22), plain.fib_indirect!(22));
  assert.equal(i.exports.mutual!(22), plain.mutual!(22));
});

test('C, Rust, Go and AssemblyScript guests that never return are stopped at their deadline', () => {
  const cases: [string, string, () => unknown][] = [];
  if (!missing(meterFixture('compute'))) cases.push(['C compute.spin', 'c', () => meteredInstance(meterFixture('compute'), 100).exports.spin!()]);
  if (!missing(fixture('extism-kitchen'))) cases.push(['C extism-kitchen.spin', 'c', () => meteredInstance(fixture('extism-kitchen'), 100).exports.spin!()]);
  if (!missing(fixture('extism-as'))) cases.push(['AssemblyScript extism-as.spin', 'as', () => meteredInstance(fixture('extism-as'), 100).exports.spin!()]);
  if (!missing(meterFixture('spin'))) {
    cases.push(['Rust spin.rs', 'rust', () => {
      const out = runGuest(metered(new Uint8Array(readFileSync(meterFixture('spin')))), { args: ['spin'], timeoutMs: 100 });
      return out?.steps.join();
    }]);
  }
  if (!missing(fixture('go-spin'))) {
    cases.push(['Go go-spin', 'go', () => {
      const out = runGuest(metered(new Uint8Array(readFileSync(fixture('go-spin')))), { timeoutMs: 100 });
      return out?.steps.join();
    }]);
  }
  assert.ok(cases.length >= 3, 'the C, Rust and AssemblyScript guests were not built');
  for (const [name, lang, run] of cases) {
    if (lang === 'rust') assert.match(String(run()), /^_start: CapsuleError the function did not return within 100 ms/, name);
    else if (lang === 'go') assert.match(String(run()), /^_initialize: undefined,callHandle: CapsuleError the function did not return within 100 ms/, name);
    else assert.ok(isTimeout(thrown(run)), name);
  }
  if (!missing(meterFixture('spin'))) {
    const bytes = new Uint8Array(readFileSync(meterFixture('spin')));
    const plain = runGuest(bytes)!;
    assert.match(plain.stdout, /^sum 499500 fib 75025\n$/);
    assert.deepEqual(runGuest(metered(bytes)), plain);
  }
});

test('checkDeadline, for host imports that wait, throws the same TIMEOUT once the deadline is past', () => {
  const e = thrown(() => checkDeadline({ at: performance.now() - 1, timeoutMs: 20 }));
  assert.ok(isTimeout(e));
  assert.match((e as Error).message, /within 20 ms/);
  checkDeadline({ at: Infinity });
});

test('C compute guest: loops, recursion and memory answer as before when metered', { skip: missing(meterFixture('compute')) }, () => {
  const bytes = new Uint8Array(readFileSync(meterFixture('compute')));
  const plain = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as Record<string, (...a: number[]) => number>;
  const m = meteredInstance(meterFixture('compute'), 60_000).exports;
  plain._initialize?.();
  m._initialize?.();
  for (const [name, arg] of [['primes', 200_000], ['fib', 24], ['hash', 50]] as const) assert.equal(m[name]!(arg), plain[name]!(arg), name);
});

/** The flags (form, 0–7) of each element segment of a module. */
function elementFlags(bytes: Uint8Array): number[] {
  const s = parseModule(bytes).sections.find((x) => x.id === 9)!;
  const r = new Reader(bytes, s.contentStart, s.end);
  const expr = () => {
    while (readInstruction(r) !== 0x0b) { /* up to its end */ }
  };
  return r.vec(() => {
    const flags = r.u32();
    if ((flags & 1) === 0) {
      if (flags & 2) r.u32();
      expr();
    }
    if (flags & 3) {
      if (flags & 4) r.valtype();
      else r.u8();
    }
    r.vec(() => (flags & 4 ? expr() : r.u32()));
    return flags;
  });
}

test('every element segment form, ref.func, start and names survive the renumbering', { skip: missing(meterFixture('elems')) }, () => {
  const bytes = new Uint8Array(readFileSync(meterFixture('elems')));
  assert.deepEqual(elementFlags(bytes), [0, 1, 2, 3, 4, 5, 6, 7], 'the fixture holds every segment form');
  const run = (b: Uint8Array<ArrayBuffer>) => {
    const imports = { env: { seven: () => 7 }, ...meterImports({ at: performance.now() + 10_000 }) };
    const x = new WebAssembly.Instance(new WebAssembly.Module(b), imports).exports as Record<string, (...a: number[]) => number>;
    const calls = [x.started!(), ...[0, 1, 2].map((i) => x.call0!(i)), ...[0, 1, 2, 3].map((i) => x.call1!(i)), x.init!(), x.viaGlobal!(), x.viaRefFunc!()];
    const stack = String((thrown(() => x.boom!()) as Error).stack);
    return { calls, boom: / at kaboom /.test(stack) }; // its name in the name section, not its export name
  };
  const plain = run(bytes);
  assert.deepEqual(plain, { calls: [5, 1, 2, 3, 2, 1, 7, 4, 12, 3, 11], boom: true });
  const after = metered(bytes);
  assert.deepEqual(elementFlags(after), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(run(after), plain);
  assert.equal(WebAssembly.Module.customSections(new WebAssembly.Module(after), 'name').length, 1);
});

test('SIMD, bulk memory, atomics, multi-memory and exception instructions are walked and run as before', { skip: missing(meterFixture('features')) }, () => {
  const bytes = new Uint8Array(readFileSync(meterFixture('features')));
  const m = meterModule(bytes);
  assert.ok(!('skipped' in m), 'skipped' in m ? m.skipped : '');
  assert.equal(m.stats.loops, 5);
  const run = (b: Uint8Array<ArrayBuffer>) => {
    const x = new WebAssembly.Instance(new WebAssembly.Module(b), meterImports({ at: performance.now() + 10_000 })).exports as Record<string, (...a: number[]) => number>;
    return [x.simd!(9), x.bulk!(), x.numeric!(12.75), x.atomics!(), x.exceptions!()];
  };
  assert.deepEqual(run(m.bytes), run(bytes));
});

test('imported and defined globals keep their indices beside the budget global', { skip: missing(meterFixture('globals')) }, () => {
  const bytes = new Uint8Array(readFileSync(meterFixture('globals')));
  const run = (b: Uint8Array<ArrayBuffer>) => {
    const env = { base: 5, step: new WebAssembly.Global({ value: 'i32', mutable: true }, 2) };
    const x = new WebAssembly.Instance(new WebAssembly.Module(b), { env, ...meterImports({ at: performance.now() + 10_000 }) }).exports as Record<string, (n: number) => number>;
    return [x.run!(3000), env.step.value];
  };
  assert.deepEqual(run(metered(bytes)), run(bytes));
});

test('a module the meter cannot rewrite safely is skipped, never broken', { skip: missing(meterFixture('catch-all')) }, () => {
  const catchAll = meterModule(new Uint8Array(readFileSync(meterFixture('catch-all'))));
  assert.ok('skipped' in catchAll && /catch host exceptions/.test(catchAll.skipped));
  // (func i32.const 0 drop 0xfb 0x00 ... end): an instruction of the GC proposal, 0xFB prefix
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const types = [0x01, 0x04, 0x01, 0x60, 0x00, 0x00];
  const funcs = [0x03, 0x02, 0x01, 0x00];
  const body = [0x00, 0xfb, 0x1e, 0x0b];
  const code = [0x0a, body.length + 2, 0x01, body.length, ...body];
  const gc = meterModule(Uint8Array.from([...header, ...types, ...funcs, ...code]));
  assert.ok('skipped' in gc && /instruction the meter does not know.*0xfb/.test(gc.skipped), JSON.stringify(gc));
  const gcType = meterModule(Uint8Array.from([...header, 0x01, 0x04, 0x01, 0x5f, 0x00, 0x00]));
  assert.ok('skipped' in gcType && /GC types/.test(gcType.skipped), JSON.stringify(gcType));
  const junk = meterModule(Uint8Array.from([1, 2, 3]));
  assert.ok('skipped' in junk && /not a WebAssembly binary/.test(junk.skipped));
  const truncated = meterModule(Uint8Array.from([...header, ...types, ...funcs, 0x0a, 0x09, 0x01]));
  assert.ok('skipped' in truncated);
  const twice = meterModule(metered(new Uint8Array(readFileSync(meterFixture('loops')))));
  assert.ok('skipped' in twice && /already imports/.test(twice.skipped));
});

test('mutated modules: the meter never throws, and a module that validates comes out validating (or skipped)', { skip: missing(meterFixture('features')) }, () => {
  let seed = 12345; // a fixed sequence: the same mutations every run
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  let valid = 0;
  for (const name of ['loops', 'tail', 'elems', 'features', 'compute']) {
    const base = new Uint8Array(readFileSync(meterFixture(name)));
    for (let k = 0; k < 400; k++) {
      const bytes = base.slice();
      for (let j = 0, n = 1 + Math.floor(random() * 3); j < n; j++) bytes[8 + Math.floor(random() * (bytes.length - 8))] = Math.floor(random() * 256);
      const m = meterModule(bytes);
      if (!WebAssembly.validate(bytes)) continue;
      valid++;
      if (!('skipped' in m)) assert.ok(WebAssembly.validate(m.bytes), `${name}, mutation ${k}: the metered module does not validate`);
    }
  }
  assert.ok(valid > 100, `only ${valid} mutated modules validated`);
});

test('a metered module goes through the engine\'s memory rewrite and still validates', { skip: missing(example('hello-you')) }, () => {
  const bytes = metered(new Uint8Array(readFileSync(example('hello-you'))));
  const rewritten = rewriteMemoryAsImport(bytes, parseModule(bytes));
  assert.ok(rewritten && WebAssembly.validate(rewritten as Uint8Array<ArrayBuffer>));
  assert.ok(WebAssembly.Module.imports(new WebAssembly.Module(rewritten as Uint8Array<ArrayBuffer>)).some((i) => i.module === 'capsule' && i.kind === 'memory'));
});
