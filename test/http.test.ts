/**
 * `capsule serve` end to end: a real server process, real HTTP clients on loopback.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, example, fixture, missing, selfSignedCert, startServer, type Server } from './helpers.ts';

const behaviours = fixture('gen2-behaviours');

/** POST/GET helper returning status, headers and text. */
async function call(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('capsule serve: the examples', () => {
  it('answers hello-you with the JSON of the issue', { skip: missing(example('hello-you')) }, async () => {
    const s = await startServer(['serve', `--wasm=${example('hello-you')}`, '--http-port=0']);
    try {
      const r = await call(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob Morane', age: 42 }) });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      assert.deepEqual(JSON.parse(r.text), { message: 'Bob Morane 42' });
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('serves the HTML page on GET', { skip: missing(example('hello-html')) }, async () => {
    const s = await startServer(['serve', example('hello-html'), '--http-port=0']);
    try {
      const r = await call(`${s.url}/some/page?x=<b>`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(r.text, /<html/i);
      assert.doesNotMatch(r.text, /<b>/, 'the request URI is HTML-escaped');
    } finally {
      await s.stop();
    }
  });

  it('starts from the Go spellings: capsule-http --httpPort and capsule -mode=http', async () => {
    const a = await startServer([`--wasm=${behaviours}`, '--httpPort=0'], { bin: join(import.meta.dirname, '../bin/capsule-http.js') });
    const b = await startServer([`-wasm=${behaviours}`, '-mode=http', '-httpPort=0']);
    try {
      assert.equal((await call(a.url, { method: 'POST', body: 'e' })).status, 200);
      assert.equal((await call(b.url, { method: 'POST', body: 'e' })).status, 200);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

describe('capsule serve: requests, limits and failures', () => {
  let s: Server;
  before(async () => {
    s = await startServer(['serve', behaviours, '--http-port=0', '--timeout=400ms', '--max-memory=16MiB', '--max-body=1KiB', '--workers=2']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it('hands the guest the request JSON of the spec and returns its response', async () => {
    const r = await call(`${s.url}/path/here?q=1&r=%20`, { method: 'PUT', headers: { 'x-custom': 'a "quoted" value', 'content-type': 'text/plain' }, body: 'echo me' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-echo'), 'yes');
    const req = JSON.parse(r.text) as Record<string, string>;
    assert.deepEqual(Object.keys(req), ['Body', 'JSONBody', 'TextBody', 'URI', 'Method', 'Headers']);
    assert.equal(req.Body, 'echo me');
    assert.equal(req.Method, 'PUT');
    assert.equal(req.URI, `${s.url}/path/here?q=1&r=%20`);
    assert.match(req.Headers!, /"X-Custom":"a \\"quoted\\" value"/);
    assert.match(req.Headers!, /"Content-Type":"text\/plain"/);
  });

  it('honours X-Request-Id and generates one otherwise, and logs it', async () => {
    const given = await call(s.url, { method: 'POST', body: 'e', headers: { 'x-request-id': 'req-42' } });
    assert.equal(given.headers.get('x-request-id'), 'req-42');
    const made = await call(s.url, { method: 'POST', body: 'e' });
    assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    await new Promise((r) => setTimeout(r, 200));
    assert.match(s.logs(), /"requestId":"req-42"[^\n]*"status":200[^\n]*"durationMs"/);
  });

  it('answers a trap with 500 JSON and keeps serving', async () => {
    const r = await call(s.url, { method: 'POST', body: 't', headers: { 'x-request-id': 'trap-1' } });
    assert.equal(r.status, 500);
    assert.deepEqual(JSON.parse(r.text), { error: 'the function trapped: unreachable', code: 'TRAP' });
    assert.equal(r.headers.get('x-request-id'), 'trap-1');
    assert.equal((await call(s.url, { method: 'POST', body: 'e' })).status, 200);
  });

  it('leaves out a response header whose name is not an HTTP token, and says so in the log', async () => {
    const r = await call(s.url, { method: 'POST', body: 'q', headers: { 'x-request-id': 'bad-name-1' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-good'), 'y');
    const names: string[] = [];
    r.headers.forEach((_v, k) => names.push(k));
    assert.deepEqual(names.filter((k) => k.includes('bad')), []);
    await eventually(() => /"requestId":"bad-name-1"[^\n]*"msg":"response header \\"Bad Name\\" left out: not a valid HTTP header name"/.test(s.logs()));
  });

  it('answers a guest F result with its text and a 500', async () => {
    const r = await call(s.url, { method: 'POST', body: 'f' });
    assert.equal(r.status, 500);
    assert.equal(r.text, 'failed on purpose');
  });

  it('stops an infinite loop at the deadline (504) without failing requests queued behind it', async () => {
    const loop = call(s.url, { method: 'POST', body: 'l' });
    const others = Array.from({ length: 20 }, (_, i) => call(s.url, { method: 'POST', body: `e${i}` }));
    const r = await loop;
    assert.equal(r.status, 504);
    assert.equal(JSON.parse(r.text).code, 'TIMEOUT');
    for (const [i, o] of (await Promise.all(others)).entries()) {
      assert.equal(o.status, 200);
      assert.equal(JSON.parse(o.text).Body, `e${i}`);
    }
    assert.equal((await call(s.url, { method: 'POST', body: 'e' })).status, 200);
  });

  it('caps a memory bomb (500 MEMORY) and keeps serving', async () => {
    const r = await call(s.url, { method: 'POST', body: 'm' });
    assert.equal(r.status, 500);
    assert.equal(JSON.parse(r.text).code, 'MEMORY');
    assert.equal((await call(s.url, { method: 'POST', body: 'e' })).status, 200);
  });

  it('refuses bodies over --max-body with 413, declared or streamed', async () => {
    const declared = await call(s.url, { method: 'POST', body: 'e'.repeat(2048) });
    assert.equal(declared.status, 413);
    assert.equal(JSON.parse(declared.text).code, 'TOO_LARGE');
    assert.match(declared.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(s.url, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 8; i++) req.write('e'.repeat(512));
      req.end();
    });
    assert.equal(streamed, 413);
    assert.equal((await call(s.url, { method: 'POST', body: 'e' })).status, 200);
  });

  it('reports a malformed guest result as a 500 naming the problem', async () => {
    const r = await call(s.url, { method: 'POST', body: 'x' });
    assert.equal(r.status, 500);
    assert.equal(JSON.parse(r.text).code, 'BAD_RESULT');
  });

  it('answers 250 concurrent requests, each with its own body', async () => {
    const replies = await Promise.all(Array.from({ length: 250 }, (_, i) => call(`${s.url}/n/${i}`, { method: 'POST', body: `e-${i}-${'x'.repeat(i)}` })));
    replies.forEach((r, i) => {
      assert.equal(r.status, 200);
      const req = JSON.parse(r.text) as Record<string, string>;
      assert.equal(req.Body, `e-${i}-${'x'.repeat(i)}`);
      assert.equal(req.URI, `${s.url}/n/${i}`);
    });
  });

  it('serves health, readiness and Prometheus metrics under /capsule/', async () => {
    assert.deepEqual(JSON.parse((await call(`${s.url}/capsule/health`)).text), { status: 'ok' });
    const ready = await call(`${s.url}/capsule/ready`);
    assert.equal(ready.status, 200);
    assert.equal(JSON.parse(ready.text).kind, 'capsule-2');
    const m = await call(`${s.url}/capsule/metrics`);
    assert.match(m.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(m.text, /capsule_requests_total\{function="gen2-behaviours.wasm",method="POST",status="200"\} \d+/);
    assert.match(m.text, /capsule_request_duration_seconds_bucket/);
    assert.match(m.text, /capsule_errors_total\{function="gen2-behaviours.wasm",code="TIMEOUT"\} 1/);
    assert.match(m.text, /capsule_timeouts_total\{function="gen2-behaviours.wasm"\} 1/);
    assert.match(m.text, /capsule_busy_workers \d+/);
  });

  it('serves /health from the guest OnHealthCheck and /metrics from the runner when OnMetrics is absent', async () => {
    const h = await call(`${s.url}/health`);
    assert.equal(h.status, 299);
    assert.deepEqual(JSON.parse(h.text), { healthy: true });
    const m = await call(`${s.url}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.text, /capsule_requests_total/);
  });
});

describe('capsule serve: concurrency, reuse, lifecycle, TLS', () => {
  it('answers 503 with Retry-After past --max-concurrency', async () => {
    const s = await startServer(['serve', behaviours, '--http-port=0', '--max-concurrency=1', '--timeout=2s']);
    try {
      const slow = call(s.url, { method: 'POST', body: 'l' });
      await new Promise((r) => setTimeout(r, 150));
      const r = await call(s.url, { method: 'POST', body: 'e' });
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('retry-after'), '1');
      assert.match(r.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
      assert.equal(JSON.parse(r.text).code, 'OVERLOADED');
      assert.equal((await slow).status, 504);
      assert.equal((await call(s.url, { method: 'POST', body: 'e' })).status, 200);
    } finally {
      await s.stop();
    }
  });

  it('gives a fresh instance per request by default and keeps guest globals with --reuse', async () => {
    const fresh = await startServer(['serve', behaviours, '--http-port=0', '--workers=1']);
    const reuse = await startServer(['serve', behaviours, '--http-port=0', '--workers=1', '--reuse']);
    try {
      const counts = async (url: string) => {
        const out: string[] = [];
        for (let i = 0; i < 3; i++) out.push((await call(url, { method: 'POST', body: 'c' })).text);
        return out;
      };
      assert.deepEqual(await counts(fresh.url), ['1', '1', '1']);
      assert.deepEqual(await counts(reuse.url), ['1', '2', '3']);
    } finally {
      await fresh.stop();
      await reuse.stop();
    }
  });

  it('drains in-flight requests on SIGTERM and exits 0', async () => {
    const s = await startServer(['serve', behaviours, '--http-port=0', '--timeout=20s']);
    const inflight = call(s.url, { method: 'POST', body: 'w' });
    await new Promise((r) => setTimeout(r, 100));
    const exited = s.stop('SIGTERM');
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.equal(r.text, '"waited"');
    assert.equal(await exited, 0);
    assert.match(s.logs(), /shutting down/);
  });

  it('makes one request to itself before its ready line (to warm up) that is in neither the log nor the metrics', async () => {
    // Node's own debug lines (NODE_DEBUG=http) show the connection: none of the test's is made yet
    const s = await startServer(['serve', behaviours, '--http-port=0'], { env: { NODE_DEBUG: 'http' } });
    try {
      await eventually(() => s.logs().includes('SERVER new http connection'));
      const m = await call(`${s.url}/capsule/metrics`);
      assert.doesNotMatch(m.text, /^capsule_requests_total\{/m);
      await eventually(() => s.logs().includes('"url":"/capsule/metrics"'));
      assert.doesNotMatch(s.logs(), /capsule\/health/);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('stops by itself after --stop-after without requests', async () => {
    const s = await startServer(['serve', behaviours, '--http-port=0', '--stop-after=400ms']);
    assert.equal((await call(s.url, { method: 'POST', body: 'e' })).status, 200);
    assert.equal(await s.exited, 0);
  });

  it('serves HTTPS with --crt and --key', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-tls-'));
    if (!selfSignedCert(dir)) {
      t.skip('openssl is not installed');
      return;
    }
    const s = await startServer(['serve', behaviours, '--http-port=0', `--crt=${join(dir, 'crt.pem')}`, `--key=${join(dir, 'key.pem')}`]);
    try {
      assert.match(s.url, /^https:\/\//);
      const body = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest(s.url, { method: 'POST', rejectUnauthorized: false }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end('secure');
      });
      assert.equal(JSON.parse(body).URI, `${s.url}/`);
      await eventually(() => s.logs().includes('"status":200'));
      assert.doesNotMatch(s.logs(), /capsule\/health/); // the start-up's own request over TLS
    } finally {
      await s.stop();
      rmSync(dir, { recursive: true });
    }
  });
});
