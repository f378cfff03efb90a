/**
 * One replica rule for a lattice's buckets (issue 13, faas-cluster.md §1.2): every Capsule process
 * asks for min(3, servers the cluster announces) whatever `--cluster` URLs it was given (or its
 * `--replicas`), and a bucket that exists is opened as it is, never re-created with other settings.
 * Three real clustered JetStream `nats-server` processes and real Capsule processes.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { findBinary, freePort, runCapsule, startServer, type Server } from './helpers.ts';
import { startNatsCluster, type NatsCluster } from './e2e/cluster.ts';
import { clusterReplicas } from '../src/faas/cluster/state.ts';

const natsServer = findBinary('nats-server');

describe('bucket replicas: one rule, existing buckets opened as they are', { skip: natsServer ? false : 'nats-server is not installed (scripts/setup.sh installs it)', concurrency: false }, () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let dir = '';
  const started: Server[] = [];
  const start = async (args: string[]) => {
    const s = await startServer([...args, '--http-port=0', '--log-level=warn']);
    started.push(s);
    return s;
  };
  const node = (lattice: string, urls: string, id: string, extra: string[] = []) => start(['node', '--http-port-counter=0', `--cluster=${urls}`, `--lattice=${lattice}`, `--node-id=${id}`, `--cache-dir=${join(dir, id)}`, '--workers=1', ...extra]);
  const gateway = (lattice: string, urls: string, extra: string[] = []) => start(['proxy', '--backend=nats', `--cluster=${urls}`, `--lattice=${lattice}`, ...extra]);
  const replicasOf = async (stream: string) => (await (await jetstreamManager(nc)).streams.info(stream)).config.num_replicas;

  before(async () => {
    cluster = await startNatsCluster(natsServer!, 3);
    nc = await connect({ servers: cluster.servers[1]!.url });
    dir = mkdtempSync(join(tmpdir(), 'capsule-cluster-replicas-'));
  });
  after(async () => {
    await Promise.all(started.map((s) => s.stop()));
    await nc?.close();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('asks for 3 replicas from a connection given one URL of a 3-server cluster, or what --replicas says', async () => {
    assert.equal(await clusterReplicas(nc), 3, 'one URL given, three servers announced');
    assert.equal(await clusterReplicas(nc, 2), 2);
  });

  it('a node given one URL and a gateway given three create and share R3 buckets', async () => {
    await node('one', cluster.servers[0]!.url, 'solo');
    for (const kind of ['DEPLOY', 'NODES', 'PROCS', 'ROUTES']) assert.equal(await replicasOf(`KV_CAPSULE_one_${kind}`), 3, kind);
    assert.equal(await replicasOf('OBJ_CAPSULE_one_MODULES'), 3);
    const g = await gateway('one', cluster.urls);
    const r = await fetch(`${g.url}/memory/functions/registration`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ function: 'f', revision: 'r', url: 'nats:' }) });
    assert.equal(r.status, 202);
    assert.equal(await replicasOf('KV_CAPSULE_one_ROUTES'), 3);
  });

  it('opens a bucket created earlier with other settings as it is (no error, nothing re-created)', async () => {
    await new Kvm(nc).create('CAPSULE_pre_ROUTES', { replicas: 1, history: 2 });
    const g = await gateway('pre', cluster.urls);
    const r = await fetch(`${g.url}/memory/functions/registration`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ function: 'f', revision: 'r', url: 'http://127.0.0.1:1' }) });
    assert.equal(r.status, 202);
    const info = await (await jetstreamManager(nc)).streams.info('KV_CAPSULE_pre_ROUTES');
    assert.equal(info.config.num_replicas, 1);
    assert.equal(info.config.max_msgs_per_subject, 2);
    assert.equal(info.state.messages, 1, 'the registration landed in the existing bucket');
  });

  it('two processes creating one lattice at once with different replica counts both start, on one bucket', async () => {
    const [a] = await Promise.all([node('race', cluster.urls, 'racer', ['--replicas=1']), gateway('race', cluster.urls)]);
    assert.ok(a.url);
    assert.ok([1, 3].includes(await replicasOf('KV_CAPSULE_race_ROUTES')));
    const bad = await runCapsule(['proxy', '--backend=nats', `--cluster=${cluster.urls}`, '--replicas=9']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--replicas/);
  });
});

describe('bucket replicas on servers listening on every interface', { skip: natsServer ? false : 'nats-server is not installed (scripts/setup.sh installs it)' }, () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let dir = '';
  let node: Server | undefined;

  before(async () => {
    cluster = await startNatsCluster(natsServer!, 2, '0.0.0.0');
    nc = await connect({ servers: cluster.servers[0]!.url });
    dir = mkdtempSync(join(tmpdir(), 'capsule-cluster-replicas-any-'));
  });
  after(async () => {
    await node?.stop();
    await nc?.close();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('counts two servers, not the URLs they announce, and a node starts on R2 buckets', async () => {
    // each server announces one URL per address of the machine (IPv4 and IPv6): often more than 2
    assert.equal(await clusterReplicas(nc), 2, `announced: ${JSON.stringify(nc.info?.connect_urls)}`);
    node = await startServer(['node', '--http-port=0', '--http-port-counter=0', `--cluster=${cluster.servers[1]!.url}`, '--lattice=any', '--node-id=any1', `--cache-dir=${join(dir, 'n')}`, '--workers=1', '--log-level=warn']);
    assert.ok(node.url);
    for (const kind of ['DEPLOY', 'NODES', 'PROCS', 'ROUTES']) {
      assert.equal((await (await jetstreamManager(nc)).streams.info(`KV_CAPSULE_any_${kind}`)).config.num_replicas, 2, kind);
    }
  });

  it('does not count an announced address it cannot reach or read, nor fail on it', async () => {
    const hostPort = (u: string) => u.replace(/^nats:\/\//, '');
    const announced = [...cluster.servers.map((s) => hostPort(s.url)), `127.0.0.1:${await freePort()}`, 'not an address'];
    const fake = { info: { ...nc.info!, connect_urls: announced } } as unknown as NatsConnection;
    assert.equal(await clusterReplicas(fake), 2, JSON.stringify(announced));
  });
});
