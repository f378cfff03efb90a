/**
 * CouchBase (hostCouchBaseQuery, gen 2 per conventions.md §5 and gen 1 per capsule-abi.md §4.7).
 * No CouchBase server can be installed here, so these tests cover what can be tested: the
 * not-configured answers, and a configured cluster that refuses connections — a failure result,
 * no crash, and the function keeps working. The success path (rows as a JSON array) is not
 * exercised by the suite.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeCouchbaseClusters } from '../src/capabilities/couchbase/client.ts';
import { fixture, missing, runCapsule } from './helpers.ts';
import { freePort, loadProbe } from './backends.ts';

after(() => closeCouchbaseClusters());

describe('CouchBase not configured', () => {
  for (const [sdk, path] of [['AssemblyScript', fixture('caps-as-probe')], ['C', fixture('caps-c-probe')]] as const) {
    it(`${sdk}: Fcouchbase is not configured`, { skip: missing(path) }, async () => {
      const p = await loadProbe(path);
      try {
        assert.deepEqual(await p.run('cb:SELECT 1'), { ok: false, text: 'couchbase is not configured' });
      } finally {
        await p.close();
      }
    });
  }

  it('gen 1: [ERR][0]:couchbase is not configured (the CLI shows the message, exit 1)', { skip: missing(fixture('gen1-caps-1b')) }, async () => {
    const r = await runCapsule(['run', fixture('gen1-caps-1b'), 'cb', 'SELECT 1'], { env: { COUCHBASE_CLUSTER: '' } });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), 'couchbase is not configured');
  });
});

describe('CouchBase configured but refusing connections', { skip: missing(fixture('caps-c-probe')) }, () => {
  it('answers a failure naming the cluster, and the function keeps working', async () => {
    const port = await freePort();
    const p = await loadProbe(fixture('caps-c-probe'), { couchbase: { cluster: `couchbase://127.0.0.1:${port}`, user: 'admin', password: 'x', bucket: 'wasm-data' } });
    try {
      const r = await p.run('cb:SELECT * FROM `wasm-data`');
      assert.equal(r.ok, false);
      assert.match(r.text, new RegExp(`^couchbase: cannot connect to couchbase://127\\.0\\.0\\.1:${port} as admin: `));
      assert.deepEqual(await p.run('cset:after=ok'), { ok: true, text: 'after' });
    } finally {
      await p.close();
    }
  });

  it('capsule run with --couchbase-cluster: exit 1 with the failure, no crash', { skip: missing(fixture('gen1-caps-1b')) }, async () => {
    const port = await freePort();
    const r = await runCapsule(['run', fixture('gen1-caps-1b'), `--couchbase-cluster=couchbase://127.0.0.1:${port}`, 'cb', 'SELECT 1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^couchbase: cannot connect to couchbase:\/\/127\.0\.0\.1:\d+ as admin: /);
    assert.doesNotMatch(r.stderr, /❌|at .*\.ts:\d+/, 'a failure result, not a runner error or a stack');
  });
});
