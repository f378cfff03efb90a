/**
 * `capsule up` (issue 13 point 6, faas-cluster.md §1.1) as a user runs it: a real `nats-server -js`
 * started by Capsule, its URL on the ready line, JetStream usable by a client, the store kept
 * across runs with --store-dir, everything stopped by SIGTERM; `--all` adds a gateway, a registry
 * and a node in the same process, through which a module is deployed and called; a missing
 * `nats-server` is a usage error naming the package and the download page.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { example, findBinary, missing, runCapsule, startUntil, type Started } from './helpers.ts';

const natsServer = findBinary('nats-server');
const hello = example('hello-you');
const skip = !natsServer ? 'nats-server is not installed (scripts/setup.sh installs it)' : missing(hello);

/** Starts `capsule up <args>` and returns it with the URL of its ready line. */
async function up(args: string[]): Promise<Started & { url: string }> {
  const s = await startUntil(['up', '--nats-port=0', `--nats-server=${natsServer}`, '--log-level=warn', ...args], /capsule listening on (\S+)/);
  return { ...s, url: s.ready[1]! };
}

/** True when a NATS client can connect to `url`. */
async function reachable(url: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, reconnect: false, timeout: 2000 });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}

describe('capsule up', { skip, concurrency: false }, () => {
  let dir = '';
  before(() => void (dir = mkdtempSync(join(tmpdir(), 'capsule-up-test-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('starts nats-server with JetStream, prints the --cluster URL, keeps the store across runs and stops the server on SIGTERM', async () => {
    const store = join(dir, 'store');
    const first = await up([`--store-dir=${store}`]);
    assert.match(first.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
    const nc = await connect({ servers: first.url });
    const kv = await new Kvm(nc).create('UP_TEST', { replicas: 1 });
    await kv.put('greeting', 'hello');
    await nc.close();
    assert.equal(await first.stop(), 0);
    assert.equal(await reachable(first.url), false, 'the server stopped with capsule up');
    const second = await up([`--store-dir=${store}`]);
    try {
      const nc2 = await connect({ servers: second.url });
      const again = await new Kvm(nc2).open('UP_TEST');
      assert.equal((await again.get('greeting'))?.string(), 'hello', 'JetStream data survives a restart with the same --store-dir');
      await nc2.close();
    } finally {
      assert.equal(await second.stop(), 0);
    }
  });

  it('--all runs a gateway, a registry and a node against it: a deploy through the node answers through the gateway', async () => {
    const files: HttpServer = createServer((_req, res) => void res.writeHead(200, { 'content-type': 'application/wasm' }).end(readFileSync(hello)));
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', () => r()));
    const s = await up(['--temp', '--all', '--http-port=0', '--registry-port=0', '--node-port=0', '--http-port-counter=0', '--workers=1', `--cache-dir=${join(dir, 'cache')}`, '--log-level=info']);
    try {
      assert.match(s.url, /^http:\/\//, 'the ready line names the gateway');
      const names = (label: string) => new RegExp(`^${label}\\s+(\\S+)`, 'm').exec(s.logs())?.[1];
      const node = names('node');
      const registry = names('registry');
      const cluster = /--cluster (\S+)/.exec(s.logs())?.[1];
      assert.ok(node && registry && cluster, s.logs());
      const port = (files.address() as { port: number }).port;
      const deploy = await fetch(`${node}/functions/deploy`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ function: 'hello', revision: 'blue', downloadUrl: `http://127.0.0.1:${port}/hello.wasm` }) });
      assert.equal(deploy.status, 202, await deploy.clone().text());
      const call = await fetch(`${s.url}/functions/hello/blue`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob', age: 42 }) });
      assert.equal(call.status, 200);
      assert.match(await call.text(), /Bob/);
      assert.ok(call.headers.get('x-capsule-node'), 'served over NATS by the node');
      assert.equal((await fetch(`${registry}/modules`)).status, 200);
      assert.equal(await s.stop(), 0);
      assert.equal(await reachable(cluster), false);
    } finally {
      await s.stop();
      files.close();
    }
  });

  it('says what to do when the NATS port is taken', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as { port: number }).port;
    try {
      const r = await runCapsule(['up', '--temp', `--nats-port=${port}`, `--nats-server=${natsServer}`]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`port ${port} is taken`));
      assert.match(r.stderr, /--nats-port 0/);
    } finally {
      holder.close();
    }
  });

  it('names the package and the download page when nats-server is not there', async () => {
    const r = await runCapsule(['up', '--nats-server=/nonexistent/nats-server']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /"nats-server"/);
    assert.match(r.stderr, /apt install nats-server/);
    assert.match(r.stderr, /https:\/\/nats\.io\/download/);
  });
});
