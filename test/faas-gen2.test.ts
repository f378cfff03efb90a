// Gen-2 FaaS mode (faas-api.md §5–§7, §9.1–§9.3, §9.7): `capsule-http --faas` driven by `capsctl`
// and by HTTP, with real processes, real sockets and real guests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, example, fixture, freePort, missing, root, runCapsule, startServer, type Server } from './helpers.ts';
import { normaliseArgv } from '../src/cli/legacy.ts';
import { inProcessSpec } from '../src/faas/gen2/runners.ts';

const helloYou = example('hello-you');
const asenv = example('asenv');
const behaviours = fixture('gen2-behaviours');
const skip = missing(helloYou) || missing(behaviours);
const TOKEN = 'ilovepandas';
const capsuleHttp = join(root, 'bin/capsule-http.js');
const capsctlBin = join(root, 'bin/capsctl.js');

/** `capsule-http --faas=true --httpPort=0` (Go spelling) with the FaaS token unless `env` says otherwise. */
function startMain(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Server> {
  return startServer(['--faas=true', '--httpPort=0', ...args], { bin: capsuleHttp, env: { CAPSULE_FAAS_TOKEN: TOKEN, CAPSULE_PROCESSES_STORAGE: '', ...env } });
}

function capsctl(main: Server, args: string[], token = TOKEN) {
  return runCapsule(args, { bin: capsctlBin, env: { CAPSULE_MAIN_PROCESS_URL: main.url, CAPSULE_FAAS_TOKEN: token } });
}

/** An admin request with the token header (none when `token` is undefined). */
function admin(main: Server, method: string, path: string, o: { body?: unknown; headers?: Record<string, string> } = {}) {
  return fetch(main.url + path, {
    method,
    headers: { 'content-type': 'application/json; charset=utf-8', ...(o.headers ?? { CAPSULE_FAAS_TOKEN: TOKEN }) },
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
  });
}

interface Listed {
  index: number;
  functionName: string;
  functionRevision: string;
  formerFunctionRevision: string;
  httpPort: string;
  statusDescription: string;
  currentStatus: number;
  pid: number;
  args: string[];
  env?: string[];
  exitCode?: number;
}

async function processes(main: Server): Promise<Record<string, Listed>> {
  const res = await admin(main, 'GET', '/functions/processes');
  assert.equal(res.status, 200);
  return await res.json() as Record<string, Listed>;
}

/** Starts a revision over HTTP with capsctl's argument shape plus `extra`. */
async function start(main: Server, name: string, revision: string, wasm: string, extra: string[] = [], more: Record<string, unknown> = {}): Promise<string> {
  const res = await admin(main, 'POST', '/functions/start', { body: { name, revision, description: '', path: '', args: ['', `-wasm=${wasm}`, ...extra], env: [], ...more } });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return text;
}

/** The URI the echo guest saw (its host:port names the replica that answered). */
async function echoUri(url: string, body = 'e'): Promise<string> {
  const res = await fetch(url, { method: 'POST', body });
  assert.equal(res.status, 200);
  return (await res.json() as { URI: string }).URI;
}

const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('the gen-2 flow with capsctl: start, processes, duplicate, call every route form, drop', { skip }, async () => {
  const main = await startMain();
  try {
    const started = await capsctl(main, ['--cmd=start', '--name=hello', '--revision=green', '--description=hello green', `--wasm=${helloYou}`, '--env=["MESSAGE=hi"]']);
    assert.equal(started.code, 0, started.stderr);
    assert.equal(started.stdout, `✅ hello/green is started\nℹ️ url: ${main.url}/functions/hello/green\n`);
    // Go's one-dash camelCase spelling
    const dup = await capsctl(main, ['-cmd=duplicate', '-name=hello', '-revision=green', '-newRevision=saved_green']);
    assert.equal(dup.stdout, `✅ hello/green is duplicated to saved_green\nℹ️ url: ${main.url}/functions/hello/saved_green\n`);

    const list = await processes(main);
    assert.deepEqual(Object.keys(list).sort(), ['hello/green/0', 'hello/saved_green/0']);
    const green = list['hello/green/0']!;
    assert.equal(green.statusDescription, 'Started');
    assert.equal(green.currentStatus, 1);
    assert.equal(green.env, undefined, 'env is never listed');
    assert.deepEqual(green.args.slice(0, 7), ['', `-wasm=${helloYou}`, '-stopAfter=', '-url=', `-parentEndpoint=${main.url}`, '-moduleName=hello', '-moduleRevision=green']);
    assert.equal(green.args[7], `-httpPort=${green.httpPort}`);
    const saved = list['hello/saved_green/0']!;
    assert.equal(saved.formerFunctionRevision, 'green');
    assert.equal(saved.httpPort, green.httpPort, 'a duplicate is served by the same runner');
    assert.equal(saved.pid, green.pid);
    const printed = await capsctl(main, ['--cmd=processes']);
    assert.deepEqual(Object.keys(JSON.parse(printed.stdout)).sort(), ['hello/green/0', 'hello/saved_green/0']);

    for (const path of ['/functions/hello/green', '/functions/hello/green/0', '/functions/hello/saved_green', '/functions/hello/green/some/path?x=1']) {
      const res = await post(main.url + path, { name: 'Bob Morane', age: 42 });
      assert.equal(res.status, 200, path);
      assert.deepEqual(await res.json(), { message: 'Bob Morane 42' }, path);
    }
    // revision `default` when none is named
    await start(main, 'hello', 'default', helloYou);
    assert.deepEqual(await (await post(`${main.url}/functions/hello`, { name: 'Default', age: 1 })).json(), { message: 'Default 1' });

    const dropped = await capsctl(main, ['--cmd=drop', '--name=hello', '--revision=green']);
    assert.equal(dropped.stdout, `✅ hello/green is dropped\nℹ️ url: ${main.url}/functions/hello/green\n`);
    const gone = await post(`${main.url}/functions/hello/green`, {});
    assert.equal(gone.status, 404);
    assert.deepEqual(await gone.json(), { code: 'FUNCTION_NOT_FOUND', message: 'hello/green is not registered' });
    // the duplicate keeps serving: its runner is not stopped while a record still uses it
    assert.deepEqual(await (await post(`${main.url}/functions/hello/saved_green`, { name: 'Saved', age: 2 })).json(), { message: 'Saved 2' });
    const again = await admin(main, 'DELETE', '/functions/drop/hello/green');
    assert.equal(again.status, 500);
    assert.equal(await again.text(), 'Capsule process not found');
  } finally {
    await main.stop();
  }
});

test('replicas: a second start is index 1, served round-robin; a digits-only third segment picks the replica and is not forwarded', { skip }, async () => {
  const main = await startMain();
  try {
    assert.equal(await start(main, 'echo', 'blue', behaviours), 'echo/blue/0');
    assert.equal(await start(main, 'echo', 'blue', behaviours), 'echo/blue/1');
    const list = await processes(main);
    const ports = [list['echo/blue/0']!.httpPort, list['echo/blue/1']!.httpPort];
    assert.notEqual(ports[0], ports[1]);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(new URL(await echoUri(`${main.url}/functions/echo/blue`)).port);
    assert.deepEqual([...seen].sort(), [...ports].sort(), 'both replicas answer in turn');
    const one = new URL(await echoUri(`${main.url}/functions/echo/blue/1/api/items?x=1`));
    assert.equal(one.port, ports[1]);
    assert.equal(one.pathname + one.search, '/api/items?x=1');
    const rest = new URL(await echoUri(`${main.url}/functions/echo/blue/api/items`));
    assert.equal(rest.pathname, '/api/items');
    assert.equal((await fetch(`${main.url}/functions/echo/blue/7`, { method: 'POST', body: 'e' })).status, 404);
    // per-revision metrics: six calls answered, two cold starts (one per replica) with their phases
    const metrics = await (await fetch(`${main.url}/capsule/metrics`)).text();
    assert.match(metrics, /^capsule_revision_requests_total\{fn="echo",rev="blue",status="200"\} 6$/m);
    assert.match(metrics, /^capsule_cold_start_seconds_count\{fn="echo",rev="blue",phase="compile"\} 2$/m);
    assert.match(metrics, /^capsule_inflight\{fn="echo",rev="blue"\} 0$/m);
  } finally {
    await main.stop();
  }
});

test('CAPSULE_FAAS_TOKEN guards every admin route: absent → 401, wrong → 403, never a fall-through; calls stay open', { skip }, async () => {
  const main = await startMain();
  try {
    const routes: [string, string, unknown?][] = [
      ['POST', '/functions/start', { name: 'x', args: ['', `-wasm=${helloYou}`] }],
      ['GET', '/functions/processes'],
      ['PUT', '/functions/duplicate/x/default/y'],
      ['DELETE', '/functions/drop/x'],
      ['DELETE', '/functions/drop/x/default'],
      ['DELETE', '/functions/drop/x/default/0'],
    ];
    for (const [method, path, body] of routes) {
      const none = await admin(main, method, path, { body, headers: {} });
      assert.equal(none.status, 401, `${method} ${path}`);
      assert.deepEqual(await none.json(), { code: 'KO', from: 'faas', message: 'Unauthorized' });
      const wrong = await admin(main, method, path, { body, headers: { CAPSULE_FAAS_TOKEN: 'nope' } });
      assert.equal(wrong.status, 403, `${method} ${path}`);
      assert.deepEqual(await wrong.json(), { code: 'KO', from: 'faas', message: 'Forbidden' });
    }
    assert.deepEqual(await processes(main), {}, 'nothing was started by a refused request');
    // the hyphenated header and a Bearer token are accepted too
    assert.equal((await admin(main, 'GET', '/functions/processes', { headers: { 'Capsule-Faas-Token': TOKEN } })).status, 200);
    assert.equal((await admin(main, 'GET', '/functions/processes', { headers: { Authorization: `Bearer ${TOKEN}` } })).status, 200);
    const refused = await capsctl(main, ['--cmd=start', '--name=hello', `--wasm=${helloYou}`], 'bad');
    assert.match(refused.stdout, /🔴 faas mode not activated or bad token/);
    assert.equal(refused.code, 1);

    await start(main, 'hello', 'default', helloYou);
    const call = await post(`${main.url}/functions/hello`, { name: 'Open', age: 3 });
    assert.equal(call.status, 200, 'the call route needs no token');
    const bad = await admin(main, 'POST', '/functions/start', { body: { revision: 'x' } });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json() as { code: string }).code, 'ERROR_JSON_BINDING');
    const notJson = await fetch(`${main.url}/functions/start`, { method: 'POST', headers: { 'content-type': 'application/json', CAPSULE_FAAS_TOKEN: TOKEN }, body: '{nope' });
    assert.equal(notJson.status, 400);
    const badModule = await admin(main, 'POST', '/functions/start', { body: { name: 'broken', args: ['', '-wasm=/nowhere/x.wasm'] } });
    assert.equal(badModule.status, 500);
    assert.match(await badModule.text(), /x\.wasm/);
    assert.deepEqual(Object.keys(await processes(main)), ['hello/default/0'], 'a revision that cannot start leaves no record');
  } finally {
    await main.stop();
  }
});

test('--stopAfter scales an idle revision to zero and the next call brings it back', { skip }, async () => {
  const main = await startMain();
  try {
    const started = await capsctl(main, ['--cmd=start', '--name=sleepy', '--revision=default', `--wasm=${helloYou}`, '--stopAfter=1']);
    assert.equal(started.code, 0, started.stdout + started.stderr);
    assert.deepEqual(await (await post(`${main.url}/functions/sleepy`, { name: 'A', age: 1 })).json(), { message: 'A 1' });
    const port = (await processes(main))['sleepy/default/0']!.httpPort;
    await eventually(async () => (await processes(main))['sleepy/default/0']!.statusDescription === 'Stopped');
    // the revision no longer listens (its listener closes right after the decision)
    await eventually(() => fetch(`http://127.0.0.1:${port}/`).then(() => false, () => true));
    const res = await post(`${main.url}/functions/sleepy`, { name: 'Back', age: 2 });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { message: 'Back 2' });
    assert.equal((await processes(main))['sleepy/default/0']!.statusDescription, 'Started');
  } finally {
    await main.stop();
  }
});

test('a call longer than --stopAfter is not cut: idle time counts from a call\'s start and no revision with a call in flight is evicted', { skip }, async () => {
  const main = await startMain();
  try {
    // -timeout=3s lets the loop-forever behaviour end with the revision's own 504 after 3 s, three times -stopAfter
    await start(main, 'slow', 'default', behaviours, ['-stopAfter=1', '-timeout=3s']);
    let done = false;
    const call = fetch(`${main.url}/functions/slow`, { method: 'POST', body: 'l' }).then(async (r) => ({ status: r.status, body: await r.json() as { code?: string } }))
      .finally(() => (done = true));
    const seen = new Set<string>();
    while (!done) {
      seen.add((await processes(main))['slow/default/0']!.statusDescription);
      await new Promise((r) => setTimeout(r, 100));
    }
    const answer = await call;
    assert.equal(answer.status, 504, 'the revision answered (its deadline), the connection was not cut');
    assert.equal(answer.body.code, 'TIMEOUT');
    assert.deepEqual([...seen], ['Started'], 'never stopped while the call ran');
    await eventually(async () => (await processes(main))['slow/default/0']!.statusDescription === 'Stopped');
  } finally {
    await main.stop();
  }
});

test('records are saved to CAPSULE_PROCESSES_STORAGE and read back at start; revisions come back at their next call', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-faas-'));
  const storage = join(dir, 'processes.json');
  try {
    const first = await startMain([], { CAPSULE_PROCESSES_STORAGE: storage });
    try {
      await start(first, 'hello', 'blue', helloYou, [], { env: ['MESSAGE=saved'], description: 'kept' });
      const saved = JSON.parse(readFileSync(storage, 'utf8')) as Record<string, Listed & { description: string }>;
      assert.equal(saved['hello/blue/0']!.description, 'kept');
      assert.deepEqual(saved['hello/blue/0']!.env, ['MESSAGE=saved'], 'the file keeps env to restart the revision');
    } finally {
      await first.stop();
    }
    const second = await startMain([], { CAPSULE_PROCESSES_STORAGE: storage });
    try {
      const list = await processes(second);
      assert.deepEqual(Object.keys(list), ['hello/blue/0']);
      assert.equal(list['hello/blue/0']!.statusDescription, 'Stopped');
      assert.equal(list['hello/blue/0']!.env, undefined);
      const res = await post(`${second.url}/functions/hello/blue`, { name: 'Again', age: 5 });
      assert.deepEqual(await res.json(), { message: 'Again 5' });
      assert.equal((await processes(second))['hello/blue/0']!.statusDescription, 'Started');
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--process: a revision is a child process; a killed child is seen at once (Failed) and the next call restarts it', { skip }, async () => {
  const main = await startMain(['--process']);
  try {
    await start(main, 'hello', 'default', helloYou);
    const before = (await processes(main))['hello/default/0']!;
    assert.ok(before.pid > 0);
    process.kill(before.pid, 'SIGKILL');
    await eventually(async () => (await processes(main))['hello/default/0']!.statusDescription === 'Failed');
    const res = await post(`${main.url}/functions/hello`, { name: 'Phoenix', age: 9 });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { message: 'Phoenix 9' });
    const after = (await processes(main))['hello/default/0']!;
    assert.equal(after.statusDescription, 'Started');
    assert.notEqual(after.pid, before.pid);
    assert.equal(after.httpPort, before.httpPort, 'restarted with the same port and arguments');
    // killed again and called at once (an idempotent call): whether the exit or the dead connection
    // is seen first, the child is started again and answers
    process.kill(after.pid, 'SIGKILL');
    const quick = await fetch(`${main.url}/functions/hello`);
    const quickText = await quick.text();
    assert.doesNotMatch(quickText, /UPSTREAM_UNREACHABLE/);
    assert.equal(quick.headers.get('x-request-id') !== null, true, 'answered by the revision');
    const latest = (await processes(main))['hello/default/0']!;
    const dropped = await admin(main, 'DELETE', '/functions/drop/hello');
    assert.equal(await dropped.text(), 'hello/default/0');
    await eventually(() => {
      try {
        process.kill(latest.pid, 0);
        return false;
      } catch {
        return true; // drop interrupted the child
      }
    });
  } finally {
    await main.stop();
  }
});

test('ALL /* of the main process: the version text, then index.page/default/0 once started; with --wasm, the main module', { skip }, async () => {
  const main = await startMain();
  try {
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;
    assert.equal(await (await fetch(`${main.url}/anything`)).text(), `Capsule ${version}[faas]`);
    await start(main, 'index.page', 'default', behaviours);
    const uri = new URL(await echoUri(`${main.url}/some/page?q=2`));
    assert.equal(uri.pathname + uri.search, '/some/page?q=2');
  } finally {
    await main.stop();
  }
  const withModule = await startMain([`--wasm=${helloYou}`]);
  try {
    assert.deepEqual(await (await post(`${withModule.url}/`, { name: 'Main', age: 7 })).json(), { message: 'Main 7' });
    assert.equal((await fetch(`${withModule.url}/functions/nothing`)).status, 404);
  } finally {
    await withModule.stop();
  }
});

test('/notify marks a record Stopped (Go child shutdown); unknown → 500 with Go\'s text', { skip }, async () => {
  const main = await startMain();
  try {
    await start(main, 'hello', 'default', helloYou);
    const res = await fetch(`${main.url}/notify/hello/default`);
    assert.equal(await res.text(), 'hello/default/0');
    assert.equal((await processes(main))['hello/default/0']!.statusDescription, 'Stopped');
    const unknown = await fetch(`${main.url}/notify/nope/default/3`);
    assert.equal(unknown.status, 500);
    assert.equal(await unknown.text(), 'Capsule process not found');
  } finally {
    await main.stop();
  }
});

test('Go spellings: capsule-http --faas=true is the FaaS main process; the child-only flags capsctl passes are ignored by serve', () => {
  assert.deepEqual(normaliseArgv(['--faas=true', '--httpPort=8080'], 'serve'), ['faas-mode', '--http-port=8080']);
  assert.deepEqual(normaliseArgv(['--faas', '--wasm=index.wasm'], 'serve'), ['faas-mode', '--wasm=index.wasm']);
  assert.deepEqual(normaliseArgv(['serve', '--faas', '--http-port=1']), ['faas-mode', '--http-port=1']);
  assert.deepEqual(normaliseArgv(['--faas=false', '-wasm=a.wasm'], 'serve'), ['serve', '--wasm=a.wasm']);
  assert.deepEqual(normaliseArgv(['-wasm=a.wasm', '-stopAfter=', '-url=', '-parentEndpoint=http://x:8080', '-moduleName=a', '-moduleRevision=b', '-httpPort=9'], 'serve'),
    ['serve', '--wasm=a.wasm', '--stop-after=', '--url=', '--http-port=9']);
  assert.deepEqual(normaliseArgv(['faas-mode', '--parent-endpoint=http://x']), ['faas-mode', '--parent-endpoint=http://x']);
});

test('in-process revisions read capsctl\'s arguments and refuse what only a child process would understand', () => {
  const spec = inProcessSpec(['', '-wasm=a.wasm', '-stopAfter=2', '-url=', '-parentEndpoint=http://x', '-moduleName=a', '-moduleRevision=b', '-httpPort=9', '-timeout=3s'], ['MESSAGE=hi']);
  assert.deepEqual(spec.source, { path: 'a.wasm' });
  assert.equal(spec.stopAfterMs, 2000);
  assert.equal(spec.options.timeoutMs, 3000);
  assert.deepEqual(spec.options.env?.find(([k]) => k === 'MESSAGE'), ['MESSAGE', 'hi']);
  assert.equal(inProcessSpec(['', '-wasm=a.wasm', '-stopAfter='], []).stopAfterMs, undefined);
  assert.throws(() => inProcessSpec(['', '-wasm=a.wasm', '-crt=x.pem'], []), /--crt is not supported for an in-process revision/);
  assert.throws(() => inProcessSpec(['', '-stopAfter=1'], []), /no module/);
});

test('capsctl without a main process: local commands print Go\'s texts; a bad --env is a usage error; an unreachable main is exit 1', async () => {
  const closed = await freePort(); // nothing listens there
  const run = (args: string[]) => runCapsule(args, { bin: capsctlBin, env: { CAPSULE_MAIN_PROCESS_URL: `http://127.0.0.1:${closed}`, CAPSULE_FAAS_TOKEN: TOKEN } });
  const call = await run(['--cmd=call']);
  assert.equal(call.stdout, '🙏 Please, use curl to call a function\n');
  assert.equal((await run(['-cmd=launch'])).stdout, '', 'work in progress in Go: nothing');
  assert.equal((await run(['--cmd=nope'])).stdout, '🔴 Unknown command: nope\n');
  const none = await run([]);
  assert.equal(none.code, 0);
  assert.match(none.stderr, /CapsCtl needs some args to start/);
  for (const h of ['-h', '-help', '--help']) {
    const help = await run([h]);
    assert.equal(help.code, 0, `capsctl ${h}`);
    assert.match(help.stdout, /--new-revision <revision>[\s\S]*CAPSULE_MAIN_PROCESS_URL[\s\S]*CAPSULE_FAAS_TOKEN/);
    assert.doesNotMatch(help.stdout, /\(default: ""\)/, 'no empty defaults shown');
  }
  // the node's --worker-domain says what its default is and what an empty value does, without contradiction
  const nodeHelp = (await runCapsule(['node', '--help'])).stdout.replace(/\s+/g, ' ');
  assert.match(nodeHelp, /--worker-domain <host> host name of this node in the localUrl of deployments; given empty \(--worker-domain=\), the machine's host name \(default: "localhost"\)/);
  const badEnv = await run(['--cmd=start', '--name=x', '--wasm=x.wasm', '--env=MESSAGE=hi']);
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.stderr, /--env must be a JSON array of strings/);
  const down = await run(['--cmd=start', '--name=x', '--wasm=x.wasm']);
  assert.equal(down.code, 1);
  assert.equal(down.stdout, `🔴 Error when calling http://127.0.0.1:${closed} (start): ECONNREFUSED\n`);
});

test('env of a start reaches the guest (a WASI command in-process sees it, not the runner\'s environment); any other path is a child process', { skip: skip || missing(asenv) }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-faas-'));
  // a program that is not this Capsule's path: a child process, as Go started its capsule-http
  const wrapper = join(dir, 'capsule-http-go');
  writeFileSync(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${capsuleHttp}" "$@"\n`);
  chmodSync(wrapper, 0o755);
  const main = await startMain([], { RUNNER_ONLY: 'secret-of-the-runner' });
  try {
    await start(main, 'env', 'default', asenv, [], { env: ['MESSAGE=from start'] });
    const out = await (await fetch(`${main.url}/functions/env/default/some/path?b=2`)).text();
    assert.match(out, /MESSAGE=from start/);
    assert.match(out, /PATH_INFO=\/some\/path/);
    assert.doesNotMatch(out, /RUNNER_ONLY/);

    const key = await start(main, 'hello', 'go', helloYou, ['-stopAfter='], { path: wrapper });
    const record = (await processes(main))[key]!;
    assert.equal((record as Listed & { path: string }).path, wrapper);
    assert.ok(record.pid > 0);
    process.kill(record.pid, 0); // a real process
    assert.deepEqual(await (await post(`${main.url}/functions/hello/go`, { name: 'Child', age: 4 })).json(), { message: 'Child 4' });
  } finally {
    await main.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
