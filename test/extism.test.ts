/**
 * Extism plugins (extism-abi.md) through the real `capsule call` and `capsule serve`: a C plugin
 * built without a PDK (test/fixtures/extism-kitchen.c) that declares the `extism:host/env`
 * imports itself and moves bytes as the PDKs do.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { fixture, missing, runCapsule, startServer } from './helpers.ts';
import { findBinary, startNatsServer, startRunner, type Broker } from './brokers.ts';

const plugin = fixture('extism-kitchen');
const skip = missing(plugin);

describe('capsule call: input and output', { skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-extism-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the output bytes exactly, with no newline added for a pipe', async () => {
    const r = await runCapsule(['call', plugin, 'echo', '--input', 'héllo 👋']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdoutBytes, Buffer.from('héllo 👋'));
  });

  it('round-trips a 1 MiB binary input read from a file', async () => {
    const data = randomBytes(1024 * 1024 + 3);
    const file = join(dir, 'big.bin');
    writeFileSync(file, data);
    const r = await runCapsule(['call', plugin, 'echo', '--input-file', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdoutBytes.length, data.length);
    assert.ok(r.stdoutBytes.equals(data), 'output bytes differ from the input');
  });

  it('reads the input from stdin with --input-file -', async () => {
    const r = await runCapsule(['call', plugin, 'count_vowels', '--input-file', '-'], { stdin: 'Hello, World' });
    assert.equal(r.stdout, '{"count":3}');
  });

  it('fails with "Function not found" for a missing export', async () => {
    const r = await runCapsule(['call', plugin, 'nosuch']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, '❌ Function not found: nosuch\n');
  });

  it('runs a plugin that has no linear memory; a function with parameters is not a plugin function', { skip: missing(fixture('extism-nomem')) }, async () => {
    const ok = await runCapsule(['call', fixture('extism-nomem'), 'empty']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, '');
    const bad = await runCapsule(['call', fixture('extism-nomem'), 'with_param']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, '❌ Function with_param takes 1 parameters; Extism plugin functions take none\n');
  });

  it('a call may make (and free) 200 000 blocks', { skip: missing(fixture('extism-blocks')) }, async () => {
    const r = await runCapsule(['call', fixture('extism-blocks'), 'many']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'many ok!');
  });

  it('fails the call when the plugin reads past its input (§4)', async () => {
    const r = await runCapsule(['call', plugin, 'overread', '--input', 'abc']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^❌ .*outside a live block/);
  });
});

describe('capsule call: config, vars, errors', { skip }, () => {
  it('gives the plugin its --config entries', async () => {
    const r = await runCapsule(['call', plugin, 'config', '--input', 'greeting', '--config', 'greeting=hi there', '--config', 'other=x']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi there');
  });

  it('an error_set is the failure message on stderr after ❌, exit 1', async () => {
    const absent = await runCapsule(['call', plugin, 'config', '--input', 'greeting']);
    assert.equal(absent.code, 1);
    assert.equal(absent.stderr, '❌ no config key greeting\n');
    assert.equal(absent.stdout, '');
    const fail = await runCapsule(['call', plugin, 'fail']);
    assert.equal(fail.code, 1);
    assert.equal(fail.stderr, '❌ something went wrong\n');
  });

  it('a non-zero return without error is "Returned non-zero exit code"', async () => {
    const r = await runCapsule(['call', plugin, 'rc']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, '❌ Returned non-zero exit code: 3\n');
  });

  it('handles follow §2–§4: alloc(0), lengths, double free, absent keys, var delete, freeing the input', async () => {
    const r = await runCapsule(['call', plugin, 'semantics', '--input', 'some input']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok');
  });

  it('WASI proc_exit(0) is a success with the output set; proc_exit(n) a failure', async () => {
    const ok = await runCapsule(['call', plugin, 'exit_with', '--input', '0']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'before exit');
    const bad = await runCapsule(['call', plugin, 'exit_with', '--input', '7']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, '❌ exit code 7\n');
  });

  it('vars start empty in a new plugin and are read back within a call', async () => {
    const r = await runCapsule(['call', plugin, 'count']);
    assert.equal(r.stdout, '1');
  });

  it('one instance per plugin per worker: vars and globals survive calls; a trap resets the instance, not the vars (§11)', async () => {
    const s = await startServer(['serve', plugin, '--http-port', '0', '--workers', '1']);
    try {
      const bodies: string[] = [];
      const post = async (body: string) => {
        const res = await fetch(s.url, { method: 'POST', body });
        bodies.push(`${res.status} ${await res.text()}`);
      };
      for (const body of ['a', 'b', 'trap', 'c']) await post(body);
      assert.equal(bodies[0], '200 1/1:a');
      assert.equal(bodies[1], '200 2/2:b');
      assert.match(bodies[2]!, /^500 /);
      assert.equal(bodies[3], '200 4/1:c');
    } finally {
      await s.stop();
    }
  });

  it('--fresh: a fresh instance per call (globals start over), vars still survive', async () => {
    const s = await startServer(['serve', plugin, '--http-port', '0', '--workers', '1', '--fresh']);
    try {
      const bodies: string[] = [];
      for (const body of ['a', 'b']) bodies.push(await (await fetch(s.url, { method: 'POST', body })).text());
      assert.deepEqual(bodies, ['1/1:a', '2/1:b']);
    } finally {
      await s.stop();
    }
  });
});

describe('capsule call: manifests', { skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-extism-m-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, manifest: unknown): string => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(manifest));
    return path;
  };

  it('takes wasm (checked against its hash) and config from the manifest', async () => {
    const hash = createHash('sha256').update(readFileSync(plugin)).digest('hex');
    const m = write('ok.json', { wasm: [{ path: plugin, hash }], config: { greeting: 'from manifest' } });
    const r = await runCapsule(['call', m, 'config', '--input', 'greeting']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from manifest');
  });

  it('downloads the module from a manifest url with its headers, checked against its hash', async () => {
    const bytes = readFileSync(plugin);
    let auth: string | undefined;
    const server = createServer((req, res) => {
      auth = req.headers.authorization;
      res.writeHead(200, { 'Content-Type': 'application/wasm' }).end(bytes);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/plugin.wasm`;
      const hash = createHash('sha256').update(bytes).digest('hex');
      const m = write('url.json', { wasm: [{ url, headers: { Authorization: 'Bearer t0ken' }, hash }] });
      const r = await runCapsule(['call', m, 'count_vowels', '--input', 'aeiou']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '{"count":5}');
      assert.equal(auth, 'Bearer t0ken');
      const direct = await runCapsule(['call', url, 'count_vowels', '--input', 'ae']);
      assert.equal(direct.stdout, '{"count":2}', direct.stderr);
    } finally {
      server.close();
    }
  });

  it('links several modules by name: the main one imports the others\' exports', { skip: missing(fixture('extism-linked')) }, async () => {
    const m = write('linked.json', { wasm: [{ path: fixture('extism-lib'), name: 'lib' }, { path: fixture('extism-linked') }] });
    const r = await runCapsule(['call', m, 'answer']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '42');
    const alone = await runCapsule(['call', fixture('extism-linked'), 'answer']);
    assert.equal(alone.code, 1);
    assert.match(alone.stderr, /imports lib\.double; extism modules may import only from/);
    const unnamed = write('unnamed.json', { wasm: [{ path: fixture('extism-lib') }, { path: fixture('extism-linked') }] });
    assert.match((await runCapsule(['call', unnamed, 'answer'])).stderr, /every module but the main one needs a "name"/);
  });

  it('refuses a module whose hash does not match', async () => {
    const m = write('bad.json', { wasm: [{ path: plugin, hash: '0'.repeat(64) }] });
    const r = await runCapsule(['call', m, 'echo']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Hash mismatch, found [0-9a-f]{64} but expected 0{64}/);
  });

  it('refuses unknown fields', async () => {
    const m = write('unknown.json', { wasm: [{ path: plugin }], colour: 'blue' });
    const r = await runCapsule(['call', m, 'echo']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown field colour/);
  });

  it('memory.max_var_bytes caps the vars: "Variable store is full"', async () => {
    const m = write('vars.json', { wasm: [{ path: plugin }], memory: { max_var_bytes: 16 } });
    const small = await runCapsule(['call', '--manifest', m, 'x', 'store', '--input', 'tiny']);
    assert.equal(small.stdout, 'stored', small.stderr);
    const big = await runCapsule(['call', '--manifest', m, 'x', 'store', '--input', 'this value is far too long']);
    assert.equal(big.code, 1);
    assert.equal(big.stderr, '❌ Variable store is full\n');
    const off = write('novars.json', { wasm: [{ path: plugin }], memory: { max_var_bytes: 0 } });
    const disabled = await runCapsule(['call', off, 'store', '--input', 'x']);
    assert.equal(disabled.stderr, '❌ Vars are disabled by this host\n');
  });
});

describe('capsule call: http_request', { skip }, () => {
  let server: Server;
  let base: string;
  const seen: { method?: string; header?: string; body: string }[] = [];
  before(async () => {
    server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method, header: req.headers['x-plugin'] as string, body: Buffer.concat(chunks).toString() });
        res.writeHead(201, { 'Content-Type': 'text/plain' }).end('pong');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hello`;
  });
  after(() => server.close());

  it('makes the request when the host is allowed, with method, headers and body', async () => {
    const r = await runCapsule(['call', plugin, 'http_get', '--input', base, '--allowed-hosts', '127.0.0.1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '201 pong');
    assert.deepEqual(seen.at(-1), { method: 'POST', header: 'kitchen', body: 'ping' });
  });

  it('http_headers gives the last response\'s headers as a JSON object', async () => {
    const r = await runCapsule(['call', plugin, 'http_headers', '--input', base, '--allowed-hosts', '127.0.0.1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as Record<string, string>)['content-type'], 'text/plain');
  });

  it('fails the call when the host is not on the allow-list (none by default)', async () => {
    const before = seen.length;
    const r = await runCapsule(['call', plugin, 'http_get', '--input', base]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^❌ HTTP request to ${base.replace(/[.?/]/g, '\\$&')} is not allowed`));
    const other = await runCapsule(['call', plugin, 'http_get', '--input', base, '--allowed-hosts', 'example.com']);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /is not allowed/);
    assert.equal(seen.length, before, 'a refused request reached the server');
  });
});

describe('capsule call: logs, traps, deadlines', { skip }, () => {
  it('writes plugin logs at and above --log-level with the plugin name; get_log_level agrees', async () => {
    const debug = await runCapsule(['call', plugin, 'logs', '--log-level', 'debug']);
    assert.equal(debug.stdout, '1');
    assert.match(debug.stderr, /\[extism-kitchen\.wasm\] DEBUG a debug line/);
    assert.match(debug.stderr, /\[extism-kitchen\.wasm\] ERROR an error line/);
    assert.doesNotMatch(debug.stderr, /TRACE/);
    const dflt = await runCapsule(['call', plugin, 'logs']);
    assert.equal(dflt.stdout, '2');
    assert.match(dflt.stderr, /INFO an info line/);
    assert.doesNotMatch(dflt.stderr, /DEBUG/);
    const off = await runCapsule(['call', plugin, 'logs', '--log-level', 'off']);
    assert.equal(off.stderr, '');
  });

  it('a trap fails the call as for Capsule modules', async () => {
    const r = await runCapsule(['call', plugin, 'trap']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^❌ the function trapped/);
  });

  it('a deadline stops a plugin that never returns', async () => {
    const r = await runCapsule(['call', plugin, 'spin', '--timeout', '300ms']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^❌ the function did not return within 300 ms/);
  });
});

describe('capsule call: WASI', { skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-extism-w-'));
    writeFileSync(join(dir, 'a.txt'), 'file content');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a plugin reads a file of a --dir grant, and nothing without it', async () => {
    const r = await runCapsule(['call', plugin, 'cat', '--input', '/data/a.txt', '--dir', `${dir}:/data`, '--wasi']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'file content');
    const refused = await runCapsule(['call', plugin, 'cat', '--input', '/data/a.txt']);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, '❌ cannot open the file\n');
  });

  it('WASI stdout goes to the log, never into the output', async () => {
    const r = await runCapsule(['call', plugin, 'print']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'output');
    assert.match(r.stderr, /\[extism-kitchen\.wasm\] stdout: printed by the plugin/);
  });

  it('manifest allowed_paths grant directories too', async () => {
    const m = join(dir, 'm.json');
    writeFileSync(m, JSON.stringify({ wasm: [{ path: plugin }], allowed_paths: { [`ro:${dir}`]: '/data' } }));
    const r = await runCapsule(['call', m, 'cat', '--input', '/data/a.txt']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'file content');
  });
});

const natsServer = findBinary('nats-server');

describe('capsule nats: a plugin answers messages', { skip: skip || (!natsServer && 'nats-server is not installed') }, () => {
  let broker: Broker;
  let nc: NatsConnection;
  before(async () => {
    broker = await startNatsServer(natsServer!);
    nc = await connect({ servers: broker.url });
  });
  after(async () => {
    await nc?.close().catch(() => undefined);
    await broker?.kill();
  });

  it('handle gets the callHandleMessage JSON envelope; its output is the reply', async () => {
    const r = await startRunner(['nats', plugin, `--nats-server=${broker.url}`, '--subject=jobs', '--workers=1']);
    try {
      const reply = await nc.request('jobs', 'hello', { timeout: 10_000 });
      const text = reply.string();
      assert.match(text, /^1\/1:/);
      const envelope = JSON.parse(text.slice(text.indexOf(':') + 1)) as { Subject: string; Data: string };
      assert.equal(envelope.Subject, 'jobs');
      assert.equal(Buffer.from(envelope.Data, 'base64').toString(), 'hello');
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });
});

describe('capsule serve --routes: plugin functions', { skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-extism-r-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a route calls the function named by its entrypoint, with the route\'s env as config', async () => {
    const yaml = join(dir, 'routes.yaml');
    writeFileSync(yaml, `functions:
  vowels:
    wasm: ${plugin}
    kind: extism
    route: /vowels
    entrypoint: count_vowels
  cfg:
    wasm: ${plugin}
    route: /cfg
    entrypoint: config
    env: { greeting: hello from the route }
`);
    const s = await startServer(['serve', `--routes=${yaml}`, '--http-port=0', '--workers=1']);
    try {
      const vowels = await fetch(`${s.url}/vowels`, { method: 'POST', body: 'Hello, World' });
      assert.equal(await vowels.text(), '{"count":3}');
      const cfg = await fetch(`${s.url}/cfg`, { method: 'POST', body: 'greeting' });
      assert.equal(await cfg.text(), 'hello from the route');
      const missingKey = await fetch(`${s.url}/cfg`, { method: 'POST', body: 'nope' });
      assert.equal(missingKey.status, 500);
      assert.equal(await missingKey.text(), 'no config key nope');
    } finally {
      await s.stop();
    }
  });
});

describe('capsule serve: HTTP capsule mode (§11)', { skip }, () => {
  let dir: string;
  let yaml: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-extism-c-'));
    yaml = join(dir, 'routes.yaml');
    writeFileSync(yaml, `functions:
  json:
    wasm: ${plugin}
    route: /json
    entrypoint: capsule_http
  notjson:
    wasm: ${plugin}
    route: /notjson
    entrypoint: not_json
  fails:
    wasm: ${plugin}
    route: /fails
    entrypoint: fail
  raw:
    wasm: ${plugin}
    route: /raw
    entrypoint: echo
    extismMode: raw
`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the plugin gets the gen-2 request JSON; its output is read as the gen-2 response JSON; extismMode: raw overrides --extism-mode', async () => {
    const s = await startServer(['serve', `--routes=${yaml}`, '--extism-mode=capsule', '--http-port=0', '--workers=1']);
    try {
      const res = await fetch(`${s.url}/json?x=1`, { method: 'POST', body: '{"name":"Bob"}', headers: { 'Content-Type': 'application/json', 'X-Test': 'hello' } });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get('x-plugin'), 'kitchen');
      assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
      const req = await res.json() as Record<string, string>;
      assert.deepEqual(Object.keys(req), ['Body', 'JSONBody', 'TextBody', 'URI', 'Method', 'Headers']);
      assert.equal(req['Body'], '{"name":"Bob"}');
      assert.equal(req['Method'], 'POST');
      assert.equal(req['URI'], `${s.url}/json?x=1`);
      assert.match(req['Headers']!, /"Content-Type":"application\/json"/);
      assert.match(req['Headers']!, /"X-Test":"hello"/);

      const raw = await fetch(`${s.url}/raw`, { method: 'POST', body: '{"name":"Bob"}' });
      assert.equal(raw.status, 200);
      assert.equal(raw.headers.get('content-type'), 'application/octet-stream');
      assert.equal(await raw.text(), '{"name":"Bob"}');
    } finally {
      await s.stop();
    }
  });

  it('a plugin error is a 500 with its text; an output that is not a response JSON is a 500 that says so; the server keeps serving', async () => {
    const s = await startServer(['serve', `--routes=${yaml}`, '--extism-mode', 'capsule', '--http-port=0', '--workers=1']);
    try {
      const failed = await fetch(`${s.url}/fails`);
      assert.equal(failed.status, 500);
      assert.equal(await failed.text(), 'something went wrong');
      const bad = await fetch(`${s.url}/notjson`);
      assert.equal(bad.status, 500);
      assert.match(await bad.text(), /^the function returned a response that is not JSON/);
      const ok = await fetch(`${s.url}/json`);
      assert.equal(ok.status, 201);
      assert.equal((await ok.json() as { Method: string }).Method, 'GET');
    } finally {
      await s.stop();
    }
  });

  it('capsule serve <plugin> --extism-mode capsule: handle gets the request JSON (an AssemblyScript PDK plugin); raw without the flag', { skip: missing(fixture('extism-as')) }, async () => {
    const capsule = await startServer(['serve', fixture('extism-as'), '--extism-mode', 'capsule', '--http-port=0', '--workers=1']);
    try {
      const res = await fetch(`${capsule.url}/hello?name=Bob`, { method: 'PUT', body: 'some text' });
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('x-pdk'), 'as');
      const req = await res.json() as Record<string, string>;
      assert.deepEqual([req['Method'], req['URI'], req['Body']], ['PUT', `${capsule.url}/hello?name=Bob`, 'some text']);
    } finally {
      await capsule.stop();
    }
    const raw = await startServer(['serve', fixture('extism-as'), '--http-port=0', '--workers=1']);
    try {
      const res = await fetch(raw.url, { method: 'POST', body: '"text"' });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), '{"StatusCode":202,"Headers":{"X-Pdk":"as"},"JSONBody":"text"}');
    } finally {
      await raw.stop();
    }
  });

  it('refuses a mode other than raw or capsule, naming the key and the file', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, `functions:\n  a:\n    wasm: ${plugin}\n    extismMode: json\n`);
    const r = await runCapsule(['serve', `--routes=${bad}`, '--http-port=0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml: "functions\.a\.extismMode" must be raw or capsule, not "json"/);
    const flag = await runCapsule(['serve', plugin, '--extism-mode=json', '--http-port=0']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--extism-mode/);
  });
});

describe('capsule inspect: a plugin', { skip }, () => {
  it('names the kind, the grants its imports need and the instance policy', async () => {
    const r = await runCapsule(['inspect', plugin]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^kind: +extism — Extism plugin$/m);
    assert.match(r.stdout, /^ {2}http: outbound HTTP to allowed hosts, for http_request — give it with --allowed-hosts/m);
    assert.match(r.stdout, /^ {2}files: files inside granted directories, for path_open — give it with --dir/m);
    assert.match(r.stdout, /^fresh calls: +one instance per worker thread/m);
    const bare = await runCapsule(['inspect', fixture('extism-nomem')]);
    assert.match(bare.stdout, /^grants: +none needed$/m);
  });
});
