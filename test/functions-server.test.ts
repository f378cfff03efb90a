/**
 * The multi-function server end to end (wasi-cgi.md §9, conventions.md §4): `capsule serve
 * --functions <dir>` (seed 003), WAGI modules.toml and Capsule YAML routes, revisions, 404 JSON,
 * broken modules next to good ones, mixed kinds, and modules replaced on disk while serving.
 * Real server processes on loopback; waits are bounded polls, no timing is asserted.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { eventually, example, fixture, missing, runCapsule, startServer, type Server } from './helpers.ts';

const CGI = fixture('wasi-cgi');
const CGI2 = fixture('wasi-cgi-v2');
const ROUTES = fixture('wasi-routes');
const YOU = example('hello-you');
const skip = missing(CGI) || missing(CGI2) || missing(ROUTES) || missing(YOU);

const work = mkdtempSync(join(tmpdir(), 'capsule-functions-'));
after(() => rmSync(work, { recursive: true, force: true }));

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(url, init);
  return { status: res.status, text: await res.text(), headers: res.headers };
}

function envOf(text: string): Record<string, string> {
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('capsule serve --functions: a directory of functions', { skip }, () => {
  const dir = join(work, 'functions');
  const names = Array.from({ length: 20 }, (_, i) => `fn${String(i + 1).padStart(2, '0')}`);
  let s: Server;
  before(async () => {
    mkdirSync(join(dir, 'fn01'), { recursive: true });
    mkdirSync(join(work, 'data'), { recursive: true });
    for (const n of names) copyFileSync(CGI, join(dir, `${n}.wasm`));
    copyFileSync(CGI2, join(dir, 'fn01', 'v2.wasm'));
    copyFileSync(YOU, join(dir, 'hello-you.wasm'));
    writeFileSync(join(dir, 'broken.wasm'), 'this is not wasm');
    writeFileSync(join(dir, 'fn02.capsule.yaml'), 'env:\n  OWN: two\ndir: [../data:/data]\ntimeout: 5s\n');
    writeFileSync(join(dir, 'README.txt'), 'not a module');
    s = await startServer(['serve', `--functions=${dir}`, '--http-port=0', '--env', 'GLOBAL=everyone', '--workers=2']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it('serves 20 functions concurrently, each at /<name> with its own SCRIPT_NAME', async () => {
    const calls = names.flatMap((n) => Array.from({ length: 5 }, (_, i) => ({ n, path: `/${n}/env?i=${i}` })));
    const results = await Promise.all(calls.map(async (c) => ({ c, r: await get(s.url + c.path) })));
    for (const { c, r } of results) {
      assert.equal(r.status, 200, c.path);
      const env = envOf(r.text);
      assert.equal(env.SCRIPT_NAME, `/${c.n}`, c.path);
      assert.equal(env.PATH_INFO, '/env', c.path);
      assert.equal(env.X_MATCHED_ROUTE, `/${c.n}/...`, c.path);
    }
  });

  it('gives each function its own grants; the runner environment is never inherited', async () => {
    const two = envOf((await get(`${s.url}/fn02/env`)).text);
    const three = envOf((await get(`${s.url}/fn03/env`)).text);
    assert.equal(two.OWN, 'two');
    assert.equal(three.OWN, undefined);
    assert.equal(two.GLOBAL, 'everyone');
    assert.equal(three.GLOBAL, 'everyone');
    assert.equal(three.PATH, undefined);
    assert.equal(three.HOME, undefined);
  });

  it('serves Capsule ABI modules next to WASI commands', async () => {
    const r = await get(`${s.url}/hello-you`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob', age: 42 }) });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.text), { message: 'Bob 42' });
  });

  it('serves revisions at /functions/<name>/<revision> and the default at /functions/<name>', async () => {
    assert.equal((await get(`${s.url}/functions/fn01/v2/version`)).text, 'v2\n');
    assert.equal((await get(`${s.url}/fn01/version`)).text, 'v1\n');
    const d = await get(`${s.url}/functions/fn01`);
    assert.equal(d.status, 200);
    assert.equal(d.text, 'unknown behaviour \n', 'PATH_INFO is empty at the exact route');
  });

  it('answers unknown paths with 404 JSON', async () => {
    for (const path of ['/nope', '/functions/fn01/nope', '/functions/nope', '/README.txt']) {
      const r = await get(s.url + path);
      assert.equal(r.status, 404, path);
      assert.deepEqual(JSON.parse(r.text), { error: `no route for ${path}` }, path);
    }
  });

  it('answers a module that cannot load with 500 JSON naming the error, logged once; the others serve', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await get(`${s.url}/broken`);
      assert.equal(r.status, 500);
      const err = JSON.parse(r.text);
      assert.equal(err.code, 'BAD_MODULE');
      assert.match(err.error, /broken\.wasm: not a WebAssembly binary/);
    }
    assert.equal(s.logs().split('\n').filter((l) => l.includes('cannot load') && l.includes('broken.wasm')).length, 1);
    const ready = JSON.parse((await get(`${s.url}/capsule/ready`)).text);
    assert.equal(ready.status, 'ready');
    assert.match(ready.failed.broken, /not a WebAssembly binary/);
    assert.equal((await get(`${s.url}/fn05/plain`)).status, 200);
  });

  it('answers /healthz with OK and labels metrics by function', async () => {
    const h = await get(`${s.url}/healthz`, { method: 'POST' });
    assert.equal(h.status, 200);
    assert.equal(h.text, 'OK');
    const m = await get(`${s.url}/capsule/metrics`);
    assert.match(m.text, /capsule_requests_total\{function="fn07",method="GET",status="200"\}|capsule_requests_total\{[^}]*function="fn07"/);
    assert.match(m.text, /capsule_errors_total\{function="broken",code="BAD_MODULE"\}/);
  });
});

describe('capsule serve --functions: files changed while serving', { skip }, () => {
  const dir = join(work, 'hot');
  let s: Server;
  before(async () => {
    mkdirSync(dir, { recursive: true });
    copyFileSync(CGI, join(dir, 'hot.wasm'));
    s = await startServer(['serve', `--functions=${dir}`, '--http-port=0', '--workers=2']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  /** Requests /hot/version in a loop until `until` resolves; returns every status and body. */
  async function hammer(until: Promise<void>): Promise<{ status: number; text: string }[]> {
    const seen: { status: number; text: string }[] = [];
    let stop = false;
    void until.finally(() => (stop = true));
    const loop = async () => {
      for (let i = 0; i < 5000 && !stop; i++) seen.push(await get(`${s.url}/hot/version`));
    };
    await Promise.all([loop(), loop(), loop()]);
    return seen;
  }

  it('a module replaced on disk (rename over it) answers in its new version, and no request fails', async () => {
    assert.equal((await get(`${s.url}/hot/version`)).text, 'v1\n');
    const swapped = (async () => {
      await new Promise((r) => setTimeout(r, 50));
      copyFileSync(CGI2, join(dir, '.hot.tmp'));
      renameSync(join(dir, '.hot.tmp'), join(dir, 'hot.wasm'));
      await eventually(async () => (await get(`${s.url}/hot/version`)).text === 'v2\n', 10_000);
    })();
    const seen = await hammer(swapped);
    await swapped;
    assert.deepEqual(seen.filter((r) => r.status !== 200), [], 'no request failed during the swap');
    assert.ok(seen.every((r) => r.text === 'v1\n' || r.text === 'v2\n'));
  });

  it('a module overwritten in place answers in its new version, and no request fails', async () => {
    const swapped = (async () => {
      await new Promise((r) => setTimeout(r, 50));
      copyFileSync(CGI, join(dir, 'hot.wasm')); // truncate + write: partial files are seen
      await eventually(async () => (await get(`${s.url}/hot/version`)).text === 'v1\n', 10_000);
    })();
    const seen = await hammer(swapped);
    await swapped;
    assert.deepEqual(seen.filter((r) => r.status !== 200), []);
  });

  it('a module added to the directory is served, and a removed one answers 404', async () => {
    copyFileSync(CGI2, join(dir, 'added.wasm'));
    await eventually(async () => (await get(`${s.url}/added/version`)).status === 200, 10_000);
    assert.equal((await get(`${s.url}/added/version`)).text, 'v2\n');
    unlinkSync(join(dir, 'added.wasm'));
    await eventually(async () => (await get(`${s.url}/added/version`)).status === 404, 10_000);
    assert.equal((await get(`${s.url}/hot/version`)).status, 200);
  });
});

describe('capsule serve with WAGI modules.toml', { skip }, () => {
  let s: Server;
  const toml = join(work, 'modules.toml');
  before(async () => {
    mkdirSync(join(work, 'volume'), { recursive: true });
    writeFileSync(toml, `
# a WAGI file, read as it is
[[module]]
route = "/routes/..."
module = "${pathToFileURL(ROUTES).href}"

[[module]]
route = "/cgi/..."
module = "${CGI}"
environment = { GREETING = "hello", REQUEST_METHOD = "cannot override" }
volumes = { "/data" = "${join(work, 'volume')}" }
allowed_hosts = ["example.com"]

[[module]]
route = "/args/..."
module = "${CGI}"
argv = "\${SCRIPT_NAME} --flag \${ARGS}"
entrypoint = "_start"

[[module]]
route = "/slow/..."
module = "${CGI}"
http_max_concurrency = 1

[[module]]
route = "/you"
module = "${YOU}"
kind = "capsule-2"

[[module]]
route = "/cgi/never"
module = "${CGI}"

[[module]]
route = "/oci"
module = "oci:example/thing:1"
`);
    s = await startServer(['serve', `--config=${toml}`, '--http-port=0', '--timeout=1500ms', '--workers=2', '--env', 'FROM_FLAG=1']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it('matches wildcard routes (the prefix and below) with SCRIPT_NAME, PATH_INFO and the route environment', async () => {
    const env = envOf((await get(`${s.url}/cgi/env?x=%20y`)).text);
    assert.equal(env.SCRIPT_NAME, '/cgi');
    assert.equal(env.PATH_INFO, '/env');
    assert.equal(env.X_MATCHED_ROUTE, '/cgi/...');
    assert.equal(env.GREETING, 'hello');
    assert.equal(env.FROM_FLAG, '1');
    assert.equal(env.REQUEST_METHOD, 'GET');
    const root = await get(`${s.url}/cgi`);
    assert.equal(root.status, 200);
    assert.equal(root.text, 'unknown behaviour \n');
  });

  it('applies the argv template; exact routes match only exactly', async () => {
    const a = await get(`${s.url}/args/env?one&two=2`);
    assert.equal(a.status, 200);
    assert.match(a.text, /^argv\[0\]=\/args\/env\nargv\[1\]=--flag\nargv\[2\]=one\nargv\[3\]=two=2\n/);
    assert.equal((await get(`${s.url}/you/more`)).status, 404);
  });

  it('adds _routes sub-routes, tried before the parent, the last line first', async () => {
    assert.equal((await get(`${s.url}/routes/hello`)).text, 'shadowed entrypoint\n');
    assert.equal((await get(`${s.url}/routes/goodbye/a/b`)).text, 'goodbye entrypoint\n');
    assert.equal((await get(`${s.url}/routes/goodbye`)).text, 'goodbye entrypoint\n');
    assert.equal((await get(`${s.url}/routes/other`)).text, 'parent _start\n');
    assert.equal((await get(`${s.url}/routes`)).text, 'parent _start\n');
  });

  it('serves a Capsule module from the same table, answers /healthz and 404 JSON', async () => {
    const r = await get(`${s.url}/you`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"Ann","age":7}' });
    assert.deepEqual(JSON.parse(r.text), { message: 'Ann 7' });
    assert.equal((await get(`${s.url}/healthz`)).text, 'OK');
    const nf = await get(`${s.url}/elsewhere`);
    assert.equal(nf.status, 404);
    assert.deepEqual(JSON.parse(nf.text), { error: 'no route for /elsewhere' });
  });

  it('warns about allowed_hosts and unreachable routes; oci: references answer 500 "not supported"', async () => {
    await eventually(() => /allowed_hosts is accepted and ignored/.test(s.logs()) && /route \/cgi\/never .* is unreachable/.test(s.logs()));
    const r = await get(`${s.url}/oci`);
    assert.equal(r.status, 500);
    assert.match(JSON.parse(r.text).error, /oci module references are not supported/);
  });

  it('limits a route to http_max_concurrency requests (more → 503)', async () => {
    const [a, b] = await Promise.all([get(`${s.url}/slow/sleep`), new Promise((r) => setTimeout(r, 300)).then(() => get(`${s.url}/slow/sleep`))]);
    assert.deepEqual([a.status, b.status].sort(), [503, 504]);
  });
});

describe('capsule serve with a Capsule routes YAML', { skip }, () => {
  it('serves named functions with their own route, settings and revisions', async () => {
    const yaml = join(work, 'routes.yaml');
    writeFileSync(yaml, `functions:
  greet:
    wasm: ${CGI}
    route: /hello/...
    env: { WHO: world }
    timeout: 2s
    revisions:
      next: ${CGI2}
  plain: ${CGI2}
`);
    const s = await startServer(['serve', `--routes=${yaml}`, '--http-port=0', '--workers=1']);
    try {
      const env = envOf((await get(`${s.url}/hello/env`)).text);
      assert.equal(env.WHO, 'world');
      assert.equal(env.X_MATCHED_ROUTE, '/hello/...');
      assert.equal((await get(`${s.url}/greet/version`)).status, 404, 'an explicit route replaces /<name>');
      assert.equal((await get(`${s.url}/functions/greet/next/version`)).text, 'v2\n');
      assert.equal((await get(`${s.url}/plain/version`)).text, 'v2\n');
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  it('refuses unknown keys, naming the key and the file', async () => {
    const yaml = join(work, 'bad.yaml');
    writeFileSync(yaml, `functions:\n  greet:\n    wasm: ${CGI}\n    timout: 2s\n`);
    const r = await runCapsule(['serve', `--routes=${yaml}`, '--http-port=0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`${yaml.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: unknown key "functions\\.greet\\.timout"`));
    const toml = join(work, 'bad.toml');
    writeFileSync(toml, `[[module]]\nroute = "/x"\nmodule = "${CGI}"\nenviroment = { A = "b" }\n`);
    const t = await runCapsule(['serve', `--routes=${toml}`, '--http-port=0']);
    assert.equal(t.code, 2);
    assert.match(t.stderr, /bad\.toml: unknown key "module\[0\]\.enviroment"/);
  });
});
