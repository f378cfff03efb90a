/**
 * The C SDK (mdk/c/capsule.h) over HTTP as its users see it, through the mdk-c-probe fixture
 * served by `capsule serve`: the request the handler reads (escapes, UTF-8, headers by name in
 * any case) and the responses it builds (JSON, text, status, failure, an invalid JSON body).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, missing, startServer, type Server } from './helpers.ts';

const probe = fixture('mdk-c-probe');

describe('C SDK over HTTP (capsule serve)', { skip: missing(probe) }, () => {
  let s: Server;
  before(async () => {
    s = await startServer(['serve', `--wasm=${probe}`, '--http-port=0']);
  });
  after(async () => {
    assert.equal(await s.stop(), 0);
  });

  it('hands the handler the method, URI, body and headers exactly', async () => {
    const body = 'héllo "quoted" \\ back\nline 😀';
    const res = await fetch(`${s.url}/echo?x=1`, { method: 'PUT', body, headers: { 'content-type': 'text/plain', 'x-test': 'a "b", c' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const echo = await res.json() as Record<string, unknown>;
    assert.equal(echo['method'], 'PUT');
    assert.equal(echo['uri'], `${s.url}/echo?x=1`);
    assert.equal(echo['body'], body);
    assert.equal(echo['bodyLength'], Buffer.byteLength(body));
    assert.equal(echo['contentType'], 'text/plain');
    assert.equal(echo['xTest'], 'a "b", c');
    assert.match(String(echo['headers']), /"X-Test":"a \\"b\\", c"/);
  });

  it('an empty request body reaches the handler as an empty string', async () => {
    const echo = await (await fetch(`${s.url}/echo`)).json() as Record<string, unknown>;
    assert.deepEqual([echo['method'], echo['body'], echo['bodyLength']], ['GET', '', 0]);
  });

  it('sends text, a chosen status, a failure and refuses an invalid JSON body', async () => {
    const text = await fetch(`${s.url}/text`, { method: 'POST', body: 'é' });
    assert.deepEqual([text.status, text.headers.get('content-type'), await text.text()], [200, 'text/plain; charset=utf-8', 'plain text: é']);
    const teapot = await fetch(`${s.url}/status/418`);
    assert.deepEqual([teapot.status, await teapot.text()], [418, 'status']);
    const failed = await fetch(`${s.url}/fail`);
    assert.deepEqual([failed.status, await failed.text()], [500, 'the probe failed on purpose']);
    const bad = await fetch(`${s.url}/bad-json`);
    assert.deepEqual([bad.status, await bad.text()], [500, 'the response body is not valid JSON']);
  });
});
