/**
 * Engine pieces a user meets through errors: module parsing, kind detection, the memory
 * rewrite, unit parsing and the Go-spelling normaliser.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseModule, rewriteMemoryAsImport } from '../src/wasm/binary.ts';
import { detectKind } from '../src/engine/detect.ts';
import { compileModule, digestOf } from '../src/engine/load.ts';
import { parseDuration, parseSize } from '../src/base/units.ts';
import { normaliseArgv } from '../src/cli/legacy.ts';
import { buildGuestEnv, parseEnvFile } from '../src/functions/guest-env.ts';
import { eventually, fixture } from './helpers.ts';

/** Builds a minimal module: a type section with `(params) -> (results)` and exports of it. */
function moduleWith(exports: { name: string; params: number; results?: 'i64' }[], imports: { module: string; name: string }[] = [], header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]): Uint8Array {
  const leb = (n: number) => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return o; };
  const str = (s: string) => { const b = [...Buffer.from(s)]; return [...leb(b.length), ...b]; };
  const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
  const types = exports.map((e) => [0x60, ...leb(e.params), ...Array(e.params).fill(0x7f), ...(e.results ? [1, 0x7e] : [0])]);
  types.push([0x60, 0, 0]);
  const importBody = [...leb(imports.length), ...imports.flatMap((i) => [...str(i.module), ...str(i.name), 0x00, ...leb(types.length - 1)])];
  const funcs = [...leb(exports.length), ...exports.map((_, i) => i)];
  const exportBody = [...leb(exports.length), ...exports.flatMap((e, i) => [...str(e.name), 0x00, ...leb(imports.length + i)])];
  const code = [...leb(exports.length), ...exports.map((e) => (e.results ? [4, 0, 0x42, 0, 0x0b] : [2, 0, 0x0b])).flat()];
  return Uint8Array.from([
    ...header,
    ...section(1, [...leb(types.length), ...types.flat()]),
    ...(imports.length ? section(2, importBody) : []),
    ...section(3, funcs), ...section(7, exportBody), ...section(10, code),
  ]);
}

describe('kind detection (spec README §1)', () => {
  const kind = (bytes: Uint8Array) => detectKind(parseModule(bytes), 'm.wasm').kind;

  it('tells the Capsule generations apart by exports and callHandleHttp arity', () => {
    assert.equal(kind(moduleWith([{ name: 'callHandleHTTP', params: 2, results: 'i64' }])), 'capsule-2');
    assert.equal(kind(moduleWith([{ name: 'callHandleJSON', params: 2, results: 'i64' }])), 'capsule-2');
    assert.equal(kind(moduleWith([{ name: 'callHandleHttp', params: 4, results: 'i64' }, { name: 'callHandle', params: 2, results: 'i64' }])), 'capsule-1a');
    assert.equal(kind(moduleWith([{ name: 'callHandleHttp', params: 8, results: 'i64' }])), 'capsule-1b');
    assert.equal(kind(moduleWith([{ name: 'callHandleHttp', params: 1, results: 'i64' }])), 'capsule-1c');
    assert.equal(kind(moduleWith([{ name: '_start', params: 0 }])), 'wasi');
    assert.equal(kind(moduleWith([{ name: 'run', params: 0 }], [{ module: 'extism:host/env', name: 'input_length' }])), 'extism');
  });

  it('refuses what it cannot run, saying why', () => {
    assert.throws(() => kind(moduleWith([{ name: 'callHandleHttp', params: 3, results: 'i64' }])), /takes 3 parameters; Capsule gen 1 expects 4 \(1a\), 8 \(1b\) or 1 \(1c\)/);
    assert.throws(() => kind(moduleWith([{ name: 'run', params: 0 }], [{ module: 'env', name: 'extism_input_length' }])), /rebuild it with an Extism PDK ≥ 1\.0/);
    assert.throws(() => kind(moduleWith([], [], [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00])), /component .* not supported yet/);
    assert.throws(() => parseModule(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00])), /unknown core module version 2/);
    assert.throws(() => parseModule(Uint8Array.from([1, 2, 3])), /not a WebAssembly binary/);
  });

  it('loads Extism plugins, checking their extism:host/env imports (extism-abi.md §1)', async () => {
    await assert.rejects(compileModule(moduleWith([{ name: 'run', params: 0 }], [{ module: 'extism:host/env', name: 'input_length' }]), 'p.wasm'), /import extism:host\/env\.input_length has type \(\) -> \(\); Capsule \(extism modules\) expects \(\) -> i64/);
    await assert.rejects(compileModule(moduleWith([{ name: 'run', params: 0 }], [{ module: 'extism:host/env', name: 'nosuch' }]), 'p.wasm'), /imports extism:host\/env\.nosuch; extism modules may import only from/);
  });

  it('refuses a --digest that is not a SHA-256 digest as a usage error, and a wrong one as a mismatch', async () => {
    const bytes = moduleWith([{ name: '_start', params: 0 }]);
    await assert.rejects(compileModule(bytes, 'm.wasm', { digest: 'abc' }), (e: Error & { code?: string }) => e.code === 'USAGE' && /m\.wasm: --digest: "abc" is not a SHA-256 digest/.test(e.message));
    await assert.rejects(compileModule(bytes, 'm.wasm', { digest: `SHA256:${'0'.repeat(64)}` }), (e: Error & { code?: string }) => e.code === 'LOAD' && /m\.wasm: digest mismatch: expected sha256:0{64}, got sha256:[0-9a-f]{64}/.test(e.message));
    const good = readFileSync(fixture('abi-gen2'));
    assert.equal((await compileModule(good, 'g.wasm', { digest: digestOf(good).toUpperCase() })).name, 'g.wasm', 'any case is the same digest');
  });

  it('checks an explicit --kind against the exports', () => {
    assert.throws(() => detectKind(parseModule(moduleWith([{ name: '_start', params: 0 }])), 'm.wasm', 'capsule-2'), /--kind capsule-2 needs an export/);
  });
});

describe('memory rewrite', () => {
  it('turns the module memory into an import that still validates and runs', async () => {
    for (const name of ['gen2-echo', 'gen2-behaviours', 'gen2-env']) {
      const bytes = new Uint8Array(readFileSync(fixture(name)));
      const parsed = parseModule(bytes);
      const rewritten = rewriteMemoryAsImport(bytes, parsed)!;
      assert.ok(rewritten, name);
      assert.ok(WebAssembly.validate(rewritten as Uint8Array<ArrayBuffer>), name);
      const again = parseModule(rewritten);
      assert.equal(again.memories.length, 0);
      assert.deepEqual(again.imports.at(-1), { module: 'capsule', name: 'memory', kind: 'memory', memory: { min: 1, max: undefined, shared: false, memory64: false } });
      assert.deepEqual(again.exports.map((e) => e.name), parsed.exports.map((e) => e.name));
    }
  });
});

describe('units (conventions §1)', () => {
  it('parses durations and sizes; a bare number is ms / bytes', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1500'), 1500);
    assert.equal(parseSize('512KiB'), 512 * 1024);
    assert.equal(parseSize('64MiB'), 64 * 1024 * 1024);
    assert.equal(parseSize('10MB'), 10_000_000);
    assert.equal(parseSize('77'), 77);
    assert.throws(() => parseDuration('soon', '--timeout'), /--timeout: "soon" is not a duration/);
    assert.throws(() => parseSize('lots', '--max-body'), /--max-body: "lots" is not a size/);
  });
});

describe('Go spellings (conventions §5)', () => {
  it('normalises flags and modes', () => {
    assert.deepEqual(normaliseArgv(['-wasm=x.wasm', '-mode=http', '-httpPort=8080']), ['serve', '--wasm=x.wasm', '--http-port=8080']);
    assert.deepEqual(normaliseArgv(['--wasm=x.wasm', '--params=y']), ['run', '--wasm=x.wasm', '--params=y']);
    assert.deepEqual(normaliseArgv(['-wasm', 'x.wasm', '-mode', 'cli']), ['run', '--wasm', 'x.wasm']);
    assert.deepEqual(normaliseArgv(['--wasm=x.wasm', '--httpPort=0'], 'serve'), ['serve', '--wasm=x.wasm', '--http-port=0']);
    assert.deepEqual(normaliseArgv(['-mode=nats', '-natssrv=nats://h:4222', '-subject=a.b']), ['nats', '--nats-server=nats://h:4222', '--subject=a.b']);
    assert.deepEqual(normaliseArgv(['serve', 'x.wasm', '-stopAfter=10']), ['serve', 'x.wasm', '--stop-after=10s']);
    assert.deepEqual(normaliseArgv(['run', 'x.wasm', '--fooBar', '-n', '5', '--timeout=1s']), ['run', 'x.wasm', '--fooBar', '-n', '5', '--timeout=1s']);
  });
});

describe('guest environment (conventions §2)', () => {
  it('inherits without secrets and lets files and flags override', () => {
    const env = new Map(buildGuestEnv({
      inherit: true,
      processEnv: { MESSAGE: 'hi', CAPSULE_ADMIN: 'x', GITHUB_TOKEN: 't', DB_PASSWORD: 'p', AWS_SECRET: 's', API_KEY: 'k', PLAIN: '1' },
      env: [['PLAIN', '2']],
    }));
    assert.deepEqual([...env.keys()].sort(), ['MESSAGE', 'PLAIN']);
    assert.equal(env.get('PLAIN'), '2');
    assert.deepEqual(buildGuestEnv({ inherit: false, processEnv: { MESSAGE: 'hi' } }), []);
  });

  it('reads dotenv and WAGI lines', () => {
    assert.deepEqual(parseEnvFile('A=1\nexport B="two words"\nC = "wagi"\n# c\n\nD=x # trailing\n', 'f'), [['A', '1'], ['B', 'two words'], ['C', 'wagi'], ['D', 'x']]);
    assert.throws(() => parseEnvFile('not a line', '.env'), /\.env:1: expected NAME=value/);
  });
});

describe('worker protocol: plain HTTP calls and results travel packed, the rest as they are', async () => {
  const { packCall, unpackCall, packDone, unpackDone } = await import('../src/engine/protocol.ts');
  const body = new TextEncoder().encode('{"name":"Bob Morane"}');
  const call = {
    id: 7, moduleId: 2, seq: 3, deadline: 1_763_720_000_000, meta: { requestId: 'req-1', trigger: { httpPort: 8080 } },
    input: {
      type: 'http' as const, method: 'POST', url: 'http://127.0.0.1:8080/a?b=1', body, remoteAddress: '::1', remotePort: 5150, httpVersion: '1.1',
      headers: [['Host', '127.0.0.1:8080'], ['X-Emoji', 'é😀'], ['X-Empty', ''], ['X-Twice', 'a'], ['X-Twice', 'b']] as [string, string][],
    },
  };

  it('a request comes back the same, headers in order', () => {
    const packed = packCall(call);
    assert.ok(Array.isArray(packed), 'packed');
    assert.deepEqual(unpackCall(structuredClone(packed)), call);
    const bare = { ...call, meta: {}, input: { ...call.input, headers: [], httpVersion: undefined } };
    assert.deepEqual(unpackCall(structuredClone(packCall(bare))), { ...bare, meta: { requestId: undefined, trigger: undefined } });
  });

  it('a NUL in any string, CGI route data, other inputs or other trigger facts: the call as it is', () => {
    const withNul = { ...call, input: { ...call.input, headers: [['X-A', 'a\u0000b']] as [string, string][] } };
    assert.equal(packCall(withNul), withNul);
    const cgi = { ...call, input: { ...call.input, cgi: { route: '/...' } } };
    assert.equal(packCall(cgi), cgi);
    const cli = { ...call, input: { type: 'cli' as const, args: ['x'] } };
    assert.equal(packCall(cli), cli);
    const nats = { ...call, meta: { trigger: { httpPort: 1, natsServer: 'nats://x' } } };
    assert.equal(packCall(nats), nats);
    assert.equal(unpackCall(cli), cli);
  });

  it('a response comes back the same; logs, failures, errors and NULs keep the object', () => {
    const done = { id: 7, output: { type: 'http' as const, status: 201, headers: [['Content-Type', 'application/json'], ['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']] as [string, string][], body } };
    assert.deepEqual(unpackDone(structuredClone(packDone(done))), done);
    const noHeaders = { id: 8, output: { type: 'http' as const, status: 204, headers: [] as [string, string][], body: new Uint8Array(0) } };
    assert.deepEqual(unpackDone(structuredClone(packDone(noHeaders))), noHeaders);
    for (const kept of [
      { ...done, logs: { stdout: 'x', stderr: '', log: [], truncated: false } },
      { ...done, output: { ...done.output, failure: { code: 'TRAP' as const, message: 'exit 3' } } },
      { ...done, output: { ...done.output, headers: [['X-A', 'a\u0000b']] as [string, string][] } },
      { id: 9, error: { code: 'TRAP' as const, message: 'unreachable' } },
      { id: 10, output: { type: 'cli' as const, exitCode: 0 } },
    ]) {
      assert.equal(packDone(kept), kept);
      assert.equal(unpackDone(kept), kept);
    }
  });
});

describe('memory given back after a burst (docs/performance.md, "Memory")', async () => {
  const { IdleTrim, MemoryPool, reduceHeap, PAGE } = await import('../src/engine/memory-pool.ts');
  const { getHeapStatistics } = await import('node:v8');

  it('a pool keeps released memories zeroed for reuse, and trim lets every one go', () => {
    const pool = new MemoryPool();
    const a = pool.acquire(2, 10);
    const b = pool.acquire(2, 10);
    new Uint8Array(a.buffer)[5] = 7;
    pool.release(2, 10, a);
    pool.release(2, 10, b);
    assert.equal(pool.pooledBytes, 4 * PAGE);
    const again = pool.acquire(2, 10);
    assert.ok(again === a || again === b, 'a released memory is reused');
    assert.equal(new Uint8Array(again.buffer)[5], 0, 'and handed out zeroed');
    pool.release(2, 10, again);
    assert.equal(pool.trim(), 4 * PAGE);
    assert.equal(pool.pooledBytes, 0);
    const fresh = pool.acquire(2, 10);
    assert.ok(fresh !== a && fresh !== b, 'after trim, a new memory');
  });

  it('a thread idle after calls lets its pooled memories go (IdleTrim)', async () => {
    const pool = new MemoryPool();
    pool.release(1, 4, pool.acquire(1, 4));
    assert.equal(pool.pooledBytes, PAGE);
    const trim = new IdleTrim(pool, 1);
    trim.busy();
    trim.idle();
    await eventually(() => pool.pooledBytes === 0);
  });

  it('reduceHeap collects once the heap grew, and not again until it grows again', () => {
    reduceHeap(0); // a baseline whatever ran before in this process
    assert.equal(reduceHeap(), false, 'no growth since: nothing done');
    let burst: { n: number; s: string }[][] | undefined = [];
    for (let i = 0; i < 64; i++) burst.push(Array.from({ length: 4096 }, (_, n) => ({ n, s: `item ${i}:${n}` })));
    const grown = getHeapStatistics().total_heap_size;
    burst = undefined;
    assert.equal(reduceHeap(), true, 'the burst grew the heap by more than 8 MiB');
    assert.ok(getHeapStatistics().total_heap_size < grown - 8 * 1024 * 1024, 'its memory is given back');
    assert.equal(reduceHeap(), false);
  });
});
