/**
 * Redis (hostRedis* gen 2 and gen 1, hostKvIncrement on INCRBY) against a real `redis-server`
 * started on a free loopback port: results of both SDKs, configuration from flags and the Go
 * environment variables, and a server stopped mid-run and restarted: calls fail cleanly, then
 * succeed again, and nothing crashes (capsule-abi.md §5.7, §4.7, §7.3, §7.9, §8).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeRedisClients } from '../src/capabilities/redis/client.ts';
import { redisFromEnv } from '../src/capabilities/redis/config.ts';
import { eventually, example, fixture, missing, runCapsule, startServer } from './helpers.ts';
import { loadProbe, redisServerBinary, startRedis, type Probe, type RedisServer } from './backends.ts';

const bin = redisServerBinary();
const noRedis = bin ? false : 'redis-server is not installed (Debian: redis-server; see scripts/setup.sh)';

describe('Redis configuration (capsule-abi.md §5.7)', () => {
  it('REDIS_URI wins; else REDIS_ADDR, REDIS_PWD, REDIS_DEFAULTDB; else localhost:6379', () => {
    assert.deepEqual(redisFromEnv({ REDIS_URI: 'redis://h:1/2', REDIS_ADDR: 'x:9' }), { url: 'redis://h:1/2', origin: 'REDIS_URI' });
    assert.deepEqual(redisFromEnv({ REDIS_ADDR: 'x:9', REDIS_PWD: 'p@ss', REDIS_DEFAULTDB: '3' }), { url: 'redis://:p%40ss@x:9/3', origin: 'REDIS_ADDR' });
    assert.equal(redisFromEnv({}).url, 'redis://localhost:6379/0');
  });
});

describe('Redis from the SDKs', { skip: noRedis }, () => {
  let redis: RedisServer;
  const probes: Probe[] = [];
  before(async () => {
    redis = await startRedis(bin!);
  });
  after(async () => {
    for (const p of probes) await p.close();
    closeRedisClients();
    await redis.stop();
  });

  for (const [sdk, path] of [['AssemblyScript', fixture('caps-as-probe')], ['C', fixture('caps-c-probe')]] as const) {
    it(`${sdk}: set, get, del, keys with a pattern, "redis: nil" for a missing key, INCRBY for the KV`, { skip: missing(path) }, async () => {
      const p = await loadProbe(path, { redis: { url: redis.url, origin: 'test' } });
      probes.push(p);
      const k = `${sdk}:`;
      assert.deepEqual(await p.run(`rset:${k}a=1`), { ok: true, text: `${k}a` });
      assert.deepEqual(await p.run(`rset:${k}b=two words`), { ok: true, text: `${k}b` });
      assert.deepEqual(await p.run(`rget:${k}b`), { ok: true, text: 'two words' });
      assert.deepEqual(await p.run(`rget:${k}none`), { ok: false, text: 'redis: nil' });
      assert.deepEqual(JSON.parse((await p.run(`rkeys:${k}*`)).text).keys.sort(), [`${k}a`, `${k}b`]);
      assert.deepEqual(await p.run(`rdel:${k}a`), { ok: true, text: `${k}a` });
      assert.deepEqual(JSON.parse((await p.run(`rkeys:${k}?`)).text), { keys: [`${k}b`] });
      // a Redis server is configured: the KV increments with INCRBY, visible to Redis clients
      assert.deepEqual(await p.run(`incr:${k}n=5`), { ok: true, text: '5' });
      assert.deepEqual(await p.run(`rget:${k}n`), { ok: true, text: '5' });
      assert.deepEqual(await p.run(`incr:${k}b`), { ok: false, text: 'ERR value is not an integer or out of range' });
    });
  }

  it('a server stopped mid-run gives failures, then calls succeed again once it is back', { skip: missing(fixture('caps-c-probe')) }, async () => {
    const p = await loadProbe(fixture('caps-c-probe'), { redis: { url: redis.url, origin: 'test' } });
    probes.push(p);
    assert.equal((await p.run('rset:before=1')).ok, true);
    await redis.stop();
    const down = await p.run('rget:before');
    assert.equal(down.ok, false);
    assert.match(down.text, /^redis: /);
    assert.equal((await p.run('incr:x')).ok, false, 'the KV fails too');
    assert.deepEqual(await p.run('cset:still=alive'), { ok: true, text: 'still' }, 'the runner and the function are fine');
    await redis.start();
    await eventually(async () => (await p.run('rset:after=2')).ok, 10_000);
    assert.deepEqual(await p.run('rget:after'), { ok: true, text: '2' });
  });

  it('a server that was never reachable: a failure naming the server and where it was configured', { skip: missing(fixture('caps-c-probe')) }, async () => {
    const p = await loadProbe(fixture('caps-c-probe'), { redis: { url: 'redis://:secret@127.0.0.1:9/0', origin: '--redis-uri' } });
    probes.push(p);
    const r = await p.run('rget:x');
    assert.equal(r.ok, false);
    assert.match(r.text, /^redis: cannot connect to redis:\/\/:\*\*\*@127\.0\.0\.1:9\/0 \(--redis-uri\): /);
    assert.doesNotMatch(r.text, /secret/, 'the password is not shown');
  });

  it('gen 1: [OK](key:value), [ERR][0]:redis: nil, keys joined by ²', { skip: missing(fixture('gen1-caps-1b')) }, async () => {
    const p = await loadProbe(fixture('gen1-caps-1b'), { redis: { url: redis.url, origin: 'test' } });
    probes.push(p);
    assert.deepEqual(await p.run('rset', 'g1:a', 'v:1'), { ok: true, text: '[OK](g1:a:v:1)' });
    await p.run('rset', 'g1:b', '2');
    assert.deepEqual(await p.run('rget', 'g1:a'), { ok: true, text: 'v:1' });
    assert.deepEqual(await p.run('rget', 'g1:none'), { ok: false, text: 'redis: nil' });
    assert.deepEqual((await p.run('rkeys', 'g1:*')).text.split('²').sort(), ['g1:a', 'g1:b']);
  });

  it('capsule run reads REDIS_ADDR like Go Capsule', { skip: missing(fixture('caps-c-probe')) }, async () => {
    const set = await runCapsule(['run', fixture('caps-c-probe'), '--params=rset:env=from REDIS_ADDR'], { env: { REDIS_ADDR: `127.0.0.1:${redis.port}` } });
    assert.equal(set.code, 0, set.stderr);
    const get = await runCapsule(['run', fixture('caps-c-probe'), `--redis-uri=${redis.url}`, '--params=rget:env']);
    assert.equal(get.stdout, 'from REDIS_ADDR\n');
  });

  it('redis-notes over HTTP: 503 while Redis is down, served again after it is back', { skip: missing(example('redis-notes')) }, async () => {
    const s = await startServer(['serve', example('redis-notes'), '--http-port=0', `--redis-uri=${redis.url}`]);
    try {
      const put = await fetch(`${s.url}/notes/todo`, { method: 'PUT', body: 'write the docs' });
      assert.deepEqual(await put.json(), { saved: 'todo' });
      assert.equal(await (await fetch(`${s.url}/notes/todo`)).text(), 'write the docs');
      assert.deepEqual(await (await fetch(`${s.url}/notes`)).json(), { notes: ['todo'] });
      assert.equal((await fetch(`${s.url}/notes/nothing`)).status, 404);
      await redis.stop();
      const down = await fetch(`${s.url}/notes/todo`);
      assert.equal(down.status, 503);
      assert.match(((await down.json()) as { error: string }).error, /^redis: /);
      await redis.start(); // empty again: no persistence
      await eventually(async () => (await fetch(`${s.url}/notes/again`, { method: 'POST', body: 'x' })).status === 200, 10_000);
      assert.equal(await (await fetch(`${s.url}/notes/again`)).text(), 'x');
      assert.equal((await fetch(`${s.url}/notes/again`, { method: 'DELETE' })).status, 200);
    } finally {
      assert.equal(await s.stop(), 0, s.logs());
    }
  });
});
