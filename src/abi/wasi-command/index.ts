/**
 * WASI preview1 commands (module kind `wasi`, wasi-cgi.md §1, §10): a module that exports
 * `_start` and imports only from `wasi_snapshot_preview1`, run like a local program.
 *
 * CLI (`capsule run m.wasm args…`): argv = [module file name, ...args], stdin = `input.stdin`
 * when given, else the process's standard input; environment = the function's configured
 * variables; preopens = its mounts. The result is the exit code: `_start` returning = 0,
 * `proc_exit(n)` = n, a trap = 134 with the trap message as `text` (the CLI prints failure text
 * on stderr). The deadline (exit 124) is the pool's. HTTP (CGI) is not served yet.
 */
import { CapsuleError } from '../../engine/errors.ts';
import type { CliOutput, InvocationOutput } from '../../engine/invocation.ts';
import { WasiExit } from '../../wasi/preview1.ts';
import type { Abi } from '../types.ts';

/** Exit code of a trapping command (128 + SIGABRT, as a native program that aborts). */
export const TRAP_EXIT_CODE = 134;

const encoder = new TextEncoder();

/** Whether a thrown value is a WebAssembly trap (including stack exhaustion). */
function isTrap(e: unknown): e is Error {
  return e instanceof WebAssembly.RuntimeError || (e instanceof RangeError && /call stack/i.test(e.message));
}

export const wasiCommand: Abi = {
  kinds: ['wasi'],
  generation: () => undefined,
  check(parsed, _detection, name) {
    const start = parsed.exports.find((e) => e.name === '_start' && e.kind === 'function');
    if (!start) {
      const fns = parsed.exports.filter((e) => e.kind === 'function').map((e) => e.name);
      throw new CapsuleError('BAD_MODULE', `${name}: a WASI command must export _start (a () -> () function); the module exports [${fns.join(', ')}] (wasi-cgi.md §1)`);
    }
    if (start.type && (start.type.params.length > 0 || start.type.results.length > 0)) {
      throw new CapsuleError('BAD_MODULE', `${name}: _start must be () -> (); it is (${start.type.params.join(', ')}) -> (${start.type.results.join(', ')})`);
    }
    const hasMemory = parsed.exports.some((e) => e.kind === 'memory') || parsed.imports.some((i) => i.kind === 'memory');
    if (!hasMemory) throw new CapsuleError('BAD_MODULE', `${name}: a WASI command must export its memory (wasi-cgi.md §1)`);
  },
  async initialise() {
    // Commands start in `_start` itself, called by `invoke`.
  },
  async invoke(rt, input, meta): Promise<InvocationOutput> {
    if (input.type === 'http') throw new CapsuleError('BAD_MODULE', 'WASI commands over HTTP (CGI) are not supported yet');
    if (input.type === 'lifecycle') return { type: 'lifecycle', called: false };
    if (input.type === 'message') throw new CapsuleError('BAD_MODULE', 'WASI commands cannot handle broker messages; use a Capsule module (callHandleMessage)');
    const args = [rt.spec.name, ...input.args];
    return rt.withGuest(meta, async (guest): Promise<CliOutput> => {
      try {
        await guest.call('_start');
        return { type: 'cli', exitCode: 0, text: undefined };
      } catch (e) {
        if (e instanceof WasiExit) return { type: 'cli', exitCode: e.code, text: undefined };
        if (isTrap(e)) return { type: 'cli', exitCode: TRAP_EXIT_CODE, text: encoder.encode(`the function trapped: ${e.message}`) };
        throw e;
      }
    }, { wasi: { args, stdin: input.stdin ?? 'inherit' } });
  },
};
