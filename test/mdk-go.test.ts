/**
 * The Go MDK (mdk/go) and the Go examples (examples/go) as their users see them, through real
 * `capsule run`, `capsule serve` and `capsule nats` processes: the examples' answers, every
 * handler kind and host function of the go-probe fixture, a function written the TinyGo-era way
 * (go-sample: hooks, a start-up GetEnv), a JSON-only handler, a main that never returns, the
 * goenv WASI command served CGI-style, and what fresh calls of a Go module share (snapshot.ts).
 * Skipped when Go >= 1.24 was not there to build them (scripts/build-guests.ts says so).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { CapsuleFunction, type CliOutput } from '../src/index.ts';
import { eventually, fixture, missing, root, runCapsule, startServer, type Server } from './helpers.ts';
import { findBinary, startNatsServer, startRunner, type Broker } from './brokers.ts';
import { redisServerBinary, startHttp, startRedis, type LocalServer, type RedisServer } from './backends.ts';

/** Path of a built Go example (`examples/go/<name>/<name>.wasm`). */
function goExample(name: string): string {
  return join(root, 'examples/go', name, `${name}.wasm`);
}

const probe = fixture('go-probe');
const natsServer = findBinary('nats-server');
/** Longest wait for an outcome (ms); nothing is timed. */
const WAIT = 20_000;

describe('Go examples', () => {
  it('hello-world prints its parameters and greets (capsule run)', { skip: missing(goExample('hello-world')) }, async () => {
    const r = await runCapsule(['run', `--wasm=${goExample('hello-world')}`, '--params=Bob Morane']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '📝 module parameter(s): Bob Morane\n👋 Hello Bob Morane\n');
  });

  it('hello-you answers JSON with fastjson, and 400 for a body that is not a JSON object (capsule serve)', { skip: missing(goExample('hello-you')) }, async () => {
    const s = await startServer(['serve', `--wasm=${goExample('hello-you')}`, '--http-port=0']);
    try {
      const ok = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob Morane', age: 42 }) });
      assert.equal(ok.status, 200);
      assert.match(ok.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(await ok.text(), '{"message":"Bob Morane 42"}');
      const escaped = await (await fetch(s.url, { method: 'POST', body: '{"name":"Bob \\"the\\"\\u0001 é","age":"forty"}' })).json();
      assert.deepEqual(escaped, { message: 'Bob "the"\u0001 é forty' });
      for (const body of ['not json', '[1,2]']) {
        const bad = await fetch(s.url, { method: 'POST', body });
        assert.equal(bad.status, 400);
        assert.match((await bad.json() as { error: string }).error, /JSON/);
      }
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('hello-html serves its embedded page with the request in it, escaped', { skip: missing(goExample('hello-html')) }, async () => {
    const s = await startServer(['serve', `--wasm=${goExample('hello-html')}`, '--http-port=0']);
    try {
      const res = await fetch(`${s.url}/some/page?q=<b>`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
      const page = await res.text();
      assert.match(page, /<h1>👋 Hello from Capsule<\/h1>/);
      assert.ok(page.includes(`<code>GET ${s.url}/some/page?q=%3Cb%3E</code>`), page);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('kv-counter counts GET /bloggo 1, 2, 3 across workers, each path on its own', { skip: missing(goExample('kv-counter')) }, async () => {
    const s = await startServer(['serve', `--wasm=${goExample('kv-counter')}`, '--http-port=0', '--workers=2', '--kv=memory']);
    try {
      const counts = [];
      for (let i = 0; i < 3; i++) counts.push(await (await fetch(`${s.url}/bloggo`)).json());
      assert.deepEqual(counts, [{ counter: 1 }, { counter: 2 }, { counter: 3 }]);
      assert.deepEqual(await (await fetch(`${s.url}/other?x=1`)).json(), { counter: 1 });
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('goenv, a plain Go WASI command, prints its argv and environment: CGI over HTTP and as a program', { skip: missing(goExample('goenv')) }, async () => {
    const s = await startServer(['serve', `--wasm=${goExample('goenv')}`, '--http-port=0', '--env', 'MESSAGE=hi']);
    try {
      const res = await fetch(`${s.url}/some/path?b=2&a=1`);
      assert.equal(res.status, 200);
      const text = await res.text();
      for (const line of ['Hello from Go (WASI)', '  REQUEST_METHOD=GET', '  PATH_INFO=/some/path', '  MESSAGE=hi', '  http_path=/some/path', 'you asked for /some/path with GET']) {
        assert.ok(text.split('\n').includes(line), `${line} in\n${text}`);
      }
    } finally {
      assert.equal(await s.stop(), 0);
    }
    const r = await runCapsule(['run', goExample('goenv'), 'one', 'two', '--env', 'MESSAGE=hi', '--no-inherit-env']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /argv:\n {2}\S*\n {2}one\n {2}two\n/);
    assert.match(r.stdout, /environment:\n {2}MESSAGE=hi\n/);
  });

  describe('nats-echo (capsule nats)', { skip: !natsServer ? 'nats-server is not installed' : missing(goExample('nats-echo')) }, () => {
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

    it('answers a request, and an empty one with an error reply', async () => {
      const r = await startRunner(['nats', goExample('nats-echo'), `--nats-server=${broker.url}`, '--subject=echo']);
      try {
        assert.equal((await nc.request('echo', 'hello', { timeout: WAIT })).string(), 'echo: hello');
        const empty = await nc.request('echo', '', { timeout: WAIT });
        assert.equal(empty.headers?.get('Capsule-Error'), 'true');
        assert.equal(empty.string(), 'nothing to echo');
        await eventually(() => /📨 echo: hello/.test(r.logs()), WAIT);
      } finally {
        assert.equal(await r.stop(), 0);
      }
    });
  });
});

describe('Go MDK host functions (go-probe served with every grant)', { skip: missing(probe) }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-go-'));
  const seen: string[] = [];
  let s: Server;
  let target: LocalServer;
  let redis: RedisServer | undefined;
  before(async () => {
    target = await startHttp((req, res, body) => {
      seen.push(`${req.method} ${req.url} ${req.headers['x-probe']} ${body.toString()}`);
      res.writeHead(201, { 'content-type': 'text/plain' }).end('created "here"');
    });
    const redisBin = redisServerBinary();
    if (redisBin) redis = await startRedis(redisBin);
    s = await startServer([
      'serve', `--wasm=${probe}`, '--http-port=0', '--dir', `${dir}:/data`, '--allowed-hosts=127.0.0.1', '--kv=memory',
      '--env', 'GREETING=hé "you"', ...(redis ? [`--redis-uri=${redis.url}`] : []),
    ]);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
    await target.close();
    await redis?.stop();
  });

  /** Runs a callHandle command of the probe through its /cmd route. */
  async function cmd(command: string): Promise<{ status: number; text: string }> {
    const res = await fetch(`${s.url}/cmd?c=${encodeURIComponent(command)}`);
    return { status: res.status, text: await res.text() };
  }

  it('reads the environment, prints, logs and talks', async () => {
    assert.deepEqual(await cmd('env:GREETING'), { status: 200, text: '"hé \\"you\\""' });
    assert.deepEqual(await cmd('env:NOT_SET_ANYWHERE'), { status: 200, text: '""' });
    assert.deepEqual(await cmd('print:x'), { status: 200, text: 'done' });
    await eventually(() => /printed x/.test(s.logs()) && /logged x/.test(s.logs()), WAIT);
    assert.deepEqual(await cmd('talk'), { status: 200, text: "Hello 😀 I'm the host" });
  });

  it('uses the memory cache and the KV counter', async () => {
    assert.deepEqual(await cmd('cache'), { status: 200, text: 'é 2 [go:a go:b] key not found' });
    assert.deepEqual(await cmd('kv'), { status: 200, text: '5 3' });
  });

  it('writes and reads files only inside its --dir grant', async () => {
    assert.deepEqual(await cmd('files'), { status: 200, text: 'written by Go 🐹 | true' });
    assert.equal(readFileSync(join(dir, 'go.txt'), 'utf8'), 'written by Go 🐹');
  });

  it('sends HTTP requests through the host to allowed hosts only', async () => {
    assert.deepEqual(await cmd(`http:${target.url}`), { status: 200, text: '201 created "here"|' });
    assert.deepEqual(seen, ['POST /hello go say "hi"']);
    const refused = await cmd(`http:http://localhost:${target.port}`);
    assert.equal(refused.status, 500);
    assert.match(refused.text, /allowed-hosts/);
  });

  it('uses Redis', { skip: redisServerBinary() ? false : 'redis-server is not installed' }, async () => {
    assert.deepEqual(await cmd('redis'), { status: 200, text: 'red [go:r] redis: nil' });
  });

  it('waits for goroutines inside a call; an error and a panic fail the call with their text', async () => {
    assert.deepEqual(await cmd('goroutines'), { status: 200, text: 'sum 55' });
    assert.deepEqual(await cmd('fail'), { status: 500, text: 'the probe failed on purpose' });
    assert.deepEqual(await cmd('panic'), { status: 500, text: 'panic: the probe panicked' });
    assert.deepEqual(await cmd('goroutines'), { status: 200, text: 'sum 55' });
  });
});

describe('Go MDK from the command line (capsule run)', { skip: missing(probe) }, () => {
  it('prints the result, or fails with exit code 1 and the error or panic on stderr', async () => {
    const ok = await runCapsule(['run', `--wasm=${probe}`, '--params=Bob']);
    assert.deepEqual([ok.code, ok.stdout], [0, '👋 Bob\n']);
    const failed = await runCapsule(['run', `--wasm=${probe}`, '--params=fail']);
    assert.deepEqual([failed.code, failed.stdout], [1, '']);
    assert.match(failed.stderr, /the probe failed on purpose/);
    const panicked = await runCapsule(['run', `--wasm=${probe}`, '--params=panic']);
    assert.equal(panicked.code, 1);
    assert.match(panicked.stderr, /panic: the probe panicked/);
  });

  it('reaches a JSON-only handler through callHandle, and a main that never returns', { skip: missing(fixture('go-json')) || missing(fixture('go-blocking')) }, async () => {
    const json = await runCapsule(['run', `--wasm=${fixture('go-json')}`, '--params={"name":"Bob","age":42}']);
    assert.deepEqual([json.code, json.stdout], [0, 'Hello Bob, age: 42\n']);
    const notJson = await runCapsule(['run', `--wasm=${fixture('go-json')}`, '--params=Bob']);
    assert.equal(notJson.code, 1);
    assert.match(notJson.stderr, /not valid JSON/);
    const blocking = await runCapsule(['run', `--wasm=${fixture('go-blocking')}`, '--params=hi']);
    assert.deepEqual([blocking.code, blocking.stdout], [0, 'still answering: hi\n']);
  });
});

describe('Go MDK over HTTP (capsule serve, go-probe)', { skip: missing(probe) }, () => {
  let s: Server;
  before(async () => {
    s = await startServer(['serve', `--wasm=${probe}`, '--http-port=0']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it('hands the handler the method, URI, body and headers exactly', async () => {
    const body = 'héllo "quoted" \\ back\nline 😀';
    const res = await fetch(`${s.url}/echo?x=1`, { method: 'PUT', body, headers: { 'content-type': 'text/plain', 'x-test': 'a "b", c: d' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('x-probe'), 'go "quoted"');
    const echo = await res.json() as Record<string, string>;
    assert.deepEqual([echo['method'], echo['uri'], echo['body'], echo['contentType'], echo['xTest']], ['PUT', `${s.url}/echo?x=1`, body, 'text/plain', 'a "b", c: d']);
  });

  it('answers text, a chosen status, a failure, an invalid JSON body and a panic, and keeps serving', async () => {
    const text = await fetch(`${s.url}/text`, { method: 'POST', body: 'é' });
    assert.deepEqual([text.status, text.headers.get('content-type'), await text.text()], [200, 'text/plain; charset=utf-8', 'plain text: é']);
    const teapot = await fetch(`${s.url}/status/418`);
    assert.deepEqual([teapot.status, await teapot.text()], [418, 'status']);
    const failed = await fetch(`${s.url}/fail`);
    assert.deepEqual([failed.status, await failed.text()], [500, 'the probe failed on purpose']);
    const bad = await fetch(`${s.url}/bad-json`);
    assert.equal(bad.status, 500);
    assert.match(await bad.text(), /JSONBody is not valid JSON/);
    const panicked = await fetch(`${s.url}/panic`);
    assert.deepEqual([panicked.status, await panicked.text()], [500, 'panic: the probe panicked']);
    assert.equal((await fetch(`${s.url}/echo`)).status, 200);
  });

  it('serves /health and /metrics from its OnHealthCheck and OnMetrics exports', async () => {
    assert.deepEqual(await (await fetch(`${s.url}/health`)).json(), { health: 'good' });
    const metrics = await fetch(`${s.url}/metrics`);
    assert.equal(metrics.headers.get('content-type'), 'text/plain; version=0.0.4');
    assert.match(await metrics.text(), /^probe_calls 0$/m);
  });
});

describe('Go functions: fresh calls and --reuse', { skip: missing(probe) }, () => {
  async function calls(reuse: boolean): Promise<string[]> {
    const fn = await CapsuleFunction.load({ path: probe }, { workers: 1, timeoutMs: 10_000, reuse });
    try {
      const out: string[] = [];
      for (const params of ['calls', 'calls', 'rand', 'rand', 'rand']) {
        const r = await fn.invoke({ type: 'cli', params: new TextEncoder().encode(params), args: [] });
        out.push(new TextDecoder().decode((r.output as CliOutput).text));
      }
      return out;
    } finally {
      await fn.close();
    }
  }

  it('starts every fresh call from the initialised state; --reuse keeps package variables', async () => {
    const fresh = await calls(false);
    assert.deepEqual(fresh.slice(0, 2), ['1', '1']);
    const reused = await calls(true);
    assert.deepEqual(reused.slice(0, 2), ['1', '2']);
  });

  it('reads new random bytes in every fresh call (crypto/rand); the runtime\'s pseudo-random state is that of the snapshot', async () => {
    const rand = (await calls(false)).slice(2).map((r) => r.split(' '));
    assert.equal(new Set(rand.map(([crypto]) => crypto)).size, 3, 'crypto/rand reads random_get during the call');
    // documented (mdk/go/README.md, src/engine/snapshot.ts): math/rand's top-level functions are
    // seeded at start-up, and every fresh call starts from that state
    assert.equal(new Set(rand.map(([, math]) => math)).size, 1);
  });
});

describe('Go MDK messages (capsule nats, go-probe)', { skip: !natsServer ? 'nats-server is not installed' : missing(probe) }, () => {
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

  it('hands the handler the subject, data and headers; publishes; fails with an error reply', async () => {
    const r = await startRunner(['nats', probe, `--nats-server=${broker.url}`, '--subject=sdk.go']);
    try {
      const h = headers();
      h.set('A', '1');
      assert.equal((await nc.request('sdk.go', 'hi', { timeout: WAIT, headers: h })).string(), 'go: hi on sdk.go A=1');
      const published: string[] = [];
      nc.subscribe('sdk.go.out', { callback: (_e, m) => { published.push(m.string()); } });
      await nc.flush();
      assert.equal((await nc.request('sdk.go', 'publish', { timeout: WAIT })).string(), 'published');
      await eventually(() => published.includes('published by Go'), WAIT);
      const failed = await nc.request('sdk.go', 'fail', { timeout: WAIT });
      assert.deepEqual([failed.headers?.get('Capsule-Error'), failed.string()], ['true', 'the probe failed on purpose']);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });
});

describe('A TinyGo-era Go function with only its import path changed (go-sample)', { skip: missing(fixture('go-sample')) }, () => {
  it('runs its hooks, its handler with a start-up GetEnv, /health and /metrics', async () => {
    const s = await startServer(['serve', `--wasm=${fixture('go-sample')}`, '--http-port=0', '--env', 'GREETING=Hi']);
    try {
      const res = await fetch(s.url, { method: 'POST', body: '{"name":"Bob","age":42}' });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { message: 'Hi Bob 42', things: { emoji: '🐯' } });
      await eventually(() => /🚗 OnStart/.test(s.logs()), WAIT); // each new instance runs OnStart
      assert.deepEqual(await (await fetch(`${s.url}/health`)).json(), { message: 'OK' });
      assert.match(await (await fetch(`${s.url}/metrics`)).text(), /^call_counter 1$/m);
      const bad = await fetch(s.url, { method: 'POST', body: 'nope' });
      assert.equal(bad.status, 500);
    } finally {
      assert.equal(await s.stop(), 0);
    }
    assert.match(s.logs(), /🚙 OnStop/);
  });
});
