/**
 * Export and import signatures are checked at load, not only arities (capsule-abi.md §1, §2.1,
 * §2.5, §5.2, §5.5; wasi-cgi.md §1): a module whose `callHandle` takes an i64, whose `malloc`
 * returns nothing or a float, whose host-function or WASI preview1 import has another type, is refused with a
 * BAD_MODULE error naming the export or import, its type and the expected one — by `capsule run`
 * (exit 1, the message on stderr), by `capsule serve --functions` (500 BAD_MODULE JSON while the
 * good functions serve) and by `capsule inspect` (the module described, the problem named, exit 1).
 * Tiny WAT modules, compiled in the test with the wabt npm package.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import wabtInit from 'wabt';
import { runCapsule, startServer, type Server } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'capsule-signatures-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** A gen-2 module whose every export has the right type; `swap` replaces some of them. */
function gen2(swap: Record<string, string> = {}, imports = ''): string {
  const exports: Record<string, string> = {
    malloc: '(func (export "malloc") (param i32) (result i32) (i32.const 1024))',
    free: '(func (export "free") (param i32))',
    allocateBuffer: '(func (export "allocateBuffer") (param i32) (result i32) (i32.const 2048))',
    // "SHello" at 16: ptr 16 << 32 | len 6
    callHandle: '(func (export "callHandle") (param i32 i32) (result i64) (i64.const 0x0000001000000006))',
    // S{"JSONBody":{"ok":true}} at 64, 25 bytes
    callHandleHTTP: '(func (export "callHandleHTTP") (param i32 i32) (result i64) (i64.const 0x0000004000000019))',
    OnHealthCheck: '(func (export "OnHealthCheck") (result i64) (i64.const 0x0000004000000019))',
    ...swap,
  };
  return `(module ${imports}
    (memory (export "memory") 1)
    (data (i32.const 16) "SHello")
    (data (i32.const 64) "S{\\"JSONBody\\":{\\"ok\\":true}}")
    ${Object.values(exports).join('\n    ')})`;
}

/** A gen-1b module (callHandleHttp with 8 parameters) answering `[BODY]ok`; `swap` as `gen2`. */
function gen1b(swap: Record<string, string> = {}, imports = ''): string {
  const exports: Record<string, string> = {
    malloc: '(func (export "malloc") (param i32) (result i32) (i32.const 1024))',
    allocateBuffer: '(func (export "allocateBuffer") (param i32) (result i32) (i32.const 2048))',
    callHandle: '(func (export "callHandle") (param i32 i32) (result i64) (i64.const 0x0000001000000008))',
    callHandleHttp: '(func (export "callHandleHttp") (param i32 i32 i32 i32 i32 i32 i32 i32) (result i64) (i64.const 0x0000001000000008))',
    callNatsMessageHandle: '(func (export "callNatsMessageHandle") (param i32 i32) (result i64) (i64.const 0x0000001000000008))',
    OnLoad: '(func (export "OnLoad"))',
    ...swap,
  };
  return `(module ${imports}
    (memory (export "memory") 1)
    (data (i32.const 16) "[BODY]ok")
    ${Object.values(exports).join('\n    ')})`;
}

/** A WASI command; `start` replaces its `_start`. */
function wasi(start = '(func (export "_start"))', imports = ''): string {
  return `(module ${imports} (memory (export "memory") 1) ${start})`;
}

interface Case {
  file: string;
  wat: string;
  /** The message after `<file>: `. */
  message: string;
}

const CASES: Case[] = [
  { file: 'handle-i64.wasm', wat: gen2({ callHandle: '(func (export "callHandle") (param i64 i32) (result i32) (i32.const 0))' }),
    message: 'export callHandle has type (i64, i32) -> i32; Capsule gen 2 expects (i32, i32) -> i64' },
  { file: 'malloc-float.wasm', wat: gen2({ malloc: '(func (export "malloc") (param f64 i64) (result f32) (f32.const 0))' }),
    message: 'export malloc has type (f64, i64) -> f32; Capsule gen 2 expects (i32) -> i32' },
  { file: 'malloc-void.wasm', wat: gen2({ malloc: '(func (export "malloc") (param i32))' }),
    message: 'export malloc has type (i32) -> (); Capsule gen 2 expects (i32) -> i32' },
  { file: 'http-i32.wasm', wat: gen2({ callHandleHTTP: '(func (export "callHandleHTTP") (param i32 i32) (result i32) (i32.const 0))' }),
    message: 'export callHandleHTTP has type (i32, i32) -> i32; Capsule gen 2 expects (i32, i32) -> i64' },
  { file: 'health-void.wasm', wat: gen2({ OnHealthCheck: '(func (export "OnHealthCheck"))' }),
    message: 'export OnHealthCheck has type () -> (); Capsule gen 2 expects () -> i64' },
  { file: 'buffer-i64.wasm', wat: gen2({ allocateBuffer: '(func (export "allocateBuffer") (param i64) (result i32) (i32.const 0))' }),
    message: 'export allocateBuffer has type (i64) -> i32; Capsule gen 2 expects (i32) -> i32' },
  { file: 'import-i64.wasm', wat: gen2({}, '(import "env" "hostGetEnv" (func (param i32 i32 i32 i32) (result i64)))'),
    message: 'import env.hostGetEnv has type (i32, i32, i32, i32) -> i64; Capsule gen 2 expects (i32, i32, i32, i32) -> i32 or (i32, i32, i32, i32) -> ()' },
  { file: 'import-float.wasm', wat: gen2({}, '(import "env" "hostLogString" (func (param f32 i32) (result i32)))'),
    message: 'import env.hostLogString has type (f32, i32) -> i32; Capsule gen 2 expects (i32, i32) -> i32 or (i32, i32) -> ()' },
  { file: 'gen1b-http-i64.wasm', wat: gen1b({ callHandleHttp: '(func (export "callHandleHttp") (param i32 i32 i32 i32 i32 i32 i32 i64) (result i64) (i64.const 0))' }),
    message: 'export callHandleHttp has type (i32, i32, i32, i32, i32, i32, i32, i64) -> i64; Capsule gen 1b expects (i32, i32, i32, i32, i32, i32, i32, i32) -> i64' },
  { file: 'gen1b-nats-arity.wasm', wat: gen1b({ callNatsMessageHandle: '(func (export "callNatsMessageHandle") (param i32) (result i64) (i64.const 0))' }),
    message: 'export callNatsMessageHandle has type (i32) -> i64; Capsule gen 1b expects (i32, i32) -> i64' },
  { file: 'gen1b-onload.wasm', wat: gen1b({ OnLoad: '(func (export "OnLoad") (param i32))' }),
    message: 'export OnLoad has type (i32) -> (); Capsule gen 1b expects () -> ()' },
  { file: 'gen1b-import.wasm', wat: gen1b({}, '(import "env" "hostGetEnv" (func (param i32 i32 i32 i32) (result f64)))'),
    message: 'import env.hostGetEnv has type (i32, i32, i32, i32) -> f64; Capsule gen 1 expects (i32, i32, i32, i32) -> () or (i32, i32, i32, i32) -> i32' },
  { file: 'wasi-start.wasm', wat: wasi('(func (export "_start") (param i32))'),
    message: 'export _start has type (i32) -> (); a WASI command expects () -> ()' },
  { file: 'wasi-log.wasm', wat: wasi(undefined, '(import "env" "log_i32" (func (param i64)))'),
    message: 'import env.log_i32 has type (i64) -> (); Capsule (wasi modules) expects (i32) -> ()' },
  { file: 'wasi-fd-write.wasm', wat: wasi(undefined, '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i64 i32 i32) (result i32)))'),
    message: 'import wasi_snapshot_preview1.fd_write has type (i32, i64, i32, i32) -> i32; WASI preview1 expects (i32, i32, i32, i32) -> i32' },
  { file: 'gen2-wasi-exit.wasm', wat: gen2({}, '(import "wasi_snapshot_preview1" "proc_exit" (func (param i32) (result i32)))'),
    message: 'import wasi_snapshot_preview1.proc_exit has type (i32) -> i32; WASI preview1 expects (i32) -> ()' },
  { file: 'wasi-sock-open.wasm', wat: wasi(undefined, '(import "wasi_snapshot_preview1" "sock_open" (func (param i32 i32 i32) (result i32)))'),
    message: 'imports wasi_snapshot_preview1.sock_open, which WASI preview1 does not define (Capsule provides the 46 functions of wasi_snapshot_preview1 only)' },
];

const GOOD = { gen2: gen2({}, '(import "env" "hostLogString" (func (param i32 i32) (result i32)))'), gen1b: gen1b({}, '(import "env" "hostLogString" (func (param i32 i32)))') };

let bad: string;
let good: string;
before(async () => {
  const wabt = await wabtInit();
  const compile = (dir: string, file: string, wat: string) => {
    const m = wabt.parseWat(file, wat);
    writeFileSync(join(dir, file), m.toBinary({}).buffer);
    m.destroy();
  };
  bad = join(work, 'bad');
  good = join(work, 'good');
  mkdirSync(bad);
  mkdirSync(good);
  for (const c of CASES) compile(bad, c.file, c.wat);
  compile(good, 'good2.wasm', GOOD.gen2);
  compile(good, 'good1b.wasm', GOOD.gen1b);
});

describe('signatures: capsule run', () => {
  for (const c of CASES) {
    it(`refuses ${c.file}: ${c.message}`, async () => {
      const r = await runCapsule(['run', join(bad, c.file), 'x']);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `❌ ${c.file}: ${c.message}\n`);
    });
  }

  it('runs modules whose types are right (imports with an i32 result or none)', async () => {
    const g2 = await runCapsule(['run', join(good, 'good2.wasm'), 'x']);
    assert.equal(g2.code, 0, g2.stderr);
    assert.equal(g2.stdout, 'Hello\n');
    const g1 = await runCapsule(['run', join(good, 'good1b.wasm'), 'x']);
    assert.equal(g1.code, 0, g1.stderr);
    assert.equal(g1.stdout, '[BODY]ok\n');
  });
});

describe('signatures: capsule serve --functions', () => {
  let s: Server;
  before(async () => {
    s = await startServer(['serve', `--functions=${bad}`, '--http-port=0', '--workers=1']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  for (const c of CASES) {
    it(`answers /${c.file.replace(/\.wasm$/, '')} with 500 BAD_MODULE naming the problem`, async () => {
      const res = await fetch(`${s.url}/${c.file.replace(/\.wasm$/, '')}`);
      assert.equal(res.status, 500);
      assert.deepEqual(await res.json(), { error: `${c.file}: ${c.message}`, code: 'BAD_MODULE' });
    });
  }
});

describe('signatures: good modules serve beside them', () => {
  let s: Server;
  before(async () => {
    s = await startServer(['serve', `--functions=${good}`, '--http-port=0', '--workers=1']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it('answers the gen-2 and gen-1b modules', async () => {
    const g2 = await fetch(`${s.url}/good2`);
    assert.equal(g2.status, 200);
    assert.deepEqual(await g2.json(), { ok: true });
    const g1 = await fetch(`${s.url}/good1b`);
    assert.equal(g1.status, 200);
    assert.equal(await g1.text(), 'ok');
  });
});

describe('signatures: capsule inspect', () => {
  for (const c of CASES) {
    it(`describes ${c.file} and names the problem`, async () => {
      const r = await runCapsule(['inspect', join(bad, c.file)]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `❌ ${c.file}: ${c.message}\n`);
      assert.match(r.stdout, new RegExp(`^problem: +${c.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
      assert.match(r.stdout, /^exports:$/m);
      const json = await runCapsule(['inspect', '--json', join(bad, c.file)]);
      assert.equal(json.code, 1);
      const info = JSON.parse(json.stdout) as { problem: string; exports: { name: string; signature?: string }[] };
      assert.equal(info.problem, c.message);
      const named = /^(?:export |import env\.)(\S+) has type (.*?);/.exec(c.message)!;
      const entry = c.message.startsWith('export') ? info.exports.find((e) => e.name === named[1]) : undefined;
      if (entry) assert.equal(entry.signature, named[2]);
    });
  }

  it('describes a good module without a problem', async () => {
    const r = await runCapsule(['inspect', '--json', join(good, 'good2.wasm')]);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { problem?: string; kind: string; exports: { name: string; signature?: string }[] };
    assert.equal(info.problem, undefined);
    assert.equal(info.kind, 'capsule-2');
    assert.equal(info.exports.find((e) => e.name === 'callHandle')?.signature, '(i32, i32) -> i64');
  });
});
