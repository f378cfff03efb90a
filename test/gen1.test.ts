/**
 * Gen-1 Capsule modules (1a, 1b, 1c) run unchanged: CLI, HTTP, messages, lifecycle
 * (capsule-abi.md §4), through the real CLI and server, with hand-written fixtures that
 * reproduce TinyGo-era modules (test/fixtures/gen1-guest.inc).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CapsuleFunction } from '../src/engine/function.ts';
import type { CliOutput, MessageOutput } from '../src/base/invocation.ts';
import { fixture, runCapsule, startServer, type Server } from './helpers.ts';

const GENS = ['1a', '1b', '1c'] as const;
const SEP = { '1a': '|', '1b': '²', '1c': '³' } as const;

describe('gen 1 from the CLI', () => {
  for (const g of GENS) {
    const wasm = fixture(`gen1-${g}`);
    it(`${g}: joins arguments with the era's separator and logs through hostLogString`, async () => {
      const r = await runCapsule(['run', wasm, 'Bob', 'Morane']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'Hello Bob,Morane\n');
      assert.match(r.stderr, new RegExp(`params: Bob${g === '1a' ? '°' : '²'}Morane`));
    });

    it(`${g}: prints an [ERR] result as "message (code)" on stderr and exits 1`, async () => {
      const coded = await runCapsule(['run', wasm, 'err']);
      assert.equal(coded.code, 1);
      assert.equal(coded.stdout, '');
      assert.equal(coded.stderr, 'something bad (42)\n');
      const plain = await runCapsule(['run', wasm, 'err0']);
      assert.equal(plain.stderr, 'plain failure\n');
    });

    it(`${g}: host functions answer with gen-1 framing`, async () => {
      const env = await runCapsule(['run', wasm, 'env', 'GREETING'], { env: { GREETING: 'hi there' } });
      assert.equal(env.stdout, 'hi there\n');
      const missing = await runCapsule(['run', wasm, 'env', 'NOT_SET_ANYWHERE']);
      assert.equal(missing.code, 1);
      assert.equal(missing.stderr, 'NOT_SET_ANYWHERE is empty\n');
      const ping = await runCapsule(['run', wasm, 'ping', 'hello']);
      assert.equal(ping.stdout, '🏓 pong: hello\n');
      const info = await runCapsule(['run', wasm, 'info']);
      assert.deepEqual(JSON.parse(info.stdout), { capsuleVersion: JSON.parse(info.stdout).capsuleVersion });
      assert.match(JSON.parse(info.stdout).capsuleVersion, /^\d+\.\d+\.\d+$/);
    });

    it(`${g}: a trap exits 1 naming it`, async () => {
      const r = await runCapsule(['run', wasm, 'trap']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /trapped: unreachable/);
    });
  }

  it('--separator overrides the era separator', async () => {
    const r = await runCapsule(['run', fixture('gen1-1b'), 'a', 'b', '--separator=²']);
    assert.equal(r.stdout, 'Hello a,b\n');
    const wrong = await runCapsule(['run', fixture('gen1-1b'), 'a', 'b', '--separator=+']);
    assert.equal(wrong.stdout, 'Hello a+b\n');
  });

  it('refuses a callHandleHttp of an unknown arity', async () => {
    const r = await runCapsule(['inspect', fixture('gen1-1c')]);
    assert.match(r.stdout, /capsule-1c — Capsule ABI gen 1c/);
    assert.match(r.stdout, /env imports return i32 \(Go Capsule v0\.3\.0\+\)/);
    const a = await runCapsule(['inspect', fixture('gen1-1a')]);
    assert.match(a.stdout, /env imports return nothing \(Go Capsule ≤ v0\.2\.9\)/);
  });
});

describe('gen 1 over HTTP', () => {
  const servers: Partial<Record<(typeof GENS)[number], Server>> = {};
  before(async () => {
    for (const g of GENS) servers[g] = await startServer(['serve', fixture(`gen1-${g}`), '--http-port=0', '--workers=1', '--timeout=500ms']);
  });
  after(async () => {
    for (const g of GENS) {
      const s = servers[g]!;
      assert.equal(await s.stop(), 0);
      // OnLoad ran once at start; OnExit at shutdown, each in its own instance.
      assert.equal(s.logs().match(/OnLoad called/g)?.length, 1, s.logs());
      assert.match(s.logs(), /OnExit: /);
    }
  });

  for (const g of GENS) {
    it(`${g}: hands the guest body, headers (canonical, ${SEP[g]}-joined)${g === '1a' ? '' : ', URI and method'}`, async () => {
      const s = servers[g]!;
      const res = await fetch(`${s.url}/a/b?x=1`, { method: 'POST', body: 'hello', headers: { 'x-thing': 'a:b', 'content-type': 'text/plain' } });
      const text = await res.text();
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-gen'), g);
      assert.equal(res.headers.get('x-url'), 'http://h:1/p', 'a header value keeps its ":" (§7.2)');
      assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
      const fields = Object.fromEntries(text.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
      assert.equal(fields.body, 'hello');
      const headers = fields.headers!.split(SEP[g]);
      assert.ok(headers.includes('X-Thing:a:b'), fields.headers);
      assert.ok(headers.includes('Content-Type:text/plain'), fields.headers);
      if (g === '1b') {
        assert.equal(fields.uri, '/a/b?x=1');
        assert.equal(fields.method, 'POST');
      }
      if (g === '1c') {
        assert.equal(fields.uri, `${s.url}/a/b?x=1`);
        assert.equal(fields.method, 'POST');
      }
    });

    it(`${g}: applies the response rules of §4.3`, async () => {
      const s = servers[g]!;
      const call = async (body: string) => {
        const r = await fetch(s.url, { method: 'POST', body });
        return { status: r.status, type: r.headers.get('content-type'), text: await r.text(), headers: r.headers };
      };
      assert.deepEqual(await call('err'), { ...(await call('err')), status: 500, type: 'application/json', text: '{"error":"teapot (418)","from":"host"}' });
      const errText = await call('errtext');
      assert.equal(errText.status, 500);
      assert.equal(errText.text, 'plain');
      assert.equal(errText.headers.get('x-a'), 'b');
      const bad = await call('badjson');
      assert.equal(bad.status, 500);
      assert.equal(bad.text, '{"error":"JSON string bad format","from":"host"}');
      const json = await call('json');
      assert.equal(json.status, 200);
      assert.equal(json.text, '{"ok":true}');
      const raw = await call('raw');
      assert.equal(raw.status, 200);
      assert.equal(raw.text, 'no prefix at all');
      assert.equal(raw.type, 'text/plain; charset=utf-8');
      const trap = await call('trap');
      assert.equal(trap.status, 500);
      assert.equal(JSON.parse(trap.text).code, 'TRAP');
      const loop = await call('loop');
      assert.equal(loop.status, 504);
      assert.equal((await call('json')).status, 200, 'the server keeps serving');
    });

    it(`${g}: an empty body reaches the guest as (0, 0)`, async () => {
      const r = await fetch(servers[g]!.url, { method: 'POST' });
      assert.equal(r.status, 200);
      assert.match(await r.text(), /^body=;/);
    });
  }

  it('hostGetHostInformation names the HTTP port over HTTP and only the version from the CLI', async () => {
    const s = servers['1b']!;
    const r = await fetch(s.url, { method: 'POST', body: 'info' });
    const info = JSON.parse(await r.text()) as { httpPort: number; capsuleVersion: string };
    assert.equal(info.httpPort, Number(new URL(s.url).port));
    const cli = await runCapsule(['run', fixture('gen1-1b'), 'info']);
    assert.deepEqual(Object.keys(JSON.parse(cli.stdout)), ['capsuleVersion']);
  });
});

describe('gen 1 messages and exit errors', () => {
  it('hands the raw payload to callNatsMessageHandle / callMqttMessageHandle and reports traps to OnExit', async () => {
    for (const g of ['1b', '1c']) {
      const fn = await CapsuleFunction.load({ path: fixture(`gen1-${g}`) }, { workers: 1 });
      try {
        const nats = await fn.invoke({ type: 'message', source: 'nats', subject: 'a.b', data: new TextEncoder().encode('payload²x'), headers: [] });
        assert.equal((nats.output as MessageOutput).ok, true);
        assert.deepEqual(nats.logs?.log, ['nats: payload²x']);
        const mqtt = await fn.invoke({ type: 'message', source: 'mqtt', subject: 't/1', data: new TextEncoder().encode('temp'), headers: [] });
        assert.deepEqual(mqtt.logs?.log, ['mqtt: temp']);
        await assert.rejects(fn.invoke({ type: 'message', source: 'nats', subject: 'a.b', data: new TextEncoder().encode('trap'), headers: [] }), /trapped/);
        const exit = await fn.lifecycle('OnExit');
        assert.equal(exit.error, undefined);
        assert.deepEqual(exit.logs?.log, ['OnExit: the function trapped: unreachable']);
      } finally {
        await fn.close();
      }
    }
  });

  it('never calls allocateBuffer(0): an empty host result is (0, 0) (the fixture traps on 0 as TinyGo did)', async () => {
    const fn = await CapsuleFunction.load({ path: fixture('gen1-1c') }, { workers: 1 });
    try {
      const exit = await fn.lifecycle('OnExit'); // hostGetExitError with no error: an empty result
      assert.equal(exit.error, undefined, exit.error?.message);
      assert.deepEqual(exit.logs?.log, ['OnExit: ']);
      const r = await fn.invoke({ type: 'cli', params: new TextEncoder().encode('env²EMPTY_VAR'), args: [] });
      assert.equal((r.output as CliOutput).exitCode, 1, 'unset → [ERR][0]:EMPTY_VAR is empty');
    } finally {
      await fn.close();
    }
  });
});
