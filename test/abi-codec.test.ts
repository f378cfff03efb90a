/**
 * The HTTP codecs every guest call runs through give exactly the bytes they always gave
 * (capsule-abi.md §4.3, §5.3, §5.4, §7.8): the gen-2 request JSON (`encodeHttpRequest`), the
 * response made of a gen-2 frame (`decodeHttpResponse`: status, headers, body bytes, notes), a
 * response header (`responseHeader`, gen 1 too), the gen-1 header strings. First the shapes a
 * guest sees, written out; then thousands of generated inputs (seeded, so a failure repeats)
 * compared with these functions as they were before their per-call cost was cut
 * (test/fixtures/abi-codec-reference.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { HttpRequestInput, HttpResponseOutput } from '../src/base/invocation.ts';
import { encodeHttpRequest, decodeHttpResponse } from '../src/abi/capsule2/http.ts';
import { responseHeader } from '../src/abi/capsule-headers.ts';
import { encodeGen1Headers } from '../src/abi/capsule1/http.ts';
import * as ref from './fixtures/abi-codec-reference.ts';

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
/** A header value as Node hands it over: the latin1 string of the bytes received. */
const wire = (s: string): string => utf8(s).toString('latin1');

function request(method: string, url: string, headers: [string, string][], body: string | Uint8Array): HttpRequestInput {
  return { type: 'http', method, url, headers, body: typeof body === 'string' ? utf8(body) : body, remoteAddress: '127.0.0.1', remotePort: 1 };
}

/** Status, headers, body text (latin1, byte for byte) and notes of a decoded frame. */
function decoded(ok: boolean, frame: string | Uint8Array): [number, [string, string][], string, string[]] {
  const notes: string[] = [];
  const r = decodeHttpResponse({ ok, payload: typeof frame === 'string' ? utf8(frame) : frame }, notes);
  assertOwnBuffer(r);
  return [r.status, r.headers, Buffer.from(r.body).toString('latin1'), notes];
}

/** A body posted to a worker is cloned with its whole buffer: it must not be a view of a shared pool. */
function assertOwnBuffer(r: HttpResponseOutput): void {
  assert.equal(r.body.byteOffset, 0, 'body starts its buffer');
  assert.equal(r.body.buffer.byteLength, r.body.length, 'body is its whole buffer');
}

describe('gen-2 request JSON (§5.3)', () => {
  it('the wrk request of the serve bench', () => {
    const out = encodeHttpRequest(request('POST', 'http://127.0.0.1:8080/', [['Host', '127.0.0.1:8080'], ['Content-Type', 'application/json'], ['Content-Length', '30']], '{"name":"Bob Morane","age":42}'));
    assert.equal(out, String.raw`{"Body":"{\"name\":\"Bob Morane\",\"age\":42}","JSONBody":"","TextBody":"","URI":"http://127.0.0.1:8080/","Method":"POST","Headers":"\"Host\":\"127.0.0.1:8080\",\"Content-Type\":\"application/json\",\"Content-Length\":\"30\""}`);
    assert.deepEqual(JSON.parse(out), {
      Body: '{"name":"Bob Morane","age":42}', JSONBody: '', TextBody: '', URI: 'http://127.0.0.1:8080/', Method: 'POST',
      Headers: '"Host":"127.0.0.1:8080","Content-Type":"application/json","Content-Length":"30"',
    });
  });

  it('escapes quotes, backslashes and controls, joins repeated headers, reads non-ASCII values as UTF-8', () => {
    const out = encodeHttpRequest(request('get', 'http://h/p?q="x"', [
      ['x-quote', 'say "hi" \\ there'], ['accept', 'a'], ['ACCEPT', 'b'], ['x-emoji', wire('👋 é')], ['x-ctl', 'a\tb\u0001'],
    ], ''));
    assert.deepEqual(JSON.parse(out), {
      Body: '', JSONBody: '', TextBody: '', URI: 'http://h/p?q="x"', Method: 'GET',
      Headers: String.raw`"X-Quote":"say \"hi\" \\ there","Accept":"a, b","X-Emoji":"👋 é","X-Ctl":"a\tb\u0001"`,
    });
    assert.ok(out.includes(String.raw`\"X-Ctl\":\"a\\tb\\u0001\"`), out);
  });

  it('canonical names as Go wrote them; a body of any text, invalid UTF-8 as U+FFFD', () => {
    const out = encodeHttpRequest(request('PUT', 'http://h/', [['www-authenticate', 'x'], ['x_under', 'y'], ['-lead', 'z'], ['content-md5', 'm']], '\u2028 é 😀 "q"'));
    assert.deepEqual(JSON.parse(out).Headers, '"Www-Authenticate":"x","X_under":"y","-Lead":"z","Content-Md5":"m"');
    assert.equal(JSON.parse(out).Body, '\u2028 é 😀 "q"');
    assert.equal(JSON.parse(encodeHttpRequest(request('POST', 'http://h/', [], new Uint8Array([0x61, 0xff, 0x62])))).Body, 'a\ufffdb');
    assert.equal(JSON.parse(encodeHttpRequest(request('GET', 'http://h/', [], ''))).Headers, '');
    assert.equal(JSON.parse(encodeHttpRequest(request('POST', 'http://h/', [], '\ufeffhi'))).Body, '\ufeffhi', 'a BOM is kept');
  });
});

describe('gen-2 response frame (§5.4, §7.8)', () => {
  it("hello-you's frame", () => {
    assert.deepEqual(decoded(true, '{"JSONBody":{"message":"Bob Morane 42"},"TextBody":"","Headers":{"Content-Type":"application/json; charset=utf-8"},"StatusCode":200}'),
      [200, [['Content-Type', 'application/json; charset=utf-8']], '{"message":"Bob Morane 42"}', []]);
  });

  it('TextBody: base64 decoded, other text sent as it is, text/plain by default', () => {
    assert.deepEqual(decoded(true, '{"JSONBody":{},"TextBody":"SGVsbG8gV29ybGQ=","Headers":{"X-A":"1"},"StatusCode":201}'),
      [201, [['X-A', '1'], ['Content-Type', 'text/plain; charset=utf-8']], 'Hello World', []]);
    assert.deepEqual(decoded(true, '{"TextBody":"hello","StatusCode":0}'), [200, [['Content-Type', 'text/plain; charset=utf-8']], 'hello', []]);
    assert.deepEqual(decoded(true, '{"TextBody":"abcd"}')[2], 'i\xb7\x1d');
    assert.deepEqual(decoded(true, '{"TextBody":"héllo"}')[2], wire('héllo'));
  });

  it('headers: bad names and control characters left out with a note, others as strings, UTF-8 as bytes', () => {
    assert.deepEqual(decoded(true, '{"JSONBody":[1,"two",null],"Headers":{"content-type":"text/x","Bad Name":"v","X-Crlf":"a\\r\\nb","X-Num":7,"X-Obj":{"a":1},"X-Utf":"👋"},"StatusCode":99}'),
      [200, [['content-type', 'text/x'], ['X-Num', '7'], ['X-Obj', '{"a":1}'], ['X-Utf', '\xf0\x9f\x91\x8b']], '[1,"two",null]', [
        'response header "Bad Name" left out: not a valid HTTP header name',
        'response header X-Crlf left out: its value has control characters (CR, LF, NUL…)',
      ]]);
    assert.deepEqual(decoded(true, '{"JSONBody":true,"TextBody":"","Headers":[1]}'), [200, [['Content-Type', 'application/json; charset=utf-8']], 'true', []]);
  });

  it('JSONBody of each JSON type written as JSON.stringify writes it; StatusCode out of range or not a number → 200', () => {
    const json = [['application/json; charset=utf-8']];
    const body = (f: string): [number, string] => { const [s, h, b] = decoded(true, f); assert.deepEqual(h.map(([, v]) => [v]), json); return [s, b]; };
    assert.deepEqual(body('{"JSONBody":"text","StatusCode":"200"}'), [200, '"text"']);
    assert.deepEqual(body('{"JSONBody":1.50,"StatusCode":404.7}'), [404, '1.5']);
    assert.deepEqual(body('{"JSONBody":1e2,"StatusCode":600}'), [200, '100']);
    assert.deepEqual(body('{"JSONBody":null}'), [200, 'null']);
    assert.deepEqual(body('{"JSONBody" : { "a" : "\\u00e9\\/" } }'), [200, wire('{"a":"é/"}')]);
    assert.deepEqual(body('{}'), [200, '{}']);
  });

  it('F frames, non-JSON frames and frames that are not objects → 500 text', () => {
    const text = [['Content-Type', 'text/plain; charset=utf-8']];
    assert.deepEqual(decoded(false, 'boom 👋'), [500, text, wire('boom 👋'), []]);
    assert.deepEqual(decoded(false, '\ufeffboom'), [500, text, wire('\ufeffboom'), []], 'a BOM is kept');
    assert.deepEqual(decoded(true, '{"__proto__":1,"Headers":{"__proto__":"x"}}'), [200, [['__proto__', 'x'], ['Content-Type', 'application/json; charset=utf-8']], '{}', []]);
    assert.deepEqual(decoded(true, 'not json'), [500, text, `the function returned a response that is not JSON: Unexpected token 'o', "not json" is not valid JSON`, []]);
    assert.deepEqual(decoded(true, '[1,2]'), [500, text, 'the function returned a response that is not a JSON object', []]);
    assert.deepEqual(decoded(true, 'null'), [500, text, 'the function returned a response that is not a JSON object', []]);
  });
});

describe('every generated input gives what the codecs gave before (seeded)', () => {
  let seed = 0x2545f491;
  /** xorshift32: the same inputs on every run. */
  const rnd = (n: number): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) % n; };
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
  const PIECES = ['a', 'Z', '0', '-', '_', ' ', '"', '\\', '\t', '\r', '\n', '\u0000', '\u001f', '\u007f', ':', ',', '/', '=', '+', 'é', '\xff', '€', '👋', '\u2028', '\ud800', '{', '}'];
  const str = (max: number, pieces = PIECES): string => { let s = ''; for (let i = rnd(max + 1); i > 0; i--) s += pick(pieces); return s; };
  const NAMES = ['host', 'Host', 'content-type', 'Content-Type', 'CONTENT-LENGTH', 'accept', 'x-a', 'x_b', 'user-agent', 'a-b-c', '-x', 'x-', 'bad name', 'é', ''];
  const name = (): string => (rnd(3) === 0 ? str(6, ['a', 'B', '-', '_', '1', ' ', 'é', '"']) : pick(NAMES));
  /** Up to 5 headers, sometimes 17 to 20 (more than `encodeHttpRequest` writes from their pairs). */
  const headers = (): [string, string][] => Array.from({ length: rnd(12) === 0 ? 17 + rnd(4) : rnd(6) }, () => [name(), rnd(2) ? wire(str(8)) : str(8)] as [string, string]);
  const bytes = (): Uint8Array => (rnd(2) ? utf8(str(20)) : Uint8Array.from({ length: rnd(12) }, () => rnd(256)));

  function jsonValue(depth: number): unknown {
    switch (rnd(depth > 2 ? 5 : 7)) {
      case 0: return str(6);
      case 1: return rnd(2) ? rnd(1000) - 500 : (rnd(10000) - 5000) / 7;
      case 2: return rnd(2) === 0;
      case 3: return null;
      case 4: return rnd(2) ? '' : 1e21 * rnd(3);
      case 5: return Array.from({ length: rnd(4) }, () => jsonValue(depth + 1));
      default: return Object.fromEntries(Array.from({ length: rnd(4) }, () => [str(4), jsonValue(depth + 1)]));
    }
  }
  const BASE64 = ['', 'SGVsbG8=', 'SGk', 'aGk=', '8J+Riw==', 'abcd', 'ab=d', '====', 'YQ==YQ=='];
  function frame(): string {
    const r: Record<string, unknown> = {};
    if (rnd(4)) r['JSONBody'] = jsonValue(0);
    if (rnd(2)) r['TextBody'] = rnd(2) ? pick(BASE64) : rnd(2) ? Buffer.from(str(6)).toString('base64') : str(6);
    if (rnd(4)) r['Headers'] = rnd(6) === 0 ? jsonValue(1) : Object.fromEntries(Array.from({ length: rnd(4) }, () => [name(), rnd(5) ? str(8) : jsonValue(1)]));
    if (rnd(4)) r['StatusCode'] = pick<unknown>([200, 201, 404, 500, 0, 99, 100, 599, 600, 204.9, -1, '200', null, 1e9]);
    const keys = Object.keys(r).sort(() => rnd(3) - 1);
    let text = `{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(r[k])}`).join(rnd(4) ? ',' : ' , ')}}`;
    if (rnd(12) === 0) text = text.slice(0, rnd(text.length)); // cut: not JSON
    if (rnd(20) === 0) text = JSON.stringify(jsonValue(2)); // JSON, maybe not an object
    return text;
  }

  it('gen-2 requests', () => {
    for (let i = 0; i < 3000; i++) {
      const req = request(pick(['GET', 'post', 'Put', 'DELETE']), `http://h${str(4)}/`, headers(), bytes());
      assert.equal(encodeHttpRequest(req), ref.encodeHttpRequest(req), `request ${i}`);
    }
  });

  it('gen-2 frames', () => {
    for (let i = 0; i < 5000; i++) {
      const ok = rnd(10) > 0;
      const payload = rnd(30) ? utf8(frame()) : Uint8Array.from({ length: rnd(12) }, () => rnd(256));
      const notes: string[] = [];
      const refNotes: string[] = [];
      const got = decodeHttpResponse({ ok, payload }, notes);
      const want = ref.decodeHttpResponse({ ok, payload }, refNotes);
      const at = `frame ${i}: ${Buffer.from(payload).toString()}`;
      assert.deepEqual([got.status, got.headers, Buffer.from(got.body).toString('latin1'), notes], [want.status, want.headers, Buffer.from(want.body).toString('latin1'), refNotes], at);
      assert.equal(got.type, 'http');
      assertOwnBuffer(got);
    }
  });

  it('response headers and gen-1 header strings', () => {
    for (let i = 0; i < 3000; i++) {
      const h = headers();
      for (const [n, v] of h) {
        const notes: string[] = [];
        const refNotes: string[] = [];
        assert.deepEqual([responseHeader(n, v, notes), notes], [ref.responseHeader(n, v, refNotes), refNotes]);
      }
      const sep = pick(['|', '²', '³']);
      assert.equal(encodeGen1Headers(h, sep), ref.encodeGen1Headers(h, sep));
    }
  });
});
