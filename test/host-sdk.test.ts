/**
 * The host SDK as an embedder sees it: the package's entry (src/index.ts; the import by the
 * package name, from the built and packed package, is package.test.ts's), one function loaded and
 * invoked from the CLI and HTTP paths, errors with codes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CapsuleFunction, CapsuleError, type CliOutput, type HttpResponseOutput } from '../src/index.ts';
import { example, fixture, missing } from './helpers.ts';

describe('host SDK (the package entry)', () => {
  it('loads a module and invokes it as CLI and HTTP', { skip: missing(example('hello-you')) }, async () => {
    const fn = await CapsuleFunction.load({ path: example('hello-you') }, { timeoutMs: 5000, workers: 1 });
    try {
      assert.equal(fn.module.detection.kind, 'capsule-2');
      const { output } = await fn.invoke({
        type: 'http', method: 'POST', url: 'http://localhost/', headers: [['content-type', 'application/json']],
        body: new TextEncoder().encode('{"name":"Bob","age":42}'), remoteAddress: '127.0.0.1', remotePort: 0,
      });
      const res = output as HttpResponseOutput;
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(new TextDecoder().decode(res.body)), { message: 'Bob 42' });
    } finally {
      await fn.close();
    }
  });

  it('reports guest failures as CapsuleError with a code', async () => {
    const fn = await CapsuleFunction.load({ path: fixture('gen2-behaviours') }, { workers: 1, timeoutMs: 300 });
    try {
      const ok = await fn.invoke({ type: 'cli', params: new TextEncoder().encode('hello'), args: [] });
      assert.equal((ok.output as CliOutput).exitCode, 0);
      await assert.rejects(fn.invoke({ type: 'cli', params: new TextEncoder().encode('l'), args: [] }), (e: unknown) => e instanceof CapsuleError && e.code === 'TIMEOUT');
      await assert.rejects(fn.invoke({ type: 'cli', params: new TextEncoder().encode('t'), args: [] }), (e: unknown) => e instanceof CapsuleError && e.code === 'TRAP');
    } finally {
      await fn.close();
    }
  });
});
