/**
 * `capsule node --cluster` (issue 13 points 1 and 4, faas-cluster.md §1.3–§1.6, §2 scenarios 4, 7,
 * 11, 12) as a user runs it: one real JetStream `nats-server` (no scenario here needs quorum),
 * three real nodes (`a`, `b` with label zone=a, `c` with zone=b, one worker thread each), a real
 * `capsule proxy --backend nats` as the gateway, and a plain HTTP server holding the modules.
 * Deploys go through one node's worker API; calls go through the gateway (or straight over NATS)
 * and name the node that answered (`X-Capsule-Node`). Spreads are checked with thresholds, never
 * exact shares (queue groups pick a random member).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { eventually, example, findBinary, fixture, missing, startServer, type Server } from './helpers.ts';
import { startNatsCluster, type NatsCluster } from './e2e/cluster.ts';
import { invoke } from '../src/faas/cluster/invoke.ts';
import { invokeSubject } from '../src/faas/cluster/lattice.ts';
import { FaasError } from '../src/faas/shared/service.ts';

const natsServer = findBinary('nats-server');
const modules: Record<string, string> = { hello: example('hello-you'), v1: fixture('wasi-cgi'), v2: fixture('wasi-cgi-v2'), bad: fixture('bad-import') };
const skip = !natsServer ? 'nats-server is not installed (scripts/setup.sh installs it)' : Object.values(modules).map(missing).find(Boolean) || false;

type Json = Record<string, unknown>;

/** A JSON call to a worker API. */
async function api(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${base}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) as Json : {} };
}

/** One call's outcome. */
interface Outcome { status: number; text: string; node: string }

async function get(url: string, init?: RequestInit): Promise<Outcome> {
  try {
    const res = await fetch(url, init);
    return { status: res.status, text: await res.text(), node: res.headers.get('x-capsule-node') ?? '' };
  } catch (e) {
    return { status: 0, text: (e as Error).message, node: '' };
  }
}

const helloInit = (): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob', age: 42 }) });

/** Steady load (`rps` requests a second, each awaited independently) until `stop`. */
function startLoad(url: string, rps: number): { stop(): Promise<Outcome[]>; seen: Outcome[] } {
  const seen: Outcome[] = [];
  const pending: Promise<void>[] = [];
  const timer = setInterval(() => pending.push(get(url).then((o) => void seen.push(o))), 1000 / rps);
  return { seen, async stop() {
    clearInterval(timer);
    await Promise.all(pending);
    return seen;
  } };
}

/** A sample value of the node's `/capsule/metrics` (0 when absent). */
async function metric(node: Server, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${node.url}/capsule/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf('}'));
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

/** Waits until the gateway (another process, with its own watch of ROUTES) routes `fn/rev` to `nats:`, or no longer routes it. */
async function routed(gateway: Server, fn: string, rev: string, present = true): Promise<void> {
  await eventually(async () => {
    const routes = await (await fetch(`${gateway.url}/memory/functions/list`)).json() as Record<string, Record<string, string[]>>;
    return present ? JSON.stringify(routes[fn]?.[rev]) === '["nats:"]' : routes[fn]?.[rev] === undefined;
  }, 10_000);
}

const count = (xs: Outcome[]) => xs.reduce<Record<string, number>>((m, o) => ((m[o.node] = (m[o.node] ?? 0) + 1), m), {});
const failed = (xs: Outcome[]) => xs.filter((o) => o.status !== 200);

describe('capsule node --cluster', { skip, concurrency: false }, () => {
  let cluster: NatsCluster;
  let files: HttpServer;
  let filesUrl = '';
  let dir = '';
  const nodes: Record<string, Server> = {};
  let gateway: Server;
  let nc: NatsConnection;
  /** Downloads of each module from the files server. */
  const downloads: Record<string, number> = {};

  before(async () => {
    cluster = await startNatsCluster(natsServer!, 1);
    dir = mkdtempSync(join(tmpdir(), 'capsule-cluster-node-'));
    files = createServer((req, res) => {
      const name = (req.url ?? '').replace(/^\/|\.wasm$/g, '');
      downloads[name] = (downloads[name] ?? 0) + 1;
      const path = modules[name];
      if (!path) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/wasm' }).end(readFileSync(path));
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', () => r()));
    filesUrl = `http://127.0.0.1:${(files.address() as { port: number }).port}`;
    const labels: Record<string, string> = { a: 'zone=a', b: 'zone=a', c: 'zone=b' };
    await Promise.all(Object.entries(labels).map(async ([id, label]) => {
      nodes[id] = await startServer(['node', '--http-port=0', '--http-port-counter=0', '--worker-domain=127.0.0.1', `--cluster=${cluster.urls}`, `--node-id=${id}`,
        `--labels=${label}`, `--cache-dir=${join(dir, id)}`, '--workers=1', '--log-level=warn']);
    }));
    gateway = await startServer(['proxy', '--http-port=0', '--backend=nats', `--cluster=${cluster.urls}`, '--timeout=6s', '--log-level=warn']);
    nc = await connect({ servers: cluster.urls });
  });

  after(async () => {
    await nc?.close();
    await Promise.all([gateway, ...Object.values(nodes)].map((s) => s?.stop()));
    files?.close();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('deploys through node a: the gateway routes to nats:, every node answers a share of the calls (X-Capsule-Node), the Go reply keeps a working localUrl', async () => {
    const r = await api(nodes.a!.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'blue', downloadUrl: `${filesUrl}/hello.wasm` });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.code, 'FUNCTION_DEPLOYED');
    const local = await get(`${r.body.localUrl as string}/`, helloInit());
    assert.equal(local.status, 200);
    assert.match(local.text, /Bob/);
    await routed(gateway, 'hello', 'blue');
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 150; i++) outcomes.push(await get(`${gateway.url}/functions/hello/blue`, helloInit()));
    assert.deepEqual(failed(outcomes), []);
    assert.ok(outcomes.every((o) => /Bob/.test(o.text)));
    const per = count(outcomes);
    for (const id of ['a', 'b', 'c']) assert.ok((per[id] ?? 0) >= 15, `node ${id} answered ${per[id] ?? 0} of 150 (${JSON.stringify(per)})`);
    assert.equal(downloads.hello, 1, 'the module is downloaded once, by the node that took the deploy; the others read the Object Store');
  });

  it('keeps the Go worker API: list on any node, scaling adds a replica, downscale answers a pid, default through the gateway', async () => {
    const again = await api(nodes.b!.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'blue', downloadUrl: `${filesUrl}/hello.wasm` });
    assert.equal(again.status, 202);
    const list = (await api(nodes.c!.url, 'GET', '/functions/list')).body as Record<string, Record<string, Json>>;
    const blue = list.hello!.blue!;
    assert.equal(blue.generation, 1, 'the same module again is scaling, not a new generation');
    assert.equal(Object.keys(blue.wasmModules as Json).length, 2);
    assert.equal(blue.wasmRegistryUrl, `${filesUrl}/hello.wasm`);
    await eventually(async () => {
      const l = (await api(nodes.c!.url, 'GET', '/functions/list')).body as Record<string, Record<string, { nodes: string[] }>>;
      return JSON.stringify(l.hello!.blue!.nodes) === '["a","b","c"]';
    }, 10_000);
    const set = await api(nodes.c!.url, 'POST', '/functions/set_default_revision', { function: 'hello', revision: 'blue' });
    assert.equal(set.body.code, 'DEFAULT_REVISION_REGISTERED');
    assert.equal((await get(`${gateway.url}/functions/hello`, helloInit())).status, 200);
    assert.equal(((await api(nodes.a!.url, 'GET', '/functions/list')).body as Record<string, Record<string, Json>>).hello!.blue!.isDefaultRevision, 'true');
    const down = await api(nodes.a!.url, 'DELETE', '/functions/revisions/downscale', { function: 'hello', revision: 'blue' });
    assert.equal(down.body.code, 'WASM_MODULE_DEPLOYMENT_REMOVED');
    assert.ok(Number(down.body.pid) > 0);
    const last = await api(nodes.a!.url, 'DELETE', '/functions/revisions/downscale', { function: 'hello', revision: 'blue' });
    assert.equal(last.body.code, 'WASM_MODULE_DEPLOYMENT_NOT_REMOVED');
    assert.equal((await get(`${gateway.url}/functions/hello/blue`, helloInit())).status, 200, 'the last replica keeps serving');
  });

  it('refuses a bad module before anything is stored or routed', async () => {
    const bad = await api(nodes.a!.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'bad', downloadUrl: `${filesUrl}/bad.wasm` });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.code, 'ERROR_BAD_MODULE');
    const missingFile = await api(nodes.a!.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'bad', downloadUrl: `${filesUrl}/nothing.wasm` });
    assert.equal(missingFile.status, 400);
    const list = (await api(nodes.b!.url, 'GET', '/functions/list')).body as Record<string, Record<string, Json>>;
    assert.deepEqual(Object.keys(list.hello!), ['blue']);
    const routes = await (await fetch(`${gateway.url}/memory/functions/list`)).json() as Record<string, Record<string, string[]>>;
    assert.equal(routes.hello?.bad, undefined);
    await assert.rejects(invoke(nc, invokeSubject('default', 'hello', 'bad'), { method: 'GET', path: '/', query: '', headers: [], body: new Uint8Array(0), deadline: Date.now() + 5000 }, { timeoutMs: 2000 }),
      (e: unknown) => e instanceof FaasError && e.code === 'NO_INSTANCE');
  });

  it('serves a placed revision only on the nodes whose labels match', async () => {
    const r = await api(nodes.c!.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'zoned', downloadUrl: `${filesUrl}/hello.wasm`, placement: { zone: 'a' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    await routed(gateway, 'hello', 'zoned');
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 40; i++) outcomes.push(await get(`${gateway.url}/functions/hello/zoned`, helloInit()));
    assert.deepEqual(failed(outcomes), []);
    const per = count(outcomes);
    assert.equal(per.c, undefined, `node c (zone=b) answered: ${JSON.stringify(per)}`);
    assert.ok((per.a ?? 0) > 0 && (per.b ?? 0) > 0, JSON.stringify(per));
  });

  it('scales to zero after idleSeconds and cold-starts once per node for 20 concurrent first calls', async () => {
    const r = await api(nodes.a!.url, 'POST', '/functions/deploy', { function: 'cgi', revision: 'idle', downloadUrl: `${filesUrl}/v1.wasm`, idleSeconds: 1 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const labels = { fn: 'cgi', rev: 'idle' };
    await routed(gateway, 'cgi', 'idle');
    const calls = await Promise.all(Array.from({ length: 20 }, () => get(`${gateway.url}/functions/cgi/idle/version`)));
    assert.deepEqual(failed(calls), []);
    assert.ok(calls.every((o) => o.text.trim() === 'v1'));
    const per = count(calls);
    for (const [id, node] of Object.entries(nodes)) {
      assert.equal(await metric(node, 'capsule_cold_start_seconds_count', { ...labels, phase: 'init' }), per[id] ? 1 : 0, `materializations on ${id} (${JSON.stringify(per)})`);
    }
    for (const node of Object.values(nodes)) await eventually(async () => (await metric(node, 'capsule_revision_loaded', labels)) === 0, 10_000);
    const next = await get(`${gateway.url}/functions/cgi/idle/version`);
    assert.equal(next.status, 200, 'the next request after scale to zero is the activation');
    assert.equal(await metric(nodes[next.node]!, 'capsule_cold_start_seconds_count', { ...labels, phase: 'init' }), (per[next.node] ? 1 : 0) + 1);
  });

  it('does not evict a revision while a call longer than idleSeconds is in flight', async () => {
    const labels = { fn: 'cgi', rev: 'idle' };
    for (const node of Object.values(nodes)) await eventually(async () => (await metric(node, 'capsule_revision_loaded', labels)) === 0, 10_000);
    const started = Date.now();
    let done = false;
    const call = get(`${gateway.url}/functions/cgi/idle/nap/3000`).finally(() => (done = true));
    const samples: { ms: number; loaded: number }[] = [];
    while (!done) {
      const loaded = await Promise.all(Object.values(nodes).map((n) => metric(n, 'capsule_revision_loaded', labels)));
      if (!done) samples.push({ ms: Date.now() - started, loaded: loaded.reduce((a, b) => a + b, 0) });
      await new Promise((r) => setTimeout(r, 100));
    }
    const out = await call;
    assert.equal(out.status, 200);
    assert.equal(out.text.trim(), 'napped');
    const late = samples.filter((s) => s.ms >= 1800);
    assert.ok(late.length > 0, 'samples were taken past idleSeconds');
    assert.deepEqual(late.filter((s) => s.loaded === 0), [], 'the revision stayed loaded during the call');
  });

  it('answers "busy" over the node\'s --max-inflight, so the gateway can try another node', async () => {
    const d = await startServer(['node', '--http-port=0', '--http-port-counter=0', `--cluster=${cluster.urls}`, '--node-id=d', '--labels=zone=d',
      `--cache-dir=${join(dir, 'd')}`, '--workers=2', '--max-inflight=1', '--log-level=warn']);
    try {
      const r = await api(d.url, 'POST', '/functions/deploy', { function: 'cgi', revision: 'only-d', downloadUrl: `${filesUrl}/v1.wasm`, placement: { zone: 'd' } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      const req = (path: string) => invoke(nc, invokeSubject('default', 'cgi', 'only-d'), { method: 'GET', path, query: '', headers: [], body: new Uint8Array(0), deadline: Date.now() + 20_000 }, { timeoutMs: 10_000, retries: 0 });
      await eventually(async () => (await req('/version').catch(() => undefined))?.status === 200, 10_000);
      const long = req('/nap/1500'); // published first on this connection, so the node counts it first
      await assert.rejects(req('/version'), (e: unknown) => e instanceof FaasError && e.status === 503 && e.code === 'BUSY');
      const first = await long;
      assert.equal(first.status, 200);
      assert.equal(first.node, 'd');
      assert.equal((await req('/version')).status, 200, 'a free slot serves again');
      await api(d.url, 'DELETE', '/functions/revisions/deployments', { function: 'cgi', revision: 'only-d' });
    } finally {
      await d.stop();
    }
  });

  it('reloads a revision on every node under load with no failed request, and refuses an invalid module while the old one serves', async () => {
    const r = await api(nodes.a!.url, 'POST', '/functions/deploy', { function: 'cgi', revision: 'hot', downloadUrl: `${filesUrl}/v1.wasm` });
    assert.equal(r.status, 202);
    await routed(gateway, 'cgi', 'hot');
    const load = startLoad(`${gateway.url}/functions/cgi/hot/version`, 20);
    await eventually(() => new Set(load.seen.map((o) => o.node)).size === 3, 15_000);
    const reload = await api(nodes.b!.url, 'PUT', '/functions/revisions/module', { function: 'cgi', revision: 'hot', downloadUrl: `${filesUrl}/v2.wasm` });
    assert.equal(reload.status, 202, JSON.stringify(reload.body));
    assert.equal(reload.body.code, 'REVISION_MODULE_RELOADED');
    assert.equal(reload.body.generation, 2);
    const mark = load.seen.length;
    const v2From = () => new Set(load.seen.slice(mark).filter((o) => o.text.trim() === 'v2').map((o) => o.node));
    await eventually(() => v2From().size === 3, 15_000);
    const refused = await api(nodes.c!.url, 'PUT', '/functions/revisions/module', { function: 'cgi', revision: 'hot', downloadUrl: `${filesUrl}/bad.wasm` });
    assert.equal(refused.status, 422);
    const after = load.seen.length;
    await eventually(() => load.seen.length >= after + 20, 10_000);
    const outcomes = await load.stop();
    assert.deepEqual(failed(outcomes), []);
    assert.ok(outcomes.slice(after).every((o) => o.text.trim() === 'v2'), 'the refused module never served');
    const list = (await api(nodes.a!.url, 'GET', '/functions/list')).body as Record<string, Record<string, Json>>;
    assert.equal(list.cgi!.hot!.generation, 2);
  });

  it('loses no GET when a node is killed (SIGKILL) under load; the others take its share and the list stops naming it', async () => {
    const load = startLoad(`${gateway.url}/functions/cgi/hot/version`, 20);
    await eventually(() => load.seen.length >= 20, 10_000);
    await nodes.c!.stop('SIGKILL');
    const mark = load.seen.length;
    await eventually(() => load.seen.length >= mark + 60, 15_000);
    const outcomes = await load.stop();
    assert.deepEqual(failed(outcomes), []);
    const tail = count(outcomes.slice(mark + 20));
    assert.equal(tail.c, undefined, JSON.stringify(tail));
    assert.ok((tail.a ?? 0) > 0 && (tail.b ?? 0) > 0, JSON.stringify(tail));
    // its heartbeat stops: the list stops naming it once the last one is older than the NODES TTL (15 s)
    await eventually(async () => {
      const list = (await api(nodes.a!.url, 'GET', '/functions/list')).body as Record<string, Record<string, { nodes: string[] }>>;
      return JSON.stringify(list.cgi!.hot!.nodes) === '["a","b"]';
    }, 25_000);
  });

  it('reloads a revision by the digest of a module the cluster holds; an unknown digest is refused', async () => {
    const v1 = (await api(nodes.a!.url, 'GET', '/functions/list')).body as Record<string, Record<string, Json>>;
    assert.equal(v1.cgi!.idle!.generation, 1);
    const digest = v1.cgi!.idle!.sha256 as string;
    const r = await api(nodes.b!.url, 'PUT', '/functions/revisions/module', { function: 'cgi', revision: 'hot', sha256: digest });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.generation, 3);
    await eventually(async () => (await get(`${gateway.url}/functions/cgi/hot/version`)).text.trim() === 'v1', 10_000);
    const unknown = await api(nodes.b!.url, 'PUT', '/functions/revisions/module', { function: 'cgi', revision: 'hot', sha256: 'ab'.repeat(32) });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'MODULE_NOT_FOUND');
  });

  it('undeploys: the gateway no longer routes the revision and no node serves its subject', async () => {
    const r = await api(nodes.a!.url, 'DELETE', '/functions/revisions/deployments', { function: 'hello', revision: 'zoned' });
    assert.equal(r.body.code, 'REVISION_DEPLOYMENT_REMOVED');
    await routed(gateway, 'hello', 'zoned', false);
    await eventually(async () => {
      try {
        await invoke(nc, invokeSubject('default', 'hello', 'zoned'), { method: 'GET', path: '/', query: '', headers: [], body: new Uint8Array(0), deadline: Date.now() + 5000 }, { timeoutMs: 2000, retries: 0 });
        return false;
      } catch (e) {
        return e instanceof FaasError && e.code === 'NO_INSTANCE';
      }
    }, 10_000);
    const again = await api(nodes.a!.url, 'DELETE', '/functions/revisions/deployments', { function: 'hello', revision: 'zoned' });
    assert.equal(again.status, 404);
  });

  it('answers 503 STATE_UNAVAILABLE to admin writes while JetStream is down, and works again once it is back, without a restart', async () => {
    await cluster.servers[0]!.kill();
    const down = await api(nodes.a!.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'later', downloadUrl: `${filesUrl}/hello.wasm` });
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.equal(down.body.code, 'STATE_UNAVAILABLE');
    await cluster.servers[0]!.start();
    let up = down;
    await eventually(async () => (up = await api(nodes.a!.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'later', downloadUrl: `${filesUrl}/hello.wasm` })).status === 202, 20_000);
    assert.equal(up.body.code, 'FUNCTION_DEPLOYED');
    await routed(gateway, 'hello', 'later');
    await eventually(async () => (await get(`${gateway.url}/functions/hello/later`, helloInit())).status === 200, 10_000);
  });
});
