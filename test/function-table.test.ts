// The function table as a library (src/functions/table.ts): what a deploy API or a gateway sees
// when it deploys, replaces and retires functions whose settings come from a JSON body.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FunctionTable, type TableLog } from '../src/functions/table.ts';
import { functionSpecFromBody } from '../src/functions/spec.ts';
import type { FunctionDef } from '../src/functions/routes.ts';
import { mkdtempSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, missing, runCapsule } from './helpers.ts';

const ECHO = fixture('gen2-echo');

function recorder(): TableLog & { lines: string[] } {
  const lines: string[] = [];
  const put = (a: unknown, b?: string) => void lines.push(b ?? String(a));
  return { lines, info: put, warn: put, error: put } as TableLog & { lines: string[] };
}

function def(name: string, module: string, body: unknown): FunctionDef {
  return { key: name, name, module, source: `PUT /functions/${name}`, ...functionSpecFromBody(body, `PUT /functions/${name}`) };
}

describe('FunctionTable', { skip: missing(ECHO) }, () => {
  it('deploys a function from an API body, replaces it with new settings, and retires it', async () => {
    const log = recorder();
    const table = new FunctionTable({
      table: () => ({ functions: [], routes: [], watch: [], warnings: [] }),
      defaults: { env: [['FROM', 'server']], timeoutMs: 5000 },
      workers: 1, watch: false, logger: log, lifecycle: async () => {},
    });
    await table.start();
    try {
      await table.deploy(def('echo', ECHO, { env: { GREETING: 'hi' }, timeout: '2s', httpTimeout: '1500ms' }), [{ route: '/echo/...', function: 'echo' }]);
      const first = table.route('/echo/anything')?.target.current;
      assert.ok(first, 'the deployed function serves its route');
      assert.deepEqual(first.fn.settings.env, [['FROM', 'server'], ['GREETING', 'hi']]);
      assert.equal(first.fn.timeoutMs, 2000);
      assert.deepEqual(first.fn.settings.http, { timeoutMs: 1500 });
      assert.equal(table.route('/other'), undefined);

      await table.deploy(def('echo', ECHO, { env: { GREETING: 'hello' } }), [{ route: '/echo/...', function: 'echo' }]);
      const second = table.route('/echo')?.target.current;
      assert.ok(second && second !== first, 'new settings load a new version');
      assert.deepEqual(second.fn.settings.env, [['FROM', 'server'], ['GREETING', 'hello']]);
      assert.equal(second.fn.timeoutMs, 5000, 'a setting the body no longer gives falls back to the server default');
      assert.equal(first.retired, true, 'the old version is retired');

      await table.retire('echo');
      assert.equal(table.route('/echo'), undefined);
      assert.equal(table.size, 0);
      assert.ok(log.lines.includes('function removed'));
    } finally {
      await table.close();
    }
  });

  it('keeps a function whose module cannot load, with its error, and serves the others', async () => {
    const table = new FunctionTable({
      table: () => ({
        functions: [def('gone', '/nonexistent/gone.wasm', {}), def('echo', ECHO, {})],
        routes: [{ route: '/gone', function: 'gone' }, { route: '/echo', function: 'echo' }],
        watch: [], warnings: [],
      }),
      defaults: {}, workers: 1, watch: false, logger: recorder(), lifecycle: async () => {},
    });
    await table.start();
    try {
      assert.match(table.failed()['gone'] ?? '', /gone\.wasm/);
      assert.equal(table.route('/gone')?.target.current, undefined);
      assert.ok(table.route('/echo')?.target.current);
    } finally {
      await table.close();
    }
  });
});

describe('functionSpecFromBody', () => {
  it('takes the keys of every other source, and names the key and the source of a bad one', () => {
    const spec = functionSpecFromBody({ kind: 'capsule-2', allowedHosts: 'a.example, b.example', maxMemory: '64MiB', cacheMaxEntries: 7, kv: 'memory' }, 'PUT /functions/x');
    assert.deepEqual(spec.allowedHosts, ['a.example', 'b.example']);
    assert.equal(spec.maxMemoryBytes, 64 * 1024 * 1024);
    assert.deepEqual(spec.capabilities, { cache: { maxEntries: 7 }, kv: 'memory' });
    assert.throws(() => functionSpecFromBody({ bogus: 1 }, 'PUT /functions/x'), /PUT \/functions\/x: unknown key "bogus"/);
    assert.throws(() => functionSpecFromBody({ httpTimeout: 'soon' }, 'PUT /functions/x'), /PUT \/functions\/x: "httpTimeout": "soon" is not a duration/);
    assert.throws(() => functionSpecFromBody({ kv: 'disk' }, 'PUT /functions/x'), /PUT \/functions\/x: "kv" must be one of memory, redis/);
    assert.throws(() => functionSpecFromBody([], 'PUT /functions/x'), /PUT \/functions\/x: expected a map of settings/);
  });
});

describe('a bad setting in a file beside a module', { skip: missing(ECHO) }, () => {
  it('names the file and the key, for capsule run as for serve --functions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsule-spec-'));
    copyFileSync(ECHO, join(dir, 'fn.wasm'));
    writeFileSync(join(dir, 'fn.capsule.yaml'), 'httpTimeout: soon\n');
    const run = await runCapsule(['run', join(dir, 'fn.wasm'), 'x']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /fn\.capsule\.yaml: "httpTimeout": "soon" is not a duration/);
    const serve = await runCapsule(['serve', `--functions=${dir}`, '--http-port=0', '--no-watch']);
    assert.equal(serve.code, 2);
    assert.match(serve.stderr, /fn\.capsule\.yaml: "httpTimeout": "soon" is not a duration/);
  });
});
