/**
 * `capsule run` end to end: real processes, real guests built from source.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { example, fixture, missing, runCapsule, runShell } from './helpers.ts';

const behaviours = fixture('gen2-behaviours');
const echo = fixture('gen2-echo');

describe('capsule run: the examples', () => {
  it('runs the AssemblyScript hello-world with --params', { skip: missing(example('hello-world')) }, async () => {
    const r = await runCapsule(['run', `--wasm=${example('hello-world')}`, '--params=Bob Morane']);
    assert.equal(r.stdout, '📝 module parameter(s): Bob Morane\n👋 Hello Bob Morane\n');
    assert.equal(r.code, 0, r.stderr);
  });

  it('runs the C hello-world with the same output', { skip: missing(example('hello-world-c')) }, async () => {
    const r = await runCapsule(['run', example('hello-world-c'), 'Bob', 'Morane']);
    assert.equal(r.stdout, '📝 module parameter(s): Bob Morane\n👋 Hello Bob Morane\n');
    assert.equal(r.code, 0, r.stderr);
  });
});

describe('capsule run: params and spellings', () => {
  it('joins positional arguments with a space for gen 2', async () => {
    const r = await runCapsule(['run', echo, 'Bob', 'Morane']);
    assert.equal(r.stdout, 'params: Bob Morane\nBob Morane\n');
    assert.equal(r.code, 0);
  });

  it('reads runner flags after the module and passes unknown ones and -- to the guest', async () => {
    const r = await runCapsule(['run', behaviours, 'a', '-b', '--timeout=5s', '--c=d', '--', '--max-memory=1']);
    assert.equal(r.stdout, 'a -b --c=d --max-memory=1\n');
    assert.equal(r.code, 0);
  });

  it('accepts the Go spellings: capsule --wasm= --params= and -wasm= -mode=cli -params=', async () => {
    const a = await runCapsule([`--wasm=${echo}`, '--params=Bob']);
    assert.equal(a.stdout, 'params: Bob\nBob\n');
    const b = await runCapsule([`-wasm=${echo}`, '-mode=cli', '-params=Legacy']);
    assert.equal(b.stdout, 'params: Legacy\nLegacy\n');
    assert.equal(b.code, 0);
  });

  it('passes empty params as (0, 0) and the guest still answers', async () => {
    const r = await runCapsule(['run', echo, '--params=']);
    assert.equal(r.stdout, 'params: \n\n');
    assert.equal(r.code, 0);
  });

  it('turns invalid UTF-8 in argv into U+FFFD, never a crash', async () => {
    const r = await runShell(`$CAPSULE run ${behaviours} "e$(printf '\\xff\\xfe')x"`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'e\uFFFD\uFFFDx\n');
  });

  it('passes raw bytes with --params-file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-'));
    const file = join(dir, 'params.bin');
    writeFileSync(file, Buffer.from([0x65, 0xff, 0x00, 0xfe, 0x41]));
    const r = await runCapsule(['run', behaviours, `--params-file=${file}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...r.stdoutBytes], [0x65, 0xff, 0x00, 0xfe, 0x41, 0x0a]);
    rmSync(dir, { recursive: true });
  });

  it('shows the guest-visible environment through hostGetEnv, without secrets, and never calls allocateBuffer(0)', async () => {
    const env = fixture('gen2-env');
    const inherited = await runCapsule(['run', env, '--params=MESSAGE'], { env: { MESSAGE: 'from the shell' } });
    assert.equal(inherited.stdout, 'from the shell\n');
    const flag = await runCapsule(['run', env, '--params=MESSAGE', '--env=MESSAGE=from the flag'], { env: { MESSAGE: 'from the shell' } });
    assert.equal(flag.stdout, 'from the flag\n');
    const strict = await runCapsule(['run', env, '--params=MESSAGE', '--no-inherit-env'], { env: { MESSAGE: 'from the shell' } });
    assert.equal(strict.stdout, '\n');
    assert.equal(strict.code, 0, strict.stderr);
    const secret = await runCapsule(['run', env, '--params=API_TOKEN'], { env: { API_TOKEN: 'hush' } });
    assert.equal(secret.stdout, '\n');
    const dir = mkdtempSync(join(tmpdir(), 'capsule-'));
    writeFileSync(join(dir, '.env'), '# comment\nGREETING="hello there"\nexport OTHER=1\n');
    const file = await runCapsule(['run', env, '--params=GREETING', `--env-file=${join(dir, '.env')}`]);
    assert.equal(file.stdout, 'hello there\n');
    rmSync(dir, { recursive: true });
  });
});

describe('capsule run: failures and exit codes', () => {
  it('exits 1 with the guest message on an F result', async () => {
    const r = await runCapsule(['run', behaviours, '--params=f']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /failed on purpose/);
  });

  it('exits 1 on a trap, naming it', async () => {
    const r = await runCapsule(['run', behaviours, '--params=t']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /trapped: unreachable/);
  });

  it('stops a guest that never returns at --timeout and exits 1', async () => {
    const t0 = Date.now();
    const r = await runCapsule(['run', behaviours, '--params=l', '--timeout=300ms']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /did not return within 300 ms/);
    assert.ok(Date.now() - t0 < 20_000);
  });

  it('caps linear memory with --max-memory and says so', async () => {
    const r = await runCapsule(['run', behaviours, '--params=m', '--max-memory=8MiB']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /limit of 8 MiB \(--max-memory\)/);
  });

  it('rejects results that break the framing', async () => {
    const unframed = await runCapsule(['run', behaviours, '--params=x']);
    assert.equal(unframed.code, 1);
    assert.match(unframed.stderr, /start with S or F/);
    const empty = await runCapsule(['run', behaviours, '--params=z']);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /empty result/);
  });

  it('exits 2 on usage errors', async () => {
    const unknown = await runCapsule(['serve', '--bogus']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--bogus'/);
    // an unknown option before the module is not taken for the module's path
    const before = await runCapsule(['run', '--bogus', 'x']);
    assert.equal(before.code, 2, before.stderr);
    assert.match(before.stderr, /unknown option '--bogus' \(options of the guest go after the module/);
    // after --, a name starting with a dash is the module, not an option
    const dir = mkdtempSync(join(tmpdir(), 'capsule-'));
    try {
      writeFileSync(join(dir, '-dash.wasm'), readFileSync(echo));
      const dashed = await runCapsule(['run', '--', '-dash.wasm', 'Bob'], { cwd: dir });
      assert.equal(dashed.code, 0, dashed.stderr);
      assert.match(dashed.stdout, /Bob/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const none = await runCapsule(['run']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no module/);
    const badDuration = await runCapsule(['run', echo, '--timeout=soon']);
    assert.equal(badDuration.code, 2);
    assert.match(badDuration.stderr, /--timeout: "soon" is not a duration/);
    const mode = await runCapsule(['-wasm=x.wasm', '-mode=ftp']);
    assert.equal(mode.code, 2);
  });

  it('refuses bad modules with an error that says what is wrong', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-'));
    writeFileSync(join(dir, 'text.wasm'), 'hello, I am not wasm\n');
    writeFileSync(join(dir, 'cut.wasm'), readFileSync(echo).subarray(0, 60));
    const cases: [string, RegExp][] = [
      [join(dir, 'text.wasm'), /not a WebAssembly binary/],
      [join(dir, 'cut.wasm'), /truncated WebAssembly binary|malformed/],
      [join(dir, 'absent.wasm'), /cannot read module .*no such file/],
      [fixture('bad-exports'), /unsupported module: exports \[memory, _initialize, greet\].*expected a Capsule module/],
      [fixture('bad-import'), /imports env\.hostDoesNotExist, which Capsule does not provide/],
      [fixture('bad-signature'), /import env\.hostPrintString has type \(i32\) -> i32; Capsule gen 2 expects \(i32, i32\) -> i32/],
    ];
    for (const [path, message] of cases) {
      const r = await runCapsule(['run', path]);
      assert.equal(r.code, 1, `${path}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    rmSync(dir, { recursive: true });
  });

  it('prints help and version with exit 0', async () => {
    const help = await runCapsule(['run', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--max-memory <size>/);
    const version = await runCapsule(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  it('describes a module with inspect', async () => {
    const r = await runCapsule(['inspect', echo, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { kind: string; capabilities: string[]; imports: { name: string }[] };
    assert.equal(info.kind, 'capsule-2');
    assert.deepEqual(info.capabilities, ['log']);
    assert.deepEqual(info.imports.map((i) => i.name), ['hostPrintString']);
  });

  it('says how fresh calls are served: a reset instance, or a new one and why', async () => {
    const reset = await runCapsule(['inspect', echo]);
    assert.match(reset.stdout, /^fresh calls: {2}one initialised instance per worker, reset after each call/m);
    const table = await runCapsule(['inspect', fixture('gen2-table')]);
    assert.match(table.stdout, /^fresh calls: {2}a new instance per call: its code uses table\.set$/m);
    const command = await runCapsule(['inspect', fixture('wasi-basic')]);
    assert.match(command.stdout, /^fresh calls: {2}a new instance per call: wasi modules start in their handler$/m);
  });
});

describe('capsule run --url', () => {
  let server: Server;
  let base: string;
  const bytes = readFileSync(echo);
  const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
  before(async () => {
    server = createServer((req, res) => {
      if (req.headers['private-token'] !== 'sesame') {
        res.writeHead(401).end();
        return;
      }
      res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  it('downloads with the auth header, checks the digest and saves to --wasm', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-'));
    const saved = join(dir, 'downloaded.wasm');
    const r = await runCapsule(['run', `--url=${base}/hello.wasm`, '--auth-header-name=PRIVATE-TOKEN', '--auth-header-value=sesame', `--digest=${digest}`, `--wasm=${saved}`, '--params=remote']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'params: remote\nremote\n');
    assert.deepEqual(readFileSync(saved), bytes);
    rmSync(dir, { recursive: true });
  });

  it('fails clearly without the auth header or with another digest', async () => {
    const denied = await runCapsule(['run', `--url=${base}/hello.wasm`, '--params=x']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /HTTP 401.*--auth-header-name/);
    const wrong = await runCapsule(['run', `--url=${base}/hello.wasm`, '--auth-header-name=PRIVATE-TOKEN', '--auth-header-value=sesame', `--digest=sha256:${'0'.repeat(64)}`]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /digest mismatch/);
  });
});
