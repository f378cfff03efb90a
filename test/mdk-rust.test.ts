/**
 * The Rust MDK (mdk/rust) and the Rust examples (examples/rust) as their users see them, through
 * real `capsule run`, `capsule serve` and `capsule nats` processes: the examples' answers and
 * every handler kind and host function of the rust-probe fixture. Skipped when Debian's rustc
 * with the wasm32-wasi standard library was not there to build them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { eventually, fixture, missing, root, runCapsule, startServer, type Server } from './helpers.ts';
import { findBinary, startNatsServer, startRunner, type Broker } from './brokers.ts';
import { startHttp, type LocalServer } from './backends.ts';

/** Path of a built Rust example (`examples/rust/<name>/<name>.wasm`). */
function rustExample(name: string): string {
  return join(root, 'examples/rust', name, `${name}.wasm`);
}

const probe = fixture('rust-probe');
const natsServer = findBinary('nats-server');
/** Longest wait for an outcome (ms); nothing is timed. */
const WAIT = 20_000;

describe('Rust examples', () => {
  it('hello-world prints its parameters and greets (capsule run)', { skip: missing(rustExample('hello-world')) }, async () => {
    const r = await runCapsule(['run', `--wasm=${rustExample('hello-world')}`, '--params=Bob Morane']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '📝 module parameter(s): Bob Morane\n👋 Hello Bob Morane\n');
  });

  it('hello-you answers JSON, and 400 for a body that is not a JSON object (capsule serve)', { skip: missing(rustExample('hello-you')) }, async () => {
    const s = await startServer(['serve', `--wasm=${rustExample('hello-you')}`, '--http-port=0']);
    try {
      const ok = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob Morane', age: 42 }) });
      assert.equal(ok.status, 200);
      assert.match(ok.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(await ok.text(), '{"message":"Bob Morane 42"}');
      const escaped = await (await fetch(s.url, { method: 'POST', body: '{"name":"Bob \\"the\\"\\u0001 \\ud83d\\ude00","age":"forty"}' })).json();
      assert.deepEqual(escaped, { message: 'Bob "the"\u0001 😀 forty' });
      for (const body of ['not json', '[1,2]']) {
        const bad = await fetch(s.url, { method: 'POST', body });
        assert.equal(bad.status, 400);
        assert.match((await bad.json() as { error: string }).error, /JSON/);
      }
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('kv-counter counts GET /bloggo 1, 2, 3 across workers, each path on its own', { skip: missing(rustExample('kv-counter')) }, async () => {
    const s = await startServer(['serve', `--wasm=${rustExample('kv-counter')}`, '--http-port=0', '--workers=2', '--kv=memory']);
    try {
      const counts = [];
      for (let i = 0; i < 3; i++) counts.push(await (await fetch(`${s.url}/bloggo`)).json());
      assert.deepEqual(counts, [{ counter: 1 }, { counter: 2 }, { counter: 3 }]);
      assert.deepEqual(await (await fetch(`${s.url}/other?x=1`)).json(), { counter: 1 });
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });
});

describe('Rust MDK over HTTP (capsule serve, rust-probe)', { skip: missing(probe) }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-rust-'));
  const seen: string[] = [];
  let s: Server;
  let target: LocalServer;
  before(async () => {
    target = await startHttp((req, res, body) => {
      seen.push(`${req.method} ${req.url} ${req.headers['x-probe']} ${body.toString()}`);
      res.writeHead(201, { 'content-type': 'text/plain' }).end('created "here"');
    });
    s = await startServer(['serve', `--wasm=${probe}`, '--http-port=0', '--dir', `${dir}:/data`, '--allowed-hosts=127.0.0.1', '--kv=memory', '--env', 'GREETING=hé "you"']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
    await target.close();
  });

  /** Runs a command of the probe (POST /cmd). */
  async function cmd(command: string, arg = ''): Promise<{ status: number; text: string }> {
    const res = await fetch(`${s.url}/cmd`, { method: 'POST', body: JSON.stringify({ cmd: command, arg }) });
    return { status: res.status, text: await res.text() };
  }

  it('hands the handler the method, URI, body and headers (by name, any case)', async () => {
    const body = 'héllo "quoted" \\ back\nline 😀';
    const res = await fetch(`${s.url}/echo?x=1`, { method: 'PUT', body, headers: { 'content-type': 'text/plain', 'x-test': 'a "b", c: d' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('x-probe'), 'rust "quoted"');
    assert.deepEqual(await res.json(), { method: 'PUT', uri: `${s.url}/echo?x=1`, body, contentType: 'text/plain', xTest: 'a "b", c: d' });
  });

  it('answers text, a chosen status, a failure and refuses an invalid JSON body', async () => {
    const text = await fetch(`${s.url}/text`, { method: 'POST', body: 'é' });
    assert.deepEqual([text.status, text.headers.get('content-type'), await text.text()], [200, 'text/plain; charset=utf-8', 'plain text: é']);
    const teapot = await fetch(`${s.url}/status/418`);
    assert.deepEqual([teapot.status, await teapot.text()], [418, 'status']);
    const failed = await fetch(`${s.url}/fail`);
    assert.deepEqual([failed.status, await failed.text()], [500, 'the probe failed on purpose']);
    const bad = await fetch(`${s.url}/bad-json`);
    assert.equal(bad.status, 500);
    assert.match(await bad.text(), /not valid JSON/);
    assert.deepEqual(await (await fetch(`${s.url}/health`)).json(), { health: 'good' });
  });

  it('calls the host: environment, print and log, cache, KV, files, HTTP, talk', async () => {
    assert.deepEqual(await cmd('env', 'GREETING'), { status: 200, text: '"hé \\"you\\""' });
    assert.deepEqual(await cmd('env', 'NOT_SET_ANYWHERE'), { status: 200, text: '""' });
    assert.deepEqual(await cmd('print', 'x'), { status: 200, text: 'done' });
    await eventually(() => /printed x/.test(s.logs()) && /logged x/.test(s.logs()), WAIT);
    assert.deepEqual(await cmd('cache'), { status: 200, text: 'é 2 ["rs:a", "rs:b"] key not found' });
    assert.deepEqual(await cmd('kv'), { status: 200, text: '5 3' });
    assert.deepEqual(await cmd('files'), { status: 200, text: 'written by Rust 🦀 | true' });
    assert.equal(readFileSync(join(dir, 'rust.txt'), 'utf8'), 'written by Rust 🦀');
    assert.deepEqual(await cmd('http', target.url), { status: 200, text: '201 created "here"' });
    assert.deepEqual(seen, ['POST /hello rust say "hi"']);
    const refused = await cmd('http', `http://localhost:${target.port}`);
    assert.equal(refused.status, 500);
    assert.match(refused.text, /allowed-hosts/);
    assert.deepEqual(await cmd('talk'), { status: 200, text: "Hello 😀 I'm the host" });
  });
});

describe('Rust MDK from the command line (capsule run, rust-probe)', { skip: missing(probe) }, () => {
  it('reaches the JSON handler through callHandle; an Err or input that is not JSON exits 1 with the text', async () => {
    const ok = await runCapsule(['run', `--wasm=${probe}`, '--params={"cmd":"kv"}']);
    assert.deepEqual([ok.code, ok.stdout], [0, '5 3\n']);
    const failed = await runCapsule(['run', `--wasm=${probe}`, '--params={"cmd":"fail"}']);
    assert.deepEqual([failed.code, failed.stdout], [1, '']);
    assert.match(failed.stderr, /the probe failed on purpose/);
    const notJson = await runCapsule(['run', `--wasm=${probe}`, '--params=Bob']);
    assert.equal(notJson.code, 1);
    assert.match(notJson.stderr, /not valid JSON/);
  });
});

describe('Rust MDK messages (capsule nats, rust-probe)', { skip: !natsServer ? 'nats-server is not installed' : missing(probe) }, () => {
  let broker: Broker;
  let nc: NatsConnection;
  before(async () => {
    broker = await startNatsServer(natsServer!);
    nc = await connect({ servers: broker.url });
  });
  after(async () => {
    await nc.close();
    await broker.kill();
  });

  it('hands the handler the subject, data and headers, and fails with an error reply', async () => {
    const r = await startRunner(['nats', probe, `--nats-server=${broker.url}`, '--subject=sdk.rust']);
    try {
      const h = headers();
      h.set('A', '1');
      assert.equal((await nc.request('sdk.rust', 'hi', { timeout: WAIT, headers: h })).string(), 'rust: hi on sdk.rust A=1');
      const failed = await nc.request('sdk.rust', 'fail', { timeout: WAIT });
      assert.deepEqual([failed.headers?.get('Capsule-Error'), failed.string()], ['true', 'the probe failed on purpose']);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });
});
