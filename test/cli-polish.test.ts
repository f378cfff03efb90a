/**
 * The CLI's polish (issue 15 point 6), end to end with real processes: shell completion sourced
 * by a real bash, `--log-format` of the serving commands, `--version` of every bin, and
 * `capsule run --json` for Capsule ABI modules and WASI commands.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bundleIfFresh } from '../src/engine/worker-entry.ts';
import { example, findBinary, fixture, missing, root, runCapsule, startServer } from './helpers.ts';

const behaviours = fixture('gen2-behaviours');
const wasiBasic = fixture('wasi-basic');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

/** Runs a bash script with the completion of `capsule completion <shell>` sourced; returns its stdout. */
async function inBash(script: string): Promise<string> {
  const generated = await runCapsule(['completion', 'bash']);
  assert.equal(generated.code, 0, generated.stderr);
  const dir = mkdtempSync(join(tmpdir(), 'capsule-completion-'));
  try {
    const file = join(dir, 'capsule.bash');
    writeFileSync(file, generated.stdout);
    // complete WORDS…: the words of the line, the cursor on the last one (as bash fills them)
    const prelude = `source ${JSON.stringify(file)}
complete_line() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _capsule; printf '%s\\n' "\${COMPREPLY[*]}"; }
`;
    return await new Promise((resolve, reject) => {
      const child = spawn('bash', ['--norc', '--noprofile', '-c', prelude + script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 && err === '' ? resolve(out) : reject(new Error(`bash exited with ${code}: ${err}`))));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('capsule completion', () => {
  it('bash: sourcing the script registers the completion of capsule and its bins', async () => {
    const out = await inBash('complete -p capsule; complete -p capsule-http');
    assert.equal(out, 'complete -o default -F _capsule capsule\ncomplete -o default -F _capsule capsule-http\n');
  });

  it('bash: completes command names (se<TAB> → serve, set-default)', async () => {
    assert.equal(await inBash('complete_line capsule se'), 'serve set-default\n');
    assert.equal(await inBash('complete_line capsule ins'), 'inspect\n');
    assert.equal(await inBash('complete_line capsule help ru'), 'run\n');
  });

  it('bash: completes a command\'s flags and the choices of --kind, --log-level, --log-format, --lang', async () => {
    assert.equal(await inBash('complete_line capsule serve --log-f'), '--log-format\n');
    assert.equal(await inBash('complete_line capsule run --js'), '--json\n');
    assert.equal(await inBash('complete_line capsule serve --log-format ""'), 'json pretty\n');
    // --flag=value: bash splits the word at "="
    assert.equal(await inBash('complete_line capsule serve --log-format = p'), 'pretty\n');
    assert.equal(await inBash('complete_line capsule run --kind wa'), 'wasi\n');
    assert.equal(await inBash('complete_line capsule nats --log-level w'), 'warn\n');
    assert.equal(await inBash('complete_line capsule new hello --lang r'), 'rust\n');
    // capsule-http stands for serve; a free value (a path) offers nothing, so bash completes files
    assert.equal(await inBash('complete_line capsule-http --http-p'), '--http-port\n');
    assert.equal(await inBash('complete_line capsule run --wasm ""'), '\n');
  });

  it('zsh: a #compdef script with every command and the choices', async () => {
    const r = await runCapsule(['completion', 'zsh']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^#compdef capsule capsule-runner capsule-http /);
    assert.match(r.stdout, /'serve:serve a module over HTTP/);
    assert.match(r.stdout, /'--log-format=\[[^\]]*\]:value:\(json pretty\)'/);
    assert.match(r.stdout, /'--lang=\[the language\]:value:\(assemblyscript c go rust wat\)'/);
    const zsh = findBinary('zsh');
    if (zsh) {
      const check = await new Promise<number | null>((resolve) => {
        const child = spawn(zsh, ['-n'], { stdio: ['pipe', 'ignore', 'inherit'] });
        child.stdin.end(r.stdout);
        child.on('close', resolve);
      });
      assert.equal(check, 0, 'zsh -n finds the script well formed');
    }
  });

  it('refuses another shell (exit 2, naming the choices)', async () => {
    const r = await runCapsule(['completion', 'fish']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Allowed choices are bash, zsh/);
  });
});

describe('--log-format', () => {
  it('serve: pretty lines on a pipe with --log-format pretty, JSON lines with json (the default off a terminal)', { skip: missing(example('hello-you')) }, async () => {
    for (const [flags, pretty] of [[['--log-format', 'pretty'], true], [['--log-format=json'], false], [[], false]] as const) {
      const s = await startServer(['serve', example('hello-you'), '--http-port=0', ...flags]);
      assert.equal(await s.stop(), 0);
      const lines = s.logs().trim().split('\n');
      const loaded = lines.find((l) => l.includes('module loaded'));
      assert.ok(loaded, s.logs());
      if (pretty) {
        assert.match(loaded, /INFO.*module loaded/);
        assert.throws(() => JSON.parse(loaded));
      } else {
        for (const l of lines) assert.equal(typeof (JSON.parse(l) as { msg: string }).msg, 'string', l);
      }
    }
  });

  it('the FaaS services take it too (capsule proxy --log-format pretty)', async () => {
    const s = await startServer(['proxy', '--http-port=0', '--log-format', 'pretty']);
    assert.equal(await s.stop(), 0);
    assert.match(s.logs(), /INFO.*shutting down/);
    assert.doesNotMatch(s.logs(), /^\{/m);
  });

  it('refuses an unknown format (exit 2)', async () => {
    const r = await runCapsule(['serve', behaviours, '--log-format', 'xml']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Allowed choices are json, pretty/);
  });
});

describe('--version of every bin', () => {
  for (const [bin, expected] of [
    ['capsule', version], ['capsule-http', version], ['capsule-reverse-proxy', version], ['capsule-registry', version],
    ['capsule-worker', version], ['caps', `caps ${version} (Capsule)`], ['capsctl', `CapsCtl ${version} (Capsule)`],
  ] as const) {
    it(`${bin} --version and -v print ${expected} and exit 0`, async () => {
      for (const flag of ['--version', '-v']) {
        const r = await runCapsule([flag], { bin: join(root, 'bin', `${bin}.js`) });
        assert.equal(r.stdout, `${expected}\n`, `${bin} ${flag}: ${r.stderr}`);
        assert.equal(r.code, 0);
      }
    });
  }
});

interface Report {
  result?: string;
  encoding?: string;
  logs: { stream: string; text: string }[];
  durationMs: number;
  exitCode: number;
  error?: string;
  truncated?: boolean;
}

/** `capsule run --json …`: its one line of JSON, and the process exit code. */
async function runJson(args: string[]): Promise<{ report: Report; code: number | null; stderr: string }> {
  const r = await runCapsule(['run', '--json', ...args]);
  const lines = r.stdout.split('\n');
  assert.equal(lines.length, 2, `one line of JSON on stdout: ${r.stdout}`);
  return { report: JSON.parse(lines[0]!) as Report, code: r.code, stderr: r.stderr };
}

describe('capsule run --json', () => {
  it('a Capsule module: the result, the guest\'s stdout lines, the duration, exit 0', { skip: missing(example('hello-world')) }, async () => {
    const { report, code, stderr } = await runJson([example('hello-world'), 'Bob', 'Morane']);
    assert.equal(code, 0, stderr);
    assert.equal(report.result, '👋 Hello Bob Morane');
    assert.deepEqual(report.logs, [{ stream: 'stdout', text: '📝 module parameter(s): Bob Morane' }]);
    assert.equal(report.exitCode, 0);
    assert.equal(report.error, undefined);
    assert.ok(report.durationMs > 0 && report.durationMs < 30_000, String(report.durationMs));
    assert.equal(stderr, '');
  });

  it('a failure result and a trap: error set, no result, exit code 1 as without --json', async () => {
    const failed = await runJson([behaviours, 'f']);
    assert.equal(failed.code, 1);
    assert.deepEqual({ ...failed.report, durationMs: 0 }, { logs: [], durationMs: 0, exitCode: 1, error: 'failed on purpose' });
    const trapped = await runJson([behaviours, 't']);
    assert.equal(trapped.code, 1);
    assert.match(trapped.report.error ?? '', /trapped: unreachable/);
  });

  it('a result that is not UTF-8 comes base64-encoded with encoding: base64', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-json-'));
    try {
      const bytes = Buffer.from([0x61, 0xff, 0xfe, 0x00]);
      writeFileSync(join(dir, 'in.bin'), bytes);
      const { report, code } = await runJson([behaviours, `--params-file=${join(dir, 'in.bin')}`]);
      assert.equal(code, 0);
      assert.equal(report.encoding, 'base64');
      assert.deepEqual(Buffer.from(report.result!, 'base64'), bytes);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a looping guest is stopped at --timeout: exit 1 and the deadline as error', async () => {
    const { report, code } = await runJson([behaviours, 'l', '--timeout=300ms']);
    assert.equal(code, 1);
    assert.match(report.error ?? '', /did not return within 300 ms/);
  });

  it('a WASI command: its stdout as result, stderr lines in logs, its exit code', async () => {
    const hello = await runJson([wasiBasic, 'hello']);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(hello.report.result, 'to stdout\n');
    assert.deepEqual(hello.report.logs, [{ stream: 'stderr', text: 'to stderr' }]);
    const exit = await runJson([wasiBasic, 'exit', '3']);
    assert.equal(exit.code, 3);
    assert.equal(exit.report.exitCode, 3);
    assert.equal(exit.report.result, 'exiting with 3\n');
    const trap = await runJson([wasiBasic, 'trap']);
    assert.equal(trap.code, 134);
    assert.equal(trap.report.result, 'before the trap\n');
    assert.match(trap.report.error ?? '', /trapped/);
  });

  it('a module that cannot be loaded is a report too (exit 1)', async () => {
    const { report, code } = await runJson([join(root, 'package.json')]);
    assert.equal(code, 1);
    assert.match(report.error ?? '', /not a WebAssembly binary/);
  });

  it('without --json the output is unchanged (result on stdout, no JSON)', { skip: missing(example('hello-world')) }, async () => {
    const r = await runCapsule(['run', example('hello-world'), 'Bob']);
    assert.equal(r.stdout, '📝 module parameter(s): Bob\n👋 Hello Bob\n');
  });
});

describe('the start-up bundles (dist/bundle, scripts/build-bundle.ts)', () => {
  it('a bundle is used while it is newer than every source it holds; an edited or removed source, or no bundle, means the sources', () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-bundle-'));
    try {
      const root = pathToFileURL(`${dir}/`);
      mkdirSync(join(dir, 'src/engine'), { recursive: true });
      mkdirSync(join(dir, 'dist/bundle'), { recursive: true });
      const source = join(dir, 'src/engine/a.ts');
      const bundle = join(dir, 'dist/bundle/worker.js');
      writeFileSync(source, 'export {};');
      assert.equal(bundleIfFresh(root, 'worker.js'), undefined, 'no bundle');
      writeFileSync(bundle, 'export {};');
      writeFileSync(join(dir, 'dist/bundle/inputs.json'), JSON.stringify({ inputs: ['src/engine/a.ts'] }));
      utimesSync(source, new Date(1_000_000), new Date(1_000_000));
      assert.equal(bundleIfFresh(root, 'worker.js')?.href, pathToFileURL(bundle).href, 'fresh');
      utimesSync(source, new Date(), new Date(Date.now() + 60_000));
      assert.equal(bundleIfFresh(root, 'worker.js'), undefined, 'a source edited after the build');
      rmSync(source);
      assert.equal(bundleIfFresh(root, 'worker.js'), undefined, 'a source removed');
      rmSync(join(dir, 'src'), { recursive: true });
      assert.equal(bundleIfFresh(root, 'worker.js')?.href, pathToFileURL(bundle).href, 'the package: no sources, the bundle');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('capsule run gives the same output and exit codes with the bundles and without (CAPSULE_BUNDLE=0)', async () => {
    for (const env of [{}, { CAPSULE_BUNDLE: '0' }]) {
      const ok = await runCapsule(['run', behaviours, 'hello'], { env });
      assert.deepEqual([ok.stdout, ok.code], ['hello\n', 0], JSON.stringify(env));
      const loop = await runCapsule(['run', behaviours, 'l', '--timeout=300ms'], { env });
      assert.equal(loop.code, 1, JSON.stringify(env));
      assert.match(loop.stderr, /did not return within 300 ms/);
    }
  });

  it('capsule call (in the same bundle as run) gives the same output and exit codes with the bundles and without', async () => {
    const plugin = fixture('extism-as');
    for (const env of [{}, { CAPSULE_BUNDLE: '0' }]) {
      const ok = await runCapsule(['call', plugin, 'count_vowels', '--input', 'Hello World'], { env });
      assert.deepEqual([ok.stdout, ok.code], ['{"count":3}', 0], JSON.stringify(env));
      const missingFn = await runCapsule(['call', plugin, 'nope'], { env });
      assert.deepEqual([missingFn.stdout, missingFn.code], ['', 1], JSON.stringify(env));
      assert.match(missingFn.stderr, /❌ Function not found: nope/);
    }
  });
});

describe('the bundle of capsule serve (dist/bundle/serve.cjs)', () => {
  const helloYou = example('hello-you');
  /**
   * A copy of the clone's code with bundles made from it by scripts/build-bundle.ts: the
   * clone's own dist/bundle goes stale whenever a source is edited, and rebuilding it would pull
   * it from under other tests.
   */
  function cloneWithBundles(): string {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-serve-bundle-'));
    for (const d of ['src', 'bin', 'scripts']) cpSync(join(root, d), join(dir, d), { recursive: true });
    copyFileSync(join(root, 'package.json'), join(dir, 'package.json'));
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const built = spawnSync(process.execPath, [join(dir, 'scripts/build-bundle.ts')], { cwd: dir, encoding: 'utf8' });
    assert.equal(built.status, 0, built.stderr);
    return dir;
  }
  /** Serves hello-you from `dir`'s bin; returns its answer to a POST, its health answer and the code cache files it left. */
  async function serveOnce(dir: string, env: NodeJS.ProcessEnv, bin = 'capsule.js', args = ['serve']) {
    const cache = mkdtempSync(join(tmpdir(), 'capsule-serve-cache-'));
    try {
      const s = await startServer([...args, helloYou, '--http-port=0'], { bin: join(dir, 'bin', bin), env: { ...env, NODE_COMPILE_CACHE: cache } });
      const res = await fetch(s.url, { method: 'POST', body: JSON.stringify({ name: 'Bob' }), headers: { 'content-type': 'application/json' } });
      const answer = `${res.status} ${res.headers.get('content-type')} ${await res.text()}`;
      const health = (await fetch(`${s.url}/capsule/health`)).status;
      assert.equal(await s.stop(), 0, s.logs());
      return { answer, health, caches: readdirSync(cache).filter((f) => f.startsWith('capsule-serve-')) };
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  }

  // one clone for the tests below (the stale-bundle check, last, edits a source of it)
  let dir = '';
  before(() => {
    if (!missing(helloYou)) dir = cloneWithBundles();
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a plain serve loads none of the packages of the other commands and options (fastify, brokers, YAML, TOML), nor prom-client before a scrape', { skip: missing(helloYou) }, async () => {
    // NODE_DEBUG=module: Node names every CommonJS file it loads (the bundle requires packages)
    const s = await startServer(['serve', helloYou, '--http-port=0'], { bin: join(dir, 'bin/capsule.js'), env: { NODE_DEBUG: 'module', NODE_COMPILE_CACHE: join(dir, 'cache') } });
    await (await fetch(s.url, { method: 'POST', body: '{"name":"Bob"}', headers: { 'content-type': 'application/json' } })).text();
    const packages = () => new Set([...s.logs().matchAll(/node_modules\/((?:@[^/"]+\/)?[^/"]+)\//g)].map((m) => m[1]!));
    const loaded = packages();
    assert.ok(loaded.has('pino'), 'the log is loaded (the check sees packages)');
    for (const pkg of ['fastify', '@fastify/multipart', '@nats-io/transport-node', 'mqtt', 'redis', 'couchbase', 'yaml', 'smol-toml', 'undici', 'prom-client']) {
      assert.ok(!loaded.has(pkg), `${pkg} is not loaded`);
    }
    const metrics = await (await fetch(`${s.url}/capsule/metrics`)).text();
    assert.match(metrics, /^capsule_requests_total\{function="hello-you.wasm",method="POST",status="200"\} 1$/m, 'the request before the scrape is counted');
    assert.ok(packages().has('prom-client'), 'loaded by the scrape');
    await s.stop();
  });

  it('serves the same answers as the sources, has the same --help, keeps its code cache, and is not used once stale', { skip: missing(helloYou) }, async () => {
    const bundled = await serveOnce(dir, {});
    const sources = await serveOnce(dir, { CAPSULE_BUNDLE: '0' });
    assert.match(bundled.answer, /^200 .*Bob/);
    assert.deepEqual([bundled.answer, bundled.health], [sources.answer, sources.health]);
    // the bundle ran: it left its V8 code cache (made at exit at the latest); the sources none
    assert.equal(bundled.caches.length, 1, 'the bundle\'s code cache');
    assert.deepEqual(sources.caches, []);
    assert.equal((await serveOnce(dir, {}, 'capsule-http.js', [])).answer, bundled.answer, 'capsule-http serves from it too');
    const helpCache = mkdtempSync(join(tmpdir(), 'capsule-serve-cache-'));
    try {
      for (const [bin, args] of [['capsule.js', ['serve', '--help']], ['capsule-http.js', ['--help']]] as const) {
        const withBundle = await runCapsule([...args], { bin: join(dir, 'bin', bin), env: { NODE_COMPILE_CACHE: helpCache } });
        const without = await runCapsule([...args], { bin: join(dir, 'bin', bin), env: { CAPSULE_BUNDLE: '0' } });
        assert.equal(withBundle.code, 0, withBundle.stderr);
        assert.deepEqual([withBundle.stdout, withBundle.code], [without.stdout, without.code], `${bin} ${args.join(' ')}`);
      }
      // a --help makes no code cache: a server started later would take that thin one for good
      assert.deepEqual(readdirSync(helpCache).filter((f) => f.startsWith('capsule-serve-')), []);
    } finally {
      rmSync(helpCache, { recursive: true, force: true });
    }
    // a source edited after the build: the sources serve, and the stale bundle is not run
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(dir, 'src/cli/serve.ts'), later, later);
    const stale = await serveOnce(dir, {});
    assert.deepEqual([stale.answer, stale.caches], [bundled.answer, []]);
  });
});
