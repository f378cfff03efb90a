/**
 * The bins as a user starts them (bin/capsule.js, bin/launch.js): through their `#!` line, and
 * with a Node older than 24, whose launcher runs the real CLI as a child with the Node 24 of
 * node_modules. `kill PID` of such a launcher stops the real server; the launcher ends the way
 * its child did; Node's own reading of `--env-file` never takes a guest's `--env-file`.
 * Real processes, signals and sockets; no timing is asserted.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { cli, fixture, root } from './helpers.ts';

const behaviours = fixture('gen2-behaviours');

/** A Node older than 24 on this machine (`which -a node`, /usr/bin/node), or undefined. */
function oldNode(): string | undefined {
  const candidates = new Set<string>(['/usr/bin/node', '/usr/local/bin/node']);
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) if (dir) candidates.add(join(dir, 'node'));
  for (const c of candidates) {
    if (!existsSync(c)) continue;
    try {
      const v = execFileSync(c, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
      if (Number(v.split('.')[0]) < 24) return c;
    } catch {
      // not runnable
    }
  }
  return undefined;
}

const old = oldNode();
const noOld = old ? false : 'no Node.js older than 24 on this machine (which -a node, /usr/bin/node)';
const noProc = existsSync('/proc/self/task') ? false : 'needs /proc to find the launcher\'s child';

/** Pids of the children of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const dir = `/proc/${pid}/task`;
  return execFileSync('ls', [dir], { encoding: 'utf8' }).split('\n').filter(Boolean)
    .flatMap((tid) => readFileSync(`${dir}/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether something accepts connections on 127.0.0.1:`port` right now. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Starts `<node> bin/capsule.js serve` and waits for its ready line. */
async function serveWith(node: string): Promise<{ launcher: ChildProcess; port: number; exited: Promise<[number | null, NodeJS.Signals | null]> }> {
  const launcher = spawn(node, [cli, 'serve', behaviours, '--http-port=0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => launcher.on('exit', (c, s) => r([c, s])));
  let out = '';
  let err = '';
  launcher.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    launcher.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /capsule listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(([c]) => reject(new Error(`exited with ${c} before it was ready: ${err}`)));
  });
  return { launcher, port, exited };
}

describe('the launcher of a Node older than 24', { skip: noOld || noProc }, () => {
  for (const [signal, expected] of [['SIGTERM', [0, null]], ['SIGINT', [0, null]], ['SIGHUP', [null, 'SIGHUP']]] as const) {
    it(`passes ${signal} on: kill PID stops the real server, and the launcher ends as it did`, async () => {
      const { launcher, port, exited } = await serveWith(old!);
      const [child] = childrenOf(launcher.pid!);
      assert.ok(child, 'the launcher runs the CLI as a child');
      try {
        assert.equal(await answers(port), true);
        launcher.kill(signal);
        // SIGTERM and SIGINT: the server drains and exits 0; SIGHUP ends it (Node's default)
        assert.deepEqual(await exited, expected);
        assert.equal(alive(child), false, 'the real server is gone');
        assert.equal(await answers(port), false, 'the port no longer answers');
      } finally {
        if (alive(child)) process.kill(child, 'SIGKILL');
      }
    });
  }

  it('exits with the status of the run', async () => {
    const run = (params: string) => new Promise<number | null>((resolve) => {
      const p = spawn(old!, [cli, 'run', behaviours, `--params=${params}`], { cwd: root, stdio: 'ignore' });
      p.on('exit', (code) => resolve(code));
    });
    assert.equal(await run('e'), 0);
    assert.equal(await run('f'), 1, 'an F result');
  });
});

describe('--env-file is Capsule\'s, never Node\'s', () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-launcher-'));
  const env = join(dir, 'guest.env');
  // a variable Node itself would act on if it read the file
  writeFileSync(env, 'GREETING=hello\nNODE_OPTIONS=--no-such-node-option\n');
  after(() => rmSync(dir, { recursive: true, force: true }));
  const nodes: [string, string, string | false][] = [
    ['Node 24 first on PATH', dirname(process.execPath), false],
    ['an older Node first on PATH (the launcher)', old ? dirname(old) : '', noOld],
  ];
  for (const [name, first, skip] of nodes) {
    it(`through the bin's #! line, with ${name}: a missing file is a Capsule error (exit 2), a present one goes to the guest only`, { skip }, async (t) => {
      const PATH = [first, process.env['PATH'] ?? ''].join(delimiter);
      const run = (args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawn(cli, args, { cwd: root, env: { ...process.env, PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('exit', (code) => resolve({ code, stdout, stderr }));
      });
      for (const flag of [['--env-file', '/missing/guest.env'], ['--env-file=/missing/guest.env']]) {
        const r = await run(['run', ...flag, behaviours, '--params=e']);
        assert.equal(r.stderr, '❌ --env-file /missing/guest.env: no such file\n');
        assert.equal(r.code, 2);
      }
      if (!existsSync(fixture('wasi-basic'))) {
        t.diagnostic('wasi-basic was not built: the guest side is not checked');
        return;
      }
      const ok = await run(['run', '--env-file', env, fixture('wasi-basic'), 'env']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /GREETING=hello/);
      assert.match(ok.stdout, /NODE_OPTIONS=--no-such-node-option/, 'the guest gets it; the runner\'s Node did not read it');
    });
  }
});
