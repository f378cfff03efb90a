/**
 * The warm-up of a module in every worker before the pool is up (src/engine/pool.ts `whenUp`,
 * `ModuleInstances.warm`; docs/performance.md "Start-up"). That a first request then costs what
 * later ones do is a timing (bench/startup.ts); here, what a user could see besides: the warm-up
 * has no effect (it runs the initialisation with imports that refuse to run), and a module
 * whose initialisation never ends neither holds the start for ever nor changes how its calls fail.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CapsuleFunction, CapsuleError } from '../src/index.ts';
import { WorkerPool } from '../src/engine/pool.ts';
import { eventually, fixture, missing, startServer } from './helpers.ts';

describe('warm-up of a module before the pool is up', () => {
  it('has no effect: an initialisation that prints prints nothing before the ready line, then at each call', { skip: missing(fixture('gen2-init-print')) }, async () => {
    const s = await startServer(['serve', fixture('gen2-init-print'), '--http-port=0']);
    try {
      // the warm-up ran before the ready line: its OnStart met a host function that refused to run
      assert.doesNotMatch(s.ready.input, /started/);
      await (await fetch(`${s.url}/capsule/health`)).arrayBuffer();
      assert.doesNotMatch(s.logs(), /started/);
      // a call runs the initialisation for real (its OnStart prints, into the call's logs)
      await (await fetch(s.url, { method: 'POST', body: 'x' })).arrayBuffer();
      await eventually(() => /started/.test(s.logs()));
    } finally {
      await s.stop();
    }
  });

  it('stops a warm-up that never ends: the pool comes up, and a call times out as it would without the warm-up', { skip: missing(fixture('gen2-init-loop')) }, async () => {
    const pool = new WorkerPool({ workers: 1, warmLimitMs: 300 });
    const fn = await CapsuleFunction.load({ path: fixture('gen2-init-loop') }, { pool, timeoutMs: 500 });
    try {
      await pool.whenUp(); // never resolves if the looping warm-up is not stopped
      assert.equal(pool.threads, 1);
      await assert.rejects(fn.invoke({ type: 'cli', params: new Uint8Array(0), args: [] }), (e: unknown) => e instanceof CapsuleError && e.code === 'TIMEOUT');
    } finally {
      await fn.close();
      await pool.close();
    }
  });
});
