/**
 * "A fresh instance per call" served by resetting one initialised instance (src/engine/snapshot.ts,
 * capsule-abi.md §3): what a guest sees must not differ from a new instance per call — globals,
 * memory, memory size and tables start from their post-initialisation values every call, a
 * guest whose initialisation calls the host still does so every call, a trap leaks nothing, and
 * --reuse still keeps state.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CapsuleFunction, CapsuleError, type CliOutput, type HttpResponseOutput } from '../src/index.ts';
import { ModuleInstances } from '../src/engine/instance.ts';
import { MemoryPool } from '../src/engine/memory-pool.ts';
import { workerModuleOf } from '../src/engine/protocol.ts';
import { compileModule } from '../src/engine/load.ts';
import { hideSnapshotExports, Snapshot, SNAPSHOT_EXPORT_PREFIX } from '../src/engine/snapshot.ts';
import { example, fixture, missing, runCapsule } from './helpers.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Invokes the CLI entry with `params` and returns the result text and captured stdout. */
async function call(fn: CapsuleFunction, params: string): Promise<{ text: string; stdout: string }> {
  const r = await fn.invoke({ type: 'cli', params: encoder.encode(params), args: [] });
  return { text: decoder.decode((r.output as CliOutput).text), stdout: r.logs?.stdout ?? '' };
}

async function withFunction(name: string, reuse: boolean, body: (fn: CapsuleFunction) => Promise<void>, env: [string, string][] = []): Promise<void> {
  const fn = await CapsuleFunction.load({ path: fixture(name) }, { workers: 1, timeoutMs: 5000, reuse, env });
  try {
    await body(fn);
  } finally {
    await fn.close();
  }
}

describe('fresh instance per call by snapshot reset (capsule-abi.md §3)', () => {
  it('restores globals (exported, unexported, i64) and memory to their post-initialisation values every call', async () => {
    await withFunction('gen2-state', false, async (fn) => {
      // "S<counter><memory byte><pages><i64>": _initialize sets 1, the call adds 1
      for (let i = 0; i < 3; i++) assert.equal((await call(fn, 'x')).text, '2212');
    });
  });

  it('--reuse still keeps one instance and its state', async () => {
    await withFunction('gen2-state', true, async (fn) => {
      assert.deepEqual([(await call(fn, 'x')).text, (await call(fn, 'x')).text, (await call(fn, 'x')).text], ['2212', '3313', '4414']);
    });
  });

  it('gives initial-size memory again after a call that grew it', async () => {
    await withFunction('gen2-state', false, async (fn) => {
      assert.equal((await call(fn, 'x')).text, '2212');
      assert.equal((await call(fn, 'grow')).text, '2222');
      assert.equal((await call(fn, 'x')).text, '2212');
      assert.equal((await call(fn, 'grow')).text, '2222');
    });
  });

  it('leaks nothing from a call that trapped into the next one', async () => {
    await withFunction('gen2-state', false, async (fn) => {
      assert.equal((await call(fn, 'x')).text, '2212');
      await assert.rejects(call(fn, 'trap'), (e: unknown) => e instanceof CapsuleError && e.code === 'TRAP');
      assert.equal((await call(fn, 'x')).text, '2212');
      await assert.rejects(call(fn, 'trap'), (e: unknown) => e instanceof CapsuleError && e.code === 'TRAP');
      await assert.rejects(call(fn, 'trap'), (e: unknown) => e instanceof CapsuleError && e.code === 'TRAP');
      assert.equal((await call(fn, 'x')).text, '2212');
    });
  });

  it('runs an initialisation that calls the host on every call (no snapshot)', async () => {
    await withFunction('gen2-init-print', false, async (fn) => {
      for (let i = 0; i < 3; i++) assert.deepEqual(await call(fn, 'x'), { text: '2', stdout: 'started\n' });
    });
    const m = await compileModule(readFileSync(fixture('gen2-init-print')), 'gen2-init-print.wasm');
    assert.equal(m.snapshot?.ok, true, 'the load-time checks pass; the worker finds the host call when it initialises');
  });

  /** gen2-init-wasi's answer: what its initialisation read, and the stdio flags a call sees. */
  async function initReads(fn: CapsuleFunction): Promise<{ random: string; clock: string; stdoutFlags: number; stdout: string }> {
    const r = await fn.invoke({ type: 'cli', params: encoder.encode('x'), args: [] });
    const bytes = Buffer.from((r.output as CliOutput).text ?? []);
    return { random: bytes.subarray(0, 8).toString('hex'), clock: bytes.subarray(8, 16).toString('hex'), stdoutFlags: bytes[16]!, stdout: r.logs?.stdout ?? '' };
  }

  it('keeps the snapshot when initialisation only reads the clock, random bytes, the environment and stdio flags, or sleeps (Go)', async () => {
    await withFunction('gen2-init-wasi', false, async (fn) => {
      const calls = [await initReads(fn), await initReads(fn), await initReads(fn)];
      // one initialisation for every call: what it read is that of the first call (frozen)
      assert.equal(new Set(calls.map((c) => c.random + c.clock)).size, 1);
      // the stdio flags it set stay set for every call (replayed on the reset instance)
      assert.deepEqual(calls.map((c) => c.stdoutFlags), [5, 5, 5]);
      assert.deepEqual(calls.map((c) => c.stdout), ['', '', '']);
    });
  });

  it('runs an initialisation that also writes (fd_write) on every call, with its own random bytes', async () => {
    await withFunction('gen2-init-wasi', false, async (fn) => {
      const calls = [await initReads(fn), await initReads(fn), await initReads(fn)];
      assert.equal(new Set(calls.map((c) => c.random)).size, 3, 'a new instance per call reads new random bytes');
      assert.deepEqual(calls.map((c) => [c.stdout, c.stdoutFlags]), [['init\n', 5], ['init\n', 5], ['init\n', 5]]);
    }, [['INIT_WRITE', '1']]);
  });

  it('gives a guest that changes its table the original table every call (no snapshot: table.set)', async () => {
    const m = await compileModule(readFileSync(fixture('gen2-table')), 'gen2-table.wasm');
    assert.deepEqual(m.snapshot, { ok: false, reason: 'its code uses table.set' });
    await withFunction('gen2-table', false, async (fn) => {
      assert.deepEqual([(await call(fn, '')).text, (await call(fn, '')).text], ['a', 'a']);
    });
    await withFunction('gen2-table', true, async (fn) => {
      assert.deepEqual([(await call(fn, '')).text, (await call(fn, '')).text], ['a', 'b']);
    });
  });

  it('keeps the exports it adds out of sight: parse, inspect, the ABI layer', async () => {
    const m = await compileModule(readFileSync(fixture('gen2-state')), 'gen2-state.wasm');
    assert.equal(m.snapshot?.ok, true);
    assert.deepEqual(m.parsed.exports.map((e) => e.name), ['memory', 'counter', 'malloc', 'free', '_initialize', 'callHandle', 'callHandleHTTP']);
    const added = WebAssembly.Module.exports(m.compiled).map((e) => e.name).filter((n) => n.startsWith(SNAPSHOT_EXPORT_PREFIX));
    assert.equal(added.length, 3, 'one export per mutable global');
    assert.deepEqual(m.snapshot?.ok ? m.snapshot.plan.globals : [], added, 'the plan the workers get names them');
    const instance = new WebAssembly.Instance(m.compiled, { capsule: { memory: new WebAssembly.Memory({ initial: 1 }) } });
    assert.deepEqual(Object.keys(hideSnapshotExports(instance).exports), ['memory', 'counter', 'malloc', 'free', '_initialize', 'callHandle', 'callHandleHTTP']);
    const inspect = await runCapsule(['inspect', fixture('gen2-state')]);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.doesNotMatch(inspect.stdout, /capsule\.snapshot/);
  });

  for (const name of ['hello-you', 'hello-world-c', 'nats-echo']) {
    it(`decodes all of ${name}'s code and snapshots it (AssemblyScript and C builds)`, { skip: missing(example(name)) }, async () => {
      const m = await compileModule(readFileSync(example(name)), `${name}.wasm`);
      assert.equal(m.snapshot?.ok, true);
    });
  }

  it('sets every global back to its exact value: extremes of each numeric type, -0, NaN, and reference globals', () => {
    const cases: [string, unknown][] = [
      ['i32', -2147483648], ['i32', 2147483647], ['i32', -1], ['i32', 0],
      ['i64', -(2n ** 63n)], ['i64', 2n ** 63n - 1n], ['i64', -1n], ['i64', 1234567890123n], ['i64', 64n],
      ['f32', 1.5], ['f32', -0], ['f32', -Infinity], ['f64', Math.PI], ['f64', -0], ['f64', NaN], ['f64', -1e308],
      ['externref', { a: 1 }], ['externref', null],
    ];
    const globals = cases.map(([type, v]) => new WebAssembly.Global({ value: type as WebAssembly.ValueType, mutable: true }, v));
    const target = { memory: new WebAssembly.Memory({ initial: 1 }), globals, types: cases.map(([t]) => t) };
    const snapshot = Snapshot.capture(target);
    for (let round = 0; round < 2; round++) {
      for (const [i, [type]] of cases.entries()) globals[i]!.value = type === 'i64' ? 7n : type === 'externref' ? 'changed' : 7;
      assert.equal(snapshot.restore(target), true);
      for (const [i, [, v]] of cases.entries()) assert.ok(Object.is(globals[i]!.value, v), `global ${i} (${cases[i]![0]}) is ${String(globals[i]!.value)}, expected ${String(v)}`);
    }
  });

  it('sets a target back to the values of the snapshot that restores it, when two snapshots restore one target', () => {
    const g = new WebAssembly.Global({ value: 'i64', mutable: true }, 1n);
    const target = { memory: new WebAssembly.Memory({ initial: 1 }), globals: [g], types: ['i64'] };
    const first = Snapshot.capture(target);
    g.value = 2n;
    const second = Snapshot.capture(target);
    for (const [snapshot, want] of [[first, 1n], [second, 2n], [first, 1n]] as const) {
      g.value = 9n;
      assert.equal(snapshot.restore(target), true);
      assert.equal(g.value, want);
    }
  });

  it('does not snapshot WASI commands', async () => {
    const wasi = await compileModule(readFileSync(fixture('wasi-basic')), 'wasi-basic.wasm');
    assert.deepEqual(wasi.snapshot, { ok: false, reason: 'wasi modules start in their handler' });
  });
});

/** Invokes callHandleHTTP with `body` (gen2-state: its first 4 bytes are the call's input) and returns the response body. */
async function httpCall(fn: CapsuleFunction, body: string): Promise<string> {
  const input = { type: 'http' as const, method: 'POST', url: 'http://localhost/', headers: [] as [string, string][], body: encoder.encode(body), remoteAddress: '127.0.0.1', remotePort: 1 };
  const r = await fn.invoke(input);
  return decoder.decode((r.output as HttpResponseOutput).body);
}

describe('fresh HTTP calls on the idle instance, run without a promise (ModuleInstances.runSync)', () => {
  it('takes the synchronous path once an instance is idle, for fresh and reused instances alike', async () => {
    for (const reuse of [false, true]) {
      const fn = await CapsuleFunction.load({ path: fixture('gen2-state') }, { inline: true, timeoutMs: 5000, reuse });
      try {
        const rt = new ModuleInstances(workerModuleOf(fn.module, fn.settings), new MemoryPool());
        const input = { type: 'http' as const, method: 'POST', url: 'http://localhost/', headers: [] as [string, string][], body: encoder.encode('xxxx'), remoteAddress: '127.0.0.1', remotePort: 1 };
        assert.equal(rt.runSync(input, {}), undefined, 'no instance is ready before the first call');
        await rt.run(input, {});
        const r = rt.runSync(input, {});
        assert.equal(decoder.decode((r?.output as HttpResponseOutput).body), reuse ? '"3313"' : '"2212"');
        rt.dispose();
      } finally {
        await fn.close();
      }
    }
  });

  for (const inline of [true, false]) {
    it(`every call starts from the post-initialisation state, after a trap and after memory growth too (${inline ? 'inline' : 'worker thread'})`, async () => {
      const fn = await CapsuleFunction.load({ path: fixture('gen2-state') }, inline ? { inline: true, timeoutMs: 5000 } : { workers: 1, timeoutMs: 5000 });
      try {
        assert.equal(await httpCall(fn, 'xxxx'), '"2212"');
        assert.equal(await httpCall(fn, 'xxxx'), '"2212"');
        assert.equal(await httpCall(fn, 'grow'), '"2222"');
        assert.equal(await httpCall(fn, 'xxxx'), '"2212"');
        await assert.rejects(httpCall(fn, 'trap'), (e: unknown) => e instanceof CapsuleError && e.code === 'TRAP');
        assert.equal(await httpCall(fn, 'xxxx'), '"2212"');
        assert.equal(await httpCall(fn, 'xxxx'), '"2212"');
      } finally {
        await fn.close();
      }
    });
  }
});
