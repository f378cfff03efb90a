// WASI commands from the CLI side (wasi-cgi.md §10) and the non-file part of preview1: argv,
// environment, stdio, exit codes, traps, stdin, clocks, randomness, poll_oneoff, sockets.
// Guests: test/fixtures/wasi-basic.c and wasi-nostart.wat, built by scripts/build-guests.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CapsuleFunction } from '../src/engine/function.ts';
import { CapsuleError } from '../src/base/errors.ts';
import type { CliOutput, HttpResponseOutput } from '../src/base/invocation.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const BASIC = `${root}build/fixtures/wasi-basic.wasm`;
const NOSTART = `${root}build/fixtures/wasi-nostart.wasm`;
const skip = existsSync(BASIC) ? false : 'build/fixtures/wasi-basic.wasm is missing: clang/wasi-libc are not installed (npm run setup)';
const enc = new TextEncoder();
const dec = new TextDecoder();

let fn: CapsuleFunction | undefined;
async function basic(): Promise<CapsuleFunction> {
  fn ??= await CapsuleFunction.load({ path: BASIC }, { stdio: 'capture', workers: 2, env: [['MESSAGE', 'hello from env'], ['EMPTY', '']] });
  return fn;
}
after(async () => {
  await fn?.close();
});

async function run(args: string[], stdin = new Uint8Array(0)): Promise<{ out: CliOutput; stdout: string; stderr: string }> {
  const r = await (await basic()).invoke({ type: 'cli', args, stdin });
  assert.equal(r.output.type, 'cli');
  return { out: r.output as CliOutput, stdout: r.logs?.stdout ?? '', stderr: r.logs?.stderr ?? '' };
}

test('the module is detected as a WASI command', { skip }, async () => {
  assert.equal((await basic()).module.detection.kind, 'wasi');
});

test('argv is the module file name followed by the arguments', { skip }, async () => {
  const { out, stdout } = await run(['args', 'two words', '', 'ünïcode']);
  assert.equal(out.exitCode, 0);
  assert.equal(stdout, 'argc=5\nargv[0]=wasi-basic.wasm\nargv[1]=args\nargv[2]=two words\nargv[3]=\nargv[4]=ünïcode\n');
});

test('the environment is exactly the configured variables', { skip }, async () => {
  process.env.CAPSULE_WASI_TEST_LEAK = 'must not be visible';
  const { out, stdout } = await run(['env']);
  assert.equal(out.exitCode, 0);
  assert.equal(stdout, 'MESSAGE=hello from env\nEMPTY=\nMESSAGE=hello from env\n');
});

test('stdout and stderr are separate streams', { skip }, async () => {
  const { out, stdout, stderr } = await run(['hello']);
  assert.equal(out.exitCode, 0);
  assert.equal(out.text, undefined);
  assert.equal(stdout, 'to stdout\n');
  assert.equal(stderr, 'to stderr\n');
});

test('exit codes: return 0, exit(3), return 5', { skip }, async () => {
  assert.equal((await run(['return', '0'])).out.exitCode, 0);
  const three = await run(['exit', '3']);
  assert.equal(three.out.exitCode, 3);
  assert.equal(three.stdout, 'exiting with 3\n', 'output written before proc_exit is kept');
  assert.equal((await run(['return', '5'])).out.exitCode, 5);
});

test('a trap exits 134 with the trap message, output before it kept', { skip }, async () => {
  const { out, stdout } = await run(['trap']);
  assert.equal(out.exitCode, 134);
  assert.match(dec.decode(out.text), /trapped: unreachable/);
  assert.equal(stdout, 'before the trap\n');
});

test('stdin bytes are read to EOF', { skip }, async () => {
  const { out, stdout } = await run(['stdin'], enc.encode('hello, standard input!'));
  assert.equal(out.exitCode, 0);
  assert.equal(stdout, 'stdin bytes=22\nHELLO, STANDARD INPUT!\n');
  const empty = await run(['stdin']);
  assert.equal(empty.stdout, 'stdin bytes=0\n\n');
});

test('without input.stdin the process standard input is inherited (CLI)', { skip }, () => {
  // A script file, not `node -e`: with -e, Node's main thread takes the piped stdin itself.
  const dir = mkdtempSync(join(tmpdir(), 'capsule-wasi-stdin-'));
  const script = join(dir, 'run.ts');
  writeFileSync(script, `
    import { CapsuleFunction } from ${JSON.stringify(`${root}src/engine/function.ts`)};
    const f = await CapsuleFunction.load({ path: ${JSON.stringify(BASIC)} }, { stdio: 'inherit', workers: 1 });
    const r = await f.invoke({ type: 'cli', args: ['stdin'] });
    await f.close();
    process.exitCode = r.output.type === 'cli' ? r.output.exitCode : 99;
  `);
  try {
    const r = spawnSync(process.execPath, [script], { input: 'piped into the process', encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'stdin bytes=22\nPIPED INTO THE PROCESS\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('clocks: realtime is now, nanosleep sleeps, monotonic advances', { skip }, async () => {
  const before = Date.now();
  const { out, stdout } = await run(['clock']);
  assert.equal(out.exitCode, 0);
  const v = Object.fromEntries(stdout.trim().split(/\s+/).map((kv) => kv.split('=') as [string, string]));
  const rt = Number(v.realtime_ms);
  assert.ok(rt >= before - 1000 && rt <= Date.now() + 1000, `realtime ${rt} vs host ${before}`);
  const slept = Number(v.slept_ns);
  assert.ok(slept >= 50e6 && slept < 2e9, `slept ${slept} ns for a 50 ms nanosleep`);
  assert.equal(v.nanosleep, '0');
  assert.equal(v.monotonic_res_ns, '1');
  assert.equal(v.cputime, '1');
});

test('random_get fills buffers with fresh bytes', { skip }, async () => {
  const { stdout } = await run(['random']);
  const [a, b] = stdout.trim().split('\n');
  assert.match(a!, /^[0-9a-f]{64}$/);
  assert.match(b!, /^[0-9a-f]{64}$/);
  assert.notEqual(a, b);
  assert.notEqual(a, '0'.repeat(64));
  const again = await run(['random']);
  assert.notEqual(again.stdout, stdout);
});

test('poll_oneoff: fd subscriptions are ready at once, absolute clocks wait', { skip }, async () => {
  const { stdout } = await run(['poll']);
  const [first, second] = stdout.trim().split('\n');
  assert.equal(first, 'poll errno=0 n=1 first=22 type=1');
  const m = /^abs errno=0 n=1 userdata=11 waited_ms=(\d+)$/.exec(second!);
  assert.ok(m, second);
  assert.ok(Number(m[1]) >= 15 && Number(m[1]) < 1000, `waited ${m[1]} ms for a 20 ms absolute deadline`);
});

test('sockets are not provided', { skip }, async () => {
  assert.equal((await run(['nosocket'])).stdout, 'sock_accept=58\n');
});

test('a guest sleeping past its deadline is stopped (TIMEOUT)', { skip }, async () => {
  const f = await CapsuleFunction.load({ path: BASIC }, { stdio: 'capture', workers: 1, timeoutMs: 300 });
  try {
    const t0 = Date.now();
    await assert.rejects(f.invoke({ type: 'cli', args: ['sleep', '20000'], stdin: new Uint8Array(0) }), (e: CapsuleError) => e.code === 'TIMEOUT');
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    const r = await f.invoke({ type: 'cli', args: ['sleep', '10'], stdin: new Uint8Array(0) });
    assert.equal(r.logs?.stdout, 'woke\n', 'the replaced worker serves the next call');
  } finally {
    await f.close();
  }
});

test('WASI commands answer HTTP CGI-style: argv from the query, stdout as the body, exit codes as 500 (wasi-cgi.md)', { skip }, async () => {
  const http = (url: string) => ({ type: 'http' as const, method: 'GET', url, headers: [] as [string, string][], body: new Uint8Array(0), remoteAddress: '127.0.0.1', remotePort: 1 });
  const ok = (await (await basic()).invoke(http('http://localhost/?hello'))).output as HttpResponseOutput;
  assert.equal(ok.status, 200);
  assert.equal(dec.decode(ok.body), 'to stdout\n');
  const failed = (await (await basic()).invoke(http('http://localhost/?return&7'))).output as HttpResponseOutput;
  assert.equal(failed.status, 500);
  assert.equal(dec.decode(failed.body), 'function exited with code 7');
});

test('--kind wasi on a module without _start is refused at load', { skip: existsSync(NOSTART) ? false : 'build/fixtures/wasi-nostart.wasm is missing: wat2wasm is not installed' }, async () => {
  await assert.rejects(CapsuleFunction.load({ path: NOSTART }, { kind: 'wasi', workers: 1 }), (e: CapsuleError) => e.code === 'BAD_MODULE' && /must export _start/.test(e.message));
});

test('--kind wasi runs a reactor through the entrypoint its route names, checked at load', { skip: existsSync(NOSTART) ? false : 'build/fixtures/wasi-nostart.wasm is missing: wat2wasm is not installed' }, async () => {
  await assert.rejects(CapsuleFunction.load({ path: NOSTART }, { kind: 'wasi', entrypoint: 'missing', workers: 1 }), (e: CapsuleError) => e.code === 'BAD_MODULE' && /must export missing/.test(e.message));
  const reactor = await CapsuleFunction.load({ path: NOSTART }, { kind: 'wasi', entrypoint: 'run', workers: 1, stdio: 'capture' });
  try {
    const r = await reactor.invoke({ type: 'cli', args: [], stdin: new Uint8Array(0), entrypoint: 'run' });
    assert.equal((r.output as CliOutput).exitCode, 0);
  } finally {
    await reactor.close();
  }
});
