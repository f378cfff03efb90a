/**
 * HTTP over NATS request/reply between gateway and nodes (faas-cluster.md §1.4) against a real
 * nats-server: what a node receives, what the gateway gets back, and each failure's answer.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { findBinary } from './helpers.ts';
import { startNatsServer, type Broker } from './brokers.ts';
import { invoke, serveInvocations, type InvokeRequest } from '../src/faas/cluster/invoke.ts';
import { FaasError } from '../src/faas/shared/service.ts';
import { createLogger } from '../src/observability/logger.ts';

const natsServer = findBinary('nats-server');
const logger = createLogger('error', false);
const enc = new TextEncoder();
const dec = new TextDecoder();
const request = (o: Partial<InvokeRequest> = {}): InvokeRequest => ({
  method: 'GET', path: '/', query: '', headers: [], body: new Uint8Array(0), deadline: Date.now() + 10_000, ...o,
});
const isFaas = (status: number, code: string) => (e: unknown) => e instanceof FaasError && e.status === status && e.code === code;

describe('HTTP over NATS request/reply', { skip: natsServer ? false : 'nats-server is not installed (scripts/setup.sh installs it)' }, () => {
  let broker: Broker;
  let gateway: NatsConnection;
  let node: NatsConnection;
  before(async () => {
    broker = await startNatsServer(natsServer!);
    gateway = await connect({ servers: broker.url });
    node = await connect({ servers: broker.url });
  });
  after(async () => {
    await gateway?.close();
    await node?.close();
    await broker?.kill();
  });

  it('carries method, path, query, every header value and the body, and brings status, headers and body back', async () => {
    let seen: InvokeRequest | undefined;
    const svc = await serveInvocations(node, 'inv.a', async (req) => {
      seen = req;
      return { status: 201, headers: ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Out', 'é'], body: enc.encode(`got ${dec.decode(req.body)}`) };
    }, { maxInflight: 4, nodeId: 'node-1', logger, queue: 'q.a' });
    await node.flush();
    try {
      const r = await invoke(gateway, 'inv.a', request({
        method: 'POST', path: '/api/items', query: 'x=1&y=2', body: enc.encode('hello'),
        headers: ['X-Multi', 'one', 'X-Multi', 'two', 'Content-Type', 'text/plain', 'Capsule-Status', 'spoofed'],
      }), { timeoutMs: 5000 });
      assert.equal(seen?.method, 'POST');
      assert.equal(seen?.path, '/api/items');
      assert.equal(seen?.query, 'x=1&y=2');
      const pairs = (flat: string[]) => Array.from({ length: flat.length / 2 }, (_, i) => `${flat[2 * i]!.toLowerCase()}: ${flat[2 * i + 1]}`);
      assert.deepEqual(pairs(seen!.headers).filter((p) => p.startsWith('x-multi')), ['x-multi: one', 'x-multi: two']);
      assert.ok(!pairs(seen!.headers).some((p) => p.startsWith('capsule-status')), 'a client cannot spoof the reply protocol');
      assert.equal(r.status, 201);
      assert.equal(dec.decode(r.body), 'got hello');
      assert.equal(r.node, 'node-1');
      assert.deepEqual(pairs(r.headers).filter((p) => p.startsWith('set-cookie')), ['set-cookie: a=1', 'set-cookie: b=2']);
      assert.ok(pairs(r.headers).includes('x-out: é'));
    } finally {
      await svc.stop();
    }
  });

  it('answers 502 NO_INSTANCE when no node serves the revision, 413 above max_payload', async () => {
    await assert.rejects(invoke(gateway, 'inv.nobody', request(), { timeoutMs: 2000 }), isFaas(502, 'NO_INSTANCE'));
    await assert.rejects(invoke(gateway, 'inv.nobody', request({ method: 'POST', body: new Uint8Array(2 * 1024 * 1024) }), { timeoutMs: 2000 }), isFaas(413, 'TOO_LARGE'));
  });

  it('retries a timed-out GET but never a timed-out POST; a busy node is retried, then 503', async () => {
    let calls = 0;
    const slow = await serveInvocations(node, 'inv.slow', async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 1500));
      return { status: 200, headers: [], body: new Uint8Array(0) };
    }, { maxInflight: 100, nodeId: 'slow', logger });
    await node.flush();
    try {
      await assert.rejects(invoke(gateway, 'inv.slow', request({ method: 'POST' }), { timeoutMs: 300 }), isFaas(504, 'TIMEOUT'));
      assert.equal(calls, 1, 'a POST that may have run is not sent again');
      calls = 0;
      const retried: string[] = [];
      await assert.rejects(invoke(gateway, 'inv.slow', request(), { timeoutMs: 300, onRetry: (r) => retried.push(r) }), isFaas(504, 'TIMEOUT'));
      assert.deepEqual(retried, ['timeout', 'timeout']);
      assert.equal(calls, 3);
    } finally {
      await slow.stop();
    }
    const busy = await serveInvocations(node, 'inv.busy', async () => ({ status: 200, headers: [], body: new Uint8Array(0) }), { maxInflight: 0, nodeId: 'busy', logger });
    await node.flush();
    try {
      const retried: string[] = [];
      await assert.rejects(invoke(gateway, 'inv.busy', request({ method: 'POST' }), { timeoutMs: 2000, onRetry: (r) => retried.push(r) }), isFaas(503, 'BUSY'));
      assert.deepEqual(retried, ['busy', 'busy']);
    } finally {
      await busy.stop();
    }
  });
});
