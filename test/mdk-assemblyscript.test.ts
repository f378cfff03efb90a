/**
 * The AssemblyScript MDK (mdk/assemblyscript) as its users see it, through the mdk-as-probe
 * fixture: the request a handler reads and the response a client gets from `capsule serve`,
 * the JSON parser and serializer through `capsule run`, and the request JSON read in any shape
 * a host may send (called through the module's exports, as a host does).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixture, missing, runCapsule, startServer, type Server } from './helpers.ts';

const probe = fixture('mdk-as-probe');
const skip = missing(probe);

/** What the probe's HTTP handler echoes (see test/fixtures/mdk-as-probe). */
interface Echo {
  method: string;
  uri: string;
  path: string;
  body: string;
  bodyLength: number;
  contentType: string;
  headers: Record<string, string>;
  calls: number;
  json?: unknown;
}

describe('AssemblyScript MDK over HTTP (capsule serve)', { skip }, () => {
  let s: Server;
  before(async () => {
    s = await startServer(['serve', `--wasm=${probe}`, '--http-port=0', '--reuse']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it('hands the handler the body, method, URI and headers exactly, escapes included', async () => {
    // raw JSON text with escapes the request JSON must carry through its own escaping
    const body = '{"name":"Bob \\"the\\" \\\\ builder","e":"\\u00e9\\ud83d\\ude00","raw":"é😀","nl":"a\\nb"}';
    const res = await fetch(`${s.url}/echo/path?x=1&y="2"`, {
      method: 'POST', body,
      headers: { 'content-type': 'application/json', 'x-quote': 'a "b", c\\d', 'x-json': '{"k":"v"}', 'X-Mixed-Case': 'MiXeD' },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('x-probe'), 'mdk-as "quoted"', 'a response header value with quotes');
    const echo = await res.json() as Echo;
    assert.equal(echo.method, 'POST');
    assert.equal(echo.path, '/echo/path?x=1&y=%222%22');
    assert.match(echo.uri, /^http:\/\/127\.0\.0\.1:\d+\/echo\/path\?x=1&y=%222%22$/);
    assert.equal(echo.body, body);
    assert.equal(echo.bodyLength, body.length, 'UTF-16 length: é is 1 unit, 😀 is 2');
    assert.deepEqual(echo.json, { name: 'Bob "the" \\ builder', e: 'é😀', raw: 'é😀', nl: 'a\nb' });
    assert.equal(echo.contentType, 'application/json', 'header() compares names case-insensitively');
    assert.equal(echo.headers['X-Quote'], 'a "b", c\\d', 'quotes, commas and backslashes in a header value survive');
    assert.equal(echo.headers['X-Json'], '{"k":"v"}');
    assert.equal(echo.headers['X-Mixed-Case'], 'MiXeD');
    assert.equal(echo.headers['Content-Type'], 'application/json');
  });

  it('passes a body that is not JSON as text, and answers text, bytes, statuses and failures', async () => {
    const odd = 'not json: "quote" \\ back \t tab \u0001 ctl é 😀';
    const echo = await (await fetch(s.url, { method: 'PUT', body: odd })).json() as Echo;
    assert.equal(echo.method, 'PUT');
    assert.equal(echo.body, odd);
    assert.equal(echo.json, undefined);
    assert.equal(echo.contentType, 'text/plain;charset=UTF-8', 'fetch\'s own content type for a string body');

    const text = await fetch(`${s.url}/text`, { method: 'POST', body: 'héllo "😀"' });
    assert.equal(text.status, 200);
    assert.match(text.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(await text.text(), 'plain text: héllo "😀"');

    const bytes = await fetch(`${s.url}/bytes`);
    assert.deepEqual([...new Uint8Array(await bytes.arrayBuffer())], [0, 0xff, 0x80, 0x0a]);

    const status = await fetch(`${s.url}/status/201`);
    assert.equal(status.status, 201);
    assert.equal(await status.text(), 'status 201');

    const bad = await fetch(`${s.url}/bad-json`);
    assert.equal(bad.status, 500);
    assert.match(await bad.text(), /jsonBody is not valid JSON/);

    const failed = await fetch(`${s.url}/fail`);
    assert.equal(failed.status, 500);
    assert.equal(await failed.text(), 'the probe failed on purpose');
  });

  it('keeps serving a reused instance the same answers', async () => {
    let last = 0;
    for (let i = 0; i < 50; i++) {
      const echo = await (await fetch(`${s.url}/n`, { method: 'POST', body: `{"i":${i},"s":"\\"${i}\\""}`, headers: { 'x-i': String(i) } })).json() as Echo;
      assert.deepEqual(echo.json, { i, s: `"${i}"` });
      assert.equal(echo.headers['X-I'], String(i));
      assert.ok(echo.calls > last, 'module state lasts across calls with --reuse');
      last = echo.calls;
    }
  });
});

describe('AssemblyScript MDK JSON (capsule run)', { skip }, () => {
  async function json(text: string): Promise<{ code: number | null; out: string }> {
    const r = await runCapsule(['run', `--wasm=${probe}`, `--params=json:${text}`]);
    return { code: r.code, out: (r.code === 0 ? r.stdout : r.stderr).replace(/\n$/, '') }; // F: the error on stderr
  }

  it('re-serialises what it parsed, escapes and surrogates included', async () => {
    const cases: [string, string][] = [
      ['{"a" : [1, 2.50, -0, 1e3, 12345678901234567890, true, false, null], "b": {}}', '{"a":[1,2.50,-0,1e3,12345678901234567890,true,false,null],"b":{}}'],
      ['"\\" \\\\ \\/ \\b \\f \\n \\r \\t"', '"\\" \\\\ / \\b \\f \\n \\r \\t"'],
      ['"\\u00e9\\u20AC\\ud83d\\ude00 é€😀"', '"é€😀 é€😀"'],
      ['"\\ud83d alone \\ude00"', '"\\ud83d alone \\ude00"'],
      ['"\\u0001\\u001f\\u007f"', '"\\u0001\\u001f\u007f"'],
      ['{"k":1,"k":2}', '{"k":1,"k":2}'],
      ['[[[]],{"":""}]', '[[[]],{"":""}]'],
    ];
    for (const [input, output] of cases) assert.deepEqual(await json(input), { code: 0, out: output }, input);
  });

  it('reports where invalid JSON fails', async () => {
    const cases: [string, string][] = [
      ['{"a":1,}', 'expected a string key but found character \'}\' at offset 7'],
      ['"abc', 'unterminated string at offset 4'],
      ['"a\\x"', 'invalid escape character \'x\' at offset 3'],
      ['"\\u12G4"', 'invalid hex digit character \'G\' in a \\u escape at offset 5'],
      ['"\\u12', 'incomplete \\u escape at offset 3'],
      ['[1 2]', 'expected \',\' or \']\' but found character \'2\' at offset 3'],
      ['{"a":01}', 'expected \',\' or \'}\' but found character \'1\' at offset 6'],
      ['1 x', 'unexpected character \'x\' after the JSON value at offset 2'],
    ];
    for (const [input, error] of cases) assert.deepEqual(await json(input), { code: 1, out: error }, input);
  });

  it('quotes strings as JSON.stringify does', async () => {
    const r = await runCapsule(['run', `--wasm=${probe}`, '--params=quote:a"b\\c\u0001\n\té😀']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '"a\\"b\\\\c\\u0001\\n\\té😀"\n');
  });
});

/** The probe instantiated directly, its host imports stubbed: calls exports as a host does. */
function instantiateProbe(): { call(name: string, input: string): string; memoryBytes(): number } {
  const mod = new WebAssembly.Module(readFileSync(probe));
  let memory: WebAssembly.Memory;
  const imports: Record<string, Record<string, (...a: number[]) => number>> = {};
  for (const im of WebAssembly.Module.imports(mod)) {
    let fn = (..._a: number[]): number => 0;
    if (im.name === 'fd_write') {
      fn = (_fd, iovs, n, written) => {
        const dv = new DataView(memory.buffer);
        let total = 0;
        for (let i = 0; i < n; i++) total += dv.getUint32(iovs + 8 * i + 4, true);
        dv.setUint32(written, total, true);
        return 0;
      };
    }
    (imports[im.module] ??= {})[im.name] = fn;
  }
  const instance = new WebAssembly.Instance(mod, imports);
  const e = instance.exports as Record<string, CallableFunction> & { memory: WebAssembly.Memory };
  memory = e.memory;
  e._initialize!();
  return {
    call(name, input) {
      const bytes = new TextEncoder().encode(input);
      const p = bytes.length > 0 ? e.malloc!(bytes.length) as number : 0;
      new Uint8Array(memory.buffer, p, bytes.length).set(bytes);
      const r = BigInt.asUintN(64, e[name]!(p, bytes.length) as bigint);
      if (p !== 0) e.free!(p);
      return new TextDecoder().decode(new Uint8Array(memory.buffer, Number(r >> 32n), Number(r & 0xffffffffn)));
    },
    memoryBytes: () => memory.buffer.byteLength,
  };
}

describe('AssemblyScript MDK request JSON (callHandleHTTP)', { skip }, () => {
  /** The handler's echo for a request JSON, or the F frame. */
  function echo(g: ReturnType<typeof instantiateProbe>, request: string): Echo | string {
    const out = g.call('callHandleHTTP', request);
    if (out[0] !== 'S') return out;
    return JSON.parse(out.slice(1)).JSONBody as Echo;
  }
  const pick = (e: Echo | string) => typeof e === 'string' ? e : { method: e.method, uri: e.uri, body: e.body, headers: e.headers, contentType: e.contentType };

  it('reads the members in any order, with whitespace, escaped keys, unknown and repeated members', () => {
    const g = instantiateProbe();
    const want = { method: 'POST', uri: 'http://h/p', body: '{"a":"\\"x\\""}', headers: { 'Content-Type': 'text/x', 'X-A': 'a"b' }, contentType: 'text/x' };
    const headers = JSON.stringify('"Content-Type":"text/x","X-A":"a\\"b"');
    const requests = [
      `{"Body":"{\\"a\\":\\"\\\\\\"x\\\\\\"\\"}","JSONBody":"","TextBody":"","URI":"http://h/p","Method":"POST","Headers":${headers}}`,
      `{"Headers":${headers},"Method":"POST","URI":"http://h/p","Body":"{\\"a\\":\\"\\\\\\"x\\\\\\"\\"}"}`,
      ` {\n "Method" : "POST" ,\t"URI":"http:\\/\\/h\\/p", "Body":"{\\"a\\":\\"\\\\\\"x\\\\\\"\\"}", "Headers" : ${headers} } \n`,
      `{"Extra":{"x":[1,{"y":null}],"z":"\\u0041"},"M\\u0065thod":"POST","URI":"http://h/p","Body":"{\\"a\\":\\"\\\\\\"x\\\\\\"\\"}","Headers":${headers},"n":-1.5e3}`,
      `{"Method":"GET","URI":"http://h/p","Body":"old","Headers":"","Method":"POST","Body":"{\\"a\\":\\"\\\\\\"x\\\\\\"\\"}","Headers":${headers}}`,
    ];
    for (const r of requests) assert.deepEqual(pick(echo(g, r)), want, r);
  });

  it('reads missing, non-string and object members as before, and refuses what is not a JSON object', () => {
    const g = instantiateProbe();
    assert.deepEqual(pick(echo(g, '{}')), { method: '', uri: '', body: '', headers: {}, contentType: '' });
    assert.deepEqual(pick(echo(g, '{"Body":1,"Method":null,"URI":"http://h/","Headers":{"X-O":"o","X-N":2}}')),
      { method: '', uri: 'http://h/', body: '', headers: { 'X-O': 'o', 'X-N': '' }, contentType: '' });
    // a Headers string that is not JSON members: the Go MDK's reading (quotes dropped, split on , and :)
    const goStyle = echo(g, '{"Headers":"Content-Type: text/y, X-B:\\"b\\""}');
    assert.ok(typeof goStyle !== 'string', goStyle as string);
    assert.deepEqual(goStyle.headers, { 'Content-Type': 'text/y', 'X-B': 'b' });
    assert.equal(echo(g, '[1]'), 'Fthe request JSON is not an object');
    assert.equal(echo(g, '{"Body":"x",}'), 'Fthe request is not valid JSON: expected a string key but found character \'}\' at offset 12');
    assert.equal(echo(g, '{"Body":"x"} {}'), 'Fthe request is not valid JSON: unexpected character \'{\' after the JSON value at offset 13');
  });

  it('keeps a reused instance\'s memory bounded', () => {
    const g = instantiateProbe();
    const body = JSON.stringify({ name: 'x'.repeat(200), list: Array.from({ length: 20 }, (_, i) => ({ i, s: `"${i}" é😀` })) });
    const request = JSON.stringify({ Body: body, JSONBody: '', TextBody: '', URI: 'http://h/p', Method: 'POST', Headers: '"Content-Type":"application/json","X-A":"a \\"b\\", c"' });
    for (let i = 0; i < 1000; i++) assert.equal(g.call('callHandleHTTP', request)[0], 'S');
    const warm = g.memoryBytes();
    for (let i = 0; i < 10000; i++) g.call('callHandleHTTP', request);
    assert.ok(g.memoryBytes() <= warm + (1 << 20), `memory grew from ${warm} to ${g.memoryBytes()} bytes`);
  });
});
