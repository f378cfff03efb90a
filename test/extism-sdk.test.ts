/**
 * Capsule against the official Extism JS SDK (`@extism/extism`, a dev dependency): the same
 * plugin and the same input go through both in the same test; outputs must be byte-equal and
 * failures must agree (extism-abi.md §5). Plugins: the AssemblyScript PDK fixture
 * (test/fixtures/extism-as) and the C kitchen sink (test/fixtures/extism-kitchen.c, WASI).
 * Where Capsule differs on purpose (a non-zero return code, message wording) the test says so.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import createPlugin, { type Plugin } from '@extism/extism';
import { CapsuleFunction, type CliOutput } from '../src/index.ts';
import { fixture, missing } from './helpers.ts';

/** What one call gave: the output bytes, or the failure's message. */
type Outcome = { ok: true; bytes: Buffer } | { ok: false; message: string };

const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} } as unknown as Console;

/** The two runners of one plugin, with the same config and allowed hosts. */
class Pair {
  capsule!: CapsuleFunction;
  sdk!: Plugin;

  static async open(path: string, o: { config?: Record<string, string>; wasi?: boolean; allowedHosts?: string[]; worker?: boolean; timeoutMs?: number } = {}): Promise<Pair> {
    const p = new Pair();
    p.capsule = await CapsuleFunction.load({ path }, { workers: 1, env: Object.entries(o.config ?? {}), allowedHosts: o.allowedHosts, timeoutMs: o.timeoutMs ?? 20_000 });
    p.sdk = await createPlugin({ wasm: [{ data: readFileSync(path) }], config: o.config }, {
      useWasi: o.wasi ?? false, logger: silent, allowedHosts: o.allowedHosts, runInWorker: o.worker ?? false, timeoutMs: o.timeoutMs,
    });
    return p;
  }

  async viaCapsule(name: string, input: Uint8Array | string): Promise<Outcome> {
    const params = typeof input === 'string' ? Buffer.from(input) : input;
    try {
      const { output } = await this.capsule.invoke({ type: 'cli', params, args: [], entrypoint: name });
      const o = output as CliOutput;
      const text = Buffer.from(o.text ?? new Uint8Array(0));
      return o.exitCode === 0 ? { ok: true, bytes: text } : { ok: false, message: text.toString() };
    } catch (e) {
      return { ok: false, message: (e as Error).message };
    }
  }

  async viaSdk(name: string, input: Uint8Array | string): Promise<Outcome> {
    try {
      const out = await this.sdk.call(name, input);
      return { ok: true, bytes: out ? Buffer.from(out.bytes()) : Buffer.alloc(0) };
    } catch (e) {
      return { ok: false, message: (e as Error).message.replace(/^Plugin-originated error: /, '') };
    }
  }

  /** Both outcomes of one call. */
  async both(name: string, input: Uint8Array | string = ''): Promise<[Outcome, Outcome]> {
    return [await this.viaCapsule(name, input), await this.viaSdk(name, input)];
  }

  /** Asserts byte-equal outputs (or the same failure message). */
  async same(name: string, input: Uint8Array | string = ''): Promise<Outcome> {
    const [c, s] = await this.both(name, input);
    assert.equal(c.ok, s.ok, `${name}: Capsule ${c.ok ? 'succeeded' : `failed (${(c as { message: string }).message})`}, the SDK ${s.ok ? 'succeeded' : `failed (${(s as { message: string }).message})`}`);
    if (c.ok && s.ok) assert.ok(c.bytes.equals(s.bytes), `${name}: outputs differ (${c.bytes.length} vs ${s.bytes.length} bytes): ${c.bytes.subarray(0, 80).toString()} | ${s.bytes.subarray(0, 80).toString()}`);
    if (!c.ok && !s.ok) assert.equal(c.message, s.message);
    return c;
  }

  async close(): Promise<void> {
    await this.capsule?.close();
    await this.sdk?.close();
  }
}

const as = fixture('extism-as');
const asHttp = fixture('extism-as-http');
const kitchen = fixture('extism-kitchen');

describe('Capsule and the Extism JS SDK: the AssemblyScript PDK plugin', { skip: missing(as) }, () => {
  let pair: Pair;
  before(async () => {
    pair = await Pair.open(as, { config: { greeting: 'Hi' } });
  });
  after(() => pair?.close());

  it('count_vowels, upper and greet give byte-equal outputs', async () => {
    for (const input of ['Hello, World', '', 'aeiouAEIOU xyz', 'A'.repeat(1000)]) {
      assert.equal((await pair.same('count_vowels', input)).ok, true);
    }
    assert.equal((await pair.same('count_vowels', 'Hello, World') as { bytes: Buffer }).bytes.toString(), '{"count":3}');
    await pair.same('upper', 'abc Def 123');
    assert.equal((await pair.same('greet', 'Bob') as { bytes: Buffer }).bytes.toString(), 'Hi, Bob!');
  });

  it('echo moves binary inputs byte for byte, up to 10 MiB', async () => {
    for (const size of [0, 7, 8, 9, 4096 + 3, 1024 * 1024, 10 * 1024 * 1024]) {
      const data = randomBytes(size);
      const out = await pair.same('echo', data);
      assert.ok(out.ok && out.bytes.equals(data), `echo of ${size} bytes changed them`);
    }
  });

  it('vars persist between calls of one plugin in both', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) seen.push((await pair.same('count') as { bytes: Buffer }).bytes.toString());
    assert.deepEqual(seen, ['1', '2', '3']);
  });

  it('an error_set fails the call with the same message in both', async () => {
    const out = await pair.same('fail_with', 'the plugin says no');
    assert.deepEqual(out, { ok: false, message: 'the plugin says no' });
  });

  it('a trap fails the call in both, and both serve the next call', async () => {
    const [c, s] = await pair.both('trap');
    assert.equal(c.ok, false);
    assert.equal(s.ok, false);
    assert.match((c as { message: string }).message, /unreachable/);
    assert.match((s as { message: string }).message, /unreachable/);
    await pair.same('upper', 'still here');
  });

  it('a plugin that never returns is stopped by the deadline in both (the SDK in its worker mode), and both serve the next call', async () => {
    const timed = await Pair.open(as, { timeoutMs: 300, worker: true });
    try {
      const [c, s] = await timed.both('spin');
      assert.equal(c.ok, false);
      assert.equal(s.ok, false);
      assert.match((c as { message: string }).message, /did not return within 300 ms/);
      await timed.same('count_vowels', 'after the deadline');
    } finally {
      await timed.close();
    }
  });

  it('logs at and above the level reach the host\'s log in both, with the same levels and texts', async () => {
    const fn = await CapsuleFunction.load({ path: as }, { workers: 1 });
    const sdkLines: string[] = [];
    const logger = Object.fromEntries(['trace', 'debug', 'info', 'warn', 'error'].map((l) => [l, (t: string) => sdkLines.push(`${l.toUpperCase()} ${t}`)]));
    const sdk = await createPlugin({ wasm: [{ data: readFileSync(as) }] }, { useWasi: false, logger: logger as unknown as Console, logLevel: 'warn' });
    try {
      const r = await fn.invoke({ type: 'cli', params: new Uint8Array(0), args: ['log_level=warn'], entrypoint: 'logs' });
      const capsuleLines = (r.logs?.log ?? []).map((l) => l.replace(/^\[extism-as\.wasm\] /, ''));
      await sdk.call('logs', '');
      assert.deepEqual(capsuleLines, ['WARN a warn line', 'ERROR an error line']);
      assert.deepEqual(sdkLines, capsuleLines);
    } finally {
      await fn.close();
      await sdk.close();
    }
  });

  it('a config key that is not set: the same plugin error', async () => {
    const bare = await Pair.open(as);
    try {
      assert.deepEqual(await bare.same('greet', 'Bob'), { ok: false, message: 'no greeting configured' });
    } finally {
      await bare.close();
    }
  });

  it('differs on purpose: a non-zero return code without error is a failure in Capsule (as the native runtime), a success in the JS SDK', async () => {
    const [c, s] = await pair.both('fail_with', '');
    assert.deepEqual(c, { ok: false, message: 'Returned non-zero exit code: 2' });
    assert.deepEqual(s, { ok: true, bytes: Buffer.alloc(0) });
  });

  it('an export that does not exist fails in both (each in its own words)', async () => {
    const [c, s] = await pair.both('nosuch');
    assert.deepEqual(c, { ok: false, message: 'Function not found: nosuch' });
    assert.equal(s.ok, false);
    assert.match((s as { message: string }).message, /function "nosuch" does not exist/);
  });
});

describe('Capsule and the Extism JS SDK: a plugin without PDK (C, WASI)', { skip: missing(kitchen) }, () => {
  let pair: Pair;
  before(async () => {
    pair = await Pair.open(kitchen, { config: { greeting: 'from the config' }, wasi: true });
  });
  after(() => pair?.close());

  it('echo, count_vowels and config agree', async () => {
    await pair.same('echo', randomBytes(100_003));
    await pair.same('count_vowels', 'Hello, World');
    assert.equal((await pair.same('config', 'greeting') as { bytes: Buffer }).bytes.toString(), 'from the config');
    assert.deepEqual(await pair.same('config', 'other'), { ok: false, message: 'no config key other' });
  });

  it('differs on purpose: alloc(0) is handle 0 in Capsule (as the native runtime, §2), a block in the JS SDK', async () => {
    const [c, s] = await pair.both('semantics', 'some input');
    assert.deepEqual(c, { ok: true, bytes: Buffer.from('ok') });
    assert.deepEqual(s, { ok: true, bytes: Buffer.from('alloc(0) is not 0') }); // the plugin's own check, as its output
  });

  it('reading past the input fails the call in both', async () => {
    const [c, s] = await pair.both('overread', 'abc');
    assert.equal(c.ok, false);
    assert.equal(s.ok, false);
  });
});

describe('Capsule and the Extism JS SDK: http_request', { skip: missing(asHttp) }, () => {
  let server: Server;
  let url: string;
  before(async () => {
    server = createServer((req, res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`pong ${req.headers['x-plugin']}`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ping`;
  });
  after(() => server.close());

  it('an allowed host: the same status and body; a host not allowed: a failure in both', async () => {
    const pair = await Pair.open(asHttp, { allowedHosts: ['127.0.0.1'], worker: true });
    try {
      assert.equal((await pair.same('http_get', url) as { bytes: Buffer }).bytes.toString(), '200 pong as-pdk');
    } finally {
      await pair.close();
    }
    const refused = await Pair.open(asHttp, { allowedHosts: ['example.com'], worker: true });
    try {
      const [c, s] = await refused.both('http_get', url);
      assert.equal(c.ok, false);
      assert.equal(s.ok, false);
      assert.match((c as { message: string }).message, /^HTTP request to http:\/\/127\.0\.0\.1:\d+\/ping is not allowed/);
      assert.match((s as { message: string }).message, /HTTP request to "http:\/\/127\.0\.0\.1:\d+\/ping" is not allowed/);
    } finally {
      await refused.close();
    }
  });
});
