/**
 * The inline executor (src/engine/inline.ts) as the host SDK (`CapsuleFunction` with
 * `inline: true`) and the CLI (`capsule run`, `capsule call`) use it: calls run in the calling
 * thread, a looping guest is stopped at its deadline and the next call is served, a trap leaves
 * it usable, Extism vars survive calls, and a module that suspends (JSPI) runs its calls with a
 * deadline on a worker thread instead.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { threadId } from 'node:worker_threads';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CapsuleFunction, CapsuleError, type CliOutput, type HostFunctionContext, type HttpResponseOutput, type UserHostFunctions } from '../src/index.ts';
import { fixture, missing, root, runCapsule } from './helpers.ts';

const behaviours = fixture('gen2-behaviours');
const asPlugin = fixture('extism-as');
const kitchen = fixture('extism-kitchen');
const userPlugin = fixture('extism-user');
const wasiBasic = fixture('wasi-basic');
const initLoop = fixture('gen2-init-loop'); // _initialize never returns
const unmetered = fixture('gen2-unmetered'); // the meter leaves it alone; input "l" loops for ever
const enc = (s: string) => new TextEncoder().encode(s);
const text = (r: { output: unknown }) => new TextDecoder().decode((r.output as CliOutput).text);
const code = (e: unknown): string => (e instanceof CapsuleError ? e.code : String(e));

/** The outcome of a call as text: the output, or the error code. */
async function outcome(p: Promise<{ output: unknown }>): Promise<string> {
  try {
    return text(await p);
  } catch (e) {
    return code(e);
  }
}

/** Asserts that `p` fails with TIMEOUT and a message that matches `message`. */
async function rejectsTimeout(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CapsuleError && e.code === 'TIMEOUT', String(e));
    assert.match(e.message, message);
    return true;
  });
}

describe('inline executor: deadlines and failures', { skip: missing(behaviours) }, () => {
  it('stops a looping guest at its deadline (its own deadline check: metered) and serves the next call in the same process', async () => {
    const fn = await CapsuleFunction.load({ path: behaviours }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      await rejectsTimeout(fn.invoke({ type: 'cli', params: enc('l'), args: [] }), /did not return within 300 ms \(--timeout\); it was stopped by its deadline check/);
      const next = await fn.invoke({ type: 'cli', params: enc('hello'), args: [] });
      assert.equal((next.output as CliOutput).exitCode, 0);
      // and again: the executor is not left armed or broken by the stopped call
      await assert.rejects(fn.invoke({ type: 'cli', params: enc('l'), args: [] }), (e: unknown) => code(e) === 'TIMEOUT');
      assert.equal(((await fn.invoke({ type: 'cli', params: enc('hello'), args: [] })).output as CliOutput).exitCode, 0);
    } finally {
      await fn.close();
    }
  });

  it('a module the meter leaves alone is stopped at its deadline by the watchdog, and serves the next call', { skip: missing(unmetered) }, async () => {
    const fn = await CapsuleFunction.load({ path: unmetered }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      for (let i = 0; i < 2; i++) {
        await rejectsTimeout(fn.invoke({ type: 'cli', params: enc('l'), args: [] }), /^the function did not return within 300 ms \(--timeout\); it was stopped$/);
        assert.equal(await outcome(fn.invoke({ type: 'cli', params: enc('e'), args: [] })), '{"JSONBody":{"unmetered":true},"TextBody":"","Headers":{},"StatusCode":200}');
      }
    } finally {
      await fn.close();
    }
  });

  it('a metered module whose initialisation never returns is stopped at each call\'s deadline', { skip: missing(initLoop) }, async () => {
    const fn = await CapsuleFunction.load({ path: initLoop }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      for (let i = 0; i < 2; i++) {
        await rejectsTimeout(fn.invoke({ type: 'cli', params: enc('e'), args: [] }), /did not return within 300 ms \(--timeout\); it was stopped by its deadline check/);
      }
    } finally {
      await fn.close();
    }
  });

  it('a trap fails its call only: the next call runs on a fresh instance', async () => {
    const fn = await CapsuleFunction.load({ path: behaviours }, { inline: true, timeoutMs: 5000, stdio: 'capture' });
    try {
      await assert.rejects(fn.invoke({ type: 'cli', params: enc('t'), args: [] }), (e: unknown) => {
        assert.ok(e instanceof CapsuleError && e.code === 'TRAP', String(e));
        assert.match(e.message, /trapped: unreachable/);
        return true;
      });
      assert.equal(((await fn.invoke({ type: 'cli', params: enc('hello'), args: [] })).output as CliOutput).exitCode, 0);
    } finally {
      await fn.close();
    }
  });

  it('fresh HTTP calls, run without a promise on the idle instance: a loop is stopped at its deadline (metered or not), a trap and a memory bomb fail their call, and each next call starts from the snapshot', { skip: missing(unmetered) }, async () => {
    /** The response body of an HTTP call whose body is `selector`, or the error code. */
    const http = async (fn: CapsuleFunction, selector: string): Promise<string> => {
      const input = { type: 'http' as const, method: 'POST', url: 'http://localhost/', headers: [] as [string, string][], body: enc(selector), remoteAddress: '127.0.0.1', remotePort: 1 };
      try {
        return new TextDecoder().decode(((await fn.invoke(input)).output as HttpResponseOutput).body);
      } catch (e) {
        return code(e);
      }
    };
    const metered = await CapsuleFunction.load({ path: behaviours }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      const first = await http(metered, 'c'); // the calls this instance has seen, as it was after initialisation
      assert.match(first, /^\d$/);
      for (const selector of ['c', 'l', 'c', 't', 'c', 'm', 'c']) assert.equal(await http(metered, selector), { l: 'TIMEOUT', t: 'TRAP', m: 'MEMORY' }[selector] ?? first, selector);
    } finally {
      await metered.close();
    }
    const plain = await CapsuleFunction.load({ path: unmetered }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      const answer = await http(plain, 'e');
      for (const selector of ['e', 'l', 'e', 'l', 'e']) assert.equal(await http(plain, selector), selector === 'l' ? 'TIMEOUT' : answer, selector);
    } finally {
      await plain.close();
    }
  });

  it('calls made at once are served one after the other; waiting counts toward a deadline', async () => {
    const fn = await CapsuleFunction.load({ path: behaviours }, { inline: true, timeoutMs: 2000, stdio: 'capture' });
    try {
      // the four share the deadline (2 s from now, a margin for a loaded machine): the loop uses it up
      const settled = await Promise.allSettled(['hello', 't', 'l', 'hello'].map((p) => fn.invoke({ type: 'cli', params: enc(p), args: [] })));
      const [first, trap, loop, late] = settled.map((s) => (s.status === 'fulfilled' ? text(s.value) : `${code(s.reason)}: ${(s.reason as Error).message}`));
      assert.match(trap!, /^TRAP: .*unreachable/);
      assert.match(loop!, /^TIMEOUT: the function did not return within 2000 ms/);
      assert.match(late!, /^TIMEOUT: the function was not run: the calls before it took its 2000 ms/);
      assert.equal(await outcome(fn.invoke({ type: 'cli', params: enc('hello'), args: [] })), first, 'then it answers as the first call did');
    } finally {
      await fn.close();
    }
  });

  it('with no deadline (timeoutMs: Infinity) a call simply runs', async () => {
    const fn = await CapsuleFunction.load({ path: behaviours }, { inline: true, timeoutMs: Infinity, stdio: 'capture' });
    try {
      assert.equal(((await fn.invoke({ type: 'cli', params: enc('hello'), args: [] })).output as CliOutput).exitCode, 0);
    } finally {
      await fn.close();
    }
  });

  it('an inline function has no worker pool, and cannot be given one', async () => {
    const fn = await CapsuleFunction.load({ path: behaviours }, { inline: true });
    try {
      assert.throws(() => fn.pool, /runs inline: it has no worker pool/);
      const other = await CapsuleFunction.load({ path: behaviours }, { workers: 1 });
      try {
        await assert.rejects(CapsuleFunction.load({ path: behaviours }, { inline: true, pool: other.pool }), /inline and pool exclude each other/);
      } finally {
        await other.close();
      }
    } finally {
      await fn.close();
    }
  });

  it('stops a WASI command sleeping past its deadline (poll_oneoff) and serves the next call', { skip: missing(wasiBasic) }, async () => {
    const fn = await CapsuleFunction.load({ path: wasiBasic }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      await assert.rejects(fn.invoke({ type: 'cli', args: ['sleep', '20000'], stdin: new Uint8Array(0) }), (e: unknown) => code(e) === 'TIMEOUT');
      const r = await fn.invoke({ type: 'cli', args: ['sleep', '10'], stdin: new Uint8Array(0) });
      assert.equal(r.logs?.stdout, 'woke\n');
    } finally {
      await fn.close();
    }
  });
});

describe('inline executor: Extism plugins', { skip: missing(asPlugin) }, () => {
  const count = (fn: CapsuleFunction) => outcome(fn.invoke({ type: 'cli', params: new Uint8Array(0), args: [], entrypoint: 'count' }));
  const call = (fn: CapsuleFunction, name: string) => outcome(fn.invoke({ type: 'cli', params: new Uint8Array(0), args: [], entrypoint: name }));

  for (const timeoutMs of [Infinity, 5000]) {
    it(`vars survive calls of one instance, and a trap (timeoutMs ${timeoutMs})`, async () => {
      const fn = await CapsuleFunction.load({ path: asPlugin }, { inline: true, timeoutMs, stdio: 'capture' });
      try {
        assert.equal(await count(fn), '1');
        assert.equal(await count(fn), '2');
        assert.equal(await call(fn, 'trap'), 'TRAP');
        assert.equal(await count(fn), '3');
      } finally {
        await fn.close();
      }
    });
  }

  it('a plugin stopped at its deadline starts over on a new instance (vars too, as after a worker\'s end)', async () => {
    const fn = await CapsuleFunction.load({ path: asPlugin }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      assert.equal(await count(fn), '1');
      assert.equal(await count(fn), '2');
      assert.equal(await call(fn, 'spin'), 'TIMEOUT');
      assert.equal(await count(fn), '1');
    } finally {
      await fn.close();
    }
  });

  it('a plugin that suspends (imports http_request) runs its calls with a deadline in this thread, metered: stopped by its deadline check, then served', { skip: missing(kitchen) }, async () => {
    const fn = await CapsuleFunction.load({ path: kitchen }, { inline: true, timeoutMs: 300, stdio: 'capture' });
    try {
      // (on the fallback worker thread it would be "its worker was stopped")
      await rejectsTimeout(fn.invoke({ type: 'cli', params: new Uint8Array(0), args: [], entrypoint: 'spin' }), /it was stopped by its deadline check/);
      assert.equal(await outcome(fn.invoke({ type: 'cli', params: enc('hello'), args: [], entrypoint: 'echo' })), 'hello');
    } finally {
      await fn.close();
    }
  });

  it('a host function of the embedder that never settles ends its call at the deadline (TIMEOUT); the next call is served', { skip: missing(userPlugin) }, async () => {
    let hang = true;
    const hostFunctions: UserHostFunctions = {
      'extism:host/user': {
        hello_world: (ctx: HostFunctionContext, h) => (hang ? new Promise<never>(() => {}) : ctx.store(`hello ${ctx.read(h)?.text()}`)),
        add: (_ctx, a, b) => Number(a) + Number(b),
        note: () => undefined,
      },
    };
    const fn = await CapsuleFunction.load({ path: userPlugin }, { inline: true, timeoutMs: 300, stdio: 'capture', hostFunctions });
    try {
      await rejectsTimeout(fn.invoke({ type: 'cli', params: enc('Bob'), args: [], entrypoint: 'greet' }), /did not return within 300 ms/);
      hang = false;
      assert.equal(await outcome(fn.invoke({ type: 'cli', params: enc('Ann'), args: [], entrypoint: 'greet' })), 'hello Ann');
    } finally {
      await fn.close();
    }
  });

  it('host functions of the embedder run in this thread, with a deadline and without one', { skip: missing(userPlugin) }, async () => {
    const seen: number[] = [];
    const hostFunctions: UserHostFunctions = {
      'extism:host/user': {
        hello_world: (ctx: HostFunctionContext, h) => {
          seen.push(threadId);
          return ctx.store(`hello ${ctx.read(h)?.text()}`);
        },
        add: (_ctx, a, b) => Number(a) + Number(b),
        note: () => undefined,
      },
    };
    for (const timeoutMs of [5000, Infinity]) {
      const fn = await CapsuleFunction.load({ path: userPlugin }, { inline: true, timeoutMs, stdio: 'capture', hostFunctions });
      try {
        assert.equal(await outcome(fn.invoke({ type: 'cli', params: enc('Bob'), args: [], entrypoint: 'greet' })), 'hello Bob');
      } finally {
        await fn.close();
      }
    }
    // the defined functions run in this thread either way (a service of the executor)
    assert.deepEqual(seen, [threadId, threadId]);
  });
});

describe('capsule run and capsule call, in one thread', { skip: missing(behaviours) }, () => {
  it('capsule run: a looping guest is stopped at --timeout, exit 1, the message as before', async () => {
    const r = await runCapsule(['run', behaviours, '--params=l', '--timeout=300ms']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^❌ the function did not return within 300 ms \(--timeout\)/);
  });

  it('capsule run: a module whose start function never returns is stopped at --timeout (WASI command: exit 124)', async () => {
    // (module (memory (export "memory") 1) (func $spin (loop (br 0))) (start $spin) (func (export "_start")))
    const bytes = new Uint8Array([
      0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 3, 2, 0, 0, 5, 3, 1, 0, 1,
      7, 0x13, 2, 6, ...new TextEncoder().encode('memory'), 2, 0, 6, ...new TextEncoder().encode('_start'), 0, 1,
      8, 1, 0, 10, 12, 2, 7, 0, 3, 0x40, 0x0c, 0, 0x0b, 0x0b, 2, 0, 0x0b,
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'capsule-inline-'));
    try {
      const path = join(dir, 'start-loop.wasm');
      writeFileSync(path, bytes);
      const r = await runCapsule(['run', path, '--timeout=300ms']);
      assert.equal(r.code, 124);
      assert.match(r.stderr, /^❌ the function did not return within 300 ms \(--timeout\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('capsule run --json: the deadline is reported in the JSON, exit 1', async () => {
    const r = await runCapsule(['run', behaviours, '--params=l', '--timeout=300ms', '--json']);
    assert.equal(r.code, 1);
    const report = JSON.parse(r.stdout) as { exitCode: number; error: string };
    assert.equal(report.exitCode, 1);
    assert.match(report.error, /did not return within 300 ms/);
  });

  it('the bundle of capsule run lists only files among its sources (a name that is no file would leave it unused for ever)', { skip: !existsSync(join(root, 'dist/bundle/inputs.json')) && 'no bundle built' }, () => {
    const { inputs } = JSON.parse(readFileSync(join(root, 'dist/bundle/inputs.json'), 'utf8')) as { inputs: string[] };
    assert.ok(inputs.includes('src/cli/run-main.ts'), 'run-main.ts is among them');
    assert.deepEqual(inputs.filter((i) => !existsSync(join(root, i))), []);
  });

  it('capsule call: a plugin that never returns is stopped at --timeout', { skip: missing(asPlugin) }, async () => {
    const r = await runCapsule(['call', asPlugin, 'spin', '--timeout', '300ms']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^❌ the function did not return within 300 ms/);
    const ok = await runCapsule(['call', asPlugin, 'count_vowels', '--input', 'Hello, World!']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).count, 3);
  });
});
