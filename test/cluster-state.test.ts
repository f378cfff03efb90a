/**
 * The cluster's state layer (faas-cluster.md §1.2, §1.8) against three real clustered
 * JetStream nats-servers: watched KV buckets shared by two processes' connections, CAS writes,
 * read-your-writes, a server killed and restarted, quorum lost and regained.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { NatsConnection } from '@nats-io/transport-node';
import { findBinary, eventually } from './helpers.ts';
import { startNatsCluster, type NatsCluster } from './e2e/cluster.ts';
import { connectCluster, WatchedBucket, UNCHANGED } from '../src/faas/cluster/state.ts';
import { bucketName, invokeSubject, parseKey, routesKey, deployKey, untoken, token } from '../src/faas/cluster/lattice.ts';
import { FaasError } from '../src/faas/shared/service.ts';
import { createLogger } from '../src/observability/logger.ts';

const natsServer = findBinary('nats-server');
const logger = createLogger('error', false);

describe('cluster state on JetStream KV', { skip: natsServer ? false : 'nats-server is not installed (scripts/setup.sh installs it)' }, () => {
  let cluster: NatsCluster;
  const conns: NatsConnection[] = [];
  const connect = async (name: string) => {
    const nc = await connectCluster({ servers: cluster.urls.split(','), name, logger });
    conns.push(nc);
    return nc;
  };
  before(async () => {
    cluster = await startNatsCluster(natsServer!);
  });
  after(async () => {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await cluster?.stop();
  });

  it('names subjects and keys for any function name', () => {
    assert.equal(bucketName('default', 'ROUTES'), 'CAPSULE_default_ROUTES');
    const name = 'hé llo.*>';
    assert.match(invokeSubject('default', name, 'blue'), /^capsule\.default\.invoke\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(parseKey(routesKey(name)), { function: name });
    assert.deepEqual(parseKey(deployKey(name, 'v1')), { function: name, revision: 'v1' });
    assert.equal(untoken(token('')), '');
  });

  it('shares CAS writes between two connections, each reading its own writes at once', async () => {
    const a = await WatchedBucket.open<{ n: number }>(await connect('a'), 'CAPSULE_t1_ROUTES', { replicas: 3, logger });
    const b = await WatchedBucket.open<{ n: number }>(await connect('b'), 'CAPSULE_t1_ROUTES', { replicas: 3, logger });
    try {
      await a.update('k', () => ({ n: 1 }));
      assert.deepEqual(a.get('k'), { n: 1 }, 'read-your-writes');
      await eventually(() => b.get('k')?.n === 1, 10_000);
      // concurrent increments in one process lose none; the two processes take turns (nats-server
      // 2.9 does not serialise concurrent CAS proposals of two clients on a replicated stream)
      for (const side of [a, b]) await Promise.all(Array.from({ length: 5 }, () => side.update('k', (c) => ({ n: (c?.n ?? 0) + 1 }))));
      await eventually(() => a.get('k')?.n === 11 && b.get('k')?.n === 11, 10_000);
      // a refusal thrown by the mutation reaches the caller and writes nothing
      await assert.rejects(a.update('k', () => { throw new FaasError(500, 'ERROR_FUNCTION_ALREADY_EXISTS', 'k already exists'); }), /already exists/);
      assert.equal(await a.update('k', () => UNCHANGED).then((v) => v?.n), 11);
      await b.update('k', () => undefined);
      assert.equal(b.get('k'), undefined);
      await eventually(() => a.get('k') === undefined, 10_000);
      // a deleted key can be created again
      await a.update('k', (c) => (c ? UNCHANGED : { n: 100 }));
      assert.deepEqual(a.get('k'), { n: 100 });
    } finally {
      a.close();
      b.close();
    }
  });

  it('keeps writing with one server of three down, answers STATE_UNAVAILABLE without quorum, and recovers', async () => {
    const nc = await connect('faults');
    // a generous write timeout: a leader election after a kill can take seconds on a loaded machine
    const bucket = await WatchedBucket.open<{ v: string }>(nc, 'CAPSULE_t2_DEPLOY', { replicas: 3, logger, timeoutMs: 15_000 });
    // the same bucket with a short timeout, for the write that must fail without quorum
    const impatient = await WatchedBucket.open<{ v: string }>(nc, 'CAPSULE_t2_DEPLOY', { replicas: 3, logger, timeoutMs: 3000 });
    const [s1, s2] = cluster.servers;
    try {
      await bucket.update('x', () => ({ v: 'before' }));
      await s1!.kill();
      await bucket.update('x', () => ({ v: 'one down' }));
      assert.equal(bucket.get('x')?.v, 'one down');
      await eventually(() => impatient.get('x')?.v === 'one down', 15_000);
      await s2!.kill();
      await assert.rejects(impatient.update('x', () => ({ v: 'no quorum' })), (e: unknown) => e instanceof FaasError && e.status === 503 && e.code === 'STATE_UNAVAILABLE');
      assert.equal(bucket.get('x')?.v, 'one down', 'reads answer from the cache');
      await s1!.start();
      await s2!.start();
      await eventually(async () => {
        try {
          await bucket.update('x', () => ({ v: 'after' }));
          return true;
        } catch {
          return false;
        }
      }, 30_000);
      assert.equal(bucket.get('x')?.v, 'after');
      // a second connection opened now sees the same value (the watcher resumed, the data survived)
      const other = await WatchedBucket.open<{ v: string }>(await connect('late'), 'CAPSULE_t2_DEPLOY', { replicas: 3, logger });
      assert.equal(other.get('x')?.v, 'after');
      other.close();
    } finally {
      bucket.close();
      impatient.close();
    }
  });
});
