/**
 * The deployment files of deploy/ (issue 13 point 6, faas-cluster.md §1.9, §2 scenario 15 second
 * half), checked without systemd or Kubernetes, which this machine does not have: every `capsule`
 * command line of the systemd units and the Kubernetes manifests names an existing command and
 * existing flags, and every variable it uses is defined; the NATS config is accepted by a real
 * nats-server, and run with it (the cluster block aside) its users are enough for real Capsule
 * processes — a deploy through a `deployer` node served by a `node` node through a `gateway`, an
 * upload to a `registry` — while the server refuses a `node` writing ROUTES, a `gateway` writing
 * DEPLOY and a `registry` writing ROUTES.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { eventually, example, findBinary, freePort, missing, restartable, root, runCapsule, startServer, type Restartable, type Server } from './helpers.ts';
import { waitHealthy } from './e2e/cluster.ts';

const deploy = join(root, 'deploy');
const natsServer = findBinary('nats-server');
const hello = example('hello-you');
const natsConf = join(deploy, 'nats/nats-server.conf');

/** `capsule <sub> …` command lines of the units and manifests, as argument lists after `capsule`, with where they come from. */
function capsuleCommands(): { from: string; args: string[] }[] {
  const out: { from: string; args: string[] }[] = [];
  for (const f of readdirSync(join(deploy, 'systemd')).filter((n) => n.endsWith('.service'))) {
    for (const line of readFileSync(join(deploy, 'systemd', f), 'utf8').split('\n')) {
      const m = /^ExecStart=\S*\/capsule\s+(.*)$/.exec(line);
      if (m) out.push({ from: f, args: m[1]!.split(/\s+/) });
    }
  }
  for (const f of readdirSync(join(deploy, 'kubernetes')).filter((n) => n.endsWith('.yaml'))) {
    for (const doc of parseAllDocuments(readFileSync(join(deploy, 'kubernetes', f), 'utf8'))) {
      const spec = doc.toJS() as { spec?: { template?: { spec?: { containers?: { command?: string[]; args?: string[] }[] } } } } | null;
      for (const c of spec?.spec?.template?.spec?.containers ?? []) if (c.command?.[0] === 'capsule') out.push({ from: f, args: c.args ?? [] });
    }
  }
  return out;
}

/** The help text of `capsule <sub>`. */
async function help(sub: string): Promise<string> {
  const r = await runCapsule([sub, '--help']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** deploy/nats/nats-server.conf for one local server: its ports and store, without the cluster block. */
function localConfig(port: number, http: number, store: string): string {
  let text = readFileSync(natsConf, 'utf8');
  const swap = (re: RegExp, to: string) => {
    assert.match(text, re, `${re} in deploy/nats/nats-server.conf`);
    text = text.replace(re, to);
  };
  swap(/^listen: .*$/m, `listen: 127.0.0.1:${port}`);
  swap(/^http: .*$/m, `http: 127.0.0.1:${http}`);
  swap(/store_dir: .*$/m, `store_dir: ${JSON.stringify(store)}`);
  swap(/^cluster \{[\s\S]*?^\}$/m, '');
  return text;
}

/** `nats://user:password@host:port` with the password of deploy/nats/nats-server.conf. */
function userUrl(user: string, port: number): string {
  const m = new RegExp(`user: ${user}\\s+password: "([^"]+)"`).exec(readFileSync(natsConf, 'utf8'));
  assert.ok(m, `user ${user} in deploy/nats/nats-server.conf`);
  return `nats://${user}:${m[1]}@127.0.0.1:${port}`;
}

describe('deploy/: systemd units and Kubernetes manifests', () => {
  it('name existing capsule commands and flags', async () => {
    const commands = capsuleCommands();
    const subs = new Set(commands.map((c) => c.args[0]!));
    assert.deepEqual([...subs].sort(), ['node', 'proxy', 'registry'], 'gateways, nodes and registries are described');
    assert.ok(commands.some((c) => c.from.endsWith('.service')) && commands.some((c) => c.from.endsWith('.yaml')));
    const texts = new Map<string, string>();
    for (const sub of subs) texts.set(sub, await help(sub));
    for (const { from, args } of commands) {
      for (const flag of args.filter((a) => a.startsWith('--'))) {
        assert.ok(texts.get(args[0]!)!.includes(`${flag} `) || texts.get(args[0]!)!.includes(`${flag},`), `${from}: capsule ${args[0]} has no ${flag}`);
      }
      assert.ok(args.includes('--cluster'), `${from}: capsule ${args[0]} joins the cluster`);
      if (args[0] !== 'node') assert.equal(args[args.indexOf('--backend') + 1], 'nats', `${from}: capsule ${args[0]} --backend nats`);
    }
  });

  it('use only variables the settings file defines', () => {
    const env = readFileSync(join(deploy, 'systemd/capsule-cluster.env'), 'utf8');
    const defined = new Set([...env.matchAll(/^(\w+)=/gm)].map((m) => m[1]!));
    defined.add('POD_NAME'); // from the pod's metadata in the manifests
    for (const dir of ['systemd', 'kubernetes']) {
      for (const f of readdirSync(join(deploy, dir))) {
        const text = readFileSync(join(deploy, dir, f), 'utf8').split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n');
        for (const m of text.matchAll(/\$\{(\w+)\}|\$\((\w+)\)/g)) assert.ok(defined.has(m[1] ?? m[2]!), `${dir}/${f} uses ${m[0]}, which capsule-cluster.env does not define`);
      }
    }
    for (const user of ['gateway', 'node', 'deployer', 'registry']) assert.match(env, new RegExp(`nats://${user}:`), `a URL for the ${user} user`);
  });
});

describe('deploy/nats/nats-server.conf: users and permissions (faas-cluster.md §1.9)', { skip: !natsServer ? 'nats-server is not installed (scripts/setup.sh installs it)' : missing(hello), concurrency: false }, () => {
  let dir = '';
  let server: Restartable;
  let port = 0;
  let files: HttpServer;
  const procs: Server[] = [];
  const clients: NatsConnection[] = [];
  const as = async (user: string) => {
    const nc = await connect({ servers: `127.0.0.1:${port}`, user, pass: new URL(userUrl(user, port)).password });
    clients.push(nc);
    return nc;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-deploy-nats-'));
    port = await freePort();
    const http = await freePort();
    writeFileSync(join(dir, 'nats.conf'), localConfig(port, http, join(dir, 'store')));
    server = await restartable(natsServer!, ['-c', join(dir, 'nats.conf')], port);
    await waitHealthy(`http://127.0.0.1:${http}`);
    files = createServer((_req, res) => void res.writeHead(200).end(readFileSync(hello)));
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', () => r()));
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(procs.map((p) => p.stop()));
    files?.close();
    await server?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is accepted by nats-server as written (cluster block included)', () => {
    const r = spawnSync(natsServer!, ['-t', '-c', natsConf], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr + r.stdout);
  });

  it('lets each kind of Capsule process do its work as its own user', async () => {
    const node = (user: string, id: string) => startServer(['node', '--http-port=0', '--http-port-counter=0', `--cluster=${userUrl(user, port)}`, `--node-id=${id}`,
      `--cache-dir=${join(dir, id)}`, '--workers=1', '--log-level=warn']);
    const deployer = await node('deployer', 'd');
    procs.push(deployer);
    const [serving, gateway, registry] = await Promise.all([
      node('node', 'n'),
      startServer(['proxy', '--http-port=0', '--backend=nats', `--cluster=${userUrl('gateway', port)}`, '--log-level=warn']),
      startServer(['registry', '--http-port=0', '--backend=nats', `--cluster=${userUrl('registry', port)}`, '--log-level=warn']),
    ]);
    procs.push(serving, gateway, registry);
    const r = await fetch(`${deployer.url}/functions/deploy`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ function: 'hello', revision: 'blue', downloadUrl: `http://127.0.0.1:${(files.address() as { port: number }).port}/hello.wasm` }) });
    assert.equal(r.status, 202, await r.text());
    const seen = new Set<string>();
    await eventually(async () => {
      const res = await fetch(`${gateway.url}/functions/hello/blue`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob', age: 42 }) });
      assert.match(await res.text(), /Bob/);
      seen.add(res.headers.get('x-capsule-node') ?? '');
      return seen.has('d') && seen.has('n');
    }, 20_000);
    const form = new FormData();
    form.append('file', new Blob([readFileSync(hello)]), 'hello-you.wasm');
    const up = await fetch(`${registry.url}/upload/k33g/hello/0.0.0`, { method: 'POST', body: form });
    assert.equal(up.status, 200, await up.clone().text());
    const reg = await fetch(`${gateway.url}/memory/functions/registration`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ function: 'other', revision: 'r', url: 'http://127.0.0.1:1' }) });
    assert.ok(reg.ok, await reg.text());
  });

  it('never prints the password of a --cluster URL: not in a node\'s logs, not in the error of a refused connection', async () => {
    const url = userUrl('node', port);
    const password = new URL(url).password;
    const n = await startServer(['node', '--http-port=0', `--cluster=${url}`, '--node-id=quiet', `--cache-dir=${join(dir, 'quiet')}`, '--workers=1', '--log-level=info']);
    procs.push(n);
    await eventually(() => n.logs().includes('joined the cluster'), 10_000);
    assert.ok(!n.logs().includes(password), n.logs());
    const wrong = await runCapsule(['proxy', '--http-port=0', '--backend=nats', `--cluster=nats://gateway:not-the-password@127.0.0.1:${port}`]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /Authorization Violation/);
    assert.ok(!wrong.stderr.includes('not-the-password'), wrong.stderr);
  });

  it('keeps the admin tokens in cluster mode: without one 401, a wrong one 403, the right one accepted (scenario 15, first half)', async () => {
    const env = { CAPSULE_REVERSE_PROXY_ADMIN_TOKEN: 'gw-secret', CAPSULE_WORKER_ADMIN_TOKEN: 'node-secret', CAPSULE_REGISTRY_ADMIN_TOKEN: 'reg-secret' };
    const [gw, node, reg] = await Promise.all([
      startServer(['proxy', '--http-port=0', '--backend=nats', `--cluster=${userUrl('gateway', port)}`, '--log-level=warn'], { env }),
      startServer(['node', '--http-port=0', `--cluster=${userUrl('deployer', port)}`, '--node-id=guarded', `--cache-dir=${join(dir, 'guarded')}`, '--workers=1', '--log-level=warn'], { env }),
      startServer(['registry', '--http-port=0', '--backend=nats', `--cluster=${userUrl('registry', port)}`, '--log-level=warn'], { env }),
    ]);
    procs.push(gw, node, reg);
    const cases: [string, string, string, string, BodyInit | undefined][] = [
      [`${gw.url}/memory/functions/registration`, 'CAPSULE_REVERSE_PROXY_ADMIN_TOKEN', 'gw-secret', 'POST', JSON.stringify({ function: 'guarded', revision: 'r', url: 'http://127.0.0.1:1' })],
      [`${node.url}/functions/revisions/downscale`, 'CAPSULE_WORKER_ADMIN_TOKEN', 'node-secret', 'DELETE', JSON.stringify({ function: 'hello', revision: 'blue' })],
      [`${reg.url}/upload/k33g/guarded/0.0.0`, 'CAPSULE_REGISTRY_ADMIN_TOKEN', 'reg-secret', 'POST', undefined],
    ];
    for (const [url, header, token, method, body] of cases) {
      const send = (h: Record<string, string>) => fetch(url, { method, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...h }, body: body ?? (() => {
        const f = new FormData();
        f.append('file', new Blob([readFileSync(hello)]), 'guarded.wasm');
        return f;
      })() });
      assert.equal((await send({})).status, 401, `${url} without a token`);
      assert.equal((await send({ [header]: 'wrong' })).status, 403, `${url} with a wrong token`);
      const ok = await send({ [header]: token });
      assert.ok(ok.status < 300, `${url} with its token: ${ok.status} ${await ok.text()}`);
    }
  });

  it('refuses a node writing ROUTES, a gateway writing DEPLOY and a registry writing ROUTES (scenario 15)', async () => {
    const refused = /Permissions Violation for Publish/;
    const routesAsNode = await new Kvm(await as('node')).open('CAPSULE_default_ROUTES');
    await assert.rejects(routesAsNode.put('fn.aGVsbG8', '{"revisions":{}}'), refused);
    const deployAsGateway = await new Kvm(await as('gateway')).open('CAPSULE_default_DEPLOY');
    await assert.rejects(deployAsGateway.put('rev.aGVsbG8.Ymx1ZQ', '{}'), refused);
    const routesAsRegistry = await new Kvm(await as('registry')).open('CAPSULE_default_ROUTES');
    await assert.rejects(routesAsRegistry.delete('fn.aGVsbG8'), refused);
    const routes = await new Kvm(await as('deployer')).open('CAPSULE_default_ROUTES');
    assert.ok((await routes.get('fn.aGVsbG8'))?.json<{ revisions: Record<string, unknown> }>().revisions['blue'], 'the route written by the deployer is intact');
    assert.match(server.logs(), /Publish Violation - User "node"/);
  });
});
