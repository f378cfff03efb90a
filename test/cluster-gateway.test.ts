/**
 * `capsule proxy --backend nats` (faas-cluster.md §1.2–§1.4, §1.8; issue 13 point 2) as users see
 * it: real gateway processes on a real JetStream nats-server sharing the ROUTES bucket, `nats:`
 * targets answered by a test node built with serveInvocations (the node's side of invoke.ts), a
 * real HTTP upstream beside them, and a 3-server cluster losing its quorum.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { eventually, findBinary, startServer, type Server } from './helpers.ts';
import { metric } from './brokers.ts';
import { startNatsCluster, type NatsCluster } from './e2e/cluster.ts';
import { serveInvocations, type InvocationService, type InvokeRequest } from '../src/faas/cluster/invoke.ts';
import { invokeSubject, queueGroup } from '../src/faas/cluster/lattice.ts';
import { startProxy } from '../src/faas/proxy/index.ts';
import { createLogger } from '../src/observability/logger.ts';

const natsServer = findBinary('nats-server');
const skip = natsServer ? false : 'nats-server is not installed (scripts/setup.sh installs it)';
const logger = createLogger('error', false);
const enc = new TextEncoder();

/** JSON request; returns status, parsed body (when JSON) and headers. */
async function call(url: string, method = 'GET', body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method, headers: body === undefined || body instanceof Uint8Array ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : body instanceof Uint8Array ? Buffer.from(body) : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch { /* not JSON */ }
  return { status: res.status, text, json, headers: res.headers };
}

const list = async (gw: Server) => (await call(`${gw.url}/memory/functions/list`)).json as Record<string, Record<string, string[]>>;

/** A test node: serves one revision's subject in its queue group and echoes what it got. */
async function node(nc: NatsConnection, lattice: string, fn: string, rev: string, id: string, delayMs = 0): Promise<InvocationService & { calls: InvokeRequest[] }> {
  const calls: InvokeRequest[] = [];
  const svc = await serveInvocations(nc, invokeSubject(lattice, fn, rev), async (req) => {
    calls.push(req);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const headers: Record<string, string[]> = {};
    for (let i = 0; i < req.headers.length; i += 2) (headers[req.headers[i]!.toLowerCase()] ??= []).push(req.headers[i + 1]!);
    const body = JSON.stringify({ node: id, method: req.method, path: req.path, query: req.query, headers, size: req.body.byteLength, text: new TextDecoder().decode(req.body.subarray(0, 64)) });
    return { status: req.path === '/created' ? 201 : 200, headers: ['Content-Type', 'application/json', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'], body: enc.encode(body) };
  }, { maxInflight: 16, nodeId: id, logger, queue: queueGroup(fn, rev) });
  await nc.flush();
  return Object.assign(svc, { calls });
}

/** A plain HTTP upstream (a URL target). */
function httpUpstream(): Promise<{ url: string; server: HttpServer }> {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(`url target ${req.method} ${req.url}`));
    });
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server }));
  });
}

describe('capsule proxy --backend nats: two gateways on one JetStream server', { skip }, () => {
  let cluster: NatsCluster;
  let gw1: Server;
  let gw2: Server;
  let nc: NatsConnection;
  let upstream: { url: string; server: HttpServer };
  let blue: Awaited<ReturnType<typeof node>>;
  const args = () => ['proxy', '--backend=nats', `--cluster=${cluster.urls}`, '--lattice=gw', '--http-port=0', '--timeout=1s', '--log-level=error'];
  before(async () => {
    cluster = await startNatsCluster(natsServer!, 1);
    upstream = await httpUpstream();
    [gw1, gw2] = await Promise.all([startServer(args()), startServer(args())]);
    nc = await connect({ servers: cluster.urls });
    blue = await node(nc, 'gw', 'hello', 'blue', 'node-a');
  });
  after(async () => {
    await blue?.stop();
    await nc?.close();
    await Promise.all([gw1?.stop(), gw2?.stop()]);
    upstream?.server.close();
    await cluster?.stop();
  });

  it('shares the routes: a change through one gateway reaches the other, and the writer lists its own write at once', async () => {
    const created = await call(`${gw1.url}/memory/functions/registration`, 'POST', { function: 'hello', revision: 'blue', url: 'nats:' });
    assert.equal(created.status, 202, created.text);
    assert.deepEqual((await list(gw1))['hello'], { blue: ['nats:'] }, 'read-your-writes on the writer');
    await eventually(async () => (await list(gw2))['hello']?.['blue']?.[0] === 'nats:', 5000);
    const again = await call(`${gw2.url}/memory/functions/registration`, 'POST', { function: 'hello', revision: 'red', url: upstream.url });
    assert.equal(again.status, 500);
    assert.equal(again.json['code'], 'ERROR_FUNCTION_ALREADY_EXISTS');
    const green = await call(`${gw2.url}/redis/functions/hello/revision`, 'POST', { revision: 'green', url: upstream.url });
    assert.equal(green.status, 202, green.text);
    await eventually(async () => (await list(gw1))['hello']?.['green']?.[0] === upstream.url, 5000);
    const missing = await call(`${gw1.url}/nats/functions/nobody/revision`, 'DELETE', { revision: 'x' });
    assert.equal(missing.json['code'], 'ERROR_FUNCTION_NOT_FOUND');
    // a removal too: at once on the writer, then on the other gateway
    assert.equal((await call(`${gw1.url}/memory/functions/registration`, 'POST', { function: 'temp', revision: 'v1', url: upstream.url })).status, 202);
    await eventually(async () => (await list(gw2))['temp'] !== undefined, 5000);
    assert.equal((await call(`${gw2.url}/memory/functions/registration`, 'DELETE', { function: 'temp' })).status, 202);
    assert.equal((await list(gw2))['temp'], undefined);
    await eventually(async () => (await list(gw1))['temp'] === undefined, 5000);
    assert.equal((await call(`${gw1.url}/functions/temp/v1`)).status, 404);
  });

  it('calls a nats: target through either gateway with path, query, every header value and the body; URL targets answer beside it', async () => {
    const r = await call(`${gw2.url}/functions/hello/blue/created?x=1&y=2`, 'POST', enc.encode('hello body'), { 'X-Multi': 'one', 'x-user': 'bob' });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get('x-capsule-node'), 'node-a');
    assert.deepEqual(r.headers.getSetCookie(), ['a=1', 'b=2']);
    assert.equal(r.json['method'], 'POST');
    assert.equal(r.json['path'], '/created');
    assert.equal(r.json['query'], 'x=1&y=2');
    assert.equal(r.json['text'], 'hello body');
    const h = r.json['headers'] as Record<string, string[]>;
    assert.deepEqual(h['x-user'], ['bob']);
    assert.ok(h['x-forwarded-for']?.[0], 'X-Forwarded-For is added');
    const viaGw1 = await call(`${gw1.url}/functions/hello/blue`);
    assert.equal(viaGw1.status, 200);
    assert.equal(viaGw1.json['path'], '/');
    const url = await call(`${gw1.url}/functions/hello/green/api?q=1`);
    assert.equal(url.status, 200);
    assert.equal(url.text, 'url target GET /api?q=1');
    assert.equal(url.headers.get('x-capsule-node'), null);
    // a 90 KiB and a 900 KiB body pass (the server's max_payload is 8 MB)
    const big = await call(`${gw1.url}/functions/hello/blue`, 'PUT', new Uint8Array(900 * 1024).fill(65));
    assert.equal(big.json['size'], 900 * 1024);
  });

  it('answers 502 NO_INSTANCE without a node, 504 TIMEOUT from a silent one (a POST sent once), 413 TOO_LARGE above max_payload', async () => {
    assert.equal((await call(`${gw1.url}/memory/functions/hello/revision`, 'POST', { revision: 'ghost', url: 'nats:' })).status, 202);
    assert.equal((await call(`${gw1.url}/memory/functions/hello/revision`, 'POST', { revision: 'slow', url: 'nats:' })).status, 202);
    const ghost = await call(`${gw1.url}/functions/hello/ghost`);
    assert.equal(ghost.status, 502);
    assert.equal(ghost.json['code'], 'NO_INSTANCE');
    assert.equal(await metric(gw1.url, 'capsule_lattice_retries_total', { reason: 'no-responders' }), 2, 'a request nobody got is retried twice');
    const slow = await node(nc, 'gw', 'hello', 'slow', 'node-slow', 2500);
    try {
      const timedOut = await call(`${gw1.url}/functions/hello/slow`, 'POST', { a: 1 });
      assert.equal(timedOut.status, 504);
      assert.equal(timedOut.json['code'], 'TIMEOUT');
      assert.equal(slow.calls.length, 1, 'a POST that may have run is not sent again');
    } finally {
      await slow.stop();
    }
    const tooBig = await call(`${gw2.url}/functions/hello/blue`, 'POST', new Uint8Array(9 * 1024 * 1024));
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.json['code'], 'TOO_LARGE');
    // the same without a declared length (chunked): the gateway stops reading at the limit
    const chunk = new Uint8Array(1024 * 1024);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent++ < 9) c.enqueue(chunk);
        else c.close();
      },
    });
    const chunked = await fetch(`${gw2.url}/functions/hello/blue`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit).catch((e: Error) => e);
    assert.ok(!(chunked instanceof Error), String(chunked));
    assert.equal(chunked.status, 413);
    assert.equal(await metric(gw2.url, 'capsule_proxy_errors_total', { function: 'hello', revision: 'blue', reason: 'too_large' }), 2);
    assert.equal((await call(`${gw2.url}/functions/hello/blue`)).status, 200, 'the gateway keeps serving');
  });

  it('lists nats: targets only in cluster mode, where it also accepts them; a memory proxy refuses them', async () => {
    const p = await startProxy({ logger, port: 0 });
    try {
      const refused = await call(`${p.url}/memory/functions/registration`, 'POST', { function: 'x', revision: 'v', url: 'nats:' });
      assert.equal(refused.status, 400);
      assert.equal(refused.json['code'], 'ERROR_BAD_URL');
    } finally {
      await p.close();
    }
    assert.deepEqual((await call(`${gw1.url}/memory/functions/hello/blue/urls`)).json, ['nats:']);
  });

  it('loads a --config file into the bucket only for functions it does not hold', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-gw-'));
    const file = join(dir, 'routes.yaml');
    writeFileSync(file, `functions:\n  hello:\n    blue: [${upstream.url}]\n  hola:\n    default: [${upstream.url}]\n`);
    const gw3 = await startServer([...args(), `--config=${file}`]);
    try {
      const routes = await list(gw3);
      assert.deepEqual(routes['hello']?.['blue'], ['nats:'], 'a function already in the bucket keeps its routes');
      assert.deepEqual(routes['hola'], { default: [upstream.url] });
      await eventually(async () => (await list(gw1))['hola'] !== undefined, 5000);
      assert.equal((await call(`${gw1.url}/functions/hola`)).text, 'url target GET /');
    } finally {
      await gw3.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('capsule proxy --backend nats: quorum lost and regained on a 3-server cluster', { skip }, () => {
  let cluster: NatsCluster;
  let gw: Server;
  let nc: NatsConnection;
  let upstream: { url: string; server: HttpServer };
  before(async () => {
    cluster = await startNatsCluster(natsServer!, 3);
    upstream = await httpUpstream();
    gw = await startServer(['proxy', '--backend=nats', `--cluster=${cluster.urls}`, '--lattice=q', '--http-port=0', '--timeout=2s', '--log-level=error']);
    nc = await connect({ servers: cluster.urls.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  });
  after(async () => {
    await nc?.close();
    await gw?.stop();
    upstream?.server.close();
    await cluster?.stop();
  });

  it('answers admin writes 503 STATE_UNAVAILABLE while calls keep working from the cache, and recovers without a restart', async () => {
    const svc = await node(nc, 'q', 'hello', 'blue', 'node-q');
    try {
      assert.equal((await call(`${gw.url}/memory/functions/registration`, 'POST', { function: 'hello', revision: 'blue', url: 'nats:' })).status, 202);
      assert.equal((await call(`${gw.url}/memory/functions/hello/revision`, 'POST', { revision: 'green', url: upstream.url })).status, 202);
      const [s1, s2] = cluster.servers;
      await Promise.all([s1!.kill(), s2!.kill()]);
      const refused = await call(`${gw.url}/memory/functions/hello/revision`, 'POST', { revision: 'orange', url: upstream.url });
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.json['code'], 'STATE_UNAVAILABLE');
      assert.equal((await call(`${gw.url}/functions/hello/green`)).text, 'url target GET /');
      // both clients reconnect to the surviving server; core NATS still carries requests
      await eventually(async () => (await call(`${gw.url}/functions/hello/blue`)).headers.get('x-capsule-node') === 'node-q', 15_000);
      assert.deepEqual(Object.keys((await list(gw))['hello'] ?? {}).sort(), ['blue', 'green']);
      await Promise.all([s1!.start(), s2!.start()]);
      await eventually(async () => {
        const r = await call(`${gw.url}/memory/functions/hello/revision`, 'POST', { revision: 'orange', url: upstream.url });
        // a write that timed out may still have landed: then it exists already
        return r.status === 202 || r.json['code'] === 'ERROR_REVISION_ALREADY_EXISTS';
      }, 30_000);
      assert.deepEqual((await list(gw))['hello']?.['orange'], [upstream.url]);
      assert.equal((await call(`${gw.url}/functions/hello/orange`)).text, 'url target GET /');
    } finally {
      await svc.stop();
    }
  });
});
