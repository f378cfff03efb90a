/**
 * `capsule new` and `capsule build` as a user runs them: projects generated into temporary
 * folders outside the repository, built with the real toolchains, then run with `capsule run`
 * (CLI kind), served with `capsule serve` and asked once over HTTP (HTTP kind), and a message
 * function run under `capsule nats` against a real nats-server (its subject from the generated
 * `<name>.capsule.yaml`) or described by `capsule inspect`. A language whose toolchain is absent
 * is skipped with the reason; one Go project (Go builds are slow).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { findBinary, root, runCapsule, startServer, type Ran } from './helpers.ts';
import { startNatsServer, startRunner } from './brokers.ts';
import { buildProject } from '../src/dev/build.ts';
import { newProject } from '../src/dev/scaffold.ts';
import { FUNCTION_KINDS, LANGUAGES } from '../src/dev/project.ts';

let work = '';
before(() => {
  work = mkdtempSync(join(tmpdir(), 'capsule-scaffold-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

/** `capsule <args>` run in the temporary folder (or `cwd`); PATH starts with this Node's folder, as npx gives it. */
function capsule(args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return runCapsule(args, { cwd: o.cwd ?? work, env: { PATH: `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`, ...o.env } });
}

/** `capsule new` then `capsule build` in the project: the module's path. Fails the test with the output when one fails. */
async function newAndBuild(name: string, lang: string, kind: 'cli' | 'http' | 'message', prepare?: (dir: string) => void): Promise<string> {
  const made = await capsule(['new', name, '--lang', lang, `--${kind}`]);
  assert.equal(made.code, 0, made.stderr);
  const dir = join(work, name);
  prepare?.(dir);
  const built = await capsule(['build'], { cwd: dir });
  assert.equal(built.code, 0, `${built.stdout}\n${built.stderr}`);
  assert.match(built.stdout, new RegExp(`✅ ${name}\\.wasm \\(${lang}\\)`));
  return join(dir, `${name}.wasm`);
}

async function runsCli(wasm: string): Promise<void> {
  const r = await capsule(['run', wasm, 'Bob', 'Morane']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '👋 Hello Bob Morane\n');
  const none = await capsule(['run', wasm]);
  assert.equal(none.code, 1);
  assert.match(none.stdout + none.stderr, /give me a name/);
}

/** Serves `wasm`, POSTs {"name":"Bob Morane"}: `expected` back; with `badRequest`, a body that is not JSON gets 400 and an error. */
async function servesHttp(wasm: string, expected = { message: '👋 Hello Bob Morane' }, badRequest = true): Promise<void> {
  const server = await startServer(['serve', wasm, '--http-port=0', '--workers=1']);
  try {
    const res = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"Bob Morane"}' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await res.json(), expected);
    if (badRequest) {
      const bad = await fetch(server.url, { method: 'POST', body: 'not JSON' });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { error: string }).error, /send a JSON object like/);
    }
  } finally {
    await server.stop();
  }
}

async function inspectsMessage(wasm: string): Promise<void> {
  const r = await capsule(['inspect', wasm, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const text = r.stdout;
  assert.match(text, /capsule-2/);
  assert.match(text, /callHandleMessage/);
}

function has(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

const noC = findBinary('clang') && existsSync('/usr/lib/wasm32-wasi') ? false : 'clang or wasi-libc is not installed';
const noRust = existsSync('/usr/bin/rustc') && existsSync('/usr/lib/rustlib/wasm32-wasi') ? false : 'Debian rustc with wasm32-wasi is not installed';
const goCmd = findBinary('go') ?? (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
const goVersion = goCmd ? spawnSync(goCmd, ['env', 'GOVERSION'], { encoding: 'utf8' }).stdout.trim() : '';
const noGo = /^go1\.(2[4-9]|[3-9]\d)/.test(goVersion) ? false : `Go >= 1.24 is not installed (${goVersion || 'no go'})`;
const noNpm = has('npm', ['--version']) ? false : 'npm is not installed';
const natsServer = findBinary('nats-server');

describe('capsule new: what it refuses, what it says', () => {
  it('lists the languages and kinds in --help', async () => {
    const r = await capsule(['new', '--help']);
    assert.equal(r.code, 0);
    for (const word of ['assemblyscript', '"c"', '"go"', '"rust"', '"wat"', '--http', '--cli', '--message']) assert.ok(r.stdout.includes(word), `${word} in:\n${r.stdout}`);
  });

  it('refuses a bad name, a missing --lang, an unknown language, two kinds (exit 2), writing nothing', async () => {
    for (const [args, message] of [
      [['new', 'Hello World', '--lang', 'c'], /cannot name a function: use lower-case letters/],
      [['new', '../escape', '--lang', 'c'], /cannot name a function/],
      [['new', 'nolang'], /give the language with --lang \(assemblyscript, c, go, rust, wat\)/],
      [['new', 'cobol', '--lang', 'cobol'], /Allowed choices are assemblyscript, c, go, rust, wat/],
      [['new', 'twokinds', '--lang', 'c', '--cli', '--http'], /cannot be used with/],
    ] as const) {
      const r = await capsule([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    for (const d of ['nolang', 'cobol', 'twokinds', 'escape']) assert.equal(existsSync(join(work, d)), false);
  });

  it('refuses a folder that exists and is not empty, and accepts an empty one (--dir)', async () => {
    mkdirSync(join(work, 'taken'));
    writeFileSync(join(work, 'taken/keep.txt'), 'mine');
    const r = await capsule(['new', 'taken', '--lang', 'wat']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /taken already exists and is not an empty folder/);
    assert.equal(readFileSync(join(work, 'taken/keep.txt'), 'utf8'), 'mine');
    mkdirSync(join(work, 'empty'));
    const ok = await capsule(['new', 'elsewhere', '--lang', 'wat', '--dir', 'empty']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(existsSync(join(work, 'empty/main.wat')));
    assert.match(readFileSync(join(work, 'empty/README.md'), 'utf8'), /capsule serve elsewhere\.wasm/);
  });
});

describe('capsule build: what it refuses', () => {
  it('a folder without a project: exit 2 naming what it looks for', async () => {
    mkdirSync(join(work, 'nothing'));
    const r = await capsule(['build', 'nothing']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /holds no function project: expected go\.mod .*capsule new/);
  });

  it('a missing toolchain: exit 1 naming the Debian packages', { skip: noC }, async () => {
    assert.equal((await capsule(['new', 'no-clang', '--lang', 'c', '--cli'])).code, 0);
    const r = await capsule(['build', 'no-clang'], { env: { PATH: '/nonexistent', WASI_SDK_PATH: '' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /clang is not installed.*apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32/);
  });
});

describe('WAT projects', () => {
  it('cli: new, build, run', async () => runsCli(await newAndBuild('wat-cli', 'wat', 'cli')));
  it('http: new, build, serve', async () => servesHttp(await newAndBuild('wat-http', 'wat', 'http'), { message: '👋 Hello from wat-http' }, false));
  it('message: buildProject (the API serve --watch uses) writes a message module', async () => {
    assert.equal((await capsule(['new', 'wat-message', '--lang', 'wat', '--message'])).code, 0);
    const lines: string[] = [];
    const built = await buildProject(join(work, 'wat-message'), { log: (t) => lines.push(t) });
    assert.deepEqual(built, { wasm: join(work, 'wat-message/wat-message.wasm'), language: 'wat' });
    assert.match(lines.join(''), /^\$ wat2wasm main\.wat -o .*wat-message\.wasm$/m);
    await inspectsMessage(built.wasm);
  });
});

describe('C projects', { skip: noC }, () => {
  it('cli: new, build, run; a compile error exits 1 with the compiler\'s message and leaves the module as it was', async () => {
    const wasm = await newAndBuild('c-cli', 'c', 'cli');
    await runsCli(wasm);
    const before = readFileSync(wasm);
    writeFileSync(join(work, 'c-cli/main.c'), `${readFileSync(join(work, 'c-cli/main.c'), 'utf8')}\nthis is not C;\n`);
    const r = await capsule(['build'], { cwd: join(work, 'c-cli') });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /build failed: clang exited with 1:[\s\S]*main\.c:\d+:\d+: error/);
    assert.deepEqual(readFileSync(wasm), before);
  });
  it('http: new, build, serve', async () => servesHttp(await newAndBuild('c-http', 'c', 'http')));
  it('message: capsule nats on the subject of its <name>.capsule.yaml answers a request', { skip: natsServer ? false : 'nats-server is not installed' }, async () => {
    const wasm = await newAndBuild('c-message', 'c', 'message');
    const nats = await startNatsServer(natsServer!);
    const runner = await startRunner(['nats', wasm, `--nats-server=${nats.url}`]);
    const nc = await connect({ servers: nats.url });
    try {
      assert.match(runner.line, /\(c-message\)/);
      assert.equal((await nc.request('c-message', 'Bob Morane', { timeout: 10_000 })).string(), 'echo: Bob Morane');
    } finally {
      await nc.close();
      await runner.stop();
      await nats.kill();
    }
  });
});

describe('Rust projects', { skip: noRust }, () => {
  it('cli: new, build, run', async () => runsCli(await newAndBuild('rust-cli', 'rust', 'cli')));
  it('http: new, build, serve', async () => servesHttp(await newAndBuild('rust-http', 'rust', 'http')));
  it('message: new, build, a gen-2 module with callHandleMessage', async () => inspectsMessage(await newAndBuild('rust-message', 'rust', 'message')));
});

describe('Go project', { skip: noGo }, () => {
  it('http: new, build (the MDK copy through go.mod\'s replace), serve', async () => {
    const wasm = await newAndBuild('go-http', 'go', 'http');
    assert.match(readFileSync(join(work, 'go-http/go.mod'), 'utf8'), /replace github\.com\/capsule-run\/capsule\/mdk\/go => \.\/mdk/);
    await servesHttp(wasm);
  });
});

describe('AssemblyScript projects', { skip: noNpm }, () => {
  /** npm install in the project (the registry's assemblyscript, the MDK from mdk/), offline when the cache has it. */
  const npmInstall = (dir: string) => {
    const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], {
      cwd: dir, encoding: 'utf8', env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`, npm_config_update_notifier: 'false' },
    });
    assert.equal(r.status, 0, r.stderr);
  };
  it('before npm install, build exits 1 saying to run it', async () => {
    assert.equal((await capsule(['new', 'as-early', '--lang', 'assemblyscript'])).code, 0);
    const r = await capsule(['build', 'as-early']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /run npm install there/);
  });
  it('cli: new, npm install, build, run', async () => runsCli(await newAndBuild('as-cli', 'assemblyscript', 'cli', npmInstall)));
  it('http: new, npm install, build, serve', async () => servesHttp(await newAndBuild('as-http', 'assemblyscript', 'http', npmInstall)));
});

describe('every template', () => {
  it('has a README, a .gitignore, the MDK copy and its kind\'s test request; no placeholder is left', () => {
    for (const language of LANGUAGES) {
      for (const kind of FUNCTION_KINDS) {
        const name = `t-${language}-${kind}`;
        const made = newProject(name, { language, kind, dir: join(work, name) });
        const dir = made.dir;
        assert.ok(made.files.includes('README.md') && made.files.includes('.gitignore'), `${name}: ${made.files.join(', ')}`);
        const files = spawnSync('find', [dir, '-type', 'f', '-not', '-path', '*/mdk/*'], { encoding: 'utf8' }).stdout.trim().split('\n');
        for (const f of files) assert.doesNotMatch(readFileSync(f, 'utf8'), /\{\{\w+\}\}/, f);
        assert.equal(existsSync(join(dir, 'mdk')), language !== 'wat', `${name}: mdk/`);
        if (kind === 'http') assert.ok(statSync(join(dir, 'request.http')).isFile());
        if (kind === 'message') assert.match(readFileSync(join(dir, `${name}.capsule.yaml`), 'utf8'), new RegExp(`^subject: ${name}$`, 'm'));
      }
    }
    assert.ok(existsSync(join(root, 'templates/README.md')));
  });
});
