/**
 * The published package as a user gets it: `npm pack` (which builds dist/ through `prepack`),
 * the tarball installed with npm into a fresh project outside the clone, and there the host SDK
 * imported by the package name (`import { CapsuleFunction } from 'capsule-runner'`) and the CLI
 * run through `npx capsule` — on the Node 24 that runs this test (its folder first on PATH); the
 * AssemblyScript MDK, packed as its own package, builds a function there that the CLI runs.
 * Node does not strip types under node_modules, so this proves the package ships runnable
 * JavaScript. Skipped, with the reason, only when npm is absent.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { example, missing, root } from './helpers.ts';

const hello = example('hello-world');
const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`, npm_config_update_notifier: 'false' };
const npmAbsent = spawnSync('npm', ['--version'], { env }).status === 0 ? false : 'npm is not installed';

/** Runs a command to completion with the test's PATH; fails the test with its output when it fails. */
function run(cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

describe('the npm package (packed, installed elsewhere)', { skip: npmAbsent || missing(hello) }, () => {
  let dir = '';
  const files: string[] = [];
  const mdkFiles: string[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsule-package-'));
    const packed = pack([], files);
    const mdk = pack(['--workspace', 'mdk/assemblyscript'], mdkFiles);
    const project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-capsule', private: true, type: 'module' }));
    const asc = (JSON.parse(readFileSync(join(root, 'node_modules/assemblyscript/package.json'), 'utf8')) as { version: string }).version;
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', packed, mdk, `assemblyscript@${asc}`], project);
  });
  /** `npm pack <args>` into the temporary folder: the tarball's path; its file list goes to `into`. */
  function pack(args: string[], into: string[]): string {
    const [p] = JSON.parse(run('npm', ['pack', ...args, '--json', '--pack-destination', dir], root).stdout) as { filename: string; files: { path: string }[] }[];
    into.push(...p!.files.map((f) => f.path));
    return join(dir, p!.filename);
  }
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('ships the build, the bins and the docs, and no sources, tests, benches or examples', () => {
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/engine/worker.js', 'dist/cli/main.js', 'bin/capsule.js', 'bin/launch.js', 'README.md', 'LICENSE', 'package.json', 'docs/spec/capsule-abi.md']) {
      assert.ok(files.includes(f), `${f} is in the tarball`);
    }
    // templates/ and the MDK sources are what capsule new copies into a project (AssemblyScript ones are .ts)
    const stray = files.filter((f) => /^(src|test|bench|examples|scripts|build)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts') && !/^(templates|mdk)\//.test(f));
    assert.deepEqual(stray, []);
    for (const f of ['templates/README.md', 'templates/go/http/main.go', 'mdk/go/go.mod', 'mdk/rust/src/lib.rs', 'mdk/c/capsule.h', 'mdk/assemblyscript/assembly/index.ts']) {
      assert.ok(files.includes(f), `${f} is in the tarball`);
    }
    assert.deepEqual(files.filter((f) => /^mdk\/./.test(f) && !/^mdk\/(assemblyscript|c|go|rust)\//.test(f)), []);
  });

  it('imports the host SDK by the package name and calls a module', () => {
    const project = join(dir, 'project');
    writeFileSync(join(project, 'sdk.js'), `
      import { CapsuleFunction, CAPSULE_VERSION } from 'capsule-runner';
      const fn = await CapsuleFunction.load({ path: process.argv[2] }, { timeoutMs: 5000, workers: 1 });
      const r = await fn.invoke({ type: 'cli', params: new TextEncoder().encode('Bob'), args: [] });
      await fn.close();
      console.log(JSON.stringify({ version: CAPSULE_VERSION, text: new TextDecoder().decode(r.output.text) }));
    `);
    const r = run(process.execPath, ['sdk.js', hello], project);
    const got = JSON.parse(r.stdout) as { version: string; text: string };
    assert.equal(got.text, '👋 Hello Bob');
    assert.equal(got.version, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version);
  });

  it('runs a module with `npx capsule run`, and `npx capsule-runner --version`', () => {
    const project = join(dir, 'project');
    const r = run('npx', ['--no-install', 'capsule', 'run', hello, 'Bob'], project);
    assert.match(r.stdout, /👋 Hello Bob/);
    const v = run('npx', ['--no-install', 'capsule-runner', '--version'], project);
    assert.match(v.stdout, /\d+\.\d+\.\d+/);
  });

  it('builds a function with the AssemblyScript MDK package and runs it with the CLI package', () => {
    assert.deepEqual(mdkFiles.filter((f) => !/^(assembly\/.*\.(ts|json)|index\.ts|exports\.ts|exports-message\.ts|asconfig\.json|README\.md|LICENSE|package\.json)$/.test(f)), []);
    const project = join(dir, 'project');
    mkdirSync(join(project, 'assembly'));
    copyFileSync(join(root, 'examples/hello-world/assembly/index.ts'), join(project, 'assembly/index.ts'));
    writeFileSync(join(project, 'asconfig.json'), JSON.stringify({ extends: '@capsule/mdk-assemblyscript/asconfig.json' }));
    run('npx', ['--no-install', 'asc', 'assembly/index.ts', '--config', 'asconfig.json', '--target', 'release', '-o', 'hello.wasm'], project);
    assert.match(run('npx', ['--no-install', 'capsule', 'run', 'hello.wasm', 'Bob'], project).stdout, /👋 Hello Bob/);
  });

  it('writes, builds and runs a C and a Go function with `npx capsule new` / `npx capsule build` (templates and MDKs from the package)', async (t) => {
    const project = join(dir, 'project');
    const langs = [
      ...(existsSync('/usr/lib/wasm32-wasi') && spawnSync('clang', ['--version'], { env }).status === 0 ? ['c'] : []),
      ...(spawnSync('go', ['version'], { env }).status === 0 || existsSync('/usr/local/go/bin/go') ? ['go'] : []),
    ];
    if (langs.length === 0) t.skip('neither clang with wasi-libc nor go is installed');
    for (const lang of langs) {
      run('npx', ['--no-install', 'capsule', 'new', `fn-${lang}`, '--lang', lang, '--cli'], project);
      run('npx', ['--no-install', 'capsule', 'build', `fn-${lang}`], project);
      assert.equal(run('npx', ['--no-install', 'capsule', 'run', `fn-${lang}/fn-${lang}.wasm`, 'Bob'], project).stdout, '👋 Hello Bob\n');
    }
  });

  // `capsule run` starts no worker (its call runs in the CLI's thread): `capsule serve` does
  it('fails `capsule serve` with a message, not a hang, when the installed worker code cannot load', () => {
    const pkg = join(dir, 'project/node_modules/capsule-runner/dist');
    const broken = [join(pkg, 'bundle/worker.js'), join(pkg, 'engine/worker.js')].filter((f) => existsSync(f));
    const saved = broken.map((f) => readFileSync(f));
    try {
      for (const f of broken) writeFileSync(f, 'throw new Error("a damaged install");\n');
      const r = spawnSync('npx', ['--no-install', 'capsule', 'serve', example('hello-you'), '--http-port', '0'], { cwd: join(dir, 'project'), env, encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 1, `${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, /worker threads cannot start \(3 tries\): .*a damaged install/);
    } finally {
      broken.forEach((f, i) => writeFileSync(f, saved[i]!));
    }
  });

  it('tells a user of a Node without JSPI that it needs 24.20, without pointing at a clone script', { skip: oldNode() === undefined && 'no Node older than 24 here' }, () => {
    const bin = join(dir, 'project/node_modules/capsule-runner/bin/capsule.js');
    assert.ok(existsSync(bin));
    const r = spawnSync(oldNode()!, [bin, '--version'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /needs Node\.js 24\.20 or newer .*nodejs\.org/);
  });
});

/** The machine's Node when it is older than 24 (the bins refuse it outside a clone), else undefined. */
function oldNode(): string | undefined {
  for (const c of ['/usr/bin/node', '/usr/local/bin/node']) {
    const r = spawnSync(c, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (r.status === 0 && Number(r.stdout.split('.')[0]) < 24) return c;
  }
  return undefined;
}
