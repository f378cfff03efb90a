/**
 * Memory cache (hostCache* gen 2, hostMemory* gen 1) and the KV increment (§8 hostKvIncrement):
 * one store per process in the main thread, shared by every worker, namespaced per function,
 * glob filters, entry/byte limits, atomic increments (capsule-abi.md §5.7, §4.7, §7.4, §8).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { CacheNamespace } from '../src/capabilities/cache/memory-store.ts';
import { globMatch } from '../src/capabilities/cache/glob.ts';
import { WorkerPool } from '../src/engine/pool.ts';
import { CAPSULE_VERSION } from '../src/base/version.ts';
import { example, fixture, missing, startServer } from './helpers.ts';
import { loadProbe } from './backends.ts';

describe('glob filters', () => {
  it('match * ? [set] [^set] [a-z] and escapes, on whole keys', () => {
    const cases: [string, string, boolean][] = [
      ['*', 'anything', true], ['user:*', 'user:42', true], ['user:*', 'admin:1', false],
      ['user:?', 'user:7', true], ['user:?', 'user:42', false], ['?é', 'aé', true],
      ['[ab]x', 'bx', true], ['[ab]x', 'cx', false], ['[^ab]x', 'cx', true], ['[!ab]x', 'ax', false],
      ['k[0-9]', 'k5', true], ['k[0-9]', 'kx', false], ['a\\*', 'a*', true], ['a\\*', 'ab', false],
      ['a.b', 'axb', false], ['(x)|y', '(x)|y', true], ['[x', '[x', true], ['', '', true], ['', 'a', false],
    ];
    for (const [p, k, want] of cases) assert.equal(globMatch(p, k), want, `${p} vs ${k}`);
  });
});

describe('cache namespace limits and increments', () => {
  it('refuses entries and bytes past the limits, naming the flags, and counts replaced values once', () => {
    const ns = new CacheNamespace();
    const limits = { maxEntries: 2, maxBytes: 20 };
    const enc = new TextEncoder();
    ns.set('a', enc.encode('1234'), limits);
    ns.set('a', enc.encode('12345'), limits);
    assert.equal(ns.bytes, 6);
    ns.set('b', enc.encode('1'), limits);
    assert.throws(() => ns.set('c', enc.encode('1'), limits), /full: 2 entries \(--cache-max-entries 2\)/);
    assert.throws(() => ns.set('b', enc.encode('x'.repeat(30)), limits), /--cache-max-bytes/);
    ns.del('a');
    assert.deepEqual([ns.size, ns.bytes], [1, 2]);
  });
  it('adds signed 64-bit integers and refuses non-integers and overflow', () => {
    const ns = new CacheNamespace();
    const limits = { maxEntries: 10, maxBytes: 1000 };
    assert.equal(ns.incr('n', '5', limits), '5');
    assert.equal(ns.incr('n', '-7', limits), '-2');
    assert.equal(ns.incr('big', '9223372036854775806', limits), '9223372036854775806');
    assert.equal(ns.incr('big', '1', limits), '9223372036854775807');
    assert.throws(() => ns.incr('big', '1', limits), /overflow/);
    ns.set('s', new TextEncoder().encode('abc'), limits);
    assert.throws(() => ns.incr('s', '1', limits), /the value at "s" is not an integer/);
    assert.throws(() => ns.incr('n', '1.5', limits), /the delta "1.5" is not an integer/);
  });
});

for (const [sdk, path] of [['AssemblyScript', fixture('caps-as-probe')], ['C', fixture('caps-c-probe')]] as const) {
  describe(`memory cache from the ${sdk} SDK`, { skip: missing(path) }, () => {
    it('sets, gets, deletes and lists keys with globs; [] when nothing matches', async () => {
      const p = await loadProbe(path, { name: `cache-${sdk}` });
      try {
        assert.deepEqual(await p.run('cset:user:1=Bob'), { ok: true, text: 'user:1' });
        assert.deepEqual(await p.run('cset:user:22=Jane'), { ok: true, text: 'user:22' });
        assert.deepEqual(await p.run('cset:admin=Root'), { ok: true, text: 'admin' });
        assert.deepEqual(await p.run('cget:user:1'), { ok: true, text: 'Bob' });
        assert.deepEqual(await p.run('cget:nobody'), { ok: false, text: 'key not found' });
        assert.deepEqual(JSON.parse((await p.run('ckeys:*')).text), { keys: ['user:1', 'user:22', 'admin'] });
        assert.deepEqual(JSON.parse((await p.run('ckeys:user:?')).text), { keys: ['user:1'] });
        assert.deepEqual(JSON.parse((await p.run('ckeys:[au]*')).text), { keys: ['user:1', 'user:22', 'admin'] });
        assert.deepEqual(JSON.parse((await p.run('ckeys:zzz*')).text), { keys: [] });
        assert.deepEqual(await p.run('cdel:user:1'), { ok: true, text: 'user:1' });
        assert.deepEqual(await p.run('cget:user:1'), { ok: false, text: 'key not found' });
        assert.deepEqual(await p.run('cdel:user:1'), { ok: true, text: 'user:1' }, 'deleting an absent key is fine');
      } finally {
        await p.close();
      }
    });

    it('enforces the entry limit with a failure naming --cache-max-entries', async () => {
      const p = await loadProbe(path, { name: `limits-${sdk}`, cache: { maxEntries: 1 } });
      try {
        assert.equal((await p.run('cset:a=1')).ok, true);
        assert.deepEqual(await p.run('cset:b=2'), { ok: false, text: 'the memory cache is full: 1 entries (--cache-max-entries 1)' });
        assert.equal((await p.run('cset:a=3')).ok, true, 'replacing an entry is not a new one');
      } finally {
        await p.close();
      }
    });

    it('increments atomically (memory KV): absent = 0, deltas, non-integers fail', async () => {
      const p = await loadProbe(path, { name: `kv-${sdk}`, kv: 'memory' });
      try {
        assert.deepEqual(await p.run('incr:hits'), { ok: true, text: '1' });
        assert.deepEqual(await p.run('incr:hits=41'), { ok: true, text: '42' });
        assert.deepEqual(await p.run('incr:hits=-2'), { ok: true, text: '40' });
        assert.deepEqual(await p.run('cget:hits'), { ok: true, text: '40' }, 'the KV is the cache');
        await p.run('cset:word=abc');
        assert.deepEqual(await p.run('incr:word'), { ok: false, text: 'increment: the value at "word" is not an integer' });
      } finally {
        await p.close();
      }
    });
  });
}

describe('one store for every worker, one namespace per function', { skip: missing(fixture('caps-c-probe')) }, () => {
  const pool = new WorkerPool({ workers: 2 });
  after(() => pool.close());

  it('keeps 40 concurrent increments from 2 workers exact and distinct', async () => {
    const p = await loadProbe(fixture('caps-c-probe'), { pool, name: 'shared', kv: 'memory' });
    const answers = await Promise.all(Array.from({ length: 40 }, () => p.run('incr:together')));
    assert.ok(answers.every((a) => a.ok), JSON.stringify(answers.filter((a) => !a.ok)));
    assert.deepEqual(answers.map((a) => Number(a.text)).sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i + 1));
    await p.close();
  });

  it('separates functions by name, even for the same module', async () => {
    const a = await loadProbe(fixture('caps-c-probe'), { pool, name: 'fn-a' });
    const b = await loadProbe(fixture('caps-c-probe'), { pool, name: 'fn-b' });
    await a.run('cset:k=from a');
    assert.deepEqual(await b.run('cget:k'), { ok: false, text: 'key not found' });
    assert.deepEqual(await a.run('cget:k'), { ok: true, text: 'from a' });
    await a.close();
    await b.close();
  });
});

describe('memory cache from a gen-1 guest (hostMemory*)', { skip: missing(fixture('gen1-caps-1b')) }, () => {
  it('answers [OK](key:value), key does not exist, and keys joined by ² with capsule_version first', async () => {
    const p = await loadProbe(fixture('gen1-caps-1b'), { name: 'gen1-cache' });
    try {
      assert.deepEqual(await p.run('mset', 'a', 'x:y'), { ok: true, text: '[OK](a:x:y)' });
      assert.deepEqual(await p.run('mget', 'a'), { ok: true, text: 'x:y' });
      assert.deepEqual(await p.run('mget', 'capsule_version'), { ok: true, text: CAPSULE_VERSION });
      assert.deepEqual(await p.run('mget', 'nope'), { ok: false, text: 'key does not exist' });
      await p.run('mset', 'b', '2');
      assert.deepEqual(await p.run('mkeys'), { ok: true, text: 'capsule_version²a²b' });
      assert.deepEqual(await p.run('incr', 'n', '3'), { ok: true, text: '3' });
    } finally {
      await p.close();
    }
  });
});

describe('kv-counter example over HTTP (seed 004)', { skip: missing(example('kv-counter')) }, () => {
  it('GET /bloggo answers {"counter": 1}, then 2; other paths count apart; concurrent requests stay exact', async () => {
    const s = await startServer(['serve', example('kv-counter'), '--http-port=0', '--workers=2', '--kv=memory']);
    try {
      const get = async (path: string) => {
        const r = await fetch(`${s.url}${path}`);
        assert.equal(r.status, 200);
        return (await r.json()) as { counter: number };
      };
      assert.deepEqual(await get('/bloggo'), { counter: 1 });
      assert.deepEqual(await get('/bloggo'), { counter: 2 });
      assert.deepEqual(await get('/other'), { counter: 1 });
      const many = await Promise.all(Array.from({ length: 20 }, () => get('/bloggo')));
      assert.deepEqual(many.map((m) => m.counter).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 3));
    } finally {
      await s.stop();
    }
  });
});
