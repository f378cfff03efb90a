/**
 * Capsule ABI conformance points the spec settled late (capsule-abi.md §2.2, §4.3 step 2, §5.2),
 * with hand-written guests that behave as TinyGo modules do (test/fixtures/abi-*.c), through the
 * real CLI and real HTTP:
 * - gen-1 and gen-2 response header values are UTF-8 text sent as their bytes (a value with an
 *   emoji is answered, not turned into a 500); a header with CR, LF or NUL, or a name that is not
 *   a token, is left out and logged; request header values reach the guest as the UTF-8 sent;
 * - Capsule modules see WASI argv `[""]`, and a main that reads argv[0] runs;
 * - `capsule run` of a gen-2 module falls back to callHandleJSON on a fresh instance when
 *   callHandle traps and the input is JSON; `--handler handle|json` forces one.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, fixture, missing, runCapsule, startServer, type Server } from './helpers.ts';

const GEN1 = fixture('abi-gen1');
const GEN1_ARGV0 = fixture('abi-gen1-argv0');
const GEN2 = fixture('abi-gen2');
const GEN2_JSON = fixture('abi-gen2-json');
const GEN2_ARGV0 = fixture('abi-gen2-argv0');
const skip = missing(GEN1) || missing(GEN1_ARGV0) || missing(GEN2) || missing(GEN2_JSON) || missing(GEN2_ARGV0);

const MESSAGE = '👋 hello world 🌍';
const ARGV = { argc: 1, size: 1, argv: [''] };

interface RawResponse {
  status: number;
  /** The header block as bytes (status line excluded). */
  head: Buffer;
  body: Buffer;
}

/** Sends one request as raw bytes and reads the raw answer (the client decodes nothing). */
function rawRequest(url: string, body: string, headers: Buffer = Buffer.alloc(0)): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => {
      sock.write(Buffer.concat([
        Buffer.from(`POST / HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`),
        headers, Buffer.from(`\r\n${body}`),
      ]));
    });
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      const lineEnd = all.indexOf('\r\n');
      resolve({ status: Number(all.subarray(9, 12).toString()), head: all.subarray(lineEnd + 2, end + 2), body: all.subarray(end + 4) });
    });
  });
}

/** Header names of a raw header block, lower-cased. */
function names(head: Buffer): string[] {
  return head.toString('latin1').split('\r\n').filter(Boolean).map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
}

describe('response header values are UTF-8 sent as bytes (capsule-abi.md §4.3 step 2)', { skip }, () => {
  for (const [gen, wasm] of [['gen 1', GEN1], ['gen 2', GEN2]] as const) {
    describe(gen, () => {
      let s: Server;
      before(async () => {
        s = await startServer(['serve', wasm, '--http-port=0', '--workers=1']);
      });
      after(async () => {
        assert.equal(await s.stop(), 0);
      });

      it(`answers the header Message: ${MESSAGE} with its UTF-8 bytes, not a 500`, async () => {
        const r = await rawRequest(s.url, 'utf8', Buffer.from('X-Request-Id: utf8-1\r\n'));
        assert.equal(r.status, 200, r.body.toString());
        assert.equal(r.body.toString(), 'hi');
        assert.ok(r.head.includes(Buffer.from(`message: ${MESSAGE}\r\n`, 'utf8')), r.head.toString());
        assert.ok(r.head.includes(Buffer.from('x-ok: yes\r\n')), r.head.toString());
        // the same through an ordinary client: fetch reads header bytes as latin1
        const res = await fetch(s.url, { method: 'POST', body: 'utf8' });
        assert.equal(res.status, 200);
        assert.equal(Buffer.from(res.headers.get('message') ?? '', 'latin1').toString('utf8'), MESSAGE);
      });

      it('leaves out a header with CR or NUL in its value, or a name that is not a token, and logs it', async () => {
        const r = await rawRequest(s.url, 'utf8', Buffer.from('X-Request-Id: utf8-2\r\n'));
        assert.equal(r.status, 200);
        const sent = names(r.head);
        for (const gone of ['x-bad', 'x-nul', 'bad name']) assert.ok(!sent.includes(gone), `${gone} in ${sent.join(', ')}`);
        await eventually(() => /"requestId":"utf8-2"[^\n]*response header X-Bad left out: its value has control characters/.test(s.logs()));
        assert.match(s.logs(), /"requestId":"utf8-2"[^\n]*response header X-Nul left out/);
        assert.match(s.logs(), /"requestId":"utf8-2"[^\n]*response header \\"Bad Name\\" left out: not a valid HTTP header name/);
      });

      it('hands the guest a UTF-8 request header value as the bytes the client sent', async () => {
        const r = await rawRequest(s.url, 'headers', Buffer.concat([Buffer.from('X-Greeting: '), Buffer.from('👋 é', 'utf8'), Buffer.from('\r\n')]));
        assert.equal(r.status, 200, r.body.toString());
        const text = r.body.toString('utf8');
        if (gen === 'gen 1') assert.ok(text.split('²').includes('X-Greeting:👋 é'), text);
        else assert.match(JSON.parse(text).Headers as string, /"X-Greeting":"👋 é"/);
      });

      it('gives the guest WASI argv [""] over HTTP too', async () => {
        const r = await rawRequest(s.url, 'args');
        assert.equal(r.status, 200, r.body.toString());
        assert.deepEqual(JSON.parse(r.body.toString()), ARGV);
      });
    });
  }
});

describe('Capsule modules get WASI argv [""] (capsule-abi.md §2.2)', { skip }, () => {
  for (const [gen, wasm] of [['gen 1', GEN1], ['gen 2', GEN2]] as const) {
    it(`${gen}: args_sizes_get reports one argument of one byte, args_get an empty string`, async () => {
      const r = await runCapsule(['run', wasm, 'args']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), ARGV);
    });
  }

  for (const [gen, wasm] of [['gen 1', GEN1_ARGV0], ['gen 2', GEN2_ARGV0]] as const) {
    it(`${gen}: a main that reads argv[0] (TinyGo os.Args[0]) starts, from the CLI and over HTTP`, async () => {
      const r = await runCapsule(['run', wasm, 'argv0']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'argv0=""\n');
      const s = await startServer(['serve', wasm, '--http-port=0', '--workers=1']);
      try {
        const res = await rawRequest(s.url, 'args');
        assert.equal(res.status, 200, res.body.toString());
        assert.deepEqual(JSON.parse(res.body.toString()), ARGV);
      } finally {
        assert.equal(await s.stop(), 0);
      }
    });
  }

  it('gen 2 with --reuse: the long-lived instance sees [""] as well', async () => {
    const s = await startServer(['serve', GEN2_ARGV0, '--http-port=0', '--workers=1', '--reuse']);
    try {
      for (let i = 0; i < 2; i++) {
        const res = await rawRequest(s.url, 'args');
        assert.deepEqual(JSON.parse(res.body.toString()), ARGV);
      }
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });
});

describe('capsule run: callHandleJSON when callHandle traps on JSON input (capsule-abi.md §5.2)', { skip }, () => {
  const work = mkdtempSync(join(tmpdir(), 'capsule-handler-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  it('runs a module that registered only its JSON handler, on a fresh instance', async () => {
    const r = await runCapsule(['run', GEN2_JSON, '--params', '{"name":"Bob"}']);
    assert.equal(r.code, 0, r.stderr);
    // touched=0: callHandle set it before trapping, in another instance
    assert.equal(r.stdout, 'json:{"name":"Bob"};touched=0\n');
    const args = await runCapsule(['run', GEN2_JSON, '{"a":', '1}']);
    assert.equal(args.code, 0, args.stderr);
    assert.equal(args.stdout, 'json:{"a": 1};touched=0\n', 'the joined arguments are the input');
  });

  it('reports the callHandle trap when the input is not JSON', async () => {
    const r = await runCapsule(['run', GEN2_JSON, 'Bob']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^❌ the function trapped: unreachable\n$/);
  });

  it('reports the first trap when callHandleJSON traps too', async () => {
    const r = await runCapsule(['run', GEN2_JSON, '--params', '{"trap":true}']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^❌ the function trapped: unreachable\n$/);
    assert.doesNotMatch(r.stderr, /out of bounds/);
    const forced = await runCapsule(['run', GEN2_JSON, '--handler=json', '--params', '{"trap":true}']);
    assert.equal(forced.code, 1);
    assert.match(forced.stderr, /the function trapped: memory access out of bounds/);
  });

  it('keeps callHandle when it works, JSON input or not', async () => {
    const r = await runCapsule(['run', GEN2, '--params', '{"name":"Bob"}']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'handle:{"name":"Bob"}\n');
    const trap = await runCapsule(['run', GEN2, 'trap']);
    assert.equal(trap.code, 1);
    assert.match(trap.stderr, /trapped: unreachable/);
  });

  it('--handler json calls callHandleJSON, whatever the input', async () => {
    const r = await runCapsule(['run', GEN2, '--handler', 'json', 'Bob']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'json:Bob;touched=0\n');
  });

  it('--handler handle calls callHandle only: no fallback', async () => {
    const r = await runCapsule(['run', GEN2_JSON, '--handler=handle', '--params', '{"name":"Bob"}']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^❌ the function trapped: unreachable\n$/);
  });

  it('takes handler from a config file and CAPSULE_HANDLER', async () => {
    const config = join(work, 'json.capsule.yaml');
    writeFileSync(config, 'handler: json\n');
    const r = await runCapsule(['run', GEN2, '--config', config, 'Bob']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'json:Bob;touched=0\n');
    const env = await runCapsule(['run', GEN2, 'Bob'], { env: { CAPSULE_HANDLER: 'json' } });
    assert.equal(env.stdout, 'json:Bob;touched=0\n');
    const flagWins = await runCapsule(['run', GEN2, '--config', config, '--handler=handle', 'Bob']);
    assert.equal(flagWins.stdout, 'handle:Bob\n');
  });

  it('refuses a --handler the module cannot honour with exit 2', async () => {
    const gen1 = await runCapsule(['run', GEN1, '--handler=json', 'Bob']);
    assert.equal(gen1.code, 2);
    assert.match(gen1.stderr, /--handler json: abi-gen1\.wasm is a capsule-1b module, which has no callHandleJSON/);
    const handle1 = await runCapsule(['run', GEN1, '--handler=handle', 'Bob']);
    assert.equal(handle1.code, 0, handle1.stderr);
    assert.equal(handle1.stdout, 'Hello Bob\n');
    const bogus = await runCapsule(['run', GEN2, '--handler=http', 'Bob']);
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /--handler <export>' argument 'http' is invalid\. Allowed choices are handle, json/);
  });

  it('documents --handler in capsule run --help', async () => {
    const r = await runCapsule(['run', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--handler <export>/);
  });
});
