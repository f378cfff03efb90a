/**
 * Runaway guests do not starve good requests (README "Limits", docs/performance.md): a call's
 * deadline counts from when it was accepted, no call waits behind a worker stuck in a long call,
 * and the pool starts workers beside runaways (bounded by maxWorkers, stopped again when idle).
 * Real `capsule serve` processes and HTTP clients, and the host SDK on a pool of its own.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { CapsuleError, CapsuleFunction, WorkerPool, type CliOutput, type HttpResponseOutput } from '../src/index.ts';
import { eventually, example, fixture, missing, startServer } from './helpers.ts';

const behaviours = fixture('gen2-behaviours');
const counter = example('kv-counter');
const sleeper = fixture('wasi-basic');

/** One POST on a connection of its own; resolves with the status and the order it arrived in. */
function post(url: string, body: string, arrivals: string[], name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false }, (res) => {
      res.resume();
      res.on('end', () => {
        arrivals.push(name);
        resolve(res.statusCode ?? 0);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The value of an unlabelled gauge or the sum of a counter's series in /capsule/metrics. */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/capsule/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

const bytes = (s: string) => new TextEncoder().encode(s);
const cli = (params: string) => ({ type: 'cli' as const, params: bytes(params), args: [] });

describe('capsule serve: runaway guests beside a good request', () => {
  // The case is --timeout=2s (bench/runaways.ts measures it: ~1 s). The good request
  // runs once the 9 workers started beside the runaways have booted, which is CPU shared by two
  // cores: up to ~2 s when other processes load them. A 4 s deadline keeps the test about the
  // order of the answers, not the machine's speed (before this, the good request came after 5
  // rounds of deadlines).
  it('answers a good request (200) before the 504s of ten runaways ahead of it, with 2 workers', async () => {
    const s = await startServer(['serve', behaviours, '--http-port=0', '--timeout=4s', '--workers=2']);
    try {
      const arrivals: string[] = [];
      const runaways = Array.from({ length: 10 }, (_, i) => post(s.url, 'l', arrivals, `runaway-${i}`));
      // all ten accepted (in flight in the server) before the good request is sent
      await eventually(async () => (await metric(s.url, 'capsule_inflight_requests')) >= 10);
      const good = await post(s.url, 'e', arrivals, 'good');
      assert.equal(good, 200);
      assert.deepEqual(await Promise.all(runaways), Array(10).fill(504));
      // it did not wait behind them: it came back before the first runaway reached its deadline
      assert.equal(arrivals[0], 'good', `order of the answers: ${arrivals.join(', ')}`);
      assert.equal(await metric(s.url, 'capsule_timeouts_total'), 10);
      assert.equal(await post(s.url, 'e', arrivals, 'after'), 200);
    } finally {
      await s.stop();
    }
  });
});

describe('worker pool: long calls, growth and deadlines (host SDK)', () => {
  it('runs good calls on workers started beside a runaway, before its deadline, and stops them when idle', async () => {
    const pool = new WorkerPool({ workers: 1, maxWorkers: 4, idleMs: 300 });
    const fn = await CapsuleFunction.load({ path: behaviours }, { pool, timeoutMs: 3000 });
    try {
      const grew: number[] = [];
      const shrank: number[] = [];
      pool.on('grow', (n: number) => grew.push(n));
      pool.on('shrink', (n: number) => shrank.push(n));
      const order: string[] = [];
      const runaway = fn.invoke(cli('l')).then(
        () => assert.fail('the runaway returned'),
        (e: unknown) => {
          order.push('runaway');
          assert.ok(e instanceof CapsuleError && e.code === 'TIMEOUT', String(e));
          assert.match(e.message, /did not return within 3000 ms/);
        },
      );
      const goods = ['e1', 'e2'].map((p) => fn.invoke(cli(p)).then((r) => {
        order.push(p);
        return new TextDecoder().decode((r.output as CliOutput).text);
      }));
      assert.deepEqual(await Promise.all(goods), ['e1', 'e2']);
      await runaway;
      assert.deepEqual(order.slice(-1), ['runaway'], `the good calls waited for the runaway: ${order.join(', ')}`);
      assert.ok(grew.length > 0 && Math.max(...grew) <= 4, `grew to ${grew.join(', ')}`);
      await eventually(() => pool.threads === 1);
      assert.ok(shrank.length > 0, 'idle workers beyond --workers were stopped');
      const again = await fn.invoke(cli('e3'));
      assert.equal(new TextDecoder().decode((again.output as CliOutput).text), 'e3');
    } finally {
      await fn.close();
      await pool.close();
    }
  });

  it('never runs more than maxWorkers threads: a call no worker could start fails with TIMEOUT at its deadline, not run', async () => {
    const pool = new WorkerPool({ workers: 1, maxWorkers: 3 });
    const fn = await CapsuleFunction.load({ path: behaviours }, { pool, timeoutMs: 1500 });
    try {
      const most: number[] = [];
      pool.on('grow', (n: number) => most.push(n));
      const runaways = ['l', 'l', 'l'].map((p) => fn.invoke(cli(p)).then(() => 'returned', (e: CapsuleError) => e.code));
      const good = fn.invoke(cli('e')).then(() => 'returned', (e: CapsuleError) => e.message);
      assert.deepEqual(await Promise.all(runaways), ['TIMEOUT', 'TIMEOUT', 'TIMEOUT']);
      assert.match(await good, /^the function was not run: no worker was free within 1500 ms \(--timeout\)$/);
      assert.ok(Math.max(...most) <= 3, `grew to ${most.join(', ')}`);
      assert.ok(pool.threads <= 3);
    } finally {
      await fn.close();
      await pool.close();
    }
  });

  it('runs calls taken back from a worker in a long call exactly once', { skip: missing(counter) || missing(sleeper) }, async () => {
    const pool = new WorkerPool({ workers: 1, maxWorkers: 4 });
    const slow = await CapsuleFunction.load({ path: sleeper }, { pool, timeoutMs: 20_000 });
    const kv = await CapsuleFunction.load({ path: counter }, { pool, timeoutMs: 20_000, kv: 'memory' });
    try {
      let grew = 0;
      pool.on('grow', () => grew++);
      const hit = () => kv.invoke({ type: 'http', method: 'GET', url: 'http://localhost/once', headers: [], body: new Uint8Array(0), remoteAddress: '127.0.0.1', remotePort: 0 })
        .then((r) => JSON.parse(new TextDecoder().decode((r.output as HttpResponseOutput).body)).counter as number);
      // a WASI command sleeping 400 ms (a long call that ends): the hits sent behind it are
      // taken back and run elsewhere; when it ends, its worker must not run them again
      const busy = slow.invoke({ type: 'cli', args: ['sleep', '400'], stdin: new Uint8Array(0) });
      const counts = await Promise.all(Array.from({ length: 20 }, hit));
      await busy;
      assert.ok(grew > 0, 'the pool started a worker beside the long call');
      assert.deepEqual(counts.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
      assert.equal(await hit(), 21);
    } finally {
      await slow.close();
      await kv.close();
      await pool.close();
    }
  });
});
