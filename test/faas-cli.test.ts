/**
 * The FaaS client commands (issue 12 point 6) and `capsule faas` (proxy + registry + node in one
 * process), as a user runs them: a real `capsule faas` process with an admin token per service,
 * driven by `capsule publish | deploy | scale | set-default | unset-default | list | routes |
 * undeploy` processes (tables and `--json`), calls through the proxy, and the errors a user gets
 * (a service that is not running, a missing token, a refusal, bad usage) with exit codes 1 and 2;
 * `caps` against the same kit.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, example, freePort, missing, root, runCapsule, startUntil, type Ran, type Started } from './helpers.ts';

const modules = { env: example('asenv'), hey: example('hello-you') };
const skip = Object.values(modules).map(missing).find(Boolean) || false;
const TOKENS = { CAPSULE_REGISTRY_ADMIN_TOKEN: 'reg-secret', CAPSULE_WORKER_ADMIN_TOKEN: 'node-secret', CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: 'proxy-secret' };
const CAPS = join(root, 'bin/caps.js');

/** An aligned table's cells, cut at the columns where the header's titles start. */
function table(stdout: string): string[][] {
  const lines = stdout.trimEnd().split('\n');
  const starts = [...lines[0]!.matchAll(/\S+/g)].map((m) => m.index);
  return lines.map((l) => starts.map((s, i) => [...l].slice(s, starts[i + 1]).join('').trim()));
}

/** A variable the asenv guest printed (`  NAME=value`). */
const envVar = (text: string, name: string) => new RegExp(`^  ${name}=(.*)$`, 'm').exec(text)?.[1];

describe('capsule faas and the FaaS client commands', { skip }, () => {
  let kit: Started;
  let dir: string;
  const urls = { proxy: '', registry: '', node: '' };
  /** Runs `capsule <args>` against the kit (URLs and tokens in the environment unless `env` overrides them). */
  const client = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> => runCapsule(args, {
    env: { CAPSULE_REGISTRY_URL: urls.registry, CAPSULE_WORKER_URL: urls.node, CAPSULE_REVERSE_PROXY_URL: urls.proxy, ...TOKENS, ...env },
  });
  const ok = (r: Ran) => assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-faas-cli-'));
    // stdout holds the ready line only; the three URLs are printed on stderr before it
    kit = await startUntil(['faas', '--http-port=0', '--registry-port=0', '--node-port=0', '--http-port-counter=0', `--files=${join(dir, 'registry')}`],
      /^capsule listening on (\S+)\n$/, { env: TOKENS });
    const services = /proxy +(\S+)\nregistry +(\S+)\nnode +(\S+)\n/;
    await eventually(() => services.test(kit.logs()), 10_000);
    [, urls.proxy, urls.registry, urls.node] = services.exec(kit.logs())! as unknown as string[];
  });

  after(async () => {
    assert.equal(await kit?.stop(), 0);
    rmSync(dir, { recursive: true, force: true });
  });

  it('capsule faas prints the three services; the ready line is the proxy\'s and each service answers', async () => {
    assert.equal(kit.ready[1], urls.proxy);
    for (const url of Object.values(urls)) assert.equal((await fetch(`${url}/capsule/health`)).status, 200, url);
    assert.equal((await fetch(`${urls.proxy}/memory/functions/list`)).status, 200);
    assert.equal((await fetch(`${urls.registry}/modules`)).status, 200);
    assert.equal((await fetch(`${urls.node}/functions/list`)).status, 202);
  });

  it('publish uploads a module with its SHA-256 and prints where nodes download it (text and --json)', async () => {
    const text = await client(['publish', modules.env, 'demo/hello/0.0.0', '--info', 'the env module']);
    ok(text);
    const sha = createHash('sha256').update(readFileSync(modules.env)).digest('hex');
    assert.deepEqual(text.stdout.trimEnd().split('\n'), [
      `published demo/hello/0.0.0 (${readFileSync(modules.env).length} bytes, sha256 ${sha})`,
      `download: ${urls.registry}/demo/hello/0.0.0/hello.wasm`,
    ]);
    const json = await client(['publish', modules.hey, 'demo/hey:0.0.0', '--json']);
    ok(json);
    const p = JSON.parse(json.stdout) as { module: string; downloadUrl: string; sha256: string };
    assert.equal(p.module, 'demo/hey/0.0.0');
    const download = await fetch(p.downloadUrl);
    assert.equal(download.headers.get('x-capsule-sha256'), p.sha256);
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), readFileSync(modules.hey));
  });

  it('deploy serves a registry module through the proxy with its environment; Go caps flags work too', async () => {
    const r = await client(['deploy', 'hello', 'blue', 'demo/hello/0.0.0', '--env', 'MESSAGE=blue', '--env', 'TOKEN=🔵']);
    ok(r);
    const [first, second] = r.stdout.trimEnd().split('\n');
    assert.equal(first, `deployed hello/blue: ${urls.proxy}/functions/hello/blue`);
    assert.match(second!, /^replica: http:\/\/localhost:\d+$/);
    const page = await (await fetch(`${urls.proxy}/functions/hello/blue/x?y=1`)).text();
    assert.equal(envVar(page, 'MESSAGE'), 'blue');
    assert.equal(envVar(page, 'TOKEN'), '🔵');
    assert.equal(envVar(page, 'PATH_INFO'), '/x');
    const go = await client(['deploy', '-function=hey', '-revision=yellow', `-downloadUrl=${urls.registry}/demo/hey/0.0.0/hey.wasm`, '-envVariables={"A":"1"}', '--json']);
    ok(go);
    assert.equal((JSON.parse(go.stdout) as { code: string }).code, 'FUNCTION_DEPLOYED');
    const hey = await fetch(`${urls.proxy}/functions/hey/yellow`, { method: 'POST', body: JSON.stringify({ name: 'Bob', age: 42 }) });
    assert.deepEqual(await hey.json(), { message: 'Bob 42' });
  });

  it('scale adds replicas of the same module and environment, every one answers, and scales back down', async () => {
    const up = await client(['scale', 'hello', 'blue', '3']);
    ok(up);
    const lines = up.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'hello/blue: 1 → 3 replicas');
    const ports = lines.slice(1).map((l) => new URL(l.trim()).port).sort();
    assert.equal(ports.length, 3);
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const page = await (await fetch(`${urls.proxy}/functions/hello/blue`)).text();
      assert.equal(envVar(page, 'MESSAGE'), 'blue');
      seen.add(envVar(page, 'SERVER_PORT')!);
    }
    assert.deepEqual([...seen].sort(), ports);
    const list = await client(['list']);
    ok(list);
    assert.deepEqual(table(list.stdout), [
      ['FUNCTION', 'REVISION', 'DEFAULT', 'REPLICAS', 'MODULE', 'URL'],
      ['hello', 'blue', '', '3', `${urls.registry}/demo/hello/0.0.0/hello.wasm`, `${urls.proxy}/functions/hello/blue`],
      ['hey', 'yellow', '', '1', `${urls.registry}/demo/hey/0.0.0/hey.wasm`, `${urls.proxy}/functions/hey/yellow`],
    ]);
    const down = await client(['scale', 'hello', 'blue', '1', '--json']);
    ok(down);
    const scaled = JSON.parse(down.stdout) as { from: number; to: number; localUrls: string[] };
    assert.deepEqual([scaled.from, scaled.to, scaled.localUrls.length], [3, 1, 1]);
    const rows = JSON.parse((await client(['list', '--json'])).stdout) as { function: string; revision: string; replicas: number; default: boolean }[];
    assert.deepEqual(rows.map((r) => [r.function, r.revision, r.replicas, r.default]), [['hello', 'blue', 1, false], ['hey', 'yellow', 1, false]]);
  });

  it('set-default routes /functions/<fn> to the revision (routes shows it); unset-default removes it', async () => {
    ok(await client(['deploy', 'hello', 'green', 'demo/hello/0.0.0', '--env', 'MESSAGE=green']));
    const set = await client(['set-default', 'hello', 'green']);
    ok(set);
    assert.equal(set.stdout.trim(), `default of hello is green: ${urls.proxy}/functions/hello`);
    assert.equal(envVar(await (await fetch(`${urls.proxy}/functions/hello`)).text(), 'MESSAGE'), 'green');
    const routes = await client(['routes']);
    ok(routes);
    const rows = table(routes.stdout);
    assert.deepEqual(rows[0], ['FUNCTION', 'REVISION', 'PATH', 'TRAFFIC', 'UPSTREAMS']);
    assert.deepEqual(rows.slice(1).map((r) => r.slice(0, 3)), [
      ['hello', 'blue', '/functions/hello/blue'], ['hello', 'default', '/functions/hello'],
      ['hello', 'green', '/functions/hello/green'], ['hey', 'yellow', '/functions/hey/yellow'],
    ]);
    const json = JSON.parse((await client(['routes', '--json'])).stdout) as { function: string; revision: string; upstreams: string[] }[];
    const byRev = Object.fromEntries(json.filter((r) => r.function === 'hello').map((r) => [r.revision, r.upstreams]));
    assert.deepEqual(byRev['default'], byRev['green']);
    ok(await client(['unset-default', 'hello']));
    assert.equal((await fetch(`${urls.proxy}/functions/hello`)).status, 404);
    assert.equal((JSON.parse((await client(['list', '--json'])).stdout) as { default: boolean }[]).some((r) => r.default), false);
  });

  it('set-default with percents splits /functions/<fn> between revisions (exactly, shown by routes); a bad split is refused', async () => {
    const split = await client(['set-default', 'hello', 'blue=90', 'green=10']);
    ok(split);
    assert.equal(split.stdout.trim(), `default of hello is split: blue 90%, green 10%: ${urls.proxy}/functions/hello`);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 20; i++) {
      const m = envVar(await (await fetch(`${urls.proxy}/functions/hello`)).text(), 'MESSAGE')!;
      counts[m] = (counts[m] ?? 0) + 1;
    }
    assert.deepEqual(counts, { blue: 18, green: 2 });
    const rows = table((await client(['routes'])).stdout);
    assert.deepEqual(rows.find((r) => r[1] === 'default')?.slice(0, 4), ['hello', 'default', '/functions/hello', '→ blue 90%, green 10%']);
    // checked by the client before any request: a usage error (exit 2) even with no proxy to ask
    for (const [args, message] of [
      [['blue=50', 'green=40'], /the percents add up to 90, not 100/],
      [['blue=50', 'blue=50'], /revision blue appears twice/],
      [['blue=150'], /blue: percent must be a whole number from 0 to 100/],
    ] as const) {
      const bad = await client(['set-default', 'hello', ...args], { CAPSULE_REVERSE_PROXY_URL: 'http://127.0.0.1:1' });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, message);
    }
    const unknown = await client(['set-default', 'hello', 'blue=50', 'purple=50']);
    assert.equal(unknown.code, 1, 'revisions are still checked by the proxy');
    assert.match(unknown.stderr, /the reverse proxy refused PUT \/memory\/functions\/hello\/traffic \(\d+ \w+\)/);
    const noProxyToken = await client(['set-default', 'hello', 'blue=100'], { CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: '' });
    assert.equal(noProxyToken.code, 1);
    assert.match(noProxyToken.stderr, /\(401 KO\).*set CAPSULE_REVERSE_PROXY_ADMIN_TOKEN/);
    assert.equal((await client(['set-default', 'hello', 'blue=5x'])).code, 2);
    ok(await client(['unset-default', 'hello']));
    assert.equal((await fetch(`${urls.proxy}/functions/hello`)).status, 404);
  });

  it('undeploy removes a revision: its route answers 404 and list no longer shows it', async () => {
    const r = await client(['undeploy', 'hello', 'green']);
    ok(r);
    assert.equal(r.stdout.trim(), 'undeployed hello/green');
    assert.equal((await fetch(`${urls.proxy}/functions/hello/green`)).status, 404);
    assert.equal((await fetch(`${urls.proxy}/functions/hello/blue`)).status, 200);
    const rows = JSON.parse((await client(['list', '--json'])).stdout) as { revision: string }[];
    assert.deepEqual(rows.map((x) => x.revision), ['blue', 'yellow']);
  });

  it('errors name the service and exit 1: not running, missing token, refusal, not deployed', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const down = await client(['list', '--worker', closed]);
    assert.equal(down.code, 1);
    assert.equal(down.stderr.trim(), `❌ cannot reach the node at ${closed}: connection refused — is \`capsule node\` running on ${closed}?`);
    const proxyDown = await client(['routes'], { CAPSULE_REVERSE_PROXY_URL: closed });
    assert.equal(proxyDown.code, 1);
    assert.match(proxyDown.stderr, /is `capsule proxy` running/);
    const noToken = await client(['publish', modules.env, 'demo/x/1.0.0'], { CAPSULE_REGISTRY_ADMIN_TOKEN: '' });
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /^❌ the registry refused POST \/upload\/demo\/x\/1\.0\.0 \(401 KO\): Unauthorized \(set CAPSULE_REGISTRY_ADMIN_TOKEN\)/);
    const wrongToken = await client(['undeploy', 'hello', 'blue'], { CAPSULE_WORKER_ADMIN_TOKEN: 'nope' });
    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /the node refused DELETE \/functions\/revisions\/deployments \(403 KO\)/);
    assert.equal((await fetch(`${urls.proxy}/functions/hello/blue`)).status, 200, 'a refused undeploy changes nothing');
    const unknown = await client(['undeploy', 'nope', 'x']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /the node refused .* \(404 REVISION_NOT_FOUND\)/);
    const badModule = await client(['deploy', 'x', 'y', 'demo/missing/0.0.0']);
    assert.equal(badModule.code, 1);
    assert.match(badModule.stderr, /the node refused POST \/functions\/deploy \(4\d\d \w+\).*missing\.wasm/);
    const notDeployed = await client(['scale', 'hello', 'red', '2']);
    assert.equal(notDeployed.code, 1);
    assert.match(notDeployed.stderr, /hello\/red is not deployed on the node/);
  });

  it('bad usage exits 2 with the reason', async () => {
    for (const [args, message] of [
      [['deploy', 'hello'], /missing the revision name/],
      [['deploy', 'hello', 'blue'], /missing the module/],
      [['deploy', 'hello', 'blue', 'not-a-ref'], /expected a registry module as <org>\/<name>\/<tag>/],
      [['deploy', 'hello', 'blue', 'demo/hello/0.0.0', '--env', 'NOEQUALS'], /--env NOEQUALS: expected NAME=value/],
      [['scale', 'hello', 'blue', '0'], /replicas: "0" must be a whole number from 1/],
      [['publish', join(dir, 'none.wasm'), 'demo/x/1'], /cannot read .*none\.wasm: ENOENT/],
      [['node', '--cluster=,', '--http-port=0'], /--cluster: give at least one NATS server URL/],
      [['proxy', '--backend=nats', '--cluster= ', '--http-port=0'], /--cluster: give at least one NATS server URL/],
    ] as const) {
      const r = await client([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  it('capsule faas on a taken port says which service could not listen and exits 2', async () => {
    const taken = new URL(urls.registry).port;
    const r = await runCapsule(['faas', '--http-port=0', `--registry-port=${taken}`, '--node-port=0', `--files=${join(dir, 'other')}`, '--log-level=warn']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^❌ capsule faas cannot start the registry: cannot listen on 127\\.0\\.0\\.1:${taken}: the port is already in use.*--registry-port`));
    assert.equal((await fetch(`${urls.registry}/capsule/health`)).status, 200, 'the running kit is untouched');
  });

  it('a service run alone on a taken port says so in one line and exits 2 (no stack trace)', async () => {
    for (const service of ['registry', 'proxy', 'node']) {
      const taken = new URL(urls.registry).port;
      const r = await runCapsule([service, `--http-port=${taken}`, `--files=${join(dir, 'other')}`].filter((a) => service === 'registry' || !a.startsWith('--files')));
      assert.equal(r.code, 2, `${service}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^❌ cannot listen on 127\\.0\\.0\\.1:${taken}: the port is already in use; pick another with --http-port`), service);
      assert.ok(!/\n\s+at /.test(r.stderr), `${service} printed a stack trace: ${r.stderr}`);
    }
  });

  it('caps (Go client) drives the same kit: worker list, reverse-proxy table, refusals with exit 1', async () => {
    const env = { CAPSULE_WORKER_URL: urls.node, CAPSULE_REVERSE_PROXY_URL: urls.proxy, CAPSULE_BACKEND: 'memory', ...TOKENS };
    const worker = await runCapsule(['worker'], { bin: CAPS, env });
    ok(worker);
    assert.deepEqual(Object.keys((JSON.parse(worker.stdout) as Record<string, unknown>)).sort(), ['hello', 'hey']);
    const proxy = await runCapsule(['reverse-proxy'], { bin: CAPS, env });
    ok(proxy);
    assert.ok((JSON.parse(proxy.stdout) as Record<string, Record<string, string[]>>)['hey']!['yellow']!.length === 1);
    // Go's caps sent every -envVariables value as a string, numbers and booleans too: what a worker receives
    const sent: unknown[] = [];
    const worker2 = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c)).on('end', () => {
        sent.push(JSON.parse(body));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"code":"FUNCTION_DEPLOYED","remoteUrl":"http://x"}');
      });
    });
    await new Promise<void>((r) => worker2.listen(0, '127.0.0.1', r));
    try {
      const numbers = await runCapsule(['deploy', '-function=n', '-revision=r', '-downloadUrl=http://x/n.wasm', '-envVariables={"N":42,"ON":true,"S":"x"}'],
        { bin: CAPS, env: { ...env, CAPSULE_WORKER_URL: `http://127.0.0.1:${(worker2.address() as { port: number }).port}` } });
      ok(numbers);
      assert.deepEqual((sent[0] as { envVariables: unknown }).envVariables, { N: '42', ON: 'true', S: 'x' });
    } finally {
      await new Promise((r) => worker2.close(r));
    }
    const bad = await runCapsule(['deploy', '-function=a', '-revision=b', '-downloadUrl=x', '-envVariables=[1]'], { bin: CAPS, env });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^⏳ \[deploying to worker\] a \/ b\n😡 \[\(envVariables->map\)deploying function revision\]/);
    const refused = await runCapsule(['un-deploy', '-function', 'hello', '-revision', 'blue'], { bin: CAPS, env: { ...env, CAPSULE_WORKER_ADMIN_TOKEN: 'nope' } });
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /😡 \[when un-deploying the revision\] the node refused DELETE \/functions\/revisions\/deployments \(403 KO\): Forbidden/);
    const unknownFlag = await runCapsule(['deploy', '-wasm=x'], { bin: CAPS, env });
    assert.equal(unknownFlag.code, 2);
    assert.equal(unknownFlag.stdout.trim(), '😡 flag provided but not defined: -wasm');
    const help = await runCapsule(['--help'], { bin: CAPS, env });
    ok(help);
    assert.match(help.stdout, /^- publish : publish a wasm module to the capsule registry\n/, 'Go\'s command list first');
    for (const named of ['-wasmFile', '-downloadUrl', '-envVariables', '-registryUrl', 'CAPSULE_WORKER_URL', 'CAPSULE_REVERSE_PROXY_URL', 'CAPSULE_WORKER_ADMIN_TOKEN']) {
      assert.ok(help.stdout.includes(named), `caps --help names ${named}`);
    }
    const deployHelp = await runCapsule(['deploy', '--help']);
    ok(deployHelp);
    assert.doesNotMatch(deployHelp.stdout, /^ +--[\w-]+(?: <[^>]+>)?$/m, 'every flag of capsule deploy says what it does');
    assert.match(deployHelp.stdout, /--download-url <url> +same as --url/);
    const badUrl = await client(['list'], { CAPSULE_WORKER_URL: 'localhost:9999' });
    assert.equal(badUrl.code, 2, 'a URL without its scheme is a usage error, not "cannot reach"');
    assert.match(badUrl.stderr, /the node URL "localhost:9999" \(from CAPSULE_WORKER_URL\) must be an http\(s\) base URL, e\.g\. http:\/\/localhost:9999/);
    const unknownCommand = await runCapsule(['launch'], { bin: CAPS, env });
    assert.equal(unknownCommand.code, 1);
    assert.equal(unknownCommand.stdout.trim(), '😡 launch is not a recognized command');
  });
});
