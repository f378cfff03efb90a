/**
 * Hot reload of `capsule serve` (faas-api.md §8, §9.1, §9.8) and `capsule serve --watch`: real
 * server processes, a real file server for the downloads, real HTTP clients on loopback.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, fileServer, findBinary, fixture, missing, runCapsule, startServer, type Server } from './helpers.ts';

const V1 = fixture('wasi-cgi'); // GET /version → "v1\n"
const V2 = fixture('wasi-cgi-v2'); // GET /version → "v2\n"
const GEN1B = fixture('gen1-1b'); // gen 1: X-Gen: 1b; OnLoad logs "OnLoad called", OnExit "OnExit: …"
const GEN1C = fixture('gen1-1c');
const GATE = fixture('wasi-gate'); // answers once the file /gate/open exists
const skip = missing(V1) || missing(V2) || missing(GEN1B) || missing(GEN1C) || missing(GATE);

const ROUTE = '/load-wasm-module';

/** POSTs a reload request; returns status and text. */
async function reload(s: Server, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await fetch(s.url + ROUTE, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

async function version(s: Server): Promise<{ status: number; text: string }> {
  const res = await fetch(`${s.url}/version`);
  return { status: res.status, text: await res.text() };
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('POST /load-wasm-module', { skip }, () => {
  let work: string;
  let mods: string;
  let files: Awaited<ReturnType<typeof fileServer>>;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'capsule-reload-'));
    mods = join(work, 'modules');
    mkdirSync(join(work, 'downloads'));
    mkdirSync(mods);
    copyFileSync(V1, join(work, 'downloads', 'v1.wasm'));
    copyFileSync(V2, join(work, 'downloads', 'v2.wasm'));
    copyFileSync(GEN1C, join(work, 'downloads', 'gen1c.wasm'));
    writeFileSync(join(work, 'downloads', 'garbage.wasm'), 'this is not a module');
    files = await fileServer(join(work, 'downloads'));
  });
  /** A fresh copy of `from` in the modules directory, to serve. */
  const serve = (from: string, name: string): string => {
    copyFileSync(from, join(mods, name));
    return join(mods, name);
  };
  after(async () => {
    await files.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('reloads under load: no request fails, and every request after the reply runs the new module', async () => {
    const served = serve(V1, 'load.wasm');
    const s = await startServer(['serve', served, '--http-port=0', '--workers=2']);
    const seen = new Map<string, number>();
    const failures: string[] = [];
    let stop = false;
    const client = async () => {
      while (!stop) {
        try {
          const r = await version(s);
          const key = `${r.status} ${r.text.trim()}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
          if (r.status !== 200) failures.push(key);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);
    try {
      for (const v of ['v2', 'v1', 'v2', 'v1', 'v2']) {
        const r = await reload(s, { url: `${files.url}/${v}.wasm`, path: served });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.text, `🙂 ${files.url}/${v}.wasm loaded`);
        assert.equal((await version(s)).text, `${v}\n`, 'a request that starts after the reply runs the new module');
      }
    } finally {
      stop = true;
      await Promise.all(clients);
    }
    try {
      assert.deepEqual(failures, []);
      assert.ok((seen.get('200 v1') ?? 0) > 0 && (seen.get('200 v2') ?? 0) > 0, JSON.stringify([...seen]));
      assert.deepEqual([...seen.keys()].sort(), ['200 v1', '200 v2']);
      assert.equal(sha256(served), sha256(V2), 'the module was saved at path');
      await eventually(() => (s.logs().match(/"module reloaded"/g) ?? []).length === 5);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('lets a call in flight finish on the old module while new calls go to the new one', async () => {
    const gate = join(work, 'gate');
    mkdirSync(gate);
    const s = await startServer(['serve', serve(GATE, 'gate.wasm'), '--http-port=0', '--workers=2', `--dir=${gate}:/gate`]);
    try {
      const held = fetch(`${s.url}/held`).then(async (r) => ({ status: r.status, text: await r.text() }));
      await eventually(async () => /^capsule_inflight_requests 1$/m.test(await (await fetch(`${s.url}/capsule/metrics`)).text()));
      const r = await reload(s, { url: `${files.url}/v2.wasm`, path: join(mods, 'gate.wasm') });
      assert.equal(r.status, 200, r.text);
      assert.equal((await version(s)).text, 'v2\n');
      writeFileSync(join(gate, 'open'), '');
      assert.deepEqual(await held, { status: 200, text: 'gate open\n' }, 'the held call ran to its end on the old module');
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('runs OnLoad of the new module, and OnExit of the old one once its calls are done', async () => {
    const s = await startServer(['serve', serve(GEN1B, 'gen1.wasm'), '--http-port=0', '--workers=1']);
    try {
      const before = await fetch(s.url, { method: 'POST', body: 'hello' });
      assert.equal(before.headers.get('x-gen'), '1b');
      await eventually(() => /OnLoad called/.test(s.logs()));
      assert.doesNotMatch(s.logs(), /OnExit/);
      const r = await reload(s, { url: `${files.url}/gen1c.wasm`, path: join(mods, 'gen1c.wasm') });
      assert.equal(r.status, 200, r.text);
      const after = await fetch(s.url, { method: 'POST', body: 'hello' });
      assert.equal(after.headers.get('x-gen'), '1c');
      await eventually(() => (s.logs().match(/OnLoad called/g) ?? []).length === 2);
      await eventually(() => /OnExit: /.test(s.logs()));
      // a module of another kind (a WASI command) replaces it just as well
      const w = await reload(s, { url: `${files.url}/v2.wasm`, path: join(mods, 'v2.wasm') });
      assert.equal(w.status, 200, w.text);
      assert.equal((await version(s)).text, 'v2\n');
      const ready = await (await fetch(`${s.url}/capsule/ready`)).json() as { module: string; kind: string };
      assert.deepEqual([ready.module, ready.kind], ['v2.wasm', 'wasi'], '/capsule/ready names the module serving now');
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('keeps the old module serving when the new one cannot be loaded (bad bytes, unreachable URL, sha256 mismatch)', async () => {
    const served = serve(V1, 'kept.wasm');
    const s = await startServer(['serve', served, '--http-port=0', '--workers=1']);
    try {
      const bad = await reload(s, { url: `${files.url}/garbage.wasm`, path: served });
      assert.equal(bad.status, 500);
      assert.match(bad.text, /^😡\[\/load-wasm-module\] garbage\.wasm: /);
      const gone = await reload(s, { url: `${files.url}/nothing.wasm`, path: join(mods, 'x.wasm') });
      assert.equal(gone.status, 500);
      assert.match(gone.text, /^😡\[\/load-wasm-module\] cannot download .*HTTP 404/);
      const wrong = await reload(s, { url: `${files.url}/v2.wasm`, path: served, sha256: sha256(V1) });
      assert.equal(wrong.status, 500);
      assert.match(wrong.text, /^😡\[\/load-wasm-module\] .*digest mismatch/);
      assert.equal((await version(s)).text, 'v1\n', 'the old module keeps serving');
      assert.equal(sha256(served), sha256(V1), 'nothing was written over the served file');
      assert.equal(existsSync(join(mods, 'x.wasm')), false);
      const right = await reload(s, { url: `${files.url}/v2.wasm`, path: served, sha256: sha256(V2) });
      assert.equal(right.status, 200, right.text);
      assert.equal((await version(s)).text, 'v2\n');
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('refuses a download above 64 MiB, declared or streamed, naming the URL and the limit; the old module keeps serving', async () => {
    const chunk = Buffer.alloc(1024 * 1024);
    const big = createServer((req, res) => {
      if (req.url === '/declared.wasm') {
        res.writeHead(200, { 'content-length': String(64 * 1024 * 1024 + 1) });
        res.write(chunk); // and never the rest
        return;
      }
      res.writeHead(200); // chunked, without end
      const more = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', more);
      more();
    });
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(big.address() as { port: number }).port}`;
    const served = serve(V1, 'capped.wasm');
    const s = await startServer(['serve', served, '--http-port=0', '--workers=1']);
    try {
      for (const name of ['declared.wasm', 'streamed.wasm']) {
        const r = await reload(s, { url: `${base}/${name}`, path: served });
        assert.equal(r.status, 500, r.text);
        assert.match(r.text, new RegExp(`^😡\\[/load-wasm-module\\] cannot download ${base}/${name}: the module is .*above the limit of 64 MiB`));
      }
      assert.equal((await version(s)).text, 'v1\n', 'the old module keeps serving');
    } finally {
      assert.equal(await s.stop(), 0);
      big.closeAllConnections();
      await new Promise((r) => big.close(r));
    }
  });

  it('refuses a path outside the modules directory, a URL that is not http(s) and a body that is not the request', async () => {
    symlinkSync(tmpdir(), join(mods, 'escape'));
    const s = await startServer(['serve', serve(V1, 'refuse.wasm'), '--http-port=0', '--workers=1']);
    try {
      const url = `${files.url}/v2.wasm`;
      for (const path of [join(work, 'outside.wasm'), `${mods}/../outside.wasm`, join(mods, 'escape', 'outside.wasm'), mods, '/etc/passwd']) {
        const r = await reload(s, { url, path });
        assert.equal(r.status, 400, path);
        assert.match(r.text, /^😡\[\/load-wasm-module\] "path" .* is outside the modules directory/);
      }
      assert.equal(existsSync(join(work, 'outside.wasm')), false);
      assert.equal(existsSync(join(tmpdir(), 'outside.wasm')), false);
      const file = await reload(s, { url: `file://${V2}`, path: join(mods, 'a.wasm') });
      assert.equal(file.status, 400);
      assert.match(file.text, /"url" must be http or https, not file/);
      for (const body of ['{not json', '{"url":"http://x/a.wasm"}', '[]', '{"url":"http://x/a.wasm","path":"a.wasm","sha256":"abc"}']) {
        const r = await reload(s, body);
        assert.equal(r.status, 400, body);
        assert.match(r.text, /^😡\[\/load-wasm-module\] /);
      }
      assert.equal((await version(s)).text, 'v1\n', 'still serving');
      // other methods on the path reach the guest
      const get = await fetch(s.url + ROUTE);
      assert.equal(get.status, 200);
      assert.match(await get.text(), /unknown behaviour \/load-wasm-module/);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('a path inside --modules-dir is accepted anywhere', async () => {
    const other = join(work, 'other');
    const served = serve(V1, 'dir.wasm');
    const s = await startServer(['serve', served, '--http-port=0', '--workers=1', `--modules-dir=${other}`]);
    try {
      assert.equal((await reload(s, { url: `${files.url}/v2.wasm`, path: served })).status, 400);
      const r = await reload(s, { url: `${files.url}/v2.wasm`, path: join(other, 'nested', 'v2.wasm') });
      assert.equal(r.status, 200, r.text);
      assert.equal(sha256(join(other, 'nested', 'v2.wasm')), sha256(V2));
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('with CAPSULE_RELOAD_TOKEN: absent → 401, wrong → 403 (Go text bodies), right in any accepted spelling → 200', async () => {
    const s = await startServer(['serve', serve(V1, 'token.wasm'), '--http-port=0', '--workers=1'], { env: { CAPSULE_RELOAD_TOKEN: 'ilovepandas' } });
    try {
      const body = { url: `${files.url}/v2.wasm`, path: join(mods, 'tok.wasm') };
      const none = await reload(s, body);
      assert.deepEqual(none, { status: 401, text: '😡[/load-wasm-module] Unauthorized' });
      const wrong = await reload(s, body, { CAPSULE_RELOAD_TOKEN: 'ilovecats' });
      assert.deepEqual(wrong, { status: 403, text: '😡[/load-wasm-module] Forbidden' });
      assert.equal((await reload(s, body, { authorization: 'Bearer nope' })).status, 403);
      assert.equal(existsSync(join(mods, 'tok.wasm')), false);
      for (const headers of [{ CAPSULE_RELOAD_TOKEN: 'ilovepandas' } as Record<string, string>, { 'Capsule-Reload-Token': 'ilovepandas' }, { authorization: 'Bearer ilovepandas' }]) {
        const ok = await reload(s, body, headers);
        assert.equal(ok.status, 200, JSON.stringify(headers));
        assert.equal(ok.text, `🙂 ${files.url}/v2.wasm loaded`);
      }
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  it('without a token, refuses clients that are not on loopback (403) unless --insecure-admin', { skip: external ? false : 'no non-loopback IPv4 address on this machine' }, async () => {
    const strict = await startServer(['serve', serve(V1, 'strict.wasm'), '--http-port=0', '--workers=1', '--host=0.0.0.0'], { env: { CAPSULE_RELOAD_TOKEN: '' } });
    const open = await startServer(['serve', serve(V1, 'open.wasm'), '--http-port=0', '--workers=1', '--host=0.0.0.0', '--insecure-admin'], { env: { CAPSULE_RELOAD_TOKEN: '' } });
    try {
      const body = JSON.stringify({ url: `${files.url}/v2.wasm`, path: join(mods, 'ext.wasm') });
      const via = (s: Server) => fetch(`http://${external}:${new URL(s.url).port}${ROUTE}`, { method: 'POST', body });
      const refused = await via(strict);
      assert.equal(refused.status, 403);
      assert.equal(await refused.text(), '😡[/load-wasm-module] Forbidden');
      assert.equal((await via(open)).status, 200);
    } finally {
      assert.equal(await strict.stop(), 0);
      assert.equal(await open.stop(), 0);
    }
  });
});

describe('capsule serve --watch', { skip }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'capsule-watch-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('reloads the module when its file changes, and keeps the old one serving through a garbage or truncated write', async () => {
    const hot = join(work, 'hot.wasm');
    copyFileSync(V1, hot);
    const s = await startServer(['serve', hot, '--watch', '--http-port=0', '--workers=1']);
    try {
      assert.equal((await version(s)).text, 'v1\n');
      copyFileSync(V2, hot); // truncate + write: the watcher may see a partial file first
      await eventually(async () => (await version(s)).text === 'v2\n', 10_000);
      writeFileSync(hot, 'garbage, not wasm');
      await eventually(() => /--watch: .*hot\.wasm.*the previous module keeps serving/.test(s.logs()), 10_000);
      assert.equal((await version(s)).text, 'v2\n');
      writeFileSync(hot, readFileSync(V1).subarray(0, 100)); // truncated
      await eventually(() => (s.logs().match(/--watch: .*the previous module keeps serving/g) ?? []).length >= 2, 10_000);
      assert.equal((await version(s)).text, 'v2\n');
      copyFileSync(V1, hot);
      await eventually(async () => (await version(s)).text === 'v1\n', 10_000);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('builds a capsule new project given as a folder, rebuilds and reloads it when a source changes, and keeps serving through a failed build', { skip: findBinary('clang') ? false : 'clang is not installed' }, async () => {
    const dir = join(work, 'greet');
    const made = await runCapsule(['new', 'greet', '--lang', 'c', '--http', `--dir=${dir}`]);
    assert.equal(made.code, 0, made.stderr);
    const s = await startServer(['serve', dir, '--watch', '--http-port=0', '--workers=1']);
    const greet = async () => (await fetch(s.url, { method: 'POST', body: '{"name":"Bob"}' })).text();
    try {
      assert.match(await greet(), /Hello Bob/);
      const main = join(dir, 'main.c');
      writeFileSync(main, readFileSync(main, 'utf8').replace('Hello %s', 'Bye %s'));
      await eventually(async () => /Bye Bob/.test(await greet()), 30_000);
      writeFileSync(main, `${readFileSync(main, 'utf8')}\nthis is not C;\n`);
      await eventually(() => /--watch: .*the previous module keeps serving/.test(s.logs()), 30_000);
      assert.match(await greet(), /Bye Bob/);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('needs a module file or a project', async () => {
    const r = await runCapsule(['serve', '--url=http://127.0.0.1:9/x.wasm', '--watch', '--http-port=0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--watch follows a module file/);
    const none = await runCapsule(['serve', '--watch', '--http-port=0'], { cwd: work });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--watch follows a module file or a function project/);
  });
});
