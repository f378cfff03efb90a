/**
 * The head of a response made from a guest's result (src/triggers/shared/runner-routes.ts
 * `writeResponse`), as the client reads it off the connection: names lowercased, hop-by-hop ones
 * dropped, a name's values together at its first place, content-length, then X-Request-Id unless
 * the guest set one; a header set before (a draining server's Connection: close) kept.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import type { HttpResponseOutput } from '../src/base/invocation.ts';
import { writeResponse } from '../src/triggers/shared/runner-routes.ts';

/** The guest results to answer with, by path. */
const RESULTS: Record<string, { headers: [string, string][]; preset?: [string, string] }> = {
  '/one': { headers: [['Content-Type', 'text/plain']] },
  '/many': { headers: [['Content-Type', 'text/plain'], ['X-A', '1'], ['Cache-Control', 'no-store']] },
  '/dupes': { headers: [['Set-Cookie', 'a=1'], ['X-B', '2'], ['set-cookie', 'b=2']] },
  '/hop': { headers: [['Connection', 'upgrade'], ['Content-Length', '999'], ['Transfer-Encoding', 'chunked'], ['X-C', '3']] },
  '/own-id': { headers: [['X-Request-Id', 'guest-id'], ['X-D', '4']] },
  '/digits': { headers: [['X-E', '5'], ['123', 'n']] },
  '/constructor': { headers: [['Constructor', 'c'], ['X-H', '7'], ['x-h', '8']] },
  '/preset': { headers: [['X-F', '6'], ['Connection', 'keep-alive']], preset: ['Connection', 'close'] },
  '/bad': { headers: [['X-G', 'bad\nvalue']] },
};

/** The head a client reads, with the Date line left out. */
function head(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', reject);
    socket.on('end', () => resolve(text.split('\r\n\r\n')[0]!.split('\r\n').filter((l) => !l.startsWith('Date: ')).join('\n')));
  });
}

describe('a guest response head', () => {
  let server: Server;
  let port: number;
  before(async () => {
    server = createServer((req, res) => {
      const r = RESULTS[req.url!]!;
      if (r.preset) res.setHeader(...r.preset);
      const out: HttpResponseOutput = { type: 'http', status: 201, headers: r.headers, body: new TextEncoder().encode('hi') };
      writeResponse(res, out, 'req-1');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const expected: Record<string, string[]> = {
    '/one': ['content-type: text/plain', 'content-length: 2', 'X-Request-Id: req-1'],
    '/many': ['content-type: text/plain', 'x-a: 1', 'cache-control: no-store', 'content-length: 2', 'X-Request-Id: req-1'],
    '/dupes': ['set-cookie: a=1', 'set-cookie: b=2', 'x-b: 2', 'content-length: 2', 'X-Request-Id: req-1'],
    '/hop': ['x-c: 3', 'content-length: 2', 'X-Request-Id: req-1'],
    '/own-id': ['x-request-id: guest-id', 'x-d: 4', 'content-length: 2'],
    '/digits': ['123: n', 'x-e: 5', 'content-length: 2', 'X-Request-Id: req-1'],
    '/constructor': ['constructor: c', 'x-h: 7', 'x-h: 8', 'content-length: 2', 'X-Request-Id: req-1'],
    '/preset': ['Connection: close', 'x-f: 6', 'content-length: 2', 'X-Request-Id: req-1'],
  };
  for (const [path, lines] of Object.entries(expected)) {
    it(`sends the head of ${path}`, async () => {
      // the client asked Connection: close: Node says it last
      const close = path === '/preset' ? [] : ['Connection: close'];
      assert.equal(await head(port, path), ['HTTP/1.1 201 Created', ...lines, ...close].join('\n'));
    });
  }

  it('answers a header value the guest made invalid with 500 Internal Server Error, not the guest status text', async () => {
    const h = await head(port, '/bad');
    assert.match(h, /^HTTP\/1\.1 500 Internal Server Error\n/);
    assert.match(h, /\nX-Request-Id: req-1(\n|$)/);
  });
});
