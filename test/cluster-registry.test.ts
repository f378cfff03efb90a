/**
 * `capsule registry --backend nats` (faas-cluster.md §1.7, scenario 5 of §2): two registry
 * processes on one JetStream Object Store; a module uploaded to one is downloaded from the other
 * with the same SHA-256; the refusals of the files store hold (wrong digest, not wasm, bad name,
 * too large), and nothing refused reaches the store.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { example, findBinary, missing, startServer, type Server } from './helpers.ts';
import { startNatsCluster, type NatsCluster } from './e2e/cluster.ts';

const natsServer = findBinary('nats-server');
const hello = example('hello-world');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function upload(base: string, path: string, bytes: Uint8Array, fields: Record<string, string> = {}) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', new Blob([new Uint8Array(bytes)]), 'hello.wasm');
  const res = await fetch(`${base}/upload/${path}`, { method: 'POST', body: form });
  return { status: res.status, body: await res.json() as Record<string, string> };
}

describe('capsule registry --backend nats', { skip: !natsServer ? 'nats-server is not installed (scripts/setup.sh installs it)' : missing(hello) }, () => {
  let cluster: NatsCluster;
  let a: Server;
  let b: Server;
  before(async () => {
    cluster = await startNatsCluster(natsServer!, 1);
    const args = ['registry', '--backend=nats', `--cluster=${cluster.urls}`, '--lattice=regtest', '--http-port=0', '--max-module-size=1MiB'];
    [a, b] = await Promise.all([startServer(args), startServer(args)]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await cluster?.stop();
  });

  it('serves from any replica what was uploaded to one, with its SHA-256', async () => {
    const bytes = readFileSync(hello);
    const up = await upload(a.url, 'k33g/hello/0.0.0', bytes, { info: 'hello v0', sha256: sha256(bytes) });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(up.body['sha256'], sha256(bytes));
    const res = await fetch(`${b.url}/k33g/hello/0.0.0/hello.wasm`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-capsule-sha256'), sha256(bytes));
    assert.equal(sha256(new Uint8Array(await res.arrayBuffer())), sha256(bytes));
    assert.equal((await (await fetch(`${b.url}/info/k33g/hello/0.0.0`)).text()).trim(), 'hello v0');
    const modules = await (await fetch(`${b.url}/modules`)).json() as string[];
    assert.deepEqual(modules, ['k33g', 'k33g/hello', 'k33g/hello/0.0.0', 'k33g/hello/0.0.0/hello.info', 'k33g/hello/0.0.0/hello.wasm']);
  });

  it('refuses a wrong digest, a file that is not wasm, a bad name and an oversize module, storing nothing', async () => {
    const bytes = readFileSync(hello);
    assert.equal((await upload(a.url, 'k33g/bad/1', bytes, { sha256: '0'.repeat(64) })).status, 400);
    assert.equal((await upload(a.url, 'k33g/bad/2', new TextEncoder().encode('not a module at all'))).status, 400);
    assert.equal((await upload(a.url, 'k33g/b%20d/3', bytes)).status, 400);
    const big = new Uint8Array(2 * 1024 * 1024);
    big.set(bytes.subarray(0, 8)); // a wasm header, then more than --max-module-size
    assert.equal((await upload(a.url, 'k33g/bad/4', big)).status, 413);
    const modules = await (await fetch(`${b.url}/modules`)).json() as string[];
    assert.ok(!modules.some((m) => m.includes('bad')), modules.join(' '));
    assert.equal((await fetch(`${b.url}/k33g/bad/1/bad.wasm`)).status, 404);
  });
});
