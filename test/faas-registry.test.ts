/**
 * `capsule registry` (faas-api.md §2, §9.5; faas-cluster.md §1.7) as a user runs it: a real
 * process on loopback, uploads as multipart forms from fetch + FormData, downloads with their
 * digests, the Go bin and flags, attacks on names, sizes and digests, concurrent uploads of one
 * name, the upload token, and `capsule run --url …#sha256=` on a registry URL.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { example, missing, root, runCapsule, startServer, type Server } from './helpers.ts';

const hello = example('hello-world');
const others = [example('hello-you'), example('hello-html'), example('kv-counter')];
const skip = missing(hello) || others.map(missing).find(Boolean) || false;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Uploads `bytes` as the form field `file` (named `filename`) with extra text fields. */
async function upload(base: string, path: string, bytes: Uint8Array<ArrayBuffer>, fields: Record<string, string> = {}, headers: Record<string, string> = {}, filename = 'hello.wasm') {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', new Blob([bytes]), filename);
  const res = await fetch(`${base}/upload/${path}`, { method: 'POST', body: form, headers });
  return { status: res.status, body: await res.json() as Record<string, string> };
}

/** Every path under `dir` (relative), for "nothing written" checks. */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

/**
 * A request whose path is sent exactly as written (fetch resolves `..` and `%2e%2e`), with an
 * optional multipart form holding `bytes` as `file`.
 */
async function rawRequest(base: string, method: string, path: string, bytes?: Uint8Array<ArrayBuffer>): Promise<{ status: number; body: string }> {
  let payload: Buffer | undefined;
  const headers: Record<string, string> = {};
  if (bytes) {
    const form = new FormData();
    form.append('file', new Blob([bytes]), 'hello.wasm');
    const encoded = new Response(form);
    payload = Buffer.from(await encoded.arrayBuffer());
    headers['content-type'] = encoded.headers.get('content-type')!;
  }
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(base);
    const req = httpRequest({ hostname, port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

describe('capsule registry', { skip }, () => {
  let tmp: string;
  let files: string;
  let server: Server;
  const bytes = skip ? new Uint8Array() : new Uint8Array(readFileSync(hello));

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'capsule-registry-'));
    files = join(tmp, 'files');
    server = await startServer(['registry', '--http-port=0', `--files=${files}`, '--max-module-size=256KiB'], { env: { CAPSULE_REGISTRY_ADMIN_TOKEN: '' } });
  });
  after(async () => {
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('round trip: upload replies as Go with the sha256; download, info and list carry it', async () => {
    const up = await upload(server.url, 'k33g/hello/0.0.0', bytes, { info: 'hello from k33g' }, {}, 'hello-world.wasm');
    assert.equal(up.status, 200);
    assert.deepEqual(up.body, { code: 'OK', message: '🙂 hello-world.wasm uploaded!', sha256: sha256(bytes) });

    const dl = await fetch(`${server.url}/k33g/hello/0.0.0/hello.wasm`);
    assert.equal(dl.status, 200);
    const got = new Uint8Array(await dl.arrayBuffer());
    assert.deepEqual(got, bytes);
    assert.equal(dl.headers.get('x-capsule-sha256'), sha256(bytes));
    assert.equal(dl.headers.get('digest'), `sha-256=${createHash('sha256').update(bytes).digest('base64')}`);
    assert.equal(dl.headers.get('content-type'), 'application/wasm');
    const head = await fetch(`${server.url}/k33g/hello/0.0.0/hello.wasm`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(bytes.length));
    assert.equal(head.headers.get('x-capsule-sha256'), sha256(bytes));

    const info = await fetch(`${server.url}/info/k33g/hello/0.0.0`);
    assert.equal(await info.text(), 'hello from k33g\n');
    assert.equal(info.headers.get('x-capsule-sha256'), sha256(bytes));

    const list = await (await fetch(`${server.url}/modules`)).json();
    assert.deepEqual(list, ['k33g', 'k33g/hello', 'k33g/hello/0.0.0', 'k33g/hello/0.0.0/hello.info', 'k33g/hello/0.0.0/hello.wasm', 'k33g/hello/0.0.0/hello.wasm.sha256']);
    // the Go layout on disk, and a sidecar that `sha256sum -c` reads
    assert.deepEqual(readFileSync(join(files, 'k33g/hello/0.0.0/hello.wasm')), Buffer.from(bytes));
    assert.equal(readFileSync(join(files, 'k33g/hello/0.0.0/hello.wasm.sha256'), 'utf8'), `${sha256(bytes)}  hello.wasm\n`);
  });

  it('a missing module, file or info is a 404 JSON reply; an unknown route is Go\'s PAGE_NOT_FOUND', async () => {
    for (const path of ['/k33g/hello/0.0.0/nope.wasm', '/k33g/nope/0.0.0/nope.wasm', '/info/k33g/nope/1.0.0']) {
      const res = await fetch(`${server.url}${path}`);
      assert.equal(res.status, 404, path);
      assert.equal((await res.json() as { code: string }).code, 'ERROR_NOT_FOUND', path);
    }
    const res = await fetch(`${server.url}/a/b`);
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { code: 'PAGE_NOT_FOUND', message: '😢 Page not found 🥵' });
  });

  it('traversal and bad names are refused with 400 and nothing is written outside the root', async () => {
    const before = tree(tmp);
    const long = 'a'.repeat(129);
    const veryLong = 'b'.repeat(400);
    for (const path of ['%2e%2e/x/1.0.0', 'k33g/%2e%2e/1.0.0', 'k33g/x/%2E', '../../x/1.0.0', '../x/1.0.0', 'k33g/../1.0.0', 'a%2Fb/x/1.0.0',
      '..%2F..%2Fetc/x/1.0.0', `${long}/x/1.0.0`, 'k33g/x%00y/1.0.0', 'k33g/x%20y/1.0.0', 'k33g/a/b/c']) {
      const res = await rawRequest(server.url, 'POST', `/upload/${path}`, bytes);
      assert.equal(res.status, 400, `${path}: ${res.body}`);
      assert.equal(JSON.parse(res.body).code, 'ERROR_INVALID_NAME', path);
    }
    // past the router's 256-character parameters, the router itself refuses: 414 URI Too Long
    const tooLong = await rawRequest(server.url, 'POST', `/upload/k33g/${veryLong}/1.0.0`, bytes);
    assert.equal(tooLong.status, 414);
    assert.equal(JSON.parse(tooLong.body).code, 'FST_ERR_MAX_PARAM_LENGTH');
    for (const path of ['/../../etc/passwd', '/k33g/hello/0.0.0/..%2F..%2F..%2Fhello.wasm', '/k33g/hello/%2e%2e/hello.wasm', `/k33g/hello/0.0.0/${veryLong}`, '/info/k33g/%2e%2e/x']) {
      const res = await rawRequest(server.url, 'GET', path);
      assert.notEqual(res.status, 200, path);
      assert.ok([400, 404, 414].includes(res.status), `${path}: ${res.status}`);
    }
    assert.equal((await rawRequest(server.url, 'GET', '/k33g/hello/%2e%2e/hello.wasm')).status, 400);
    assert.deepEqual(tree(tmp), before);
  });

  it('refuses what is not a WebAssembly module (400) and keeps nothing of it', async () => {
    const before = tree(files);
    const garbage = new TextEncoder().encode('#!/bin/sh\necho not wasm\n');
    const truncated = bytes.subarray(0, 200); // a valid header, then a cut section
    const component = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
    for (const [what, b] of [['text', garbage], ['truncated', truncated], ['component', component], ['empty', new Uint8Array()]] as const) {
      const up = await upload(server.url, `k33g/bad-${what}/1.0.0`, b);
      assert.equal(up.status, 400, what);
      assert.equal(up.body['code'], 'ERROR_NOT_WASM', what);
    }
    assert.deepEqual(tree(files), before);
  });

  it('checks an optional sha256 field: a wrong one is a 400 and stores nothing, the right one is accepted', async () => {
    const before = tree(files);
    const wrong = await upload(server.url, 'k33g/pinned/1.0.0', bytes, { sha256: '0'.repeat(64) });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body['code'], 'ERROR_SHA256_MISMATCH');
    const malformed = await upload(server.url, 'k33g/pinned/1.0.0', bytes, { sha256: 'xyz' });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body['code'], 'ERROR_INVALID_SHA256');
    assert.deepEqual(tree(files), before);
    // the field after the file works too, and `sha256:` prefixes are accepted
    const form = new FormData();
    form.append('file', new Blob([bytes]), 'hello.wasm');
    form.append('sha256', `sha256:${sha256(bytes).toUpperCase()}`);
    const ok = await fetch(`${server.url}/upload/k33g/pinned/1.0.0`, { method: 'POST', body: form });
    assert.equal(ok.status, 200);
  });

  it('refuses a module above --max-module-size with 413, leaves no file, and keeps serving', async () => {
    const before = tree(files);
    const big = new Uint8Array(1024 * 1024);
    big.set(bytes.subarray(0, 8)); // a wasm header, then far too many bytes
    const up = await upload(server.url, 'k33g/big/1.0.0', big);
    assert.equal(up.status, 413);
    assert.equal(up.body['code'], 'ERROR_MODULE_TOO_LARGE');
    // far larger: refused from its Content-Length, before the body is read
    const huge = new Uint8Array(4 * 1024 * 1024);
    huge.set(bytes.subarray(0, 8));
    const early = await upload(server.url, 'k33g/big/1.0.0', huge);
    assert.equal(early.status, 413);
    assert.equal(early.body['code'], 'ERROR_MODULE_TOO_LARGE');
    assert.deepEqual(tree(files), before);
    assert.equal((await fetch(`${server.url}/k33g/hello/0.0.0/hello.wasm`)).status, 200);
  });

  it('bad forms are 400 JSON refusals: no file field, not multipart, a JSON body', async () => {
    const form = new FormData();
    form.append('info', 'no file');
    const noFile = await fetch(`${server.url}/upload/k33g/x/1.0.0`, { method: 'POST', body: form });
    assert.equal(noFile.status, 400);
    assert.equal((await noFile.json() as { code: string }).code, 'ERROR_MISSING_FILE');
    const json = await fetch(`${server.url}/upload/k33g/x/1.0.0`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(json.status, 400);
    assert.equal((await json.json() as { code: string }).code, 'ERROR_NOT_MULTIPART');
    const wrongField = new FormData();
    wrongField.append('module', new Blob([bytes]), 'hello.wasm');
    const wf = await fetch(`${server.url}/upload/k33g/x/1.0.0`, { method: 'POST', body: wrongField });
    assert.equal(wf.status, 400);
    assert.ok(!tree(files).some((p) => p.startsWith('k33g/x')));
  });

  it('concurrent uploads of one name: every download is one complete upload, the last complete one wins', async () => {
    const modules = [bytes, ...others.map((p) => new Uint8Array(readFileSync(p)))];
    const digests = new Set(modules.map(sha256));
    let stop = false;
    const seen: string[] = [];
    const reader = (async () => {
      while (!stop) {
        const res = await fetch(`${server.url}/race/mod/1.0.0/mod.wasm`);
        if (res.status === 404) {
          await res.arrayBuffer();
          continue;
        }
        const body = new Uint8Array(await res.arrayBuffer());
        // never a torn file: the body is one of the modules, and the header describes that body
        assert.ok(digests.has(sha256(body)), 'a download is one of the uploaded modules');
        assert.equal(res.headers.get('x-capsule-sha256'), sha256(body));
        seen.push(sha256(body));
      }
    })();
    for (let round = 0; round < 5; round++) {
      const replies = await Promise.all(modules.map((m) => upload(server.url, 'race/mod/1.0.0', m, { info: sha256(m) })));
      for (const r of replies) assert.equal(r.status, 200);
    }
    stop = true;
    await reader;
    // the module, its info and its sidecar come from the same upload
    const dir = join(files, 'race/mod/1.0.0');
    const stored = sha256(readFileSync(join(dir, 'mod.wasm')));
    assert.equal(readFileSync(join(dir, 'mod.info'), 'utf8'), `${stored}\n`);
    assert.equal(readFileSync(join(dir, 'mod.wasm.sha256'), 'utf8'), `${stored}  mod.wasm\n`);
    assert.deepEqual(readdirSync(dir).sort(), ['mod.info', 'mod.wasm', 'mod.wasm.sha256'], 'no temporary file is left');
    // the last upload (alone) wins
    const last = modules[2]!;
    assert.equal((await upload(server.url, 'race/mod/1.0.0', last, { info: sha256(last) })).status, 200);
    assert.equal((await fetch(`${server.url}/race/mod/1.0.0/mod.wasm`)).headers.get('x-capsule-sha256'), sha256(last));
  });

  it('capsule run --url <download URL>#sha256=<hex> runs the pinned module and refuses another digest', async () => {
    const url = `${server.url}/k33g/hello/0.0.0/hello.wasm`;
    const ok = await runCapsule(['run', `--url=${url}#sha256=${sha256(bytes)}`, '--params=Bob']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /Bob/);
    const bad = await runCapsule(['run', `--url=${url}#sha256=${'1'.repeat(64)}`, '--params=Bob']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /digest mismatch/);
    const malformed = await runCapsule(['run', `--url=${url}#sha256=nothex`, '--params=Bob']);
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /64 hexadecimal digits/);
  });
});

describe('capsule-registry upload token (faas-api.md §9.1)', { skip }, () => {
  let tmp: string;
  let server: Server;
  const bytes = skip ? new Uint8Array() : new Uint8Array(readFileSync(hello));

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'capsule-registry-token-'));
    // the Go bin and Go flags
    server = await startServer(['-httpPort=0', `-files=${tmp}`], { bin: join(root, 'bin/capsule-registry.js'), env: { CAPSULE_REGISTRY_ADMIN_TOKEN: 'sesame' } });
  });
  after(async () => {
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('no token → 401, a wrong one → 403 (Go JSON shape), nothing stored', async () => {
    const none = await upload(server.url, 'k33g/hello/0.0.0', bytes);
    assert.equal(none.status, 401);
    assert.deepEqual(none.body, { code: 'KO', from: 'registry', message: 'Unauthorized' });
    const wrong = await upload(server.url, 'k33g/hello/0.0.0', bytes, {}, { CAPSULE_REGISTRY_ADMIN_TOKEN: 'open' });
    assert.equal(wrong.status, 403);
    assert.deepEqual(wrong.body, { code: 'KO', from: 'registry', message: 'Forbidden' });
    assert.deepEqual(readdirSync(tmp), []);
  });

  it('the right token in the Go header, its hyphenated form or a Bearer header uploads; downloads need none', async () => {
    const spellings: Record<string, string>[] = [{ CAPSULE_REGISTRY_ADMIN_TOKEN: 'sesame' }, { 'Capsule-Registry-Admin-Token': 'sesame' }, { authorization: 'Bearer sesame' }];
    for (const headers of spellings) {
      const up = await upload(server.url, 'k33g/hello/0.0.0', bytes, {}, headers);
      assert.equal(up.status, 200, JSON.stringify(headers));
    }
    const dl = await fetch(`${server.url}/k33g/hello/0.0.0/hello.wasm`);
    assert.equal(dl.status, 200);
    assert.deepEqual(new Uint8Array(await dl.arrayBuffer()), bytes);
    assert.equal((await fetch(`${server.url}/modules`)).status, 200);
  });

  it('the service routes answer: health, ready, metrics count stored uploads', async () => {
    assert.equal((await fetch(`${server.url}/capsule/health`)).status, 200);
    assert.equal((await fetch(`${server.url}/capsule/ready`)).status, 200);
    const metrics = await (await fetch(`${server.url}/capsule/metrics`)).text();
    assert.match(metrics, /capsule_registry_uploads_total\{outcome="ok"\} 3/);
  });
});
