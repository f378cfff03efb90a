/**
 * `capsule node` (faas-api.md §3, faas-cluster.md §1.1; issue 12 points 3, 5 and 7) as a user
 * runs it: real processes on loopback — a `capsule registry` holding the modules, a `capsule
 * proxy` the node registers in (with both admin tokens set), and the node itself — driven over
 * HTTP with fetch: deploy from registry URLs, list, call localUrl and the proxy, scale, downscale,
 * default revision, undeploy, refusals that leave the old revision serving, the guest
 * environment, tokens, a reload under load with no failed request, metrics, `--process` children
 * and the Go bin with Go flags.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, example, fixture, missing, root, startServer, type Server } from './helpers.ts';

const modules = { hello: example('hello-you'), echo: fixture('gen2-echo'), env: example('asenv') };
const skip = Object.values(modules).map(missing).find(Boolean) || false;
const WORKER_TOKEN = 'node-secret';
const PROXY_TOKEN = 'proxy-secret';
const hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

type Json = Record<string, unknown>;
interface Reply { status: number; body: Json; headers: Headers }

/** A JSON request to a node's worker API, with the worker token unless `token` says otherwise. */
async function call(base: string, method: string, path: string, body?: unknown, token: string | null = WORKER_TOKEN): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json; charset=utf-8';
  if (token !== null) headers['CAPSULE_WORKER_ADMIN_TOKEN'] = token;
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) as Json : {}, headers: res.headers };
}

/** POSTs hello-you's JSON to a URL: `{status, text, fixture}` (gen2-echo answers 201 with X-Fixture). */
async function hello(url: string, name = 'Bob'): Promise<{ status: number; text: string; fixture: string | null }> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify({ name, age: 42 }) });
  return { status: res.status, text: await res.text(), fixture: res.headers.get('x-fixture') };
}

/** The proxy's routing table (`GET /memory/functions/list`). */
async function routes(proxy: Server): Promise<Record<string, Record<string, string[]>>> {
  return await (await fetch(`${proxy.url}/memory/functions/list`)).json() as Record<string, Record<string, string[]>>;
}

/** The node's list, Go shape (faas-api.md §3). */
async function list(node: string): Promise<Record<string, Record<string, { isDefaultRevision: string; wasmRegistryUrl: string; generation: number; sha256: string; wasmModules: Record<string, { localUrl: string; status: string; exitCode?: number | string; envVariables: Json }> }>>> {
  const r = await call(node, 'GET', '/functions/list', undefined, null);
  assert.equal(r.status, 202);
  return r.body as never;
}

/** Whether a connection to `url` is refused (nothing listens any more). */
async function refused(url: string): Promise<boolean> {
  return fetch(url).then(() => false, () => true);
}

describe('capsule node', { skip, concurrency: false }, () => {
  let files: string;
  let registry: Server;
  let proxy: Server;
  let node: Server;
  let plain: HttpServer;
  let plainUrl: string;
  const urls: Record<string, string> = {};
  const digests: Record<string, string> = {};
  const env = { CAPSULE_WORKER_ADMIN_TOKEN: WORKER_TOKEN, CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: PROXY_TOKEN, CAPSULE_FAAS_TOKEN: 'faas-secret' };

  before(async () => {
    files = mkdtempSync(join(tmpdir(), 'capsule-node-test-'));
    registry = await startServer(['registry', '--http-port=0', `--files=${files}`]);
    for (const [name, path] of Object.entries(modules)) {
      const bytes = readFileSync(path);
      const form = new FormData();
      form.append('info', `${name} for the node tests`);
      form.append('file', new Blob([bytes]), `${name}.wasm`);
      const res = await fetch(`${registry.url}/upload/k33g/${name}/0.0.0`, { method: 'POST', body: form });
      assert.equal(res.status, 200, await res.text());
      urls[name] = `${registry.url}/k33g/${name}/0.0.0/${name}.wasm`;
      digests[name] = hex(bytes);
    }
    // a plain file server for what a registry would refuse to hold (not wasm)
    plain = createServer((req, res) => {
      if (req.url === '/not-wasm.wasm') res.end('this is not WebAssembly');
      else if (req.url === '/lying.wasm') res.writeHead(200, { 'X-Capsule-Sha256': 'f'.repeat(64) }).end(readFileSync(modules.hello));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    plainUrl = `http://127.0.0.1:${(plain.address() as { port: number }).port}`;
    proxy = await startServer(['proxy', '--http-port=0'], { env });
    node = await startServer(['node', '--http-port=0', '--http-port-counter=0', '--worker-domain=127.0.0.1', `--reverse-proxy=${proxy.url}`], { env });
  });

  after(async () => {
    await node?.stop();
    await proxy?.stop();
    await registry?.stop();
    await new Promise((r) => plain?.close(r));
    rmSync(files, { recursive: true, force: true });
  });

  it('deploys a revision from a registry URL: Go reply, list, localUrl and the proxy route answer', async () => {
    const r = await call(node.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'blue', downloadUrl: urls.hello, envVariables: { MESSAGE: 'blue' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.code, 'FUNCTION_DEPLOYED');
    assert.equal(r.body.message, 'Function deployed');
    assert.equal(r.body.remoteUrl, `${proxy.url}/functions/hello/blue`);
    const localUrl = r.body.localUrl as string;
    assert.match(localUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(await hello(localUrl), { status: 200, text: '{"message":"Bob 42"}', fixture: null });
    assert.deepEqual(await hello(r.body.remoteUrl as string, 'Jane'), { status: 200, text: '{"message":"Jane 42"}', fixture: null });
    const blue = (await list(node.url)).hello!.blue!;
    assert.equal(blue.wasmRegistryUrl, urls.hello);
    assert.equal(blue.isDefaultRevision, 'false');
    assert.equal(blue.sha256, digests.hello);
    const replicas = Object.values(blue.wasmModules);
    assert.deepEqual(replicas.map((m) => [m.localUrl, m.status, m.envVariables]), [[localUrl, 'Started', { MESSAGE: 'blue' }]]);
    assert.deepEqual((await routes(proxy)).hello, { blue: [localUrl] });
  });

  it('deploying the revision again scales it: both replicas answer, through the proxy too; downscale removes one', async () => {
    const r = await call(node.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'blue', downloadUrl: urls.hello, envVariables: { MESSAGE: 'blue' } });
    assert.equal(r.status, 202);
    const mods = Object.entries((await list(node.url)).hello!.blue!.wasmModules);
    assert.equal(mods.length, 2);
    const locals = mods.map(([, m]) => m.localUrl);
    assert.deepEqual((await routes(proxy)).hello!.blue, locals);
    for (const u of locals) assert.equal((await hello(u)).status, 200);
    for (let i = 0; i < 4; i++) assert.equal((await hello(`${proxy.url}/functions/hello/blue`)).text, '{"message":"Bob 42"}');

    const down = await call(node.url, 'DELETE', '/functions/revisions/downscale', { function: 'hello', revision: 'blue' });
    assert.equal(down.status, 202);
    assert.equal(down.body.code, 'WASM_MODULE_DEPLOYMENT_REMOVED');
    const gone = mods.find(([pid]) => Number(pid) === down.body.pid)![1].localUrl;
    const kept = locals.find((u) => u !== gone)!;
    assert.deepEqual((await routes(proxy)).hello!.blue, [kept]);
    assert.ok(await refused(gone), 'the removed replica no longer listens');
    assert.equal((await hello(kept)).status, 200);

    const last = await call(node.url, 'DELETE', '/functions/revisions/downscale', { function: 'hello', revision: 'blue' });
    assert.equal(last.status, 202);
    assert.equal(last.body.code, 'WASM_MODULE_DEPLOYMENT_NOT_REMOVED');
    assert.equal(last.body.pid, 0);
    assert.equal((await hello(kept)).status, 200);
  });

  it('set_default_revision points /functions/<fn> of the proxy at a revision; remove_default_revision takes it away', async () => {
    const green = await call(node.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'green', downloadUrl: urls.echo });
    assert.equal(green.status, 202);
    let r = await call(node.url, 'POST', '/functions/set_default_revision', { function: 'hello', revision: 'green' });
    assert.equal(r.status, 202);
    assert.deepEqual(r.body, { code: 'DEFAULT_REVISION_REGISTERED', message: 'Default revision registered', revision: 'green', function: 'hello', url: `${proxy.url}/functions/hello` });
    assert.deepEqual(await hello(`${proxy.url}/functions/hello`), { status: 201, text: '{"ok":true}', fixture: 'gen2' });
    let l = await list(node.url);
    assert.deepEqual([l.hello!.blue!.isDefaultRevision, l.hello!.green!.isDefaultRevision], ['false', 'true']);

    r = await call(node.url, 'POST', '/functions/set_default_revision', { function: 'hello', revision: 'blue' });
    assert.equal(r.status, 202);
    assert.equal((await hello(`${proxy.url}/functions/hello`)).text, '{"message":"Bob 42"}');
    l = await list(node.url);
    assert.deepEqual([l.hello!.blue!.isDefaultRevision, l.hello!.green!.isDefaultRevision], ['true', 'false']);

    // a split set on the proxy directly (capsule set-default hello blue=90 green=10) is what the list shows, as Go read the proxy
    const split = await fetch(`${proxy.url}/memory/functions/hello/traffic`, {
      method: 'PUT', headers: { 'content-type': 'application/json', CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: PROXY_TOKEN },
      body: JSON.stringify({ targets: [{ revision: 'blue', percent: 90 }, { revision: 'green', percent: 10 }] }),
    });
    assert.equal(split.status, 202);
    l = await list(node.url);
    assert.deepEqual([l.hello!.blue!.isDefaultRevision, l.hello!.green!.isDefaultRevision], ['true', 'true']);

    r = await call(node.url, 'DELETE', '/functions/remove_default_revision', { function: 'hello' });
    assert.deepEqual([r.status, r.body.code, r.body.message], [202, 'DEFAULT_REVISION_REMOVED', 'Default revision removed']);
    assert.equal((await fetch(`${proxy.url}/functions/hello`)).status, 404);
    assert.equal((await hello(`${proxy.url}/functions/hello/green`)).status, 201, 'the revisions stay');
    assert.equal((await list(node.url)).hello!.blue!.isDefaultRevision, 'false');
  });

  it('undeploy removes the revision from the proxy and stops its listeners', async () => {
    const green = Object.values((await list(node.url)).hello!.green!.wasmModules)[0]!.localUrl;
    const r = await call(node.url, 'DELETE', '/functions/revisions/deployments', { function: 'hello', revision: 'green' });
    assert.equal(r.status, 202);
    assert.deepEqual(r.body, { code: 'REVISION_DEPLOYMENT_REMOVED', message: 'revision deployment removed (all processes killed)', revision: 'green', function: 'hello' });
    assert.ok(!('green' in (await list(node.url)).hello!));
    assert.ok(!('green' in (await routes(proxy)).hello!));
    assert.ok(await refused(green));
    assert.equal((await fetch(`${proxy.url}/functions/hello/green`)).status, 404);
    assert.equal((await hello(`${proxy.url}/functions/hello/blue`)).status, 200, 'the other revision still serves');
    const again = await call(node.url, 'DELETE', '/functions/revisions/deployments', { function: 'hello', revision: 'green' });
    assert.deepEqual([again.status, again.body.code], [404, 'REVISION_NOT_FOUND']);
  });

  it('refuses a bad module, a wrong digest and a bad URL before anything changes; the old revision keeps serving', async () => {
    const before = await list(node.url);
    const beforeRoutes = await routes(proxy);
    const attempts: [Json, number, string][] = [
      [{ downloadUrl: `${plainUrl}/not-wasm.wasm` }, 422, 'ERROR_BAD_MODULE'],
      [{ downloadUrl: `${urls.hello}#sha256=${'0'.repeat(64)}` }, 422, 'ERROR_DIGEST_MISMATCH'],
      [{ downloadUrl: urls.echo, sha256: digests.hello }, 422, 'ERROR_DIGEST_MISMATCH'],
      // spelt as the registry accepts it too (one reading of digests, base/digest.ts)
      [{ downloadUrl: urls.echo, sha256: ` SHA256=${digests.hello!.replace(/^sha256:/, '').toUpperCase()} ` }, 422, 'ERROR_DIGEST_MISMATCH'],
      [{ downloadUrl: urls.hello, sha256: 'sha256:abc' }, 400, 'ERROR_BAD_DIGEST'],
      [{ downloadUrl: `${plainUrl}/lying.wasm` }, 422, 'ERROR_DIGEST_MISMATCH'],
      [{ downloadUrl: `${urls.hello}#sha256=abc` }, 400, 'ERROR_BAD_DIGEST'],
      [{ downloadUrl: `${registry.url}/k33g/nothing/0.0.0/nothing.wasm` }, 400, 'ERROR_DOWNLOAD'],
      [{ downloadUrl: `${plainUrl.replace(/:\d+$/, ':1')}/x.wasm` }, 400, 'ERROR_DOWNLOAD'],
      [{ downloadUrl: 'file:///etc/passwd' }, 400, 'ERROR_BAD_URL'],
      [{ downloadUrl: 'not a url' }, 400, 'ERROR_BAD_URL'],
    ];
    for (const [fields, status, code] of attempts) {
      for (const revision of ['blue', 'red']) {
        const r = await call(node.url, 'POST', '/functions/deploy', { function: 'hello', revision, ...fields });
        assert.deepEqual([r.status, r.body.code], [status, code], `${JSON.stringify(fields)} → ${JSON.stringify(r.body)}`);
      }
    }
    assert.deepEqual(await list(node.url), before);
    assert.deepEqual(await routes(proxy), beforeRoutes);
    assert.equal((await hello(`${proxy.url}/functions/hello/blue`)).text, '{"message":"Bob 42"}');
    // the right pin is accepted
    const pinned = await call(node.url, 'POST', '/functions/deploy', { function: 'pinned', revision: 'one', downloadUrl: `${urls.hello}#sha256=${digests.hello}` });
    assert.equal(pinned.status, 202, JSON.stringify(pinned.body));
    await call(node.url, 'DELETE', '/functions/revisions/deployments', { function: 'pinned', revision: 'one' });
  });

  it('gives a deployment its envVariables as the guest environment, never the node\'s own', async () => {
    const r = await call(node.url, 'POST', '/functions/deploy', { function: 'env', revision: 'one', downloadUrl: urls.env, envVariables: { MESSAGE: 'hello from the node test', COUNT: 3 } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const text = await (await fetch(`${r.body.localUrl as string}/some/path`)).text();
    assert.match(text, /MESSAGE=hello from the node test/);
    assert.match(text, /COUNT=3/);
    assert.doesNotMatch(text, /CAPSULE_WORKER_ADMIN_TOKEN|node-secret|PATH=\//);
    await call(node.url, 'DELETE', '/functions/revisions/deployments', { function: 'env', revision: 'one' });
  });

  it('guards every route but the list with the worker token (401 without, 403 wrong) and answers bad JSON with 400', async () => {
    const routesToGuard: [string, string, Json][] = [
      ['POST', '/functions/deploy', { function: 'x', revision: 'y', downloadUrl: urls.hello }],
      ['DELETE', '/functions/revisions/deployments', { function: 'hello', revision: 'blue' }],
      ['DELETE', '/functions/revisions/downscale', { function: 'hello', revision: 'blue' }],
      ['POST', '/functions/set_default_revision', { function: 'hello', revision: 'blue' }],
      ['DELETE', '/functions/remove_default_revision', { function: 'hello' }],
      ['PUT', '/functions/revisions/module', { function: 'hello', revision: 'blue', downloadUrl: urls.echo }],
    ];
    for (const [method, path, body] of routesToGuard) {
      const none = await call(node.url, method, path, body, null);
      assert.deepEqual([none.status, none.body], [401, { code: 'KO', from: 'worker', message: 'Unauthorized' }], `${method} ${path}`);
      const wrong = await call(node.url, method, path, body, 'nope');
      assert.deepEqual([wrong.status, wrong.body], [403, { code: 'KO', from: 'worker', message: 'Forbidden' }], `${method} ${path}`);
    }
    assert.equal((await call(node.url, 'GET', '/functions/list', undefined, null)).status, 202);
    const bad = await call(node.url, 'POST', '/functions/deploy', '{"function": "hello",');
    assert.deepEqual([bad.status, bad.body.code], [400, 'ERROR_JSON_BINDING']);
    const partial = await call(node.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'blue' });
    assert.deepEqual([partial.status, partial.body.code], [400, 'ERROR_JSON_BINDING']);
    const badName = await call(node.url, 'POST', '/functions/deploy', { function: '../x', revision: 'blue', downloadUrl: urls.hello });
    assert.deepEqual([badName.status, badName.body.code], [400, 'ERROR_JSON_BINDING']);
    const badEnv = await call(node.url, 'POST', '/functions/deploy', { function: 'x', revision: 'blue', downloadUrl: urls.hello, envVariables: ['A=1'] });
    assert.deepEqual([badEnv.status, badEnv.body.code], [400, 'ERROR_JSON_BINDING']);
    assert.equal((await hello(`${proxy.url}/functions/hello/blue`)).status, 200, 'still serving');
  });

  it('reloads a revision under load with zero failed requests: in-flight calls finish on the old module, new ones get the new one', async () => {
    const d = await call(node.url, 'POST', '/functions/deploy', { function: 'swap', revision: 'live', downloadUrl: urls.hello });
    assert.equal(d.status, 202);
    const targets = [d.body.localUrl as string, `${proxy.url}/functions/swap/live`];
    const seen: { status: number; fixture: string | null }[] = [];
    let stop = false;
    const loop = async (url: string) => {
      while (!stop) {
        const r = await hello(url).catch((e: Error) => ({ status: 0, text: e.message, fixture: null }));
        seen.push({ status: r.status, fixture: r.fixture });
      }
    };
    const loops = [0, 1, 2, 3].map((i) => loop(targets[i % 2]!));
    await eventually(() => seen.length >= 20, 20_000);
    const r = await call(node.url, 'PUT', '/functions/revisions/module', { function: 'swap', revision: 'live', downloadUrl: urls.echo });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.deepEqual([r.body.code, r.body.generation, r.body.sha256], ['REVISION_MODULE_RELOADED', 2, digests.echo]);
    const at = seen.length;
    await eventually(() => seen.slice(at).filter((s) => s.fixture === 'gen2').length >= 20, 20_000);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(seen.filter((s) => s.status !== 200 && s.status !== 201), [], 'no failed request');
    assert.ok(seen.some((s) => s.status === 200) && seen.some((s) => s.status === 201));
    assert.deepEqual(seen.slice(at + 4).filter((s) => s.fixture !== 'gen2'), [], 'after the reply, only the new module answers');
    for (const u of targets) assert.equal((await hello(u)).fixture, 'gen2');

    // a bad module is refused and the current one keeps serving; a cached digest brings an old generation back
    const bad = await call(node.url, 'PUT', '/functions/revisions/module', { function: 'swap', revision: 'live', downloadUrl: `${plainUrl}/not-wasm.wasm` });
    assert.deepEqual([bad.status, bad.body.code], [422, 'ERROR_BAD_MODULE']);
    assert.equal((await hello(targets[0]!)).fixture, 'gen2');
    const back = await call(node.url, 'PUT', '/functions/revisions/module', { function: 'swap', revision: 'live', sha256: digests.hello });
    assert.deepEqual([back.status, back.body.generation], [202, 3]);
    assert.equal((await hello(targets[1]!)).text, '{"message":"Bob 42"}');
    const unknown = await call(node.url, 'PUT', '/functions/revisions/module', { function: 'swap', revision: 'live', sha256: 'a'.repeat(64) });
    assert.deepEqual([unknown.status, unknown.body.code], [404, 'MODULE_NOT_FOUND']);
    const l = (await list(node.url)).swap!.live!;
    assert.deepEqual([l.generation, l.sha256], [3, digests.hello]);
  });

  it('serves the gen-2 FaaS API on the same port (faas-cluster.md §1.1): start, call, drop', async () => {
    const headers = { 'content-type': 'application/json; charset=utf-8', CAPSULE_FAAS_TOKEN: 'faas-secret' };
    const start = await fetch(`${node.url}/functions/start`, { method: 'POST', headers, body: JSON.stringify({ name: 'g2', revision: 'one', args: ['', `-wasm=${modules.hello}`] }) });
    assert.deepEqual([start.status, await start.text()], [200, 'g2/one/0']);
    assert.equal((await hello(`${node.url}/functions/g2/one`)).text, '{"message":"Bob 42"}');
    assert.equal((await fetch(`${node.url}/functions/start`, { method: 'POST', body: '{}' })).status, 401, 'its own token');
    const drop = await fetch(`${node.url}/functions/drop/g2/one`, { method: 'DELETE', headers: { CAPSULE_FAAS_TOKEN: 'faas-secret' } });
    assert.deepEqual([drop.status, await drop.text()], [200, 'g2/one/0']);
    assert.equal((await call(node.url, 'GET', '/functions/list', undefined, null)).status, 202, 'the worker list is still the worker\'s');
  });

  it('serves per-revision metrics with cold-start phases, health and readiness', async () => {
    const text = await (await fetch(`${node.url}/capsule/metrics`)).text();
    assert.match(text, /capsule_revision_requests_total\{fn="hello",rev="blue",status="200"\} [1-9]/);
    assert.match(text, /capsule_revision_request_duration_seconds_count\{fn="hello",rev="blue"\} [1-9]/);
    assert.match(text, /capsule_inflight\{fn="hello",rev="blue"\} 0/);
    assert.match(text, /capsule_revision_replicas\{fn="hello",rev="blue"\} 1/);
    for (const phase of ['fetch', 'compile', 'init']) assert.match(text, new RegExp(`capsule_cold_start_seconds_count\\{fn="hello",rev="blue",phase="${phase}"\\} 1`));
    assert.match(text, /capsule_revision_requests_total\{fn="swap",rev="live",status="201"\} [1-9]/);
    assert.equal((await fetch(`${node.url}/capsule/health`)).status, 200);
    assert.equal((await fetch(`${node.url}/capsule/ready`)).status, 200);
  });
});

describe('capsule node --process', { skip, concurrency: false }, () => {
  let files: string;
  let registry: Server;
  let proxy: Server;
  let node: Server;
  let helloUrl: string;
  let echoUrl: string;

  before(async () => {
    files = mkdtempSync(join(tmpdir(), 'capsule-node-process-'));
    registry = await startServer(['registry', '--http-port=0', `--files=${files}`]);
    const form = new FormData();
    form.append('file', new Blob([readFileSync(modules.hello)]), 'hello.wasm');
    assert.equal((await fetch(`${registry.url}/upload/k33g/hello/0.0.0`, { method: 'POST', body: form })).status, 200);
    helloUrl = `${registry.url}/k33g/hello/0.0.0/hello.wasm`;
    const echo = new FormData();
    echo.append('file', new Blob([readFileSync(modules.echo)]), 'echo.wasm');
    assert.equal((await fetch(`${registry.url}/upload/k33g/echo/0.0.0`, { method: 'POST', body: echo })).status, 200);
    echoUrl = `${registry.url}/k33g/echo/0.0.0/echo.wasm`;
    proxy = await startServer(['proxy', '--http-port=0']);
    node = await startServer(['node', '--process', '--http-port=0', '--http-port-counter=0', '--worker-domain=127.0.0.1', `--reverse-proxy=${proxy.url}`]);
  });

  after(async () => {
    await node?.stop();
    await proxy?.stop();
    await registry?.stop();
    rmSync(files, { recursive: true, force: true });
  });

  it('runs one child process per replica; a killed child is marked Failed and leaves the proxy', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await call(node.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'blue', downloadUrl: helloUrl }, null);
      assert.equal(r.status, 202, JSON.stringify(r.body));
    }
    const mods = Object.entries((await list(node.url)).hello!.blue!.wasmModules);
    assert.equal(mods.length, 2);
    for (const [, m] of mods) assert.equal((await hello(m.localUrl)).text, '{"message":"Bob 42"}');
    const [victimPid, victim] = mods[0]!;
    const survivor = mods[1]![1].localUrl;
    assert.notEqual(Number(victimPid), process.pid);
    process.kill(Number(victimPid), 'SIGKILL');
    await eventually(async () => (await list(node.url)).hello!.blue!.wasmModules[victimPid]!.status === 'Failed', 10_000);
    assert.equal((await list(node.url)).hello!.blue!.wasmModules[victimPid]!.exitCode, 'SIGKILL');
    await eventually(async () => !(await routes(proxy)).hello!.blue!.includes(victim.localUrl), 10_000);
    assert.deepEqual((await routes(proxy)).hello!.blue, [survivor]);
    for (let i = 0; i < 3; i++) assert.equal((await hello(`${proxy.url}/functions/hello/blue`)).status, 200);
    // the failed replica does not count: one live replica cannot be downscaled
    const down = await call(node.url, 'DELETE', '/functions/revisions/downscale', { function: 'hello', revision: 'blue' }, null);
    assert.equal(down.body.code, 'WASM_MODULE_DEPLOYMENT_NOT_REMOVED');
    const un = await call(node.url, 'DELETE', '/functions/revisions/deployments', { function: 'hello', revision: 'blue' }, null);
    assert.equal(un.status, 202);
    assert.ok(await refused(survivor), 'undeploy stops the child');
  });

  it('reloads a revision by replacing its children, through the proxy with zero failed requests', async () => {
    const d = await call(node.url, 'POST', '/functions/deploy', { function: 'swap', revision: 'live', downloadUrl: helloUrl }, null);
    assert.equal(d.status, 202, JSON.stringify(d.body));
    const [oldPid] = Object.keys((await list(node.url)).swap!.live!.wasmModules);
    const seen: { status: number; fixture: string | null }[] = [];
    let stop = false;
    const loop = async () => {
      while (!stop) {
        const r = await hello(`${proxy.url}/functions/swap/live`).catch((e: Error) => ({ status: 0, text: e.message, fixture: null }));
        seen.push({ status: r.status, fixture: r.fixture });
      }
    };
    const loops = [loop(), loop(), loop()];
    await eventually(() => seen.length >= 20, 20_000);
    const r = await call(node.url, 'PUT', '/functions/revisions/module', { function: 'swap', revision: 'live', downloadUrl: echoUrl }, null);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const at = seen.length;
    await eventually(() => seen.slice(at).filter((x) => x.fixture === 'gen2').length >= 20, 20_000);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(seen.filter((x) => x.status !== 200 && x.status !== 201), [], 'no failed request');
    const live = (await list(node.url)).swap!.live!;
    assert.equal(live.generation, 2);
    const pids = Object.entries(live.wasmModules).filter(([, m]) => m.status === 'Started').map(([pid]) => pid);
    assert.equal(pids.length, 1);
    assert.notEqual(pids[0], oldPid);
    // scaling with another module moves the existing child to it too: never two modules in one revision
    const again = await call(node.url, 'POST', '/functions/deploy', { function: 'swap', revision: 'live', downloadUrl: helloUrl }, null);
    assert.equal(again.status, 202);
    const mods = Object.values((await list(node.url)).swap!.live!.wasmModules).filter((m) => m.status === 'Started');
    assert.equal(mods.length, 2);
    for (const m of mods) assert.equal((await hello(m.localUrl)).text, '{"message":"Bob 42"}');
    assert.equal((await list(node.url)).swap!.live!.generation, 3);
    await call(node.url, 'DELETE', '/functions/revisions/deployments', { function: 'swap', revision: 'live' }, null);
  });
});

describe('capsule-worker (Go bin and flags)', { skip }, () => {
  it('starts with -httpPort/-httpPortCounter/-workerDomain, deploys without a reverse proxy and serves the deployment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-worker-go-'));
    const files = createServer((req, res) => {
      if (req.url === '/hello.wasm') res.end(readFileSync(modules.hello));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(files.address() as { port: number }).port}`;
    const worker = await startServer(['-httpPort=0', '-httpPortCounter=0', '-workerDomain=127.0.0.1', `-modulesDir=${dir}`], { bin: join(root, 'bin/capsule-worker.js') });
    try {
      const r = await call(worker.url, 'POST', '/functions/deploy', { function: 'hello', revision: 'default', downloadUrl: `${base}/hello.wasm` }, null);
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.equal(r.body.remoteUrl, '/functions/hello/default');
      assert.equal((await hello(r.body.localUrl as string)).text, '{"message":"Bob 42"}');
      assert.match(worker.logs(), /no reverse proxy/);
    } finally {
      await worker.stop();
      await new Promise((r) => files.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('startNode beside startProxy in one process', { skip }, () => {
  it('registers deployments straight into the proxy\'s route table: scale, default, downscale, undeploy', async () => {
    const { startProxy } = await import('../src/faas/proxy/index.ts');
    const { startNode, tableProxyRegistration } = await import('../src/faas/node/index.ts');
    const { createLogger } = await import('../src/observability/logger.ts');
    const logger = createLogger('error', false);
    const files = createServer((req, res) => {
      if (req.url === '/hello.wasm') res.end(readFileSync(modules.hello));
      else if (req.url === '/echo.wasm') res.end(readFileSync(modules.echo));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(files.address() as { port: number }).port}`;
    const proxy = await startProxy({ logger, port: 0 });
    const node = await startNode({ logger, port: 0, portCounter: 0, workerDomain: '127.0.0.1', workers: 2, proxy: tableProxyRegistration(proxy.table), proxyUrl: proxy.url });
    try {
      for (const [revision, file] of [['blue', 'hello'], ['blue', 'hello'], ['green', 'echo']]) {
        const r = await call(node.url, 'POST', '/functions/deploy', { function: 'hi', revision, downloadUrl: `${base}/${file}.wasm` }, null);
        assert.equal(r.status, 202, JSON.stringify(r.body));
      }
      const locals = Object.values((await list(node.url)).hi!.blue!.wasmModules).map((m) => m.localUrl);
      assert.deepEqual(proxy.table.urls('hi', 'blue'), locals);
      assert.equal((await hello(`${proxy.url}/functions/hi/green`)).fixture, 'gen2');
      assert.equal((await call(node.url, 'POST', '/functions/set_default_revision', { function: 'hi', revision: 'green' }, null)).status, 202);
      assert.equal((await hello(`${proxy.url}/functions/hi`)).fixture, 'gen2');
      assert.equal((await call(node.url, 'DELETE', '/functions/remove_default_revision', { function: 'hi' }, null)).status, 202);
      assert.equal((await fetch(`${proxy.url}/functions/hi`)).status, 404);
      const down = await call(node.url, 'DELETE', '/functions/revisions/downscale', { function: 'hi', revision: 'blue' }, null);
      assert.equal(down.body.code, 'WASM_MODULE_DEPLOYMENT_REMOVED');
      assert.equal(proxy.table.urls('hi', 'blue')!.length, 1);
      assert.equal((await call(node.url, 'DELETE', '/functions/revisions/deployments', { function: 'hi', revision: 'green' }, null)).status, 202);
      assert.equal(proxy.table.urls('hi', 'green'), null);
      assert.equal((await hello(`${proxy.url}/functions/hi/blue`)).text, '{"message":"Bob 42"}');

      // Go scripts deploy a revision named `default`: /functions/<fn> leads to it, and it is the default
      const d = await call(node.url, 'POST', '/functions/deploy', { function: 'go', revision: 'default', downloadUrl: `${base}/echo.wasm` }, null);
      assert.equal(d.status, 202);
      assert.equal((await hello(`${proxy.url}/functions/go`)).fixture, 'gen2');
      assert.equal((await list(node.url)).go!.default!.isDefaultRevision, 'true');
      const self = await call(node.url, 'POST', '/functions/set_default_revision', { function: 'go', revision: 'default' }, null);
      assert.deepEqual([self.status, self.body.code], [202, 'DEFAULT_REVISION_REGISTERED']);
      assert.equal((await hello(`${proxy.url}/functions/go`)).fixture, 'gen2');
    } finally {
      await node.close();
      await proxy.close();
      await new Promise((r) => files.close(r));
    }
  });

  it('sends CAPSULE_REVERSE_PROXY_ADMIN_TOKEN to the proxy; a refused registration is a warning of the deploy reply and the deployment stays', async () => {
    const { startProxy } = await import('../src/faas/proxy/index.ts');
    const { startNode, httpProxyRegistration } = await import('../src/faas/node/index.ts');
    const { createLogger } = await import('../src/observability/logger.ts');
    const logger = createLogger('error', false);
    const files = createServer((_req, res) => res.end(readFileSync(modules.hello)));
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    const module = `http://127.0.0.1:${(files.address() as { port: number }).port}/hello.wasm`;
    const proxy = await startProxy({ logger, port: 0, adminToken: 'right' });
    const nodes = await Promise.all(['wrong', 'right'].map((token) => startNode({ logger, port: 0, portCounter: 0, workerDomain: '127.0.0.1', workers: 1, proxy: httpProxyRegistration(proxy.url, token), proxyUrl: proxy.url })));
    try {
      const refusedDeploy = await call(nodes[0]!.url, 'POST', '/functions/deploy', { function: 'tok', revision: 'a', downloadUrl: module }, null);
      assert.equal(refusedDeploy.status, 202);
      assert.match(String(refusedDeploy.body.warning), /not registered in the reverse proxy: .*HTTP 403/);
      assert.equal((await hello(refusedDeploy.body.localUrl as string)).status, 200, 'the deployment serves');
      assert.equal(proxy.table.urls('tok', 'a'), null);
      const ok = await call(nodes[1]!.url, 'POST', '/functions/deploy', { function: 'tok', revision: 'a', downloadUrl: module }, null);
      assert.equal(ok.body.warning, undefined);
      assert.deepEqual(proxy.table.urls('tok', 'a'), [ok.body.localUrl]);
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
      await proxy.close();
      await new Promise((r) => files.close(r));
    }
  });
});
