/**
 * Host functions an embedder defines through the host SDK (`hostFunctions`, abi/user-functions.ts):
 * a WAT Extism plugin importing `extism:host/user` (test/fixtures/extism-user.wat) and a gen-2
 * Capsule module importing a defined `env.hostGreet` (test/fixtures/gen2-user.wat), run on real
 * worker threads: the functions live in the main thread and see the blocks passed to them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CapsuleFunction, CapsuleError, type CliOutput, type HostFunctionContext, type UserHostFunctions } from '../src/index.ts';
import { fixture, missing } from './helpers.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Calls plugin function `name` with `input`: [exit code, output or error text]. */
async function call(fn: CapsuleFunction, name: string, input = ''): Promise<[number, string]> {
  const { output } = await fn.invoke({ type: 'cli', params: encoder.encode(input), args: [], entrypoint: name });
  const o = output as CliOutput;
  return [o.exitCode, decoder.decode(o.text ?? new Uint8Array(0))];
}

const plugin = fixture('extism-user');

describe('host SDK: host functions of an Extism plugin (extism:host/user)', { skip: missing(plugin) }, () => {
  it('a plugin calls a main-thread function that reads its block and stores a new one', async () => {
    const seen: string[] = [];
    const hostFunctions: UserHostFunctions = {
      'extism:host/user': {
        hello_world(ctx: HostFunctionContext, h) {
          const name = ctx.read(h)?.text() ?? 'nobody';
          seen.push(`${ctx.module}:${name}:${ctx.config.get('greeting')}`);
          return ctx.store(`${ctx.config.get('greeting')}, ${name}! 👋`);
        },
        add: (_ctx, a, b) => Number(a) + Number(b),
        note: () => undefined,
      },
    };
    const fn = await CapsuleFunction.load({ path: plugin }, { hostFunctions, env: [['greeting', 'Hello']], workers: 2 });
    try {
      assert.deepEqual(await call(fn, 'greet', 'Bob'), [0, 'Hello, Bob! 👋']);
      // several calls at once on two worker threads, each reaching the same main-thread function
      const many = await Promise.all(['Ann', 'Eve', 'Zoe', 'Kim'].map((n) => call(fn, 'greet', n)));
      assert.deepEqual(many.map(([, out]) => out), ['Hello, Ann! 👋', 'Hello, Eve! 👋', 'Hello, Zoe! 👋', 'Hello, Kim! 👋']);
      assert.equal(seen[0], 'extism-user.wasm:Bob:Hello');
      // an empty input is handle 0 (extism-abi.md §2): read gives null
      assert.deepEqual(await call(fn, 'greet', ''), [0, 'Hello, nobody! 👋']);
      // wasm values in and out: add(40, 2) is the exit code of `answer`
      assert.deepEqual(await call(fn, 'answer'), [1, 'Returned non-zero exit code: 42']);
      assert.deepEqual(await call(fn, 'nothing', 'x'), [0, '']);
    } finally {
      await fn.close();
    }
  });

  it('async functions work; a throw fails the plugin call with its message and the function keeps serving', async () => {
    let fail = true;
    const fn = await CapsuleFunction.load({ path: plugin }, {
      workers: 1,
      hostFunctions: {
        'extism:host/user': {
          async hello_world(ctx, h) {
            await new Promise((r) => setImmediate(r));
            if (fail) throw new Error('the directory is down');
            return ctx.store(ctx.read(h)!.text().toUpperCase());
          },
          add: () => 0,
          note: (ctx) => { ctx.read(1n << 40n); },
        },
      },
    });
    try {
      assert.deepEqual(await call(fn, 'greet', 'bob'), [1, 'extism:host/user.hello_world: the directory is down']);
      fail = false;
      assert.deepEqual(await call(fn, 'greet', 'bob'), [0, 'BOB']);
      const [code, text] = await call(fn, 'nothing', 'x');
      assert.equal(code, 1);
      assert.match(text, /block \d+ was not passed to extism:host\/user\.note as an argument/);
    } finally {
      await fn.close();
    }
  });

  it('a plugin importing a function nobody defined is refused at load, naming it', async () => {
    await assert.rejects(CapsuleFunction.load({ path: plugin }, { workers: 1 }), (e: unknown) => e instanceof CapsuleError && e.code === 'BAD_MODULE' && /imports extism:host\/user\.hello_world/.test(e.message));
    await assert.rejects(CapsuleFunction.load({ path: plugin }, { workers: 1, hostFunctions: { 'extism:host/user': { hello_world: () => 0n } } }),
      (e: unknown) => e instanceof CapsuleError && /imports extism:host\/user\.add, which the host does not define \(defined there: hello_world\)/.test(e.message));
    await assert.rejects(CapsuleFunction.load({ path: plugin }, { workers: 1, hostFunctions: { 'extism:host/env': { alloc: () => 0n } } }),
      (e: unknown) => e instanceof CapsuleError && /extism:host\/env is a namespace the host fills itself/.test(e.message));
  });
});

const gen2 = fixture('gen2-user');

describe('host SDK: host functions of a Capsule module (env)', { skip: missing(gen2) }, () => {
  it('a gen-2 module calls a defined env function: bytes in, its value back through the return buffer, a throw as F<message>', async () => {
    const fn = await CapsuleFunction.load({ path: gen2 }, {
      workers: 1,
      hostFunctions: {
        env: {
          hostGreet: {
            params: ['s'],
            run(_ctx, name) {
              const text = decoder.decode(name as Uint8Array);
              if (text === 'nobody') throw new Error('who is there?');
              return `hello ${text}`;
            },
          },
        },
      },
    });
    try {
      const ok = (await fn.invoke({ type: 'cli', params: encoder.encode('Bob'), args: [] })).output as CliOutput;
      assert.deepEqual([ok.exitCode, decoder.decode(ok.text)], [0, 'hello Bob']);
      const bad = (await fn.invoke({ type: 'cli', params: encoder.encode('nobody'), args: [] })).output as CliOutput;
      assert.deepEqual([bad.exitCode, decoder.decode(bad.text)], [1, 'who is there?']);
    } finally {
      await fn.close();
    }
    await assert.rejects(CapsuleFunction.load({ path: gen2 }, { workers: 1 }), /imports env\.hostGreet, which Capsule does not provide/);
    await assert.rejects(CapsuleFunction.load({ path: gen2 }, { workers: 1, hostFunctions: { env: { hostGreet: { params: ['n'], run: () => '' } } } }), /hostGreet/);
  });
});
