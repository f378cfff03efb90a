/**
 * The Go FaaS demo end to end (issue 12 tests; faas-api.md §1–§4): shell scripts in the form of
 * bots-garden/capsule-faas-demo's (written here from the flags and variables of faas-api.md §3–§4,
 * on free ports) run by bash with Capsule's bins on PATH — `capsule-registry`,
 * `capsule-reverse-proxy`, `capsule-worker` started by start-*.sh, driven by `caps`: publish two modules,
 * deploy three revisions of `hello` (orange three times: scaling) and a second function `hey`,
 * call every form of route through the proxy, see every replica answer, set and switch the
 * default revision, downscale, unset the default, undeploy. Each step checks what the demo's
 * README shows: the lines `caps` prints and what the proxy answers. The same scripts run a second
 * time against `capsule faas` (the three services in one process, with the same tokens).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { example, freePort, missing, root } from './helpers.ts';

const modules = { hello: example('asenv'), hey: example('hello-you') };
const skip = Object.values(modules).map(missing).find(Boolean) || false;
const NODE24 = join(root, 'node_modules/node/bin/node');
const BINS = { caps: 'caps.js', capsule: 'capsule.js', 'capsule-registry': 'capsule-registry.js', 'capsule-reverse-proxy': 'capsule-reverse-proxy.js', 'capsule-worker': 'capsule-worker.js' };

interface Ran { code: number | null; stdout: string; stderr: string }

/** The tokens of the three services (as the demo sets them: one variable per service). */
const TOKENS = { CAPSULE_REGISTRY_ADMIN_TOKEN: 'registry-secret', CAPSULE_WORKER_ADMIN_TOKEN: 'worker-secret', CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: 'proxy-secret' };

/**
 * The demo's scripts, written from faas-api.md §3–§4 in its form (variables on the command line,
 * one flag per line): the three start-*.sh, then one script per `caps` step.
 */
function demoScripts(p: Ports): Record<string, string> {
  const sh = (vars: Record<string, string>, command: string, flags: string[] = []) =>
    `#!/bin/bash\n${Object.entries(vars).map(([k, v]) => `${k}="${v}" \\\n`).join('')}${[command, ...flags].join(' \\\n  ')}\n`;
  const worker = { CAPSULE_WORKER_URL: `http://localhost:${p.worker}`, CAPSULE_BACKEND: 'memory', CAPSULE_WORKER_ADMIN_TOKEN: TOKENS.CAPSULE_WORKER_ADMIN_TOKEN };
  const registryUrl = `http://localhost:${p.registry}`;
  const publish = (name: string) => sh({ CAPSULE_REGISTRY_ADMIN_TOKEN: TOKENS.CAPSULE_REGISTRY_ADMIN_TOKEN }, 'caps publish',
    [`-wasmFile=./src/functions/${name}/${name}.wasm`, `-wasmInfo="this is the ${name} module"`, '-wasmOrg=demo', `-wasmName=${name}`, '-wasmTag=0.0.0', `-registryUrl=${registryUrl}`]);
  const deploy = (fn: string, rev: string, env?: Record<string, string>) => sh(worker, 'caps deploy',
    [`-function=${fn}`, `-revision=${rev}`, `-downloadUrl=${registryUrl}/demo/${fn}/0.0.0/${fn}.wasm`, ...(env ? [`-envVariables='${JSON.stringify(env)}'`] : [])]);
  const onRevision = (command: string, fn: string, rev?: string) => sh(worker, `caps ${command}`, [`-function=${fn}`, ...(rev ? [`-revision=${rev}`] : [])]);
  return {
    'start-registry.sh': sh({ CAPSULE_REGISTRY_ADMIN_TOKEN: TOKENS.CAPSULE_REGISTRY_ADMIN_TOKEN }, 'capsule-registry', ['-files="${PWD}/registry/functions"', `-httpPort=${p.registry}`]),
    'start-reverse-proxy.sh': sh({ CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: TOKENS.CAPSULE_REVERSE_PROXY_ADMIN_TOKEN }, 'capsule-reverse-proxy', ['-backend="memory"', `-httpPort=${p.proxy}`]),
    'start-worker.sh': sh({ CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: TOKENS.CAPSULE_REVERSE_PROXY_ADMIN_TOKEN, CAPSULE_WORKER_ADMIN_TOKEN: TOKENS.CAPSULE_WORKER_ADMIN_TOKEN }, 'capsule-worker',
      [`-reverseProxy=http://localhost:${p.proxy}`, '-backend=memory', '-capsulePath=capsule', '-httpPortCounter=0', `-httpPort=${p.worker}`]),
    '02-publish-hello.sh': publish('hello'),
    'readme-publish-hey.sh': publish('hey'),
    '03-deploy-hello.sh': deploy('hello', 'orange', { MESSAGE: 'Revision 🟠', TOKEN: '😡' }),
    '04-deploy-hello.sh': deploy('hello', 'orange', { MESSAGE: 'Revision 🟠', TOKEN: '😡🤬' }),
    '05-deploy-hello.sh': deploy('hello', 'orange', { MESSAGE: 'Revision 🟠', TOKEN: '😡🤬🥵' }),
    '06-deploy-hello-blue.sh': deploy('hello', 'blue', { MESSAGE: 'Revision 🔵', TOKEN: '👩‍🔧🧑‍🔧👨‍🔧' }),
    '07-deploy-hello-green.sh': deploy('hello', 'green', { MESSAGE: 'Revision 🟢', TOKEN: '🍏🥝🍉' }),
    'readme-deploy-hey.sh': deploy('hey', 'yellow'),
    '08-default-hello-blue.sh': onRevision('set-default', 'hello', 'blue'),
    '09-default-hello-green.sh': onRevision('set-default', 'hello', 'green'),
    '10-default-hello-orange.sh': onRevision('set-default', 'hello', 'orange'),
    'downscale-hello-orange.sh': onRevision('downscale', 'hello', 'orange'),
    'readme-unset-default-hello.sh': onRevision('unset-default', 'hello'),
    'readme-undeploy-hello-green.sh': onRevision('un-deploy', 'hello', 'green'),
    'info.sh': sh({ CAPSULE_WORKER_URL: worker.CAPSULE_WORKER_URL, CAPSULE_BACKEND: 'memory' }, 'caps worker'),
    'reverse-proxy.sh': sh({ CAPSULE_REVERSE_PROXY_URL: `http://localhost:${p.proxy}`, CAPSULE_BACKEND: 'memory' }, 'caps reverse-proxy'),
  };
}


/** The demo folder: the scripts on free ports, the two modules where the scripts look for them, and a bin dir. */
function makeDemo(ports: Ports): Demo {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-faas-demo-'));
  for (const [name, text] of Object.entries(demoScripts(ports))) writeFileSync(join(dir, name), text, { mode: 0o755 });
  for (const [name, wasm] of Object.entries(modules)) {
    mkdirSync(join(dir, 'src/functions', name), { recursive: true });
    copyFileSync(wasm, join(dir, 'src/functions', name, `${name}.wasm`));
  }
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const [name, file] of Object.entries(BINS)) symlinkSync(join(root, 'bin', file), join(bin, name));
  // the bins' `#!/usr/bin/env -S node` finds the Node 24 that npm installed first
  return { dir, env: { ...process.env, PATH: `${bin}:${dirname(NODE24)}:${process.env['PATH'] ?? ''}` } };
}

/** Runs one demo script with bash and waits for it to end. */
function script(demo: Demo, name: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const c = spawn('bash', [name], { cwd: demo.dir, env: demo.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts `cmd args` in the demo folder (in its own process group) and waits for the ready line. */
function startService(demo: { dir: string; env: NodeJS.ProcessEnv }, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { cwd: demo.dir, env: { ...demo.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/capsule listening on \S+/.test(out)) resolve(c);
    };
    c.stdout.on('data', onData);
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} ended (${code}) before it was ready:\n${out}`)));
  });
}

type Ports = { registry: number; proxy: number; worker: number };
type Demo = { dir: string; env: NodeJS.ProcessEnv };

/** How the services of a run start; `serving` is the proxy base URL the node puts in its replies. */
const SETUPS: { name: string; start(demo: Demo, ports: Ports): Promise<ChildProcess[]>; serving(ports: Ports): string }[] = [
  {
    name: 'the demo\'s start-*.sh with the Go bins',
    start: async (demo) => [
      await startService(demo, 'bash', ['start-registry.sh']),
      await startService(demo, 'bash', ['start-reverse-proxy.sh']),
      await startService(demo, 'bash', ['start-worker.sh']),
    ],
    serving: (p) => `http://localhost:${p.proxy}`,
  },
  {
    name: 'capsule faas (all in one) with the same tokens',
    start: async (demo, p) => [await startService(demo, 'capsule', ['faas', `--http-port=${p.proxy}`, `--registry-port=${p.registry}`, `--node-port=${p.worker}`, '--http-port-counter=0', '--files=registry/functions'],
      TOKENS)],
    serving: (p) => `http://127.0.0.1:${p.proxy}`,
  },
];

/** The lines a script printed, without the empty last one. */
const lines = (r: Ran) => r.stdout.trimEnd().split('\n');

for (const setup of SETUPS) describe(`the Go FaaS demo (capsule-faas-demo scripts and caps): ${setup.name}`, { skip }, () => {
  let demo: Demo;
  let proxy: string;
  let serving: string;
  const services: ChildProcess[] = [];

  /** GET through the proxy; the body of asenv lists the guest's environment. */
  const get = async (path: string) => {
    const res = await fetch(`${proxy}${path}`);
    return { status: res.status, text: await res.text() };
  };
  /** A variable asenv printed (`  NAME=value`). */
  const envVar = (text: string, name: string) => new RegExp(`^  ${name}=(.*)$`, 'm').exec(text)?.[1];

  before(async () => {
    const ports = { registry: await freePort(), proxy: await freePort(), worker: await freePort() };
    demo = makeDemo(ports);
    proxy = `http://localhost:${ports.proxy}`;
    serving = setup.serving(ports);
    services.push(...await setup.start(demo, ports));
  });

  after(async () => {
    for (const c of services.reverse()) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const ended = new Promise((r) => c.once('exit', r));
      process.kill(-c.pid!, 'SIGTERM');
      await ended;
    }
    rmSync(demo.dir, { recursive: true, force: true });
  });

  it('publishes both modules to the registry (02-publish-hello.sh and the README\'s hey)', async () => {
    const hello = await script(demo, '02-publish-hello.sh');
    assert.equal(hello.code, 0, hello.stdout + hello.stderr);
    assert.deepEqual(lines(hello), ['⏳ [publishing to registry] demo hello 0.0.0', '🙂 [publishing to registry] ./src/functions/hello/hello.wasm published']);
    const hey = await script(demo, 'readme-publish-hey.sh');
    assert.equal(hey.code, 0, hey.stdout + hey.stderr);
    assert.deepEqual(readFileSync(join(demo.dir, 'registry/functions/demo/hey/0.0.0/hey.wasm')), readFileSync(modules.hey));
    assert.equal(readFileSync(join(demo.dir, 'registry/functions/demo/hello/0.0.0/hello.info'), 'utf8'), 'this is the hello module\n');
  });

  it('deploys orange three times: three replicas serve /functions/hello/orange in turn with the last environment', async () => {
    for (const name of ['03-deploy-hello.sh', '04-deploy-hello.sh', '05-deploy-hello.sh']) {
      const r = await script(demo, name);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(lines(r), ['⏳ [deploying to worker] hello / orange', '🙂 [deployed to worker] hello / orange', `🌍 [serving] ${serving}/functions/hello/orange`]);
    }
    const info = await script(demo, 'info.sh');
    assert.equal(info.code, 0, info.stderr);
    const orange = (JSON.parse(info.stdout) as Record<string, Record<string, { wasmModules: Record<string, { localUrl: string }> }>>)['hello']!['orange']!;
    const replicaPorts = Object.values(orange.wasmModules).map((m) => new URL(m.localUrl).port).sort();
    assert.equal(replicaPorts.length, 3);
    const answered = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await get('/functions/hello/orange');
      assert.equal(r.status, 200);
      assert.equal(envVar(r.text, 'MESSAGE'), 'Revision 🟠');
      assert.equal(envVar(r.text, 'TOKEN'), '😡🤬🥵');
      answered.add(envVar(r.text, 'SERVER_PORT')!);
    }
    assert.deepEqual([...answered].sort(), replicaPorts);
  });

  it('deploys blue and green (06, 07) and the second function hey; each route form reaches its revision', async () => {
    for (const [name, rev] of [['06-deploy-hello-blue.sh', 'blue'], ['07-deploy-hello-green.sh', 'green']] as const) {
      const r = await script(demo, name);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(lines(r)[2], `🌍 [serving] ${serving}/functions/hello/${rev}`);
    }
    assert.equal(envVar((await get('/functions/hello/blue')).text, 'MESSAGE'), 'Revision 🔵');
    assert.equal(envVar((await get('/functions/hello/green')).text, 'TOKEN'), '🍏🥝🍉');
    const rest = await get('/functions/hello/green/api/items?x=1');
    assert.equal(envVar(rest.text, 'PATH_INFO'), '/api/items');
    assert.equal(envVar(rest.text, 'QUERY_STRING'), 'x=1');
    const hey = await script(demo, 'readme-deploy-hey.sh');
    assert.equal(hey.code, 0, hey.stdout + hey.stderr);
    assert.equal(lines(hey)[2], `🌍 [serving] ${serving}/functions/hey/yellow`);
    const res = await fetch(`${proxy}/functions/hey/yellow`, { method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify({ name: 'k33g', age: 42 }) });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { message: 'k33g 42' });
    assert.equal((await get('/functions/hello')).status, 404, 'no default revision yet');
  });

  it('sets the default revision to blue, then green, then orange (08, 09, 10): /functions/hello follows', async () => {
    for (const [name, rev, message] of [['08-default-hello-blue.sh', 'blue', 'Revision 🔵'], ['09-default-hello-green.sh', 'green', 'Revision 🟢'], ['10-default-hello-orange.sh', 'orange', 'Revision 🟠']] as const) {
      const r = await script(demo, name);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(lines(r), [`⏳ [setting default revision] hello / ${rev}`, `🙂 [the default revision is set]-> hello / ${rev}`, `🌍 [serving] ${serving}/functions/hello`]);
      const page = await get('/functions/hello');
      assert.equal(page.status, 200);
      assert.equal(envVar(page.text, 'MESSAGE'), message);
    }
    const routes = await script(demo, 'reverse-proxy.sh');
    assert.equal(routes.code, 0, routes.stderr);
    const table = JSON.parse(routes.stdout) as Record<string, Record<string, string[]>>;
    assert.deepEqual(Object.keys(table['hello']!).sort(), ['blue', 'default', 'green', 'orange']);
    assert.deepEqual([...table['hello']!['default']!].sort(), [...table['hello']!['orange']!].sort());
  });

  it('downscales orange one replica at a time and refuses to remove the last one', async () => {
    for (const left of [2, 1]) {
      const r = await script(demo, 'downscale-hello-orange.sh');
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(lines(r)[1]!, /^🙂 \[the revision is downscaled \(one process killed\)\]-> hello \/ orange pid: \d+$/);
      const info = JSON.parse((await script(demo, 'info.sh')).stdout) as Record<string, Record<string, { wasmModules: Record<string, unknown> }>>;
      assert.equal(Object.keys(info['hello']!['orange']!.wasmModules).length, left);
    }
    const last = await script(demo, 'downscale-hello-orange.sh');
    assert.equal(last.code, 1);
    assert.equal(lines(last)[1], '😡 [the revision is not downscaled]-> the revision needs at least one running wasm module');
    assert.equal((await get('/functions/hello')).status, 200, 'the default (orange) still answers');
  });

  it('unsets the default revision and undeploys green (README commands)', async () => {
    const unset = await script(demo, 'readme-unset-default-hello.sh');
    assert.equal(unset.code, 0, unset.stdout + unset.stderr);
    assert.deepEqual(lines(unset), ['⏳ [unsetting default revision] hello', '🙂 [the default revision is unset]-> hello']);
    const gone = await fetch(`${proxy}/functions/hello`);
    assert.equal(gone.status, 404);
    assert.equal(((await gone.json()) as { code: string }).code, 'FUNCTION_NOT_FOUND');
    const undeploy = await script(demo, 'readme-undeploy-hello-green.sh');
    assert.equal(undeploy.code, 0, undeploy.stdout + undeploy.stderr);
    assert.deepEqual(lines(undeploy), ['⏳ [un-deploying revision] hello / green', '🙂 [the revision is un-deployed (all processes killed)]-> hello / green']);
    assert.equal((await get('/functions/hello/green')).status, 404);
    assert.equal(envVar((await get('/functions/hello/blue')).text, 'MESSAGE'), 'Revision 🔵', 'the other revisions keep serving');
  });
});
