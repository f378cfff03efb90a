/**
 * `capsule serve --http-threads` (README "HTTP threads"): HTTP accepted and run in the worker
 * threads, the main thread a supervisor. Real server processes, real connections on loopback,
 * real guests: which thread answered is read from the request log lines (`thread`).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CapsuleFunction, createLogger, lifecyclePool, serveHttpThreads } from '../src/index.ts';
import { publishedRequest, publishRequest, threadSlot, THREAD_SLOT_BYTES } from '../src/triggers/http/thread-protocol.ts';
import { eventually, example, fileServer, fixture, missing, runCapsule, selfSignedCert, startServer, type Server } from './helpers.ts';

const hello = example('hello-you');
const behaviours = fixture('gen2-behaviours'); // POST body "l" loops for ever, "e" echoes
const V1 = fixture('wasi-cgi'); // GET /version → "v1\n"
const V2 = fixture('wasi-cgi-v2'); // GET /version → "v2\n"
const GATE = fixture('wasi-gate'); // answers once the file /gate/open exists
const initLoop = fixture('gen2-init-loop'); // _initialize never returns
const unmetered = fixture('gen2-unmetered'); // the meter leaves it alone (catch_all); POST body "l" loops for ever
const skip = process.platform !== 'linux' ? 'SO_REUSEPORT threads: Linux only' : missing(hello) || missing(behaviours) || missing(V1) || missing(V2) || missing(GATE) || missing(unmetered) || missing(initLoop);

interface Answer {
  status: number;
  text: string;
}

/** One request on a connection of its own (a new connection: the kernel picks the thread). Rejects when the connection fails. */
function send(url: string, o: { method?: string; path?: string; body?: string; timeoutMs?: number; headers?: Record<string, string>; seen?: (h: IncomingHttpHeaders) => void } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url + (o.path ?? '/'), { method: o.method ?? 'GET', agent: false, headers: o.headers }, (res) => {
      o.seen?.(res.headers);
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (o.timeoutMs !== undefined) req.setTimeout(o.timeoutMs, () => req.destroy(new Error('no answer yet')));
    req.end(o.body);
  });
}

/** The request log lines written so far. */
function requestLines(s: Server): { url?: string; thread?: number; status?: number }[] {
  return s.logs().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { msg?: string; url?: string; thread?: number; status?: number }).filter((l) => l.msg === 'request');
}

/** The `thread` fields of the request log lines of `path` written so far. */
function threadsThatAnswered(s: Server, path: string): Set<number> {
  const seen = new Set<number>();
  for (const l of requestLines(s)) if (l.url === path && l.thread !== undefined) seen.add(l.thread);
  return seen;
}

/** The sum of a metric's series in /capsule/metrics, asked on new connections until a thread free of a call answers. */
async function metric(url: string, name: string): Promise<number> {
  for (;;) {
    try {
      // a scrape waits 0.25 s for a thread busy in a call (then uses its last counters); a
      // connection the kernel gave to that thread is not answered before the call ends
      const { text } = await send(url, { path: '/capsule/metrics', timeoutMs: 500 });
      let sum = 0;
      for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
      return sum;
    } catch {
      // this connection went to a thread busy in a call: another one
    }
  }
}

/** Waits until `check` holds. @throws when it does not within 20 s (a hung server fails the test, not the run) */
const until = (check: () => Promise<boolean>) => eventually(check, 20_000);

/**
 * Runs `test` against `capsule serve <module> --http-port=0 --http-threads <flags>`, then stops
 * the server, which must exit 0 (also after a failed `test`).
 */
async function serving(module: string, flags: string[], test: (s: Server) => Promise<void>): Promise<void> {
  const s = await startServer(['serve', module, '--http-port=0', '--http-threads', ...flags]);
  try {
    await test(s);
  } finally {
    assert.equal(await s.stop(), 0);
  }
}

describe('HTTP threads: the call a thread publishes for the supervisor\'s 504', () => {
  it('carries its request id and method; an id that does not fit or is not printable ASCII is none (the 504 then gets a fresh one)', () => {
    const slot = threadSlot(new SharedArrayBuffer(THREAD_SLOT_BYTES));
    const seen = (id: string | undefined, method: string | undefined) => {
      publishRequest(slot, id, method);
      return publishedRequest(slot);
    };
    assert.deepEqual(seen('runaway-7', 'POST'), { requestId: 'runaway-7', method: 'POST' });
    assert.deepEqual(seen('x'.repeat(200), 'GET'), { requestId: 'x'.repeat(200), method: 'GET' });
    assert.deepEqual(seen(undefined, undefined), { requestId: undefined, method: '' });
    assert.deepEqual(seen('x'.repeat(201), 'BREW'), { requestId: undefined, method: '' });
    // 200 characters whose UTF-8 is 201 bytes: 200 of them fit, not the id
    assert.equal(seen(`é${'x'.repeat(199)}`, 'GET').requestId, undefined);
    assert.equal(seen('café', 'GET').requestId, undefined);
    assert.equal(seen('a\r\nSet-Cookie: x', 'GET').requestId, undefined);
  });
});

describe('capsule serve --http-threads', { skip }, () => {
  it('answers on more than one thread, and /capsule/metrics adds up the requests of every thread', async () => {
    await serving(hello, ['--workers=2'], async (s) => {
      const answers = await Promise.all(Array.from({ length: 24 }, () => send(s.url, { method: 'POST', body: '{"name":"Bob Morane","age":42}' })));
      for (const a of answers) assert.deepEqual(a, { status: 200, text: '{"message":"Bob Morane 42"}' });
      const ready = JSON.parse((await send(s.url, { path: '/capsule/ready' })).text) as { status: string; workers: number };
      assert.equal(ready.status, 'ready');
      assert.equal(ready.workers, 2);
      await until(async () => threadsThatAnswered(s, '/').size === 2);
      assert.equal(await metric(s.url, 'capsule_requests_total'), 24);
      assert.equal(await metric(s.url, 'capsule_workers'), 2);
    });
  });

  it('a metered runaway gets its 504 from its own thread, which lives on and answers the other connections it holds', async () => {
    await serving(behaviours, ['--workers=1', '--timeout=2s'], async (s) => {
      const runaway = send(s.url, { method: 'POST', body: 'l' });
      // sent before the deadline on connections of the same (only) thread, which used to take
      // them down with it
      const goods = Array.from({ length: 3 }, () => send(s.url, { method: 'POST', body: 'e' }));
      const stopped = await runaway;
      assert.equal(stopped.status, 504);
      assert.deepEqual(JSON.parse(stopped.text), { error: 'the function did not return within 2000 ms (--timeout); it was stopped by its deadline check', code: 'TIMEOUT' });
      assert.deepEqual((await Promise.all(goods)).map((g) => g.status), [200, 200, 200]);
      // the thread itself logged the 504 (a stopped thread logs nothing), and none was stopped or replaced
      await until(async () => requestLines(s).some((l) => l.status === 504 && l.thread === 0));
      assert.doesNotMatch(s.logs(), /HTTP thread \d stopped|worker replaced/);
      assert.equal(await metric(s.url, 'capsule_timeouts_total'), 1);
      assert.equal(await metric(s.url, 'capsule_workers'), 1);
      assert.equal((await send(s.url, { method: 'POST', body: 'e' })).status, 200);
    });
  });

  it('metered runaways do not hold up their thread: a request sent while they run is answered first, they get their 504 and the thread lives on', async () => {
    await serving(behaviours, ['--workers=1', '--timeout=3s'], async (s) => {
      const order: string[] = [];
      const runaways = Array.from({ length: 2 }, () => send(s.url, { method: 'POST', body: 'l' }).then((a) => {
        order.push('runaway');
        return a;
      }));
      // the scrape is answered by the only thread while a runaway runs in it (it gives the thread back now and then)
      await until(async () => (await metric(s.url, 'capsule_busy_workers')) === 1);
      const good = await send(s.url, { method: 'POST', body: 'e' }).then((a) => {
        order.push('good');
        return a;
      });
      assert.equal(good.status, 200);
      for (const stopped of await Promise.all(runaways)) {
        assert.equal(stopped.status, 504);
        assert.match(JSON.parse(stopped.text).error, /did not return within 3000 ms \(--timeout\); it was stopped by its deadline check/);
      }
      assert.deepEqual(order, ['good', 'runaway', 'runaway']);
      assert.doesNotMatch(s.logs(), /HTTP thread \d stopped|worker replaced/);
      assert.equal(await metric(s.url, 'capsule_timeouts_total'), 2);
      assert.equal(await metric(s.url, 'capsule_workers'), 1);
    });
  });

  it('long calls interleaved on one thread each get their own answer', async () => {
    await serving(behaviours, ['--workers=1', '--timeout=20s'], async (s) => {
      // "w" is busy for ~2^27 loop turns, giving the thread back meanwhile: the three run interleaved, beside the echo
      const waits = Array.from({ length: 3 }, () => send(s.url, { method: 'POST', body: 'w' }));
      const echo = await send(s.url, { method: 'POST', body: 'e' });
      assert.equal(echo.status, 200);
      assert.equal(JSON.parse(echo.text).Body, 'e');
      assert.deepEqual(await Promise.all(waits), Array(3).fill({ status: 200, text: '"waited"' }));
      assert.doesNotMatch(s.logs(), /HTTP thread \d stopped|worker replaced/);
    });
  });

  it('a metered module whose initialisation never returns: each call gets its 504 from the thread, which lives on', async () => {
    await serving(initLoop, ['--workers=1', '--timeout=2s'], async (s) => {
      for (let i = 0; i < 2; i++) {
        const call = send(s.url, { method: 'POST', body: 'e' });
        // the first call's initialisation runs in the snapshot probe, the second's in its instance: both give the thread back
        await until(async () => (await metric(s.url, 'capsule_busy_workers')) === 1);
        const a = await call;
        assert.equal(a.status, 504);
        assert.match(JSON.parse(a.text).error, /did not return within 2000 ms \(--timeout\); it was stopped by its deadline check/);
      }
      assert.doesNotMatch(s.logs(), /HTTP thread \d stopped|worker replaced/);
    });
  });

  it('answers 504 to a call of an unmetered module past its deadline, stops its thread and keeps answering on the others', async () => {
    await serving(unmetered, ['--workers=2', '--timeout=8s'], async (s) => {
      // both threads answer some requests first, and a scrape sees them
      const before = await Promise.all(Array.from({ length: 24 }, () => send(s.url, { method: 'POST', body: 'e' })));
      assert.deepEqual(before.map((a) => a.status), Array(24).fill(200));
      await until(async () => threadsThatAnswered(s, '/').size === 2);
      assert.equal(await metric(s.url, 'capsule_requests_total'), 24);
      const order: string[] = [];
      let runawayHeaders: IncomingHttpHeaders = {};
      const runaway = send(s.url, { method: 'POST', body: 'l', headers: { 'X-Request-Id': 'runaway-7' }, seen: (h) => (runawayHeaders = h) }).then((a) => {
        order.push('runaway');
        return a;
      });
      await until(async () => (await metric(s.url, 'capsule_busy_workers')) === 1);
      // new connections: those the kernel gives to the stuck thread fail with it, the others are answered now
      const goods = await Promise.allSettled(Array.from({ length: 16 }, () => send(s.url, { method: 'POST', body: 'e' }).then((a) => {
        order.push('good');
        return a.status;
      })));
      // answered by the main thread on the runaway's connection before its thread was stopped
      const stopped = await runaway;
      assert.equal(stopped.status, 504);
      assert.deepEqual(JSON.parse(stopped.text), { error: 'the function did not return within 8000 ms (--timeout); its HTTP thread was stopped', code: 'TIMEOUT' });
      // with the request's id, as every answer of the runner (the thread's own 504s too)
      assert.equal(runawayHeaders['x-request-id'], 'runaway-7');
      assert.ok(goods.some((g) => g.status === 'fulfilled' && g.value === 200), 'no good request was answered');
      assert.equal(order[0], 'good', `the runaway ended before any good request was answered: ${order.join(', ')}`);
      await until(async () => /"requestId":"runaway-7".*did not return within 8000 ms \(--timeout\): answered 504, HTTP thread \d stopped/.test(s.logs()));
      // the replacement listens beside the other thread: every new connection is answered
      const after = await Promise.all(Array.from({ length: 12 }, () => send(s.url, { method: 'POST', body: 'e' })));
      assert.deepEqual(after.map((a) => a.status), Array(12).fill(200));
      assert.equal(await metric(s.url, 'capsule_timeouts_total'), 1);
      assert.equal(await metric(s.url, 'capsule_workers'), 2);
      // the stopped thread's requests stay in the totals (a counter never goes down), and the 504 is counted
      const answered = goods.filter((g) => g.status === 'fulfilled' && g.value === 200).length;
      assert.equal(await metric(s.url, 'capsule_requests_total'), 24 + answered + 12 + 1);
      assert.match((await send(s.url, { path: '/capsule/metrics' })).text, /^capsule_requests_total\{(?=[^}]*method="POST")(?=[^}]*status="504")[^}]*\} 1$/m);
    });
  });

  it('serves HTTPS from every thread; a metered call past its deadline there is answered 504', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-threads-tls-'));
    if (!selfSignedCert(dir)) {
      t.skip('openssl is not installed');
      return;
    }
    const s = await startServer(['serve', behaviours, '--http-port=0', '--http-threads', '--workers=2', '--timeout=1s', `--crt=${join(dir, 'crt.pem')}`, `--key=${join(dir, 'key.pem')}`]);
    const secure = (body: string) => new Promise<Answer>((resolve, reject) => {
      const req = httpsRequest(s.url, { method: 'POST', agent: false, rejectUnauthorized: false }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
    try {
      assert.match(s.url, /^https:\/\//);
      const answers = await Promise.all(Array.from({ length: 12 }, () => secure('e')));
      for (const a of answers) assert.equal(JSON.parse(a.text).URI, `${s.url}/`);
      await until(async () => threadsThatAnswered(s, '/').size === 2);
      // the thread answers it itself (the supervisor, outside the TLS session, could only close the connection)
      const stopped = await secure('l');
      assert.equal(stopped.status, 504);
      assert.equal(JSON.parse(stopped.text).code, 'TIMEOUT');
      assert.equal((await secure('e')).status, 200);
    } finally {
      assert.equal(await s.stop(), 0);
      rmSync(dir, { recursive: true });
    }
  });

  it('warms its threads up before the ready line: the first request is answered and logged as usual, and the warm-up is no request', async () => {
    await serving(hello, ['--workers=1'], async (s) => {
      assert.deepEqual(await send(s.url, { method: 'POST', body: '{"name":"Bob Morane","age":42}' }), { status: 200, text: '{"message":"Bob Morane 42"}' });
      await until(async () => requestLines(s).length > 0);
      assert.deepEqual(requestLines(s).map((l) => [l.url, l.status, l.thread]), [['/', 200, 0]]);
      assert.equal(await metric(s.url, 'capsule_requests_total'), 1);
    });
  });

  it('the host SDK serves with HTTP threads too (serveHttpThreads on a lifecyclePool function), refuses a thread count out of 1–256, and shuts down', async () => {
    const fn = await CapsuleFunction.load({ path: hello }, { pool: lifecyclePool() });
    const logger = createLogger('warn', 'json');
    for (const threads of [0, 1.5, Number.NaN, 257]) {
      await assert.rejects(serveHttpThreads(fn, { port: 0, threads, logger }), { code: 'USAGE', message: `threads must be a whole number from 1 to 256, not ${threads}` });
    }
    const server = await serveHttpThreads(fn, { port: 0, threads: 2, logger, logLevel: 'warn', logFormat: 'json' });
    try {
      assert.equal(server.threads, 2);
      const answers = await Promise.all(Array.from({ length: 8 }, () => send(server.url, { method: 'POST', body: '{"name":"Bob Morane","age":42}' })));
      for (const a of answers) assert.deepEqual(a, { status: 200, text: '{"message":"Bob Morane 42"}' });
    } finally {
      await server.shutdown('test over');
    }
    assert.equal(await server.closed, undefined);
    await assert.rejects(send(server.url), /ECONNREFUSED/);
  });

  it('refuses what it cannot serve yet with a usage error', async () => {
    const many = await runCapsule(['serve', '--functions=.', '--http-threads']);
    assert.equal(many.code, 2);
    assert.match(many.stderr, /--http-threads serves one module for now/);
    const idle = await runCapsule(['serve', hello, '--http-port=0', '--http-threads', '--stop-after=1s']);
    assert.equal(idle.code, 2);
    assert.match(idle.stderr, /--stop-after cannot be used with --http-threads/);
  });
});

describe('capsule serve --http-threads: reload and shutdown', { skip }, () => {
  let work: string;
  let files: Awaited<ReturnType<typeof fileServer>>;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'capsule-threads-'));
    mkdirSync(join(work, 'downloads'));
    copyFileSync(V2, join(work, 'downloads', 'v2.wasm'));
    files = await fileServer(join(work, 'downloads'));
  });
  after(async () => {
    await files.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('POST /load-wasm-module reaches every thread', async () => {
    const served = join(work, 'served.wasm');
    copyFileSync(V1, served);
    await serving(served, ['--workers=2'], async (s) => {
      assert.equal((await send(s.url, { path: '/version' })).text, 'v1\n');
      const r = await send(s.url, { method: 'POST', path: '/load-wasm-module', body: JSON.stringify({ url: `${files.url}/v2.wasm`, path: served }) });
      assert.equal(r.status, 200, r.text);
      const answers = await Promise.all(Array.from({ length: 24 }, () => send(s.url, { path: '/version' })));
      assert.deepEqual(answers.map((a) => a.text), Array(24).fill('v2\n'));
      await until(async () => threadsThatAnswered(s, '/version').size === 2);
    });
  });

  it('graceful shutdown answers the request in flight, then exits 0', async () => {
    const gate = join(work, 'gate');
    mkdirSync(gate);
    const s = await startServer(['serve', GATE, '--http-port=0', '--http-threads', '--workers=2', `--dir=${gate}:/gate`]);
    const held = send(s.url, { path: '/held' });
    await until(async () => (await metric(s.url, 'capsule_busy_workers')) === 1);
    s.child.kill('SIGTERM');
    await until(async () => /"msg":"shutting down"/.test(s.logs()));
    writeFileSync(join(gate, 'open'), '');
    assert.deepEqual(await held, { status: 200, text: 'gate open\n' });
    assert.equal(await s.exited, 0);
  });
});
