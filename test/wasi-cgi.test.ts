/**
 * WASI commands over HTTP, CGI-style (wasi-cgi.md §3–§8): the pure request/response mapping
 * (src/abi/wasi-command/cgi.ts) and `capsule serve` of a real C guest
 * (test/fixtures/wasi-cgi.inc: one behaviour per PATH_INFO).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { canonicalQuery, cgiArgv, cgiEnv, parseCgiOutput, rawTarget } from '../src/abi/wasi-command/cgi.ts';
import type { HttpRequestInput } from '../src/base/invocation.ts';
import { eventually, fixture, missing, startServer, type Server } from './helpers.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const CGI = fixture('wasi-cgi');

function parse(text: string | Uint8Array) {
  const r = parseCgiOutput(typeof text === 'string' ? enc.encode(text) : text);
  return r;
}

describe('CGI output → HTTP response (§6)', () => {
  it('reads a header block: Content-Type, Status with a reason, other headers in order', () => {
    const r = parse('Content-Type: text/html\nStatus: 201 Created\nX-A: 1\nX-A: 2\n\n<p>body\n\nwith an empty line</p>');
    assert.ok(r.ok);
    assert.equal(r.response.status, 201);
    assert.deepEqual(r.response.headers, [['Content-Type', 'text/html'], ['X-A', '1'], ['X-A', '2']]);
    assert.equal(dec.decode(r.response.body), '<p>body\n\nwith an empty line</p>');
  });

  it('accepts CRLF line ends and trims names and values', () => {
    const r = parse('Content-Type:   text/csv  \r\nX-B:\tx y\r\n\r\na,b\r\n');
    assert.ok(r.ok);
    assert.deepEqual(r.response.headers, [['Content-Type', 'text/csv'], ['X-B', 'x y']]);
    assert.equal(dec.decode(r.response.body), 'a,b\r\n');
  });

  it('Location alone is a 302; with Status the status wins; no Content-Type gives text/plain', () => {
    const a = parse('Location: /there\n\n');
    assert.ok(a.ok);
    assert.equal(a.response.status, 302);
    assert.deepEqual(a.response.headers, [['Location', '/there'], ['Content-Type', 'text/plain; charset=utf-8']]);
    const b = parse('Status: 307\nLocation: /there\n\n');
    assert.ok(b.ok);
    assert.equal(b.response.status, 307);
  });

  it('headers without an empty line are a header block with an empty body', () => {
    const r = parse('Status: 204\nX-Only: yes\n');
    assert.ok(r.ok);
    assert.equal(r.response.status, 204);
    assert.equal(r.response.body.length, 0);
    const noNewline = parse('Content-Type: application/json');
    assert.ok(noNewline.ok);
    assert.equal(noNewline.response.headers[0]![1], 'application/json');
  });

  it('no header block: missing, malformed, or Name: value lines without a CGI header → 200 text/plain with all of stdout', () => {
    for (const text of ['hello\n', '', '\nContent-Type: text/html\n\nx', 'Content-Type text/html\n\nx', 'Bad Name: x\nContent-Type: a/b\n\nx', 'Note: hi\nAuthor: me\n\nbody', ': empty name\n\nx']) {
      const r = parse(text);
      assert.ok(r.ok, text);
      assert.equal(r.response.status, 200, text);
      assert.deepEqual(r.response.headers, [['Content-Type', 'text/plain; charset=utf-8']], text);
      assert.equal(dec.decode(r.response.body), text, text);
    }
  });

  it('a Status that is not a code from 100 to 599 is an error (502 upstream)', () => {
    for (const v of ['abc', '99', '600', '2000 OK', '', '20x']) {
      const r = parse(`Status: ${v}\nContent-Type: text/plain\n\nbody`);
      assert.equal(r.ok, false, v);
    }
    assert.ok(parse('Status: 599 Custom reason\n\n').ok);
  });

  it('ignores hop-by-hop headers and drops values with control characters, noting each', () => {
    const r = parse('Content-Type: a/b\nContent-Length: 99\nTransfer-Encoding: chunked\nConnection: close\nX-Ctl: a\x01b\nX-Ok: fine\n\nbody');
    assert.ok(r.ok);
    assert.deepEqual(r.response.headers, [['Content-Type', 'a/b'], ['X-Ok', 'fine']]);
    assert.equal(r.notes.length, 4);
  });

  it('a huge header block is an error; a huge header-shaped text without a CGI header is text', () => {
    const huge = parse(`Content-Type: text/plain\nX-Big: ${'x'.repeat(100 * 1024)}\n\nbody`);
    assert.equal(huge.ok, false);
    const text = 'a: b\n'.repeat(40_000) + '\ntail';
    const r = parse(text);
    assert.ok(r.ok);
    assert.equal(r.response.status, 200);
    assert.equal(r.response.body.length, text.length);
  });

  it('passes a binary body through unchanged', () => {
    const body = randomBytes(4096);
    const out = Buffer.concat([Buffer.from('Content-Type: application/octet-stream\n\n'), body]);
    const r = parse(new Uint8Array(out));
    assert.ok(r.ok);
    assert.deepEqual(Buffer.from(r.response.body), body);
  });
});

describe('CGI request → argv and environment (§3, §4)', () => {
  const input = (url: string, headers: [string, string][] = [], body = new Uint8Array(0)): HttpRequestInput => ({
    type: 'http', method: 'POST', url, headers, body, remoteAddress: '127.0.0.1', remotePort: 5555,
  });

  it('argv: the path then the query items, left encoded; or the template', () => {
    const t = rawTarget('http://h:1/env/foo%20bar?greet=matt&x=%41+b');
    assert.deepEqual(t, { path: '/env/foo%20bar', query: 'greet=matt&x=%41+b' });
    assert.deepEqual(cgiArgv(t), ['/env/foo%20bar', 'greet=matt', 'x=%41+b']);
    assert.deepEqual(cgiArgv(rawTarget('http://h/p')), ['/p']);
    assert.deepEqual(cgiArgv(t, '${SCRIPT_NAME} -v ${ARGS}'), ['/env/foo%20bar', '-v', 'greet=matt', 'x=%41+b']);
  });

  it('http_query is Go url.Values.Encode(): sorted keys, form escaping, invalid pairs dropped', () => {
    assert.equal(canonicalQuery('b=2&a=1&a=0'), 'a=1&a=0&b=2');
    assert.equal(canonicalQuery('q=a%20b+c&e=%C3%A9&s=*~!'), 'e=%C3%A9&q=a+b+c&s=%2A~%21');
    assert.equal(canonicalQuery('bad=%zz&ok=1&semi=a;b&flag'), 'flag=&ok=1');
    assert.equal(canonicalQuery(''), '');
  });

  it('sets the CGI 1.1 / WAGI and lowercase sets; built-ins win over configured variables', () => {
    const env = cgiEnv(
      input('http://example.test:8080/env/a%2Fb%20c?x=%20y&a=1', [['Host', 'example.test:8080'], ['Content-Type', 'text/plain'], ['Authorization', 'secret'], ['Connection', 'keep-alive'], ['X-Rep', 'a'], ['x-rep', 'b']], enc.encode('hello')),
      { route: '/env/...' },
      [['REQUEST_METHOD', 'configured'], ['MINE', 'yes']],
    );
    const want: Record<string, string> = {
      MINE: 'yes', REQUEST_METHOD: 'POST', SCRIPT_NAME: '/env', PATH_INFO: '/a/b c', X_RAW_PATH_INFO: '/a%2Fb%20c', PATH_TRANSLATED: '/a/b c',
      QUERY_STRING: 'x=%20y&a=1', CONTENT_LENGTH: '5', CONTENT_TYPE: 'text/plain', SERVER_NAME: 'example.test', SERVER_PORT: '8080',
      SERVER_PROTOCOL: 'HTTP/1.1', SERVER_SOFTWARE: 'WAGI/1', GATEWAY_INTERFACE: 'CGI/1.1', REMOTE_ADDR: '127.0.0.1', REMOTE_HOST: '127.0.0.1',
      AUTH_TYPE: '', REMOTE_USER: '', X_MATCHED_ROUTE: '/env/...', X_FULL_URL: 'http://example.test:8080/env/a%2Fb%20c?x=%20y&a=1',
      HTTP_HOST: 'example.test:8080', HTTP_CONTENT_TYPE: 'text/plain', HTTP_X_REP: 'a, b',
      http_path: '/env/a/b c', http_method: 'POST', http_host: 'example.test:8080', http_query: 'a=1&x=+y', remote_addr: '127.0.0.1:5555',
    };
    assert.deepEqual(Object.fromEntries(env), want);
  });

  it('falls back to the default host, then port 80; IPv6 clients get [ip]:port', () => {
    const env = cgiEnv({ ...input('http://x/p'), remoteAddress: '::1' }, { route: '/p', defaultHost: 'capsule.local' }, []);
    assert.equal(env.get('SERVER_NAME'), 'capsule.local');
    assert.equal(env.get('SERVER_PORT'), '80');
    assert.equal(env.get('SCRIPT_NAME'), '/p');
    assert.equal(env.get('PATH_INFO'), '');
    assert.equal(env.get('remote_addr'), '[::1]:5555');
    assert.equal(env.get('CONTENT_LENGTH'), '0');
  });
});

describe('capsule serve of a WASI command (CGI)', { skip: missing(CGI) }, () => {
  let s: Server;
  before(async () => {
    s = await startServer(['serve', CGI, '--http-port=0', '--timeout=1s', '--max-body=8MiB', '--max-output=2MiB', '--workers=2', '--env', 'FROM_FLAG=flag value']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });
  const get = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(s.url + path, init);
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  };
  const envOf = (text: string) => Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

  it('gives the guest argv, the CGI variables, the lowercase set and only configured variables', async () => {
    process.env.CAPSULE_CGI_LEAK = 'no';
    const r = await get('/env?name=J%C3%B6rg&tag=a+b&tag=c%26d', { headers: { 'X-Custom': 'v', Authorization: 'Bearer x' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain');
    const text = r.body.toString();
    assert.match(text, /^argv\[0\]=\/env\nargv\[1\]=name=J%C3%B6rg\nargv\[2\]=tag=a\+b\nargv\[3\]=tag=c%26d\n/);
    const env = envOf(text);
    assert.equal(env.FROM_FLAG, 'flag value');
    assert.equal(env.REQUEST_METHOD, 'GET');
    assert.equal(env.QUERY_STRING, 'name=J%C3%B6rg&tag=a+b&tag=c%26d');
    assert.equal(env.PATH_INFO, '/env');
    assert.equal(env.X_MATCHED_ROUTE, '/...');
    assert.equal(env.HTTP_X_CUSTOM, 'v');
    assert.equal(env.HTTP_AUTHORIZATION, undefined);
    assert.equal(env.http_query, 'name=J%C3%B6rg&tag=a+b&tag=c%26d');
    assert.equal(env.http_path, '/env');
    assert.match(env.remote_addr!, /^127\.0\.0\.1:\d+$/);
    assert.equal(env.X_FULL_URL, `${s.url}/env?name=J%C3%B6rg&tag=a+b&tag=c%26d`);
    assert.equal(env.CAPSULE_CGI_LEAK, undefined);
    assert.equal(env.PATH, undefined, 'the runner environment is not inherited by WASI commands');
  });

  it('turns the header block into the response (status, repeated headers, hop-by-hop ignored)', async () => {
    const h = await get('/headers');
    assert.equal(h.status, 200);
    assert.equal(h.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(h.headers.get('x-one'), '1, 2');
    assert.equal(h.headers.get('content-length'), '9');
    assert.equal(h.body.toString(), '<p>hi</p>');
    const st = await get('/status');
    assert.equal(st.status, 201);
    assert.deepEqual(JSON.parse(st.body.toString()), { created: true });
    const crlf = await get('/crlf');
    assert.equal(crlf.headers.get('x-a'), 'spaced');
    assert.equal(crlf.body.toString(), 'a,b\r\n1,2\r\n');
    const only = await get('/onlyheaders');
    assert.equal(only.status, 204);
    assert.equal(only.headers.get('x-empty'), 'yes');
  });

  it('redirects with Location (302, or the Status given)', async () => {
    const r = await get('/redirect', { redirect: 'manual' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.get('location'), 'https://example.com/elsewhere');
    const o = await get('/see-other', { redirect: 'manual' });
    assert.equal(o.status, 303);
    assert.equal(o.headers.get('location'), '/other');
  });

  it('serves stdout without a header block as text/plain 200, malformed headers included', async () => {
    for (const [path, body] of [['/plain', 'hello world\n'], ['/malformed', 'Content-Type text/plain\n\nbody\n'], ['/notcgi', 'Note: hello\nAuthor: me\n\nbody\n']] as const) {
      const r = await get(path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8', path);
      assert.equal(r.body.toString(), body, path);
    }
    const big = await get('/hugetext');
    assert.equal(big.status, 200);
    assert.equal(big.body.length, 40 * 1024 * 5 + 5);
  });

  it('answers 502 for a bad Status and for a huge header block', async () => {
    const bad = await get('/badstatus');
    assert.equal(bad.status, 502);
    assert.match(bad.body.toString(), /Status header is not a status code/);
    const huge = await get('/hugeheader');
    assert.equal(huge.status, 502);
    assert.match(huge.body.toString(), /header block is larger than 64 KiB/);
  });

  it('passes request bodies on stdin: empty, binary, large', async () => {
    const empty = await get('/echo', { method: 'POST' });
    assert.equal(empty.status, 200);
    assert.equal(empty.body.length, 0);
    for (const size of [1, 4096, 65_537, 6 * 1024 * 1024 + 3]) {
      const body = randomBytes(size);
      const r = await get('/echo', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(r.status, size > 2 * 1024 * 1024 ? 500 : 200, `size ${size}`);
      if (size <= 2 * 1024 * 1024) assert.ok(r.body.equals(body), `size ${size}: the bytes come back unchanged`);
      else assert.match(r.body.toString(), /more than 2 MiB to its standard output \(--max-output\)/);
    }
  });

  it('exit code ≠ 0 → 500 "function exited with code <n>", stderr in the log and not in the response', async () => {
    const r = await get('/exit/3', { headers: { 'x-request-id': 'exit-three' } });
    assert.equal(r.status, 500);
    assert.equal(r.body.toString(), 'function exited with code 3');
    await eventually(() => /"requestId":"exit-three"[^\n]*"stream":"stderr"[^\n]*something went wrong/.test(s.logs()));
    assert.doesNotMatch(r.body.toString(), /something went wrong|discarded/);
    const zero = await get('/exit/0');
    assert.equal(zero.status, 200);
    assert.equal(zero.body.toString(), 'this stdout is discarded');
  });

  it('trap → 500 "function trapped: …"; the deadline → 504; the server keeps serving', async () => {
    const t = await get('/trap');
    assert.equal(t.status, 500);
    assert.match(t.body.toString(), /^function trapped: unreachable/);
    const d = await get('/sleep');
    assert.equal(d.status, 504);
    assert.equal(JSON.parse(d.body.toString()).code, 'TIMEOUT');
    assert.equal((await get('/plain')).status, 200);
  });

  it('stops a guest that writes gigabytes to stdout at --max-output (500 naming the limit)', async () => {
    const r = await get('/flood');
    assert.equal(r.status, 500);
    const err = JSON.parse(r.body.toString());
    assert.equal(err.code, 'BAD_RESULT');
    assert.match(err.error, /more than 2 MiB to its standard output \(--max-output\)/);
    assert.equal((await get('/plain')).status, 200);
  });

  it('provides env.log_string and env.log_i32, written to the log as [module]: value', async () => {
    const r = await get('/log', { headers: { 'x-request-id': 'log-imports' } });
    assert.equal(r.body.toString(), 'logged\n');
    await eventually(() => s.logs().includes('[wasi-cgi]: from log_string') && s.logs().includes('[wasi-cgi]: -42'));
  });
});
