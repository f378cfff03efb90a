/**
 * Async host functions: the guest is suspended with JSPI while the host awaits, then resumes
 * with the result written through the return-buffer protocol (capsule-abi.md §2.4).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Guest } from '../src/abi/guest.ts';
import { buildHostImports, type CallState } from '../src/abi/host-imports.ts';
import { Wasi } from '../src/wasi/preview1.ts';
import type { HostFunction } from '../src/capabilities/types.ts';
import { fixture } from './helpers.ts';

describe('JSPI', () => {
  it('suspends the guest on an async host function and resumes it with the value', async () => {
    const asyncGetEnv: HostFunction = {
      name: 'hostGetEnv', generations: [2], params: ['s'], returns: true, frame: 'raw', async: true,
      async run(_ctx, [name]) {
        await new Promise((r) => setTimeout(r, 20));
        return { ok: true, value: `later:${new TextDecoder().decode(name as Uint8Array)}` };
      },
    };
    const state: CallState = {};
    const { imports, async } = buildHostImports([asyncGetEnv], 2, state);
    assert.equal(async, true);
    const wasi = new Wasi();
    const module = new WebAssembly.Module(readFileSync(fixture('gen2-env')));
    const instance = new WebAssembly.Instance(module, { env: imports as WebAssembly.ModuleImports, wasi_snapshot_preview1: wasi.imports as unknown as WebAssembly.ModuleImports });
    const guest = new Guest(instance, undefined, true);
    state.guest = guest;
    state.ctx = {} as never;
    let resumed = false;
    const pending = guest.call('callHandle', ...guest.pass('KEY')).then((r) => {
      resumed = true;
      return r;
    });
    assert.equal(resumed, false, 'the call returned a promise: the guest is suspended');
    const bytes = guest.unpack(await pending);
    assert.equal(new TextDecoder().decode(bytes), 'Slater:KEY');
  });
});
