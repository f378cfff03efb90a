/**
 * Outbound HTTP (hostHTTP gen 2, hostHttp gen 1) against local servers: the allow-list
 * (conventions.md §2), redirects re-checked, the response size cap, the deadline, every method,
 * from the AssemblyScript and C SDKs and gen-1 guests (capsule-abi.md §5.7, §4.7, §7.6).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllowedHosts, isAllowed } from '../src/capabilities/http/allow-list.ts';
import { parseHostHttpRequest, renderHostHttpResponse, parseGen1Headers } from '../src/capabilities/http/index.ts';
import { example, fixture, missing, runCapsule } from './helpers.ts';
import { freePort, loadProbe, startHttp, type LocalServer, type Probe } from './backends.ts';

/** The main test server: answers by path. */
let api: LocalServer;
/** A second server, reached as `localhost` (not on the allow-list of most tests). */
let other: LocalServer;
let hits = 0;

before(async () => {
  other = await startHttp((req, res) => {
    hits++;
    res.setHeader('content-type', 'text/plain');
    res.end(`other got ${req.method} ${req.url}`);
  });
  api = await startHttp((req, res, body) => {
    const url = new URL(req.url!, 'http://x');
    const to = url.searchParams.get('to');
    switch (url.pathname) {
      case '/json':
        res.setHeader('content-type', 'application/json');
        res.setHeader('x-reply', 'yes');
        res.end('{"greeting":"hello","n":42}');
        return;
      case '/text':
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.end('plain "text"\n');
        return;
      case '/echo':
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, body: body.toString(), probe: req.headers['x-probe'] ?? null, type: req.headers['content-type'] ?? null }));
        return;
      case '/redirect':
        res.writeHead(Number(url.searchParams.get('status') ?? 302), { location: to! });
        res.end();
        return;
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        res.end();
        return;
      case '/huge': {
        // 2 MiB, chunked: no Content-Length to trust
        res.setHeader('content-type', 'text/plain');
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let sent = 0;
        const push = () => {
          while (sent < 32) {
            sent++;
            if (!res.write(chunk)) return void res.once('drain', push);
          }
          res.end();
        };
        push();
        return;
      }
      case '/declared-huge':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(50 * 1024 * 1024) });
        res.write('a');
        return; // never finishes: the host must not wait for it
      case '/silent':
        return; // never answers
      default:
        res.statusCode = 404;
        res.end('not found');
    }
  });
});

after(async () => {
  await api.close();
  await other.close();
});

describe('allow-list grammar (conventions.md §2)', () => {
  const allowed = (entries: string[], url: string) => isAllowed(parseAllowedHosts(entries), new URL(url));
  it('matches host, *.host, host:port, scheme://host[:port] and *', () => {
    assert.equal(allowed(['example.com'], 'https://example.com/x'), true);
    assert.equal(allowed(['example.com'], 'http://example.com:8080/'), true, 'host alone: any port');
    assert.equal(allowed(['example.com'], 'https://api.example.com/'), false);
    assert.equal(allowed(['*.example.com'], 'https://api.example.com/'), true);
    assert.equal(allowed(['*.example.com'], 'https://a.b.example.com/'), true);
    assert.equal(allowed(['*.example.com'], 'https://example.com/'), false);
    assert.equal(allowed(['*.example.com'], 'https://evilexample.com/'), false);
    assert.equal(allowed(['example.com:8080'], 'http://example.com:8080/'), true);
    assert.equal(allowed(['example.com:8080'], 'http://example.com/'), false);
    assert.equal(allowed(['example.com:443'], 'https://example.com/'), true, 'default port of the scheme');
    assert.equal(allowed(['https://example.com'], 'http://example.com/'), false);
    assert.equal(allowed(['https://example.com'], 'https://example.com/'), true);
    assert.equal(allowed(['http://127.0.0.1:9'], 'http://127.0.0.1:9/'), true);
    assert.equal(allowed(['127.0.0.1'], 'http://2130706433/'), true, 'URL normalisation first');
    assert.equal(allowed(['[::1]'], 'http://[::1]:80/'), true);
    assert.equal(allowed(['*'], 'https://anything.test/'), true);
    assert.equal(allowed([], 'https://example.com/'), false, 'default: nothing');
    assert.equal(allowed(['Example.COM'], 'https://example.com/'), true);
    assert.equal(allowed(['a.com, b.com'], 'https://b.com/'), true, 'comma-separated entries');
  });
  it('rejects entries that do not follow the grammar, naming them', () => {
    assert.throws(() => parseAllowedHosts(['ftp://x.com']), /"ftp:\/\/x\.com" is not an allowed-host entry/);
    assert.throws(() => parseAllowedHosts(['x.com:99999']), /x\.com:99999/);
    assert.throws(() => parseAllowedHosts(['x.com/path']), /x\.com\/path/);
  });
});

describe('hostHTTP wire format (capsule-abi.md §5.7)', () => {
  it('decodes the request JSON: JSONBody wins over TextBody, {} is no body, names case-insensitive', () => {
    const a = parseHostHttpRequest('{"JSONBody":{"a":1},"TextBody":"t","URI":"http://h/","Method":"POST","Headers":{"X-A":"1"}}');
    assert.deepEqual(a, { method: 'POST', url: 'http://h/', headers: [['X-A', '1'], ['Content-Type', 'application/json; charset=utf-8']], body: '{"a":1}' });
    const b = parseHostHttpRequest('{"JSONBody":{},"TextBody":"text","uri":"http://h/","method":"PUT","Headers":{}}');
    assert.deepEqual(b, { method: 'PUT', url: 'http://h/', headers: [], body: 'text' });
    assert.equal(parseHostHttpRequest('{"URI":"http://h/"}').method, 'GET');
    assert.throws(() => parseHostHttpRequest('{"TextBody":"he said "hi""}'), /not valid JSON/);
    assert.throws(() => parseHostHttpRequest('{"Method":"GET"}'), /no URI/);
  });
  it('renders JSON bodies raw and text bodies escaped, with Go-style header arrays', () => {
    const enc = new TextEncoder();
    const json = renderHostHttpResponse({ status: 201, headers: [['content-type', 'application/problem+json'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']], body: enc.encode('{"x":[1,2]}'), url: '' });
    assert.equal(json, '{"JSONBody":{"x":[1,2]},"Headers":{"Content-Type":["application/problem+json"],"Set-Cookie":["a=1","b=2"]},"StatusCode":201}');
    const text = renderHostHttpResponse({ status: 200, headers: [['content-type', 'text/plain']], body: enc.encode('say "hi"\n'), url: '' });
    assert.equal(JSON.parse(text).TextBody, 'say "hi"\n');
    const broken = renderHostHttpResponse({ status: 200, headers: [['content-type', 'application/json']], body: enc.encode('{oops'), url: '' });
    assert.equal(JSON.parse(broken).TextBody, '{oops', 'a JSON content type with a body that is not JSON is sent as text');
  });
  it('splits gen-1 headers at the first colon, with the era separator, "empty" = none', () => {
    assert.deepEqual(parseGen1Headers('A:1|B:x:y', '|'), [['A', '1'], ['B', 'x:y']]);
    assert.deepEqual(parseGen1Headers('A:1²B:2', '²'), [['A', '1'], ['B', '2']]);
    assert.deepEqual(parseGen1Headers('empty', '²'), []);
  });
});

for (const [sdk, path, tag] of [['AssemblyScript', fixture('caps-as-probe'), 'as'], ['C', fixture('caps-c-probe'), 'c']] as const) {
  describe(`hostHTTP from the ${sdk} SDK`, { skip: missing(path) }, () => {
    let p: Probe;
    let small: Probe;
    before(async () => {
      p = await loadProbe(path, { allowedHosts: [`127.0.0.1:${api.port}`] });
      small = await loadProbe(path, { allowedHosts: ['127.0.0.1'], http: { maxResponseBytes: 256 * 1024, timeoutMs: 1000 } });
    });
    after(async () => {
      await p.close();
      await small.close();
    });

    it('GETs JSON and text from an allowed host', async () => {
      assert.deepEqual(await p.run(`http:GET ${api.url}/json`), { ok: true, text: '200 {"greeting":"hello","n":42}' });
      assert.deepEqual(await p.run(`http:GET ${api.url}/text`), { ok: true, text: '200 plain "text"\n' });
      assert.deepEqual(await p.run(`http:GET ${api.url}/missing`), { ok: true, text: '404 not found' });
    });

    it('sends every method, with the body and headers', async () => {
      for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) {
        const r = await p.run(`http:${m} ${api.url}/echo payload-${m}`);
        assert.equal(r.ok, true, r.text);
        const [status, json] = [r.text.slice(0, 3), JSON.parse(r.text.slice(4))];
        assert.equal(status, '200');
        assert.deepEqual(json, { method: m, body: `payload-${m}`, probe: tag, type: 'text/plain;charset=UTF-8' });
      }
      const get = JSON.parse((await p.run(`http:GET ${api.url}/echo ignored`)).text.slice(4));
      assert.deepEqual(get, { method: 'GET', body: '', probe: tag, type: null }, 'GET carries no body');
      assert.match((await p.run(`http:HEAD ${api.url}/json`)).text, /^200 /);
      assert.match((await p.run(`http:OPTIONS ${api.url}/text`)).text, /^200 /);
    });

    it('refuses hosts that are not on the list, naming the host and the setting', async () => {
      const before = hits;
      const r = await p.run(`http:GET http://localhost:${other.port}/`);
      assert.equal(r.ok, false);
      assert.equal(r.text, `localhost:${other.port} is not an allowed host (allowed: 127.0.0.1:${api.port}); add it with --allowed-hosts localhost:${other.port} (config allowedHosts)`);
      const port = await p.run(`http:GET http://127.0.0.1:${other.port}/`);
      assert.equal(port.ok, false, 'host:port entries pin the port');
      assert.equal(hits, before, 'the refused server was never contacted');
      const scheme = await p.run('http:GET file:///etc/passwd');
      assert.match(scheme.text, /only http and https/);
    });

    it('follows redirects to allowed hosts and refuses those to other hosts', async () => {
      const ok = await p.run(`http:GET ${api.url}/redirect?to=${encodeURIComponent('/json')}`);
      assert.deepEqual(ok, { ok: true, text: '200 {"greeting":"hello","n":42}' });
      const post303 = JSON.parse((await p.run(`http:POST ${api.url}/redirect?status=303&to=${encodeURIComponent('/echo')} data`)).text.slice(4));
      assert.equal(post303.method, 'GET', '303 turns a POST into a GET');
      const keep307 = JSON.parse((await p.run(`http:POST ${api.url}/redirect?status=307&to=${encodeURIComponent('/echo')} data`)).text.slice(4));
      assert.deepEqual([keep307.method, keep307.body], ['POST', 'data'], '307 keeps method and body');
      const before = hits;
      const away = await p.run(`http:GET ${api.url}/redirect?to=${encodeURIComponent(`http://localhost:${other.port}/stolen`)}`);
      assert.equal(away.ok, false);
      assert.match(away.text, new RegExp(`^localhost:${other.port} \\(redirected from ${api.url}/redirect\\?to=.*\\) is not an allowed host`));
      assert.equal(hits, before, 'the redirect target was never contacted');
      const loop = await p.run(`http:GET ${api.url}/loop`);
      assert.match(loop.text, /stopped after 10 redirects/);
    });

    it('caps the response size (streamed or declared) and fails cleanly', async () => {
      const huge = await small.run(`http:GET ${api.url}/huge`);
      assert.equal(huge.ok, false);
      assert.match(huge.text, /the response body is larger than 256 KiB \(--max-response\)/);
      const declared = await small.run(`http:GET ${api.url}/declared-huge`);
      assert.match(declared.text, /larger than 256 KiB/);
      assert.deepEqual(await small.run(`http:GET ${api.url}/text`), { ok: true, text: '200 plain "text"\n' }, 'the function still works');
    });

    it('gives up on a server that does not answer, with a failure naming --http-timeout', async () => {
      const r = await small.run(`http:GET ${api.url}/silent`);
      assert.equal(r.ok, false);
      assert.match(r.text, /no complete answer within 1000 ms \(--http-timeout\)/);
    });

    it('reports transport errors as failures', async () => {
      const closed = await freePort();
      const r = await small.run(`http:GET http://127.0.0.1:${closed}/`);
      assert.equal(r.ok, false);
      assert.match(r.text, /ECONNREFUSED/);
    });

    it('without an allow-list, nothing is reachable', async () => {
      const none = await loadProbe(path);
      try {
        const r = await none.run(`http:GET ${api.url}/json`);
        assert.equal(r.text, `127.0.0.1:${api.port} is not an allowed host (no outbound host is granted); add it with --allowed-hosts 127.0.0.1:${api.port} (config allowedHosts)`);
      } finally {
        await none.close();
      }
    });
  });
}

describe('hostHttp from gen-1 guests (capsule-abi.md §4.7)', () => {
  for (const [kind, sep] of [['1a', '|'], ['1b', '²']] as const) {
    it(`gen ${kind}: headers joined by ${sep}, "empty" body = none, the body only as result`, { skip: missing(fixture(`gen1-caps-${kind}`)) }, async () => {
      const p = await loadProbe(fixture(`gen1-caps-${kind}`), { allowedHosts: ['127.0.0.1'] });
      try {
        // the probe's own CLI arguments are split on ² in 1b: two headers only fit in 1a
        const headers = kind === '1a' ? `X-Probe:gen1a${sep}Content-Type:text/x-gen1` : 'X-Probe:gen1b';
        const post = await p.run('http', `${api.url}/echo`, 'post', headers, 'hello');
        assert.equal(post.ok, true, post.text);
        assert.deepEqual(JSON.parse(post.text), { method: 'POST', body: 'hello', probe: `gen${kind}`, type: kind === '1a' ? 'text/x-gen1' : null });
        const empty = JSON.parse((await p.run('http', `${api.url}/echo`, 'PUT', 'empty', 'empty')).text);
        assert.deepEqual([empty.method, empty.body, empty.probe], ['PUT', '', null]);
        const refused = await p.run('http', `http://localhost:${other.port}/`, 'GET', 'empty', 'empty');
        assert.equal(refused.ok, false);
        assert.match(refused.text, /is not an allowed host/);
      } finally {
        await p.close();
      }
    });
  }
});

describe('capsule run http-client (config file beside the module)', { skip: missing(example('http-client')) }, () => {
  it('calls the local server allowed by http-client.capsule.yaml and refuses another host', async () => {
    const r = await runCapsule(['run', example('http-client'), `${api.url}/json`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'status 200, content type application/json\n{"greeting":"hello","n":42}\n');
    const refused = await runCapsule(['run', example('http-client'), 'http://192.0.2.1/']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /192\.0\.2\.1 is not an allowed host \(allowed: 127\.0\.0\.1, localhost\)/);
  });
});
