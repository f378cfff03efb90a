/**
 * `capsule proxy --backend redis` (faas-api.md §9.6, faas-cluster.md §1.8; issue 13 point 5): two
 * real proxy processes share their routes through a real redis-server — changes through one reach
 * the other, a change nobody announced is found by the version check, and after redis-server is
 * killed and started again (empty: no persistence) both reload in full and keep no stale route.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { createClient } from 'redis';
import { eventually, startServer, type Server } from './helpers.ts';
import { redisServerBinary, startRedis, type RedisServer } from './backends.ts';

const redisBin = redisServerBinary();

async function call(url: string, method = 'GET', body?: unknown) {
  const res = await fetch(url, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch { /* not JSON */ }
  return { status: res.status, text, json };
}

const list = async (p: Server, prefix = 'memory') => (await call(`${p.url}/${prefix}/functions/list`)).json as Record<string, Record<string, string[]>>;

function httpUpstream(name: string): Promise<{ url: string; server: HttpServer }> {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(`${name} ${req.url}`));
    });
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server }));
  });
}

describe('capsule proxy --backend redis: two proxies share one table', { skip: redisBin ? false : 'redis-server is not installed (scripts/setup.sh installs it)' }, () => {
  let redis: RedisServer;
  let p1: Server;
  let p2: Server;
  let blue: { url: string; server: HttpServer };
  let green: { url: string; server: HttpServer };
  let raw: ReturnType<typeof createClient>;
  before(async () => {
    redis = await startRedis(redisBin!);
    [blue, green] = await Promise.all([httpUpstream('blue'), httpUpstream('green')]);
    const args = ['proxy', '--backend=redis', '--http-port=0', '--log-level=error'];
    // one proxy names the server with the flag, the other with REDIS_URI
    [p1, p2] = await Promise.all([startServer([...args, `--redis-uri=${redis.url}`]), startServer(args, { env: { REDIS_URI: redis.url } })]);
    raw = createClient({ url: redis.url });
    raw.on('error', () => undefined);
    await raw.connect();
  });
  after(async () => {
    raw?.destroy();
    await Promise.all([p1?.stop(), p2?.stop()]);
    blue?.server.close();
    green?.server.close();
    await redis?.stop();
  });

  it('shares registrations and splits: a change through one proxy reaches the other, the writer sees it at once', async () => {
    const created = await call(`${p1.url}/memory/functions/registration`, 'POST', { function: 'hello', revision: 'blue', url: blue.url });
    assert.equal(created.status, 202, created.text);
    assert.deepEqual((await list(p1))['hello'], { blue: [blue.url] });
    await eventually(async () => (await list(p2))['hello']?.['blue']?.[0] === blue.url, 5000);
    assert.equal((await call(`${p2.url}/functions/hello/blue/x`)).text, 'blue /x');
    const dup = await call(`${p2.url}/redis/functions/registration`, 'POST', { function: 'hello', revision: 'blue', url: green.url });
    assert.equal(dup.status, 500);
    assert.equal(dup.json['code'], 'ERROR_FUNCTION_ALREADY_EXISTS');
    assert.equal((await call(`${p2.url}/redis/functions/hello/revision`, 'POST', { revision: 'green', url: green.url })).status, 202);
    assert.equal((await call(`${p2.url}/memory/functions/hello/traffic`, 'PUT', { targets: [{ revision: 'blue', percent: 50 }, { revision: 'green', percent: 50 }] })).status, 202);
    await eventually(async () => (await call(`${p1.url}/memory/functions/hello/traffic`)).json['targets'] !== undefined && ((await call(`${p1.url}/memory/functions/hello/traffic`)).json['targets'] as unknown[]).length === 2, 5000);
    const answers = await Promise.all(Array.from({ length: 4 }, async () => (await call(`${p1.url}/functions/hello`)).text));
    assert.deepEqual(answers.sort(), ['blue /', 'blue /', 'green /', 'green /'], 'the split is applied from the shared table');
    // the layout of faas-api.md §9.6
    assert.deepEqual(await raw.hGetAll('capsule:proxy:functions:hello').then((h) => JSON.parse(h['blue']!)), [blue.url]);
    assert.equal(await raw.get('capsule:proxy:version'), '3', 'one version per change: registration, revision, split');
  });

  it('loses no change when both proxies change one function at the same time', async () => {
    assert.equal((await call(`${p1.url}/memory/functions/registration`, 'POST', { function: 'busy', revision: 'r0', url: blue.url })).status, 202);
    const replies = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      call(`${(i % 2 ? p1 : p2).url}/memory/functions/busy/revision`, 'POST', { revision: `r${i + 1}`, url: i % 2 ? blue.url : green.url })));
    assert.deepEqual(replies.map((r) => r.status), Array(12).fill(202));
    const expected = Array.from({ length: 13 }, (_, i) => `r${i}`).sort();
    assert.deepEqual(Object.keys(await raw.hGetAll('capsule:proxy:functions:busy')).sort(), expected);
    await eventually(async () => Object.keys((await list(p1))['busy'] ?? {}).length === 13 && Object.keys((await list(p2))['busy'] ?? {}).length === 13, 5000);
  });

  it('finds a change that was never announced through the version counter; a nats: target there is neither listed nor called', async () => {
    await raw.multi().hSet('capsule:proxy:functions:quiet', 'v1', JSON.stringify([green.url])).incr('capsule:proxy:version').exec();
    await eventually(async () => (await list(p1))['quiet']?.['v1']?.[0] === green.url && (await list(p2))['quiet']?.['v1']?.[0] === green.url, 10_000);
    assert.equal((await call(`${p2.url}/functions/quiet/v1`)).text, 'green /');
    // a nats: target (written by a cluster) is not listed outside cluster mode, and answers 502
    await raw.multi().hSet('capsule:proxy:functions:lattice', 'v1', JSON.stringify(['nats:'])).incr('capsule:proxy:version').exec();
    await eventually(async () => (await list(p1))['lattice'] !== undefined, 10_000);
    assert.deepEqual((await list(p1))['lattice'], { v1: [] });
    const r = await call(`${p1.url}/functions/lattice/v1`);
    assert.equal(r.status, 502);
    assert.equal(r.json['code'], 'NO_INSTANCE');
  });

  it('keeps serving while Redis is down (writes 503), then reloads in full after it restarts: no stale route', async () => {
    await redis.stop();
    const refused = await call(`${p1.url}/memory/functions/hello/revision`, 'POST', { revision: 'red', url: green.url });
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.json['code'], 'STATE_UNAVAILABLE');
    assert.equal((await call(`${p2.url}/functions/hello/blue`)).text, 'blue /', 'calls are answered from the table');
    await redis.start(); // empty: the test server keeps nothing
    await eventually(async () => Object.keys(await list(p1)).length === 0 && Object.keys(await list(p2)).length === 0, 15_000);
    assert.equal((await call(`${p1.url}/functions/hello/blue`)).status, 404);
    // both follow the restarted server again
    await eventually(async () => (await call(`${p2.url}/memory/functions/registration`, 'POST', { function: 'again', revision: 'default', url: blue.url })).status === 202, 10_000);
    await eventually(async () => (await list(p1))['again']?.['default']?.[0] === blue.url, 5000);
    assert.equal((await call(`${p1.url}/functions/again`)).text, 'blue /');
  });
});
