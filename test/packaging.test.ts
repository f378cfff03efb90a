/**
 * The files that package Capsule for operators, checked against what they name (no Docker engine
 * or systemd is needed): the Dockerfile and the systemd unit (packaging/capsule.service) start
 * the real CLI with their own command lines and variables, and their health check passes against
 * it; the single executable (`npm run build:binary`, scripts/build-binary.ts) is built and runs a
 * module, and serves one through its worker threads.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { example, findBinary, freePort, missing, root, runCapsule, startServer, type Server } from './helpers.ts';

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string; bin: Record<string, string>; engines: { node: string } };
const you = example('hello-you');
const hello = example('hello-world');

/** The Dockerfile's instructions, continuation lines joined: [keyword, rest][]. */
function dockerfile(): [string, string][] {
  const text = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  return text.split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#'))
    .map((l) => { const m = /^\s*(\w+)\s+(.*)$/.exec(l)!; return [m[1]!.toUpperCase(), m[2]!.trim()]; });
}
const instr = (k: string): string[] => dockerfile().filter(([key]) => key === k).map(([, v]) => v);
/** `ENV A=1 B=2` → { A: '1', B: '2' } for every ENV line. */
function dockerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of instr('ENV')) for (const m of line.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  return env;
}
/** The unit's `Key=value` lines (keys repeat: all values kept). */
function unit(): [string, string][] {
  return readFileSync(join(root, 'packaging/capsule.service'), 'utf8').split('\n')
    .filter((l) => /^\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}
const unitValues = (k: string): string[] => unit().filter(([key]) => key === k).map(([, v]) => v);

/** A folder holding hello-you.wasm, standing for the image's or unit's functions folder. */
function functionsDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-functions-'));
  copyFileSync(you, join(dir, 'hello-you.wasm'));
  return dir;
}

/** POSTs the hello-you request; returns the status and body. */
async function askYou(url: string): Promise<[number, string]> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Bob', age: 42 }) });
  return [r.status, await r.text()];
}

describe('the Dockerfile', { skip: missing(you) }, () => {
  it('installs the tarball `npm pack` writes, on a Node the package accepts', () => {
    const from = instr('FROM');
    assert.equal(from.length, 1);
    const m = /^node:(\d+)-slim$/.exec(from[0]!);
    assert.ok(m, `FROM ${from[0]} is a Node slim image`);
    assert.ok(Number(m[1]) >= Number(/\d+/.exec(pkg.engines.node)![0]), `node:${m[1]} satisfies engines ${pkg.engines.node}`);
    const [src, dest] = instr('COPY')[0]!.split(/\s+/);
    const glob = new RegExp(`^${src!.replace(/[.]/g, '\\.').replace(/\*/g, '.*')}$`);
    assert.match(`${pkg.name}-${pkg.version}.tgz`, glob, 'COPY takes the file npm pack writes');
    assert.ok(instr('RUN').some((r) => r.includes(`npm install --global`) && r.includes(dest!)), 'RUN installs the copied tarball globally');
  });

  it('runs as a user it creates, not root', () => {
    const user = instr('USER').at(-1);
    assert.ok(user && !/^(root|0)(:|$)/.test(user), `USER ${user}`);
    assert.ok(instr('RUN').some((r) => new RegExp(`useradd\\b.*\\s${user}(\\s|$)`).test(r)), `a RUN creates ${user}`);
  });

  describe('its entry point, command and variables serve, and its health check passes', () => {
    let dir = '';
    let server: Server | undefined;
    let port = 0;
    before(async () => {
      dir = functionsDir();
      port = await freePort();
      const entry = JSON.parse(instr('ENTRYPOINT')[0]!) as string[];
      const cmd = (JSON.parse(instr('CMD')[0]!) as string[]).map((a) => (a === '/srv/capsule/functions' ? dir : a));
      assert.ok(entry[0]! in pkg.bin, `${entry[0]} is a bin of the package`);
      // the image binds every interface; here only loopback
      server = await startServer([...entry.slice(1), ...cmd], { env: { ...dockerEnv(), CAPSULE_HOST: '127.0.0.1', CAPSULE_HTTP_PORT: String(port) } });
    });
    after(async () => {
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('answers a function of the functions folder', async () => {
      assert.deepEqual(await askYou(`${server!.url}/hello-you`), [200, '{"message":"Bob 42"}']);
    });

    it('HEALTHCHECK succeeds while it serves and fails once it stopped', async () => {
      const hc = /CMD\s+(\[.*\])$/.exec(instr('HEALTHCHECK')[0]!)!;
      assert.match(hc[1]!, /\/capsule\/health/);
      const [prog, ...args] = JSON.parse(hc[1]!) as string[];
      assert.equal(prog, 'node');
      const check = () => new Promise<number | null>((resolve) => {
        spawn(process.execPath, args, { env: { ...process.env, CAPSULE_HTTP_PORT: String(port) }, stdio: 'ignore' }).on('exit', resolve);
      });
      assert.equal(await check(), 0);
      await server!.stop();
      assert.equal(await check(), 1);
    });
  });
});

describe('the systemd unit (packaging/capsule.service)', { skip: missing(you) }, () => {
  it('starts a bin of the package and does not run as root nor forbid the JIT', () => {
    const [exec] = unitValues('ExecStart');
    assert.ok(exec && basename(exec.split(/\s+/)[0]!) in pkg.bin, `ExecStart=${exec} starts a bin of the package`);
    assert.ok(unitValues('DynamicUser').includes('yes') || unitValues('User').some((u) => u !== 'root'), 'not root');
    assert.ok(!unitValues('MemoryDenyWriteExecute').includes('yes'), 'V8 needs writable+executable memory');
  });

  it('its command line and variables serve the functions folder', async () => {
    const dir = functionsDir();
    const cache = mkdtempSync(join(tmpdir(), 'capsule-unit-cache-'));
    const env: Record<string, string> = {};
    for (const e of unitValues('Environment')) env[e.slice(0, e.indexOf('='))] = e.slice(e.indexOf('=') + 1);
    const args = unitValues('ExecStart')[0]!.split(/\s+/).slice(1).map((a) => (a === '/srv/capsule/functions' ? dir : a));
    const s = await startServer(args, { env: { ...env, CAPSULE_HTTP_PORT: String(await freePort()), NODE_COMPILE_CACHE: cache, XDG_CACHE_HOME: cache } });
    try {
      assert.equal((await fetch(`${s.url}/capsule/health`)).status, 200);
      assert.deepEqual(await askYou(`${s.url}/hello-you`), [200, '{"message":"Bob 42"}']);
    } finally {
      await s.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(cache, { recursive: true, force: true });
    }
  });

  it('passes systemd-analyze verify (its program replaced by the clone\'s bin)', { skip: !findBinary('systemd-analyze') && 'systemd-analyze is not installed' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-unit-'));
    try {
      const text = readFileSync(join(root, 'packaging/capsule.service'), 'utf8').replace(/^ExecStart=\S+/m, `ExecStart=${join(root, 'bin/capsule.js')}`);
      writeFileSync(join(dir, 'capsule.service'), text);
      const r = spawnSync('systemd-analyze', ['verify', join(dir, 'capsule.service')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('packaging names only real settings', () => {
  it('every CAPSULE_* variable and --flag of the Dockerfile and the unit is one of capsule serve', async () => {
    const help = (await runCapsule(['serve', '--help'])).stdout;
    const text = readFileSync(join(root, 'Dockerfile'), 'utf8') + readFileSync(join(root, 'packaging/capsule.service'), 'utf8');
    const used = new Set([...text.matchAll(/\b(CAPSULE_[A-Z_]+)\b/g)].map((m) => m[1]!));
    const args = [...JSON.parse(instr('ENTRYPOINT')[0]!) as string[], ...JSON.parse(instr('CMD')[0]!) as string[], ...unitValues('ExecStart')[0]!.split(/\s+/)];
    for (const a of args) if (a.startsWith('--')) used.add(a.split('=')[0]!);
    assert.ok(used.size >= 3);
    for (const u of used) assert.ok(help.includes(u), `${u} is a setting of capsule serve`);
  });

  it('the README documents the install, the image, the unit and the executable', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const s of ['npm i -g capsule-runner', 'npx capsule-runner', 'docker build', 'packaging/capsule.service', 'npm run build:binary']) assert.ok(readme.includes(s), s);
  });
});

describe('the single executable (npm run build:binary)', { skip: (process.platform !== 'linux' && 'built and tested on Linux') || missing(hello) || missing(you) }, () => {
  const exe = join(root, 'build/bin/capsule');
  let cache = '';
  before(() => {
    const r = spawnSync(process.execPath, [join(root, 'scripts/build-binary.ts')], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(exe));
    cache = mkdtempSync(join(tmpdir(), 'capsule-sea-cache-'));
  });
  after(() => rmSync(cache, { recursive: true, force: true }));
  const run = (args: string[]) => spawnSync(exe, args, { cwd: tmpdir(), encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: cache } });

  it('prints the package version', () => {
    const r = run(['--version']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  it('runs a module', () => {
    const r = run(['run', hello, 'Bob']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /👋 Hello Bob/);
  });

  it('refuses --http-threads with a line saying so (the executable has no HTTP thread module)', () => {
    const r = run(['serve', you, '--http-port', '0', '--http-threads']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--http-threads is not available in the single executable/);
  });

  it('serves a module through its worker threads', async () => {
    const port = await freePort();
    const child = spawn(exe, ['serve', you, '--http-port', String(port), '--workers', '2'], { env: { ...process.env, XDG_CACHE_HOME: cache }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => { out += d.toString(); const m = /capsule listening on (\S+)/.exec(out); if (m) resolve(m[1]!); });
        void exited.then((c) => reject(new Error(`exited with ${c}`)));
      });
      assert.deepEqual(await askYou(url), [200, '{"message":"Bob 42"}']);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    }
  });
});
