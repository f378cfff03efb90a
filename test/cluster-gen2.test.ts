/**
 * The gen-2 FaaS routes of cluster nodes (issue 13 point 4, faas-cluster.md §1.2–§1.3): `capsctl`
 * against node a writes desired state (DEPLOY, ROUTES, PROCS) instead of starting a revision on
 * node a only, so the revision is called through either gateway and either node, listed by
 * node b, and dropped through node b everywhere. One real JetStream `nats-server` (no quorum is
 * needed here), two real nodes, two real gateways; spreads are thresholds (queue groups are random).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { eventually, example, findBinary, missing, root, runCapsule, startServer, type Server } from './helpers.ts';
import { startNatsCluster, waitHealthy, type NatsCluster } from './e2e/cluster.ts';
import { call, failures, perNode, type Outcome } from './e2e/load.ts';

const natsServer = findBinary('nats-server');
const hello = example('hello-you');
const skip = !natsServer ? 'nats-server is not installed (scripts/setup.sh installs it)' : missing(hello) || false;
const TOKEN = 'gen2-cluster-token';
const capsctlBin = join(root, 'bin/capsctl.js');

const capsctl = (node: Server, args: string[]) => runCapsule(args, { bin: capsctlBin, env: { CAPSULE_MAIN_PROCESS_URL: node.url, CAPSULE_FAAS_TOKEN: TOKEN } });
const admin = (node: Server, method: string, path: string, body?: unknown) => fetch(`${node.url}${path}`, {
  method, headers: { 'content-type': 'application/json', CAPSULE_FAAS_TOKEN: TOKEN }, body: body === undefined ? undefined : JSON.stringify(body),
});
const helloInit = (): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob', age: 42 }) });

interface Listed { index: number; functionName: string; description: string; functionRevision: string; formerFunctionRevision: string; httpPort: string; statusDescription: string; pid: number; args: string[]; env?: string[] }

async function processes(node: Server): Promise<Record<string, Listed>> {
  const res = await admin(node, 'GET', '/functions/processes');
  assert.equal(res.status, 200);
  return await res.json() as Record<string, Listed>;
}

/** Whether a gateway (its own watch of ROUTES) routes fn/rev. */
async function routes(gateway: Server, fn: string, rev: string): Promise<boolean> {
  const list = await (await fetch(`${gateway.url}/memory/functions/list`)).json() as Record<string, Record<string, string[]>>;
  return list[fn]?.[rev] !== undefined;
}

describe('gen-2 FaaS routes on cluster nodes (capsctl)', { skip, concurrency: false }, () => {
  let cluster: NatsCluster;
  let dir = '';
  const nodes: Record<string, Server> = {};
  const gateways: Server[] = [];

  before(async () => {
    cluster = await startNatsCluster(natsServer!, 1);
    dir = mkdtempSync(join(tmpdir(), 'capsule-cluster-gen2-'));
    await Promise.all(['a', 'b'].map(async (id) => {
      nodes[id] = await startServer(['node', '--http-port=0', '--http-port-counter=0', '--worker-domain=127.0.0.1', `--cluster=${cluster.urls}`, `--node-id=${id}`,
        `--cache-dir=${join(dir, id)}`, '--workers=1', '--log-level=warn'], { env: { CAPSULE_FAAS_TOKEN: TOKEN } });
    }));
    gateways.push(...await Promise.all([1, 2].map(() => startServer(['proxy', '--http-port=0', '--backend=nats', `--cluster=${cluster.urls}`, '--timeout=6s', '--log-level=warn']))));
  });

  after(async () => {
    await Promise.all([...gateways, ...Object.values(nodes)].map((s) => s?.stop()));
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('capsctl start on node a: served through gateway 2 by both nodes, through node b\'s call route, listed by node b with Go\'s record shape', async () => {
    const started = await capsctl(nodes.a!, ['--cmd=start', '--name=hello', '--revision=green', '--description=hello green', `--wasm=${hello}`, '--stopAfter=5', '--env=["MESSAGE=hi"]']);
    assert.equal(started.code, 0, started.stdout + started.stderr);
    assert.match(started.stdout, /✅ hello\/green is started/);
    // read-your-writes: the node that took the start lists it at once
    const own = await processes(nodes.a!);
    assert.equal(own['hello/green/0']?.statusDescription, 'Started');
    await eventually(() => routes(gateways[1]!, 'hello', 'green'), 10_000);
    const out: Outcome[] = [];
    // both nodes serve a revision started through node a (node b subscribes when its own DEPLOY watch sees it)
    await eventually(async () => {
      out.push(await call(`${gateways[1]!.url}/functions/hello/green`, helloInit()));
      const per = perNode(out);
      return (per.a ?? 0) > 0 && (per.b ?? 0) > 0;
    }, 10_000);
    assert.deepEqual(failures(out), []);
    assert.ok(out.every((o) => /Bob/.test(o.text)));
    for (const path of ['/functions/hello/green', '/functions/hello/green/0']) {
      const viaB = await call(`${nodes.b!.url}${path}`, helloInit());
      assert.equal(viaB.status, 200, `${path}: ${viaB.text}`);
      assert.match(viaB.text, /Bob/);
    }
    assert.equal((await call(`${nodes.b!.url}/functions/hello/green/7`, helloInit())).status, 404, 'no record 7');
    await eventually(async () => (await processes(nodes.b!))['hello/green/0'] !== undefined, 10_000);
    const listed = (await processes(nodes.b!))['hello/green/0']!;
    assert.equal(listed.functionName, 'hello');
    assert.equal(listed.description, 'hello green');
    assert.equal(listed.statusDescription, 'Started');
    assert.ok(listed.pid > 4_194_304, `a synthetic pid above any Linux pid: ${listed.pid}`);
    assert.match(listed.args.at(-1)!, new RegExp(`^-httpPort=${listed.httpPort}$`));
    assert.equal(listed.env, undefined, 'env is never listed');
    // -stopAfter became the revision's idleSeconds in DEPLOY, seen through the worker API of node b
    const deployed = await (await fetch(`${nodes.b!.url}/functions/list`)).json() as Record<string, Record<string, { idleSeconds: number }>>;
    assert.equal(deployed.hello?.green?.idleSeconds, 5);
  });

  it('a second start gets the next index; duplicate through node b is served through gateway 1; a start that names no readable module is refused', async () => {
    const res = await admin(nodes.b!, 'POST', '/functions/start', { name: 'hello', revision: 'green', description: '', path: '', args: ['', `-wasm=${hello}`], env: [] });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hello/green/1');
    const dup = await capsctl(nodes.b!, ['-cmd=duplicate', '-name=hello', '-revision=green', '-newRevision=saved_green']);
    assert.equal(dup.code, 0, dup.stdout + dup.stderr);
    await eventually(() => routes(gateways[0]!, 'hello', 'saved_green'), 10_000);
    const o = await call(`${gateways[0]!.url}/functions/hello/saved_green`, helloInit());
    assert.equal(o.status, 200, o.text);
    assert.equal((await processes(nodes.b!))['hello/saved_green/0']?.formerFunctionRevision, 'green');
    const bad = await admin(nodes.a!, 'POST', '/functions/start', { name: 'nope', revision: 'r', args: ['', `-wasm=${join(dir, 'missing.wasm')}`] });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json() as { code: string }).code, 'ERROR_MODULE_READ');
    assert.equal(await routes(gateways[0]!, 'nope', 'r'), false, 'nothing routed');
    const wrong = await admin(nodes.a!, 'POST', '/functions/start', { name: 'nope', revision: 'r', args: ['', `-wasm=${hello}`, `-digest=${'0'.repeat(64)}`] });
    assert.equal(wrong.status, 422);
    const why = await wrong.json() as { code: string; message: string };
    assert.equal(why.code, 'ERROR_DIGEST_MISMATCH');
    assert.match(why.message, new RegExp(`digest mismatch: expected sha256:${'0'.repeat(64)}, got sha256:[0-9a-f]{64}`));
    const badDigest = await admin(nodes.a!, 'POST', '/functions/start', { name: 'nope', revision: 'r', args: ['', `-wasm=${join(dir, 'missing.wasm')}`, '-digest=xyz'] });
    assert.equal(badDigest.status, 400);
    assert.equal((await badDigest.json() as { code: string }).code, 'ERROR_BAD_DIGEST', 'the digest is checked before the file is read');
  });

  it('capsctl drop through node b: the record leaves PROCS; the last replica takes the revision out of every gateway and node', async () => {
    const first = await capsctl(nodes.b!, ['--cmd=drop', '--name=hello', '--revision=green']);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal((await processes(nodes.b!))['hello/green/0'], undefined);
    // one replica (index 1) is left: still served
    assert.equal((await call(`${gateways[1]!.url}/functions/hello/green`, helloInit())).status, 200);
    const last = await admin(nodes.b!, 'DELETE', '/functions/drop/hello/green/1');
    assert.equal(last.status, 200);
    assert.equal(await last.text(), 'hello/green/1');
    for (const g of gateways) await eventually(async () => !(await routes(g, 'hello', 'green')), 10_000);
    await eventually(async () => (await processes(nodes.a!))['hello/green/1'] === undefined, 10_000);
    const gone = await call(`${gateways[0]!.url}/functions/hello/green`, helloInit());
    assert.equal(gone.status, 404, gone.text);
    for (const n of Object.values(nodes)) {
      await eventually(async () => (await call(`${n.url}/functions/hello/green`, helloInit())).status === 404, 10_000);
    }
    const again = await admin(nodes.a!, 'DELETE', '/functions/drop/hello/green/1');
    assert.equal(again.status, 500);
    assert.equal(await again.text(), 'Capsule process not found');
    // the duplicate lives on
    assert.equal((await call(`${gateways[1]!.url}/functions/hello/saved_green`, helloInit())).status, 200);
  });

  it('a start whose PROCS write fails leaves DEPLOY as it was: no replica without a record, a new revision not routed', async () => {
    const nc = await connect({ servers: cluster.servers[0]!.url });
    const jsm = await jetstreamManager(nc);
    const stream = 'KV_CAPSULE_default_PROCS';
    const replicasOf = async (rev: string) => {
      const list = await (await fetch(`${nodes.a!.url}/functions/list`)).json() as Record<string, Record<string, { wasmModules: object; generation: number }>>;
      const r = list.undo?.[rev];
      return r && { replicas: Object.keys(r.wasmModules).length, generation: r.generation };
    };
    const start = (description: string, env: string[] = []) => admin(nodes.a!, 'POST', '/functions/start', { name: 'undo', revision: 'r', description, args: ['', `-wasm=${hello}`], env });
    try {
      assert.equal((await start('small')).status, 200);
      assert.deepEqual(await replicasOf('r'), { replicas: 1, generation: 1 });
      // PROCS refuses a record this big (a real JetStream refusal of the second write of the start)
      const config = (await jsm.streams.info(stream)).config;
      await jsm.streams.update(stream, { ...config, max_msg_size: 1024 });
      const big = 'x'.repeat(4096);
      const failed = await start(big, ['OTHER=env']);
      assert.notEqual(failed.status, 200, await failed.text());
      assert.deepEqual(await replicasOf('r'), { replicas: 1, generation: 1 }, 'DEPLOY back to the record before (replicas and generation)');
      const fresh = await admin(nodes.a!, 'POST', '/functions/start', { name: 'undo', revision: 'fresh', description: big, args: ['', `-wasm=${hello}`] });
      assert.notEqual(fresh.status, 200);
      assert.equal(await replicasOf('fresh'), undefined, 'a new revision leaves DEPLOY');
      const routed = await (await new Kvm(nc).open('CAPSULE_default_ROUTES')).get('fn.undo');
      assert.doesNotMatch(routed?.string() ?? '', /fresh/, 'and ROUTES');
      await jsm.streams.update(stream, { ...config, max_msg_size: -1 });
      assert.equal((await start('small again')).status, 200);
      assert.deepEqual(await replicasOf('r'), { replicas: 2, generation: 1 });
      assert.equal((await admin(nodes.a!, 'DELETE', '/functions/drop/undo/r/1')).status, 200);
      assert.equal((await admin(nodes.a!, 'DELETE', '/functions/drop/undo/r/0')).status, 200);
    } finally {
      await nc.close();
    }
  });

  it('without JetStream a start answers 503 STATE_UNAVAILABLE JSON; once it is back, starts work again without a restart', async () => {
    const server = cluster.servers[0]!;
    await server.kill();
    try {
      const down = await admin(nodes.a!, 'POST', '/functions/start', { name: 'later', revision: 'r', args: ['', `-wasm=${hello}`] });
      assert.equal(down.status, 503);
      assert.equal((await down.json() as { code: string }).code, 'STATE_UNAVAILABLE');
    } finally {
      await server.start();
      await waitHealthy(server.monitor, 30_000);
    }
    await eventually(async () => (await admin(nodes.a!, 'POST', '/functions/start', { name: 'later', revision: 'r', args: ['', `-wasm=${hello}`] })).status === 200, 30_000);
    await eventually(() => routes(gateways[1]!, 'later', 'r'), 15_000);
    const o = await call(`${gateways[1]!.url}/functions/later/r`, helloInit());
    assert.equal(o.status, 200, o.text);
  });

  it('capsule-http --faas --cluster (Go\'s gen-2 main process) joins as a node: capsctl against it starts a revision both gateways route', async () => {
    const main = await startServer(['--faas=true', '--httpPort=0', `--cluster=${cluster.urls}`, '--node-id=main', `--cache-dir=${join(dir, 'main')}`, '--workers=1', '--log-level=warn'],
      { bin: join(root, 'bin/capsule-http.js'), env: { CAPSULE_FAAS_TOKEN: TOKEN } });
    try {
      const started = await capsctl(main, ['--cmd=start', '--name=viamain', '--revision=r1', `--wasm=${hello}`]);
      assert.equal(started.code, 0, started.stdout + started.stderr);
      await eventually(() => routes(gateways[0]!, 'viamain', 'r1'), 10_000);
      const out: Outcome[] = [];
      // served by the other nodes too, not only by the one that took the start
      await eventually(async () => {
        out.push(await call(`${gateways[0]!.url}/functions/viamain/r1`, helloInit()));
        return Object.keys(perNode(out)).some((n) => n !== 'main');
      }, 10_000);
      assert.deepEqual(failures(out), []);
      const refused = await runCapsule(['--faas=true', '--httpPort=0', `--cluster=${cluster.urls}`, `--wasm=${hello}`], { bin: join(root, 'bin/capsule-http.js') });
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /--cluster cannot be used with --wasm/);
    } finally {
      await main.stop();
    }
  });
});
