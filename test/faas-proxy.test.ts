/**
 * `capsule proxy` (faas-api.md §1, §9.1–§9.4, §9.6, §9.9; faas-cluster.md §1.5) as users see it:
 * real node:http upstreams on loopback that echo what they received, the proxy started in-process
 * (fine-grained cases) or as a real process (CLI flags, YAML restart, logs, Go bin spelling), real
 * HTTP clients.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../src/observability/logger.ts';
import { startProxy, type RunningProxy } from '../src/faas/proxy/index.ts';
import { checkAdmin } from '../src/faas/shared/admin.ts';
import { eventually, fixture, freePort, restartable, root, runCapsule, selfSignedCert, startServer } from './helpers.ts';

const logger = createLogger('error', false);
const TOKEN_HEADER = 'CAPSULE_REVERSE_PROXY_ADMIN_TOKEN';

/** What an echo upstream saw of one request. */
interface Seen {
  name: string;
  method: string;
  url: string;
  rawHeaders: string[];
  body: string;
}

/** A real HTTP upstream that answers with what it received; it can be stopped and started on its port. */
interface Upstream {
  name: string;
  url: string;
  port: number;
  seen: Seen[];
  stop(): Promise<void>;
  start(): Promise<void>;
}

async function upstream(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<Upstream> {
  let server: HttpServer | undefined;
  const seen: Seen[] = [];
  const u: Upstream = {
    name, url: '', port: 0, seen,
    start: () => new Promise((resolve) => {
      server = createServer((req, res) => {
        if (handler?.(req, res)) return;
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const s: Seen = { name, method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() };
          seen.push(s);
          res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
          res.setHeader('x-upstream', name);
          res.setHeader('connection', 'keep-alive, x-hop');
          res.setHeader('x-hop', 'must not pass');
          res.writeHead(req.url?.includes('created') ? 201 : 200, { 'content-type': 'application/json' });
          res.end(req.method === 'HEAD' ? undefined : JSON.stringify(s));
        });
      });
      server.listen(u.port, '127.0.0.1', () => {
        u.port = (server!.address() as { port: number }).port;
        u.url = `http://127.0.0.1:${u.port}`;
        resolve();
      });
    }),
    stop: () => new Promise((resolve) => {
      server!.close(() => resolve());
      server!.closeAllConnections();
    }),
  };
  await u.start();
  return u;
}

/** An upstream in a process of its own (`node -e ECHO_PROCESS <port>`), to be killed like a crashed server. */
const ECHO_PROCESS = `
require('node:http').createServer((req, res) => { req.resume(); req.on('end', () => res.end('process ' + req.method + ' ' + req.url)); })
  .listen(Number(process.argv[1]), '127.0.0.1');
`;

/** The values of a header in a raw header list (case-insensitive). */
function values(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

interface RawReply {
  status: number;
  rawHeaders: string[];
  body: string;
}

/** node:http request: sends headers exactly (repeated names, Connection) and a body in parts. */
function raw(url: string, o: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer } = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const headers = o.body === undefined ? o.headers : { ...o.headers, 'content-length': String(Buffer.byteLength(o.body)) };
    const req = httpRequest(url, { method: o.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** JSON request to the proxy; returns status, text and parsed body. */
async function call(url: string, method = 'GET', body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json: json as Record<string, unknown> & Seen, headers: res.headers };
}

async function proxy(o: { adminToken?: string; routes?: Record<string, Record<string, string[]>> } = {}): Promise<RunningProxy> {
  return startProxy({ logger, port: 0, ...o });
}

describe('capsule proxy: proxy routes and forwarding (§9.2–§9.4)', () => {
  let p: RunningProxy;
  let a: Upstream;
  let b: Upstream;
  let c: Upstream;
  before(async () => {
    [a, b, c] = await Promise.all([upstream('a'), upstream('b'), upstream('c')]);
    p = await proxy({ routes: { hello: { default: [a.url], blue: [b.url] } } });
  });
  after(async () => {
    await p.close();
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  });

  it('routes every path form to the right revision with the rest of the path and the query', async () => {
    const cases: [string, string, string][] = [
      ['/functions/hello', 'a', '/'],
      ['/functions/hello?x=1&y=2', 'a', '/?x=1&y=2'],
      ['/functions/hello/', 'a', '/'],
      ['/functions/hello/default/api/items?x=1', 'a', '/api/items?x=1'],
      ['/functions/hello/blue', 'b', '/'],
      ['/functions/hello/blue/api/items?x=1', 'b', '/api/items?x=1'],
      ['/functions/hello/blue/a/b/c/', 'b', '/a/b/c/'],
    ];
    for (const [path, name, forwarded] of cases) {
      const r = await call(`${p.url}${path}`);
      assert.equal(r.status, 200, path);
      assert.equal(r.json.name, name, path);
      assert.equal(r.json.url, forwarded, path);
    }
  });

  it('answers 404 FUNCTION_NOT_FOUND for an unknown function or revision and Go\'s PAGE_NOT_FOUND elsewhere', async () => {
    assert.deepEqual((await call(`${p.url}/functions/nope`)).json, { code: 'FUNCTION_NOT_FOUND', message: 'nope is not registered' });
    const r = await call(`${p.url}/functions/hello/green/x`, 'POST', 'body');
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { code: 'FUNCTION_NOT_FOUND', message: 'hello/green is not registered' });
    const page = await call(`${p.url}/nowhere/at/all`);
    assert.equal(page.status, 404);
    assert.equal(page.text, '{"code":"PAGE_NOT_FOUND","message":"😢 Page not found 🥵"}');
    assert.equal((await call(`${p.url}/functions/`)).json.code, 'PAGE_NOT_FOUND');
  });

  it('forwards every method, with the body', async () => {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const body = method === 'GET' || method === 'OPTIONS' ? undefined : `payload of ${method}`;
      const r = await raw(`${p.url}/functions/hello/blue/m`, { method, body, headers: body ? { 'content-type': 'text/plain' } : {} });
      assert.equal(r.status, 200, method);
      const seen = JSON.parse(r.body) as Seen;
      assert.equal(seen.method, method);
      assert.equal(seen.body, body ?? '');
    }
    const head = await raw(`${p.url}/functions/hello/blue/m`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(values(head.rawHeaders, 'x-upstream')[0], 'b');
    assert.equal(b.seen.at(-1)!.method, 'HEAD');
  });

  it('passes every request header value, drops hop-by-hop headers, adds X-Forwarded-*, sets Host to the upstream', async () => {
    const r = await raw(`${p.url}/functions/hello/blue`, {
      headers: { 'x-multi': ['one', 'two'], 'x-private': 'hop', connection: 'keep-alive, x-private', 'keep-alive': 'timeout=5', te: 'trailers', 'x-forwarded-for': '203.0.113.9' },
    });
    const seen = JSON.parse(r.body) as Seen;
    assert.deepEqual(values(seen.rawHeaders, 'x-multi'), ['one', 'two']);
    assert.deepEqual(values(seen.rawHeaders, 'x-private'), []);
    assert.deepEqual(values(seen.rawHeaders, 'keep-alive'), []);
    assert.deepEqual(values(seen.rawHeaders, 'te'), []);
    assert.deepEqual(values(seen.rawHeaders, 'host'), [`127.0.0.1:${b.port}`]);
    assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-for'), ['203.0.113.9, 127.0.0.1']);
    assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-host'), [new URL(p.url).host]);
  });

  it('copies the status and every response header value, minus hop-by-hop ones', async () => {
    const r = await raw(`${p.url}/functions/hello/blue/created`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 201);
    assert.deepEqual(values(r.rawHeaders, 'set-cookie'), ['a=1; Path=/', 'b=2; Path=/']);
    assert.deepEqual(values(r.rawHeaders, 'x-hop'), []);
    assert.deepEqual(values(r.rawHeaders, 'x-upstream'), ['b']);
  });

  it('streams a request body: the upstream reads the first part before the client sends the rest', async () => {
    let firstPart: () => void = () => undefined;
    const gotFirst = new Promise<void>((r) => (firstPart = r));
    const streaming = await upstream('s', (req, res) => {
      let total = 0;
      const hash = createHash('sha256');
      req.on('data', (chunk: Buffer) => {
        total += chunk.length;
        hash.update(chunk);
        firstPart();
      });
      req.on('end', () => res.end(JSON.stringify({ total, sha256: hash.digest('hex') })));
      return true;
    });
    p.table.registerFunction('stream', 'default', streaming.url);
    try {
      const part = Buffer.alloc(1024 * 1024, 7);
      const reply = new Promise<RawReply>((resolve, reject) => {
        const req = httpRequest(`${p.url}/functions/stream`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, rawHeaders: res.rawHeaders, body }));
        });
        req.on('error', reject);
        req.write(part);
        // the rest is sent only once the upstream has seen the first bytes: a buffering proxy never answers
        void gotFirst.then(() => {
          for (let i = 0; i < 4; i++) req.write(part);
          req.end();
        });
      });
      const r = await reply;
      const got = JSON.parse(r.body) as { total: number; sha256: string };
      assert.equal(got.total, 5 * part.length);
      assert.equal(got.sha256, createHash('sha256').update(Buffer.concat([part, part, part, part, part])).digest('hex'));
    } finally {
      p.table.removeFunction('stream');
      await streaming.stop();
    }
  });

  it('round-robins over the URLs of a revision with a counter of its own', async () => {
    p.table.addUrl('hello', 'blue', c.url);
    try {
      const names: string[] = [];
      for (let i = 0; i < 6; i++) {
        names.push((await call(`${p.url}/functions/hello/blue`)).json.name);
        assert.equal((await call(`${p.url}/functions/hello`)).json.name, 'a'); // another revision: its own rotation
      }
      assert.deepEqual(names.slice(1), names[0] === 'b' ? ['c', 'b', 'c', 'b', 'c'] : ['b', 'c', 'b', 'c', 'b']);
    } finally {
      p.table.removeUrl('hello', 'blue', c.url);
    }
  });
});

describe('capsule proxy: upstream failures and health', () => {
  it('skips a killed upstream process without a failed request and takes it back after it restarts', async () => {
    const a = await upstream('a');
    const port = await freePort();
    const b = await restartable(process.execPath, ['-e', ECHO_PROCESS, String(port)], port);
    const bUrl = `http://127.0.0.1:${port}`;
    const p = await proxy({ routes: { hello: { default: [a.url, bUrl] } } });
    try {
      const first = new Set<string>();
      for (let i = 0; i < 4; i++) first.add((await call(`${p.url}/functions/hello`)).text.startsWith('process') ? 'b' : 'a');
      assert.deepEqual([...first].sort(), ['a', 'b']);
      await b.kill(); // SIGKILL: its kept-alive connections drop as in a crash
      const names = [];
      for (let i = 0; i < 20; i++) {
        const r = await call(`${p.url}/functions/hello/default/x`, i % 2 ? 'POST' : 'GET', i % 2 ? { n: i } : undefined);
        assert.equal(r.status, 200, `request ${i}: ${r.text}`);
        names.push(r.json.name);
      }
      assert.deepEqual(new Set(names), new Set(['a']));
      const metrics = await (await fetch(`${p.url}/capsule/metrics`)).text();
      assert.match(metrics, /capsule_proxy_upstreams_down 1/);
      await b.start();
      await eventually(() => call(`${p.url}/functions/hello`).then((r) => r.text.startsWith('process')), 15_000);
      const after = [];
      for (let i = 0; i < 4; i++) after.push((await call(`${p.url}/functions/hello`)).text.startsWith('process') ? 'b' : 'a');
      assert.deepEqual(after.sort(), ['a', 'a', 'b', 'b']);
    } finally {
      await p.close();
      await b.kill();
      await a.stop();
    }
  });

  it('sends a request a stopping capsule serve refuses (503, Connection: close) to the next upstream, POST bodies too; a plain 503 is retried for GET only', async () => {
    const gateDir = mkdtempSync(join(tmpdir(), 'capsule-proxy-gate-'));
    // a real capsule serve that drains: one call held in flight, then SIGTERM with a long grace
    const draining = await startServer(['serve', '--wasm', fixture('wasi-gate'), '--http-port=0', '--workers=2', `--dir=${gateDir}:/gate`, '--grace=60s']);
    const ok = await upstream('ok');
    const busy = await upstream('busy', (req, res) => {
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"code":"OVERLOADED"}');
      return true;
    });
    const p = await proxy({ routes: { d: { default: [draining.url, ok.url] }, b: { default: [busy.url, ok.url] } } });
    try {
      const held = fetch(`${draining.url}/held`).then((r) => r.text());
      await eventually(async () => /^capsule_inflight_requests 1$/m.test(await (await fetch(`${draining.url}/capsule/metrics`)).text()));
      draining.child.kill('SIGTERM');
      await eventually(async () => (await fetch(`${draining.url}/x`).catch(() => undefined))?.status === 503);
      for (let i = 0; i < 8; i++) {
        const r = await call(`${p.url}/functions/d/default/x`, i % 2 ? 'POST' : 'GET', i % 2 ? { n: i } : undefined);
        assert.equal(r.status, 200, `request ${i}: ${r.text}`);
        assert.equal(r.json.name, 'ok');
        if (i % 2) assert.equal(r.json.body, JSON.stringify({ n: i }), 'the body replayed whole');
      }
      const gets = [];
      const posts = [];
      for (let i = 0; i < 4; i++) gets.push((await call(`${p.url}/functions/b`)).status);
      for (let i = 0; i < 4; i++) posts.push((await call(`${p.url}/functions/b`, 'POST', { n: i })).status);
      assert.deepEqual(gets, [200, 200, 200, 200]);
      assert.deepEqual(posts.sort(), [200, 200, 503, 503], 'a POST answered 503 by a server that is not stopping may have run: not resent');
      writeFileSync(join(gateDir, 'open'), '');
      assert.equal(await held, 'gate open\n');
      assert.equal(await draining.exited, 0);
    } finally {
      await p.close();
      await ok.stop();
      await busy.stop();
      if (draining.child.exitCode === null) await draining.stop('SIGKILL');
      rmSync(gateDir, { recursive: true, force: true });
    }
  });

  it('cancels the upstream request when the client goes away', async () => {
    let arrived: () => void = () => undefined;
    let cancelled: () => void = () => undefined;
    const arrivedP = new Promise<void>((r) => (arrived = r));
    const cancelledP = new Promise<void>((r) => (cancelled = r));
    const slow = await upstream('slow', (req, res) => {
      res.on('close', () => cancelled()); // never answers: only the proxy closing the request ends it
      arrived();
      return true;
    });
    const p = await proxy({ routes: { slow: { default: [slow.url] } } });
    try {
      const req = httpRequest(`${p.url}/functions/slow`);
      req.on('error', () => undefined);
      req.end();
      await arrivedP;
      req.destroy();
      await cancelledP;
      assert.equal((await call(`${p.url}/capsule/health`)).status, 200);
    } finally {
      await p.close();
      await slow.stop();
    }
  });

  it('answers 502 JSON when no upstream can be reached, and keeps serving', async () => {
    const dead = await upstream('dead');
    await dead.stop();
    const ok = await upstream('ok');
    const p = await proxy({ routes: { gone: { default: [dead.url] }, fine: { default: [ok.url] } } });
    try {
      const r = await call(`${p.url}/functions/gone`, 'POST', { x: 1 });
      assert.equal(r.status, 502);
      assert.equal(r.json.code, 'UPSTREAM_UNREACHABLE');
      assert.match(String(r.json.message), /ECONNREFUSED/);
      assert.equal((await call(`${p.url}/functions/fine`)).status, 200);
    } finally {
      await p.close();
      await ok.stop();
    }
  });

  it('answers 504 JSON to an upstream that sends no headers in time, cuts a response that breaks mid-body, forwards a chunked body of any method', async () => {
    const odd = await upstream('odd', (req, res) => {
      if (req.url === '/silent') return true; // never answers
      if (req.url === '/cut') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('only part');
        setImmediate(() => res.socket?.destroy());
        return true;
      }
      return false;
    });
    const p = await startProxy({ logger, port: 0, timeoutMs: 300, routes: { odd: { default: [odd.url] } } });
    try {
      const silent = await call(`${p.url}/functions/odd/default/silent`);
      assert.equal(silent.status, 504);
      assert.equal(silent.json.code, 'UPSTREAM_TIMEOUT');
      const cut = await new Promise<{ status: number; complete: boolean; body: string }>((resolve) => {
        httpRequest(`${p.url}/functions/odd/default/cut`, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('error', () => undefined);
          res.on('close', () => resolve({ status: res.statusCode!, complete: res.complete, body }));
        }).end();
      });
      assert.deepEqual(cut, { status: 200, complete: false, body: 'only part' });
      const chunked = await new Promise<RawReply>((resolve, reject) => {
        const req = httpRequest(`${p.url}/functions/odd/default/chunked`, { method: 'DELETE', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, rawHeaders: res.rawHeaders, body }));
        });
        req.on('error', reject);
        req.write('first ');
        setImmediate(() => req.end('second'));
      });
      const seen = JSON.parse(chunked.body) as Seen;
      assert.equal(seen.body, 'first second');
      assert.deepEqual(values(seen.rawHeaders, 'transfer-encoding'), ['chunked']);
      assert.equal((await call(`${p.url}/functions/odd/default/ok`)).status, 200);
    } finally {
      await p.close();
      await odd.stop();
    }
  });
});

describe('capsule proxy: default alias, traffic split, stickiness', () => {
  let p: RunningProxy;
  let blue: Upstream;
  let green: Upstream;
  const admin = (path: string) => `${p.url}/memory/functions/${path}`;
  before(async () => {
    [blue, green] = await Promise.all([upstream('blue'), upstream('green')]);
    p = await proxy({ routes: { hello: { blue: [blue.url], green: [green.url] } } });
  });
  after(async () => {
    await p.close();
    await Promise.all([blue.stop(), green.stop()]);
  });

  it('splits 90/10 exactly over 100 calls and lists default with the URLs it resolves to', async () => {
    const set = await call(admin('hello/traffic'), 'PUT', { targets: [{ revision: 'blue', percent: 90 }, { revision: 'green', percent: 10 }] });
    assert.equal(set.status, 202, set.text);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 100; i++) {
      const name = (await call(`${p.url}/functions/hello`)).json.name;
      counts[name] = (counts[name] ?? 0) + 1;
    }
    assert.deepEqual(counts, { blue: 90, green: 10 });
    const list = (await call(admin('list'))).json as unknown as Record<string, Record<string, string[]>>;
    assert.deepEqual(list['hello'], { blue: [blue.url], green: [green.url], default: [blue.url, green.url] });
    assert.deepEqual((await call(admin('hello/default/urls'))).json, [blue.url, green.url]);
    assert.equal((await call(`${p.url}/functions/hello/green`)).json.name, 'green'); // a revision's own route ignores the split
  });

  it('keeps one user on one revision with a sticky header, and spreads users over both', async () => {
    assert.equal((await call(admin('hello/traffic'), 'PUT', { targets: [{ revision: 'blue', percent: 50 }, { revision: 'green', percent: 50 }], sticky: 'header:X-User' })).status, 202);
    for (const user of ['alice', 'bob', 'carol']) {
      const names = new Set<string>();
      for (let i = 0; i < 20; i++) names.add((await call(`${p.url}/functions/hello`, 'GET', undefined, { 'x-user': user })).json.name);
      assert.equal(names.size, 1, user);
    }
    const spread = new Set<string>();
    for (let i = 0; i < 40; i++) spread.add((await call(`${p.url}/functions/hello`, 'GET', undefined, { 'x-user': `user-${i}` })).json.name);
    assert.deepEqual([...spread].sort(), ['blue', 'green']);
  });

  it('keeps one cookie value on one revision with a sticky cookie', async () => {
    assert.equal((await call(admin('hello/traffic'), 'PUT', { targets: [{ revision: 'blue', percent: 50 }, { revision: 'green', percent: 50 }], sticky: 'cookie:capsule-rev' })).status, 202);
    const names = new Set<string>();
    for (let i = 0; i < 20; i++) names.add((await call(`${p.url}/functions/hello`, 'GET', undefined, { cookie: 'other=1; capsule-rev=u42' })).json.name);
    assert.equal(names.size, 1);
  });

  it('lets X-Capsule-Revision pick a revision on the default route', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await call(`${p.url}/functions/hello`, 'GET', undefined, { 'x-capsule-revision': 'green' })).json.name, 'green');
    }
    const r = await call(`${p.url}/functions/hello`, 'GET', undefined, { 'x-capsule-revision': 'purple' });
    assert.deepEqual([r.status, r.json.code], [404, 'FUNCTION_NOT_FOUND']);
  });

  it('refuses bad splits with 400 and keeps the current one', async () => {
    const bad = [
      { targets: [{ revision: 'blue', percent: 90 }, { revision: 'green', percent: 20 }] },
      { targets: [{ revision: 'blue', percent: 50.5 }, { revision: 'green', percent: 49.5 }] },
      { targets: [] },
      { targets: [{ revision: 'blue', percent: 100 }], sticky: 'query:x' },
      { targets: [{ revision: 'blue', percent: 50 }, { revision: 'blue', percent: 50 }] },
      { targets: 'blue' },
    ];
    for (const body of bad) {
      const r = await call(admin('hello/traffic'), 'PUT', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(String(r.json.code), /^ERROR_(BAD_TRAFFIC|JSON_BINDING)$/);
    }
    const unknown = await call(admin('hello/traffic'), 'PUT', { targets: [{ revision: 'purple', percent: 100 }] });
    assert.deepEqual([unknown.status, unknown.json.code], [500, 'ERROR_REVISION_NOT_FOUND']);
    assert.equal((await call(admin('hello/traffic'))).json.sticky, 'cookie:capsule-rev');
  });

  it('removes the split with DELETE: /functions/<name> is then not routed', async () => {
    assert.equal((await call(admin('hello/traffic'), 'DELETE')).status, 202);
    const r = await call(`${p.url}/functions/hello`);
    assert.deepEqual([r.status, r.json.message], [404, 'hello/default is not registered']);
    assert.equal((await call(admin('hello/default/urls'))).text, 'null');
  });

  it('a concrete default revision (Go scripts) and the alias replace each other', async () => {
    assert.equal((await call(admin('hello/revision'), 'POST', { revision: 'default', url: green.url })).status, 202);
    assert.equal((await call(`${p.url}/functions/hello`)).json.name, 'green');
    await call(admin('hello/traffic'), 'PUT', { targets: [{ revision: 'blue', percent: 100 }] });
    assert.equal((await call(`${p.url}/functions/hello`)).json.name, 'blue');
    const again = await call(admin('hello/revision'), 'POST', { revision: 'default', url: green.url });
    assert.deepEqual([again.status, again.json.code], [500, 'ERROR_REVISION_ALREADY_EXISTS']);
    const scale = await call(admin('hello/default/url'), 'POST', { url: green.url });
    assert.deepEqual([scale.status, scale.json.code], [409, 'ERROR_DEFAULT_IS_ALIAS']);
    // Go's "remove revision default" removes the alias
    assert.equal((await call(admin('hello/revision'), 'DELETE', { revision: 'default' })).status, 202);
    assert.equal((await call(`${p.url}/functions/hello`)).status, 404);
  });
});

describe('capsule proxy: registration API (Go replies, §1)', () => {
  let p: RunningProxy;
  before(async () => {
    p = await proxy();
  });
  after(() => p.close());

  it('answers every route as Go did, under /memory, /redis and /nats', async () => {
    for (const prefix of ['memory', 'redis', 'nats']) {
      const base = `${p.url}/${prefix}/functions`;
      const fn = `f-${prefix}`;
      const steps: [string, string, unknown, number, string][] = [
        ['POST', '/registration', { function: fn, revision: 'default', url: 'http://localhost:5050' }, 202,
          `{"code":"OK","function":"${fn}","message":"Function created","revision":"default","url":"http://localhost:5050"}`],
        ['POST', '/registration', { function: fn, revision: 'default', url: 'http://localhost:5050' }, 500,
          `{"code":"ERROR_FUNCTION_ALREADY_EXISTS","message":"${fn} already exists"}`],
        ['POST', `/${fn}/revision`, { revision: 'blue', url: 'http://localhost:5051' }, 202,
          `{"code":"OK","function":"${fn}","message":"Revision added to the function","revision":"blue","url":"http://localhost:5051"}`],
        ['POST', `/${fn}/revision`, { revision: 'blue', url: 'http://localhost:5051' }, 500, '{"code":"ERROR_REVISION_ALREADY_EXISTS","message":"blue already exists"}'],
        ['POST', '/nope/revision', { revision: 'blue', url: 'http://localhost:5051' }, 500, '{"code":"ERROR_FUNCTION_NOT_FOUND","message":"nope does not exist"}'],
        ['POST', `/${fn}/blue/url`, { url: 'http://localhost:5053' }, 202,
          `{"code":"OK","function":"${fn}","message":"URL added to the revision","revision":"blue","url":"http://localhost:5053"}`],
        ['POST', `/${fn}/green/url`, { url: 'http://localhost:5053' }, 500, '{"code":"ERROR_REVISION_NOT_FOUND","message":"green does not exist"}'],
        ['POST', '/nope/blue/url', { url: 'http://localhost:5053' }, 500, '{"code":"ERROR_FUNCTION_NOT_FOUND","message":"nope does not exist"}'],
        ['GET', `/${fn}/blue/urls`, undefined, 200, '[\n    "http://localhost:5051",\n    "http://localhost:5053"\n]'],
        ['GET', `/${fn}/green/urls`, undefined, 200, 'null'],
        ['DELETE', `/${fn}/blue/url`, { url: 'http://localhost:5051' }, 202,
          `{"code":"OK","function":"${fn}","message":"URL removed from the revision","revision":"blue","url":"http://localhost:5051"}`],
        ['DELETE', `/${fn}/green/url`, { url: 'http://localhost:5051' }, 500, '{"code":"ERROR_REVISION_NOT_FOUND","message":"green does not exist"}'],
        ['GET', '/list', undefined, 200,
          `{\n    "${fn}": {\n        "blue": [\n            "http://localhost:5053"\n        ],\n        "default": [\n            "http://localhost:5050"\n        ]\n    }\n}`],
        ['DELETE', `/${fn}/revision`, { revision: 'blue' }, 202, `{"code":"OK","function":"${fn}","message":"Revision removed from the function","revision":"blue"}`],
        ['DELETE', `/${fn}/revision`, { revision: 'blue' }, 500, '{"code":"ERROR_REVISION_NOT_FOUND","message":"blue does not exist"}'],
        ['DELETE', '/nope/revision', { revision: 'blue' }, 500, '{"code":"ERROR_FUNCTION_NOT_FOUND","message":"nope does not exist"}'],
        ['DELETE', '/registration', { function: fn }, 202, `{"code":"OK","function":"${fn}","message":"Function removed"}`],
        ['DELETE', '/registration', { function: fn }, 500, `{"code":"ERROR_FUNCTION_NOT_FOUND","message":"${fn} does not exist"}`],
        ['GET', '/list', undefined, 200, '{}'],
      ];
      for (const [method, path, body, status, text] of steps) {
        const r = await call(`${base}${path}`, method, body);
        assert.equal(r.status, status, `${prefix}: ${method} ${path}`);
        assert.equal(r.text, text, `${prefix}: ${method} ${path}`);
        assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      }
    }
  });

  it('answers 400 ERROR_JSON_BINDING for bad JSON or missing fields, 400 for bad names and URLs, and keeps serving', async () => {
    const base = `${p.url}/memory/functions`;
    const routes: [string, string][] = [['POST', '/registration'], ['DELETE', '/registration'], ['POST', '/x/revision'], ['DELETE', '/x/revision'],
      ['POST', '/x/y/url'], ['DELETE', '/x/y/url'], ['PUT', '/x/traffic']];
    for (const [method, path] of routes) {
      for (const body of ['{"function": ', '[1,2]', '{}', '"text"']) {
        const r = await call(`${base}${path}`, method, body);
        assert.equal(r.status, 400, `${method} ${path} ${body}`);
        assert.equal(r.json.code, 'ERROR_JSON_BINDING', `${method} ${path} ${body}`);
      }
    }
    const badUrl = await call(`${base}/registration`, 'POST', { function: 'f', revision: 'r', url: '/tmp/hello.wasm' });
    assert.deepEqual([badUrl.status, badUrl.json.code], [400, 'ERROR_BAD_URL']);
    const badName = await call(`${base}/registration`, 'POST', { function: 'a/b', revision: 'r', url: 'http://localhost:1' });
    assert.deepEqual([badName.status, badName.json.code], [400, 'ERROR_BAD_NAME']);
    assert.equal((await call(`${base}/list`)).text, '{}');
  });
});

describe('capsule proxy: admin tokens (§9.1)', () => {
  const token = 's3cret-token';
  let p: RunningProxy;
  before(async () => {
    p = await proxy({ adminToken: token });
  });
  after(() => p.close());

  /** Every mutating route with a valid body. */
  const adminRoutes = (prefix: string): [string, string, unknown][] => [
    ['POST', `/${prefix}/functions/registration`, { function: 'tok', revision: 'blue', url: 'http://localhost:5050' }],
    ['POST', `/${prefix}/functions/tok/revision`, { revision: 'green', url: 'http://localhost:5051' }],
    ['POST', `/${prefix}/functions/tok/green/url`, { url: 'http://localhost:5052' }],
    ['DELETE', `/${prefix}/functions/tok/green/url`, { url: 'http://localhost:5052' }],
    ['PUT', `/${prefix}/functions/tok/traffic`, { targets: [{ revision: 'blue', percent: 100 }] }],
    ['DELETE', `/${prefix}/functions/tok/traffic`, undefined],
    ['DELETE', `/${prefix}/functions/tok/revision`, { revision: 'green' }],
    ['DELETE', `/${prefix}/functions/registration`, { function: 'tok' }],
  ];

  it('refuses every admin route without the token (401) or with a wrong one (403), never falling through', async () => {
    for (const prefix of ['memory', 'redis', 'nats']) {
      for (const [method, path, body] of adminRoutes(prefix)) {
        const none = await call(`${p.url}${path}`, method, body);
        assert.equal(none.status, 401, `${method} ${path}`);
        assert.equal(none.text, '{"code":"KO","from":"reverse-proxy","message":"Unauthorized"}');
        const wrong = await call(`${p.url}${path}`, method, body, { [TOKEN_HEADER]: 'nope' });
        assert.equal(wrong.status, 403, `${method} ${path}`);
        assert.equal(wrong.text, '{"code":"KO","from":"reverse-proxy","message":"Forbidden"}');
        assert.equal((await call(`${p.url}${path}`, method, body, { authorization: 'Bearer nope' })).status, 403);
      }
    }
    assert.equal((await call(`${p.url}/memory/functions/list`)).text, '{}');
  });

  it('accepts the token in the Go spellings, the hyphenated header and as a Bearer token', async () => {
    const spellings = [TOKEN_HEADER, 'Capsule_Reverse_Proxy_Admin_Token', 'capsule_reverse_proxy_admin_token', 'Capsule-Reverse-Proxy-Admin-Token'];
    for (const [i, header] of [...spellings, 'authorization'].entries()) {
      const value = header === 'authorization' ? `Bearer ${token}` : token;
      for (const [method, path, body] of adminRoutes(['memory', 'redis', 'nats'][i % 3]!)) {
        const r = await call(`${p.url}${path}`, method, body, { [header]: value });
        assert.equal(r.status, 202, `${header}: ${method} ${path}: ${r.text}`);
      }
    }
  });

  it('leaves the list, the URLs, the traffic view and the proxy route open', async () => {
    p.table.registerFunction('open', 'default', 'http://127.0.0.1:1');
    try {
      assert.equal((await call(`${p.url}/memory/functions/list`)).status, 200);
      assert.equal((await call(`${p.url}/memory/functions/open/default/urls`)).status, 200);
      assert.equal((await call(`${p.url}/memory/functions/open/traffic`)).status, 200);
      assert.equal((await call(`${p.url}/functions/open`)).status, 502); // routed, upstream down
    } finally {
      p.table.removeFunction('open');
    }
  });

  it('without a token, refuses non-loopback admin clients unless --insecure-admin', async () => {
    const policy = { service: 'reverse-proxy', header: TOKEN_HEADER, token: undefined };
    assert.equal(checkAdmin(policy, {}, '127.0.0.1'), undefined);
    assert.equal(checkAdmin(policy, {}, '::ffff:127.0.0.1'), undefined);
    assert.equal(checkAdmin(policy, {}, '192.0.2.7')?.status, 403);
    assert.equal(checkAdmin({ ...policy, insecureAdmin: true }, {}, '192.0.2.7'), undefined);
  });

  const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  it('over the network: a non-loopback client gets 403 without a token, and is accepted with --insecure-admin', { skip: external ? false : 'no non-loopback IPv4 address on this machine' }, async () => {
    const body = { function: 'net', revision: 'default', url: 'http://localhost:5050' };
    for (const insecure of [false, true]) {
      const s = await startProxy({ logger, host: '0.0.0.0', port: 0, insecureAdmin: insecure });
      try {
        const r = await call(`http://${external}:${s.port}/memory/functions/registration`, 'POST', body);
        assert.equal(r.status, insecure ? 202 : 403, r.text);
        assert.equal((await call(`http://127.0.0.1:${s.port}/memory/functions/net/default/urls`)).status, 200);
      } finally {
        await s.close();
      }
    }
  });
});

describe('capsule proxy: the command', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-proxy-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('loads YAML routes, and a restart with the same file restores them (Go bin and flags)', async () => {
    const up = await upstream('yaml');
    const file = join(dir, 'routes.yaml');
    writeFileSync(file, `functions:\n  hello:\n    default:\n      - ${up.url}\n  hola:\n    default: [${up.url}]\n    orange: [http://localhost:6061]\nfilters:\n  - something\n`);
    try {
      for (let round = 0; round < 2; round++) {
        const s = await startServer(['-httpPort=0', `-config=${file}`, '-backend=memory'], { bin: join(root, 'bin/capsule-reverse-proxy.js') });
        try {
          const list = (await call(`${s.url}/memory/functions/list`)).json as unknown as Record<string, unknown>;
          assert.deepEqual(list, { hello: { default: [up.url] }, hola: { default: [up.url], orange: ['http://localhost:6061'] } });
          // a change made over the API is not in the file: the restart drops it
          if (round === 0) await call(`${s.url}/memory/functions/registration`, 'POST', { function: 'extra', revision: 'default', url: up.url });
          const r = await call(`${s.url}/functions/hola/default/path?q=1`);
          assert.equal(r.json.url, '/path?q=1');
          await eventually(() => /"function":"hola".*"revision":"default".*"upstream":"http:\/\/127\.0\.0\.1:\d+".*"status":200.*"ms":/.test(s.logs()), 5000);
          assert.match(s.logs(), /filters:\W+ is ignored/);
        } finally {
          assert.equal(await s.stop(), 0);
        }
      }
    } finally {
      await up.stop();
    }
  });

  it('serves per-revision metrics', async () => {
    const up = await upstream('m');
    const s = await startServer(['proxy', '--http-port=0']);
    try {
      await call(`${s.url}/memory/functions/registration`, 'POST', { function: 'hello', revision: 'blue', url: up.url });
      for (let i = 0; i < 3; i++) await call(`${s.url}/functions/hello/blue`);
      await call(`${s.url}/functions/hello/red`);
      await call(`${s.url}/functions/random-name`);
      const text = await (await fetch(`${s.url}/capsule/metrics`)).text();
      assert.match(text, /capsule_proxy_requests_total\{function="hello",revision="blue",status="200"\} 3/);
      assert.match(text, /capsule_proxy_request_duration_seconds_count\{function="hello",revision="blue"\} 3/);
      assert.match(text, /capsule_proxy_inflight_requests\{function="hello",revision="blue"\} 0/);
      assert.match(text, /capsule_proxy_errors_total\{function="hello",revision="\(unknown\)",reason="not_found"\} 1/);
      assert.match(text, /capsule_proxy_errors_total\{function="\(unknown\)",revision="\(unknown\)",reason="not_found"\} 1/);
      assert.doesNotMatch(text, /random-name/);
      assert.equal((await call(`${s.url}/capsule/health`)).status, 200);
      assert.equal((await call(`${s.url}/capsule/ready`)).status, 200);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  it('serves HTTPS with --crt and --key: proxied requests say X-Forwarded-Proto https', async (t) => {
    if (!selfSignedCert(dir)) {
      t.skip('openssl is not installed');
      return;
    }
    const up = await upstream('tls');
    const routes = join(dir, 'tls-routes.yaml');
    writeFileSync(routes, `functions:\n  hello:\n    default: [${up.url}]\n`);
    const s = await startServer(['proxy', '--http-port=0', `--config=${routes}`, `--crt=${join(dir, 'crt.pem')}`, `--key=${join(dir, 'key.pem')}`]);
    try {
      assert.match(s.url, /^https:\/\//);
      const get = (path: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(`${s.url}${path}`, { rejectUnauthorized: false }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
        req.end();
      });
      const r = await get('/functions/hello/default/secure?x=1');
      assert.equal(r.status, 200);
      const seen = JSON.parse(r.body) as Seen;
      assert.equal(seen.url, '/secure?x=1');
      assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-proto'), ['https']);
      assert.equal((await get('/memory/functions/list')).status, 200);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  it('exits 2 naming the file for bad YAML or an unknown key, for an unknown backend and for nats without --cluster', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'functions:\n  hello: [unclosed\n');
    const r1 = await runCapsule(['proxy', '--http-port=0', `--config=${bad}`]);
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /bad\.yaml: not valid YAML/);
    const unknown = join(dir, 'unknown.yaml');
    writeFileSync(unknown, 'function:\n  hello:\n    default: [http://localhost:1]\n');
    const r2 = await runCapsule(['proxy', '--http-port=0', `--config=${unknown}`]);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /unknown\.yaml: unknown key "function"/);
    const notUrl = join(dir, 'noturl.yaml');
    writeFileSync(notUrl, 'functions:\n  hello:\n    default: [hello.wasm]\n');
    const r3 = await runCapsule(['proxy', '--http-port=0', `--config=${notUrl}`]);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /"hello\.wasm" is not an http\(s\) URL/);
    // the shared backends are tested in cluster-gateway.test.ts and faas-proxy-redis.test.ts
    const r4 = await runCapsule(['proxy', '--http-port=0', '--backend=nats']);
    assert.equal(r4.code, 2);
    assert.match(r4.stderr, /--backend nats needs --cluster/);
    const r5 = await runCapsule(['proxy', '--http-port=0', '--backend=etcd']);
    assert.equal(r5.code, 2);
    assert.match(r5.stderr, /--backend etcd: expected memory, redis or nats/);
  });
});
