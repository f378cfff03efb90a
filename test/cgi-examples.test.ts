/**
 * The seed-003 walk-through with Capsule (README "Many functions"): the WASI examples in C, Rust
 * and AssemblyScript copied into a functions directory, served by `capsule serve --functions`,
 * called like the bots-garden FaaS demo was.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { example, runCapsule, startServer, type Server } from './helpers.ts';

const EXAMPLES = ['cenv', 'rustenv', 'asenv', 'markdown', 'redirect', 'redirect-as'];
const built = EXAMPLES.filter((e) => existsSync(example(e)));
const skipIf = (name: string) => (built.includes(name) ? false : `examples/${name} was not built (toolchain missing)`);

describe('the WASI examples behind capsule serve --functions (seed 003)', { skip: built.length === 0 ? 'no WASI example was built' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-examples-'));
  let s: Server;
  before(async () => {
    for (const e of built) copyFileSync(example(e), join(dir, `${e}.wasm`));
    s = await startServer(['serve', `--functions=${dir}`, '--http-port=0', '--env', 'MESSAGE=hello']);
  });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [name, lang] of [['cenv', 'C'], ['rustenv', 'Rust'], ['asenv', 'AssemblyScript']] as const) {
    it(`${name} dumps its argv and environment (${lang})`, { skip: skipIf(name) }, async () => {
      const res = await fetch(`${s.url}/${name}/some/path?b=2&a=%201`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      const text = await res.text();
      assert.match(text, new RegExp(`Hello from ${lang} \\(WASI\\)`));
      assert.match(text, new RegExp(`/${name}/some/path`));
      for (const v of ['MESSAGE=hello', 'PATH_INFO=/some/path', 'QUERY_STRING=b=2&a=%201', `http_path=/${name}/some/path`, 'http_query=a=+1&b=2', 'http_method=GET']) {
        assert.ok(text.includes(v), `${name} shows ${v}`);
      }
    });
  }

  it('markdown turns the request body into HTML', { skip: skipIf('markdown') }, async () => {
    const res = await fetch(`${s.url}/markdown`, { method: 'POST', body: '# Title\n\nSome **bold** `code` <b>\n\n- one\n- two\n' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(await res.text(), '<h1>Title</h1>\n<p>Some <strong>bold</strong> <code>code</code> &lt;b&gt;</p>\n<ul>\n  <li>one</li>\n  <li>two</li>\n</ul>\n');
    const empty = await fetch(`${s.url}/markdown`, { method: 'POST' });
    assert.equal(await empty.text(), '');
  });

  it('redirect (C) and redirect-as (AssemblyScript) answer with Status and Location', async (t) => {
    if (built.includes('redirect')) {
      const r = await fetch(`${s.url}/redirect?to=https%3A%2F%2Fexample.com%2Fx`, { redirect: 'manual' });
      assert.equal(r.status, 302);
      assert.equal(r.headers.get('location'), 'https://example.com/x');
      const p = await fetch(`${s.url}/redirect?permanent`, { redirect: 'manual' });
      assert.equal(p.status, 301);
      assert.equal(p.headers.get('location'), '/hello');
    } else t.diagnostic('redirect not built');
    if (built.includes('redirect-as')) {
      const r = await fetch(`${s.url}/redirect-as/docs?x=1`, { redirect: 'manual' });
      assert.equal(r.status, 302);
      assert.equal(r.headers.get('location'), 'https://example.com/docs?x=1');
    } else t.diagnostic('redirect-as not built');
  });

  it('markdown also runs from the CLI, stdin to stdout', { skip: skipIf('markdown') }, async () => {
    const r = await runCapsule(['run', example('markdown')], { stdin: '## Hi *there*\n' });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'Content-Type: text/html; charset=utf-8\n\n<h2>Hi <em>there</em></h2>\n');
  });
});
