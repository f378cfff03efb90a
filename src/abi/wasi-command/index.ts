/**
 * WASI preview1 commands (module kind `wasi`, wasi-cgi.md): a module that exports `_start` (or a
 * configured entrypoint) and imports only from `wasi_snapshot_preview1`, plus the `env.log_i32` /
 * `env.log_string` compatibility imports (§2.4).
 *
 * CLI (`capsule run m.wasm args…`, §10): argv = [module file name, ...args], stdin =
 * `input.stdin` when given, else the process's standard input; environment = the function's
 * configured variables; preopens = its mounts. The result is the exit code: the entrypoint
 * returning = 0, `proc_exit(n)` = n, a trap = 134 with the trap message as `text` (the CLI prints
 * failure text on stderr). The deadline (exit 124) is the pool's.
 *
 * HTTP (CGI, §2–§8): a fresh instance per request; argv and environment from the request
 * (`cgi.ts`), stdin = the body, stdout captured (capped by `--max-output`) and turned into the
 * response, stderr to the function's log. `proc_exit(n ≠ 0)` → 500 `function exited with code
 * <n>`, a trap → 500 `function trapped: <message>`, a bad Status or an oversized header block →
 * 502: plain-text bodies, as §8 gives them, with `failure` set for the trigger's log and metrics.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { CliOutput, HttpRequestInput, HttpResponseOutput, InvocationMeta, InvocationOutput } from '../../base/invocation.ts';
import { formatBytes } from '../../base/units.ts';
import { WasiExit } from '../../wasi/preview1.ts';
import type { Guest } from '../guest.ts';
import type { Abi, EnvImport, GuestInstances } from '../types.ts';
import { cgiArgv, cgiEnv, parseCgiOutput, rawTarget, DEFAULT_MAX_OUTPUT_BYTES } from './cgi.ts';
import { concatBytes } from '../../base/bytes.ts';
import { checkExportTypes, functionExports, sig } from '../signatures.ts';

/** Exit code of a trapping command (128 + SIGABRT, as a native program that aborts). */
export const TRAP_EXIT_CODE = 134;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Whether a thrown value is a WebAssembly trap (including stack exhaustion). */
function isTrap(e: unknown): e is Error {
  return e instanceof WebAssembly.RuntimeError || (e instanceof RangeError && /call stack/i.test(e.message));
}

/** `[<module>]: <value>` lines of the Bendersky server's host functions (wasi-cgi.md §2.4). */
function logLine(moduleName: string, value: string): string {
  return `[${moduleName.replace(/\.wasm$/, '')}]: ${value}`;
}

/** wasi-cgi.md §2.4: `env.log_i32(v)` and `env.log_string(ptr, len)`, written to the function's log. */
const ENV_IMPORTS: Record<string, EnvImport> = {
  log_i32: {
    params: ['i32'], results: [],
    make: (state, moduleName) => (v: number) => {
      state.ctx?.log(logLine(moduleName, String(v | 0)));
    },
  },
  log_string: {
    params: ['i32', 'i32'], results: [],
    make: (state, moduleName) => (ptr: number, len: number) => {
      if (!state.guest || !state.ctx) return;
      state.ctx.log(logLine(moduleName, decoder.decode(state.guest.read(ptr, len))));
    },
  },
};

/**
 * Runs the entrypoint: `_initialize` first for a reactor driven through another export.
 * @returns the exit code (0 when the entrypoint returns)
 * @throws traps and host errors, unchanged
 */
async function runEntry(guest: Guest, entrypoint: string): Promise<number> {
  try {
    if (entrypoint !== '_start' && guest.has('_initialize')) await guest.call('_initialize');
    if (!guest.has(entrypoint)) throw new CapsuleError('BAD_MODULE', `the module does not export ${entrypoint} (the route's entrypoint)`);
    await guest.call(entrypoint);
    return 0;
  } catch (e) {
    if (e instanceof WasiExit) return e.code;
    throw e;
  }
}

/** Serves one HTTP request CGI-style (wasi-cgi.md §2–§8). */
async function invokeCgi(instances: GuestInstances, input: HttpRequestInput, meta: InvocationMeta): Promise<HttpResponseOutput> {
  const route = input.cgi ?? { route: '/...' };
  const max = route.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const chunks: Uint8Array[] = [];
  let size = 0;
  const stdout = (b: Uint8Array) => {
    size += b.length;
    // thrown through fd_write: unwinds the guest at once (it cannot catch a host exception)
    if (size > max) throw new CapsuleError('BAD_RESULT', `the function wrote more than ${formatBytes(max)} to its standard output (--max-output); the call was stopped`);
    chunks.push(b);
  };
  const text = (status: number, body: string, code: CapsuleError['code']): HttpResponseOutput => ({
    type: 'http', status, headers: [['Content-Type', 'text/plain; charset=utf-8']], body: encoder.encode(body), failure: { code, message: body },
  });
  return instances.withGuest(meta, async (guest, ctx): Promise<HttpResponseOutput> => {
    let exitCode: number;
    try {
      exitCode = await runEntry(guest, route.entrypoint ?? '_start');
    } catch (e) {
      if (isTrap(e)) return text(500, `function trapped: ${e.message}`, 'TRAP');
      throw e;
    }
    if (exitCode !== 0) return text(500, `function exited with code ${exitCode}`, 'TRAP');
    const out = chunks.length === 1 ? chunks[0]! : concatBytes(chunks, size);
    const parsed = parseCgiOutput(out);
    if (!parsed.ok) return text(502, parsed.error, 'BAD_RESULT');
    for (const note of parsed.notes) ctx.log(note);
    return parsed.response;
  }, {
    wasi: {
      args: cgiArgv(rawTarget(input.url), route.argv),
      env: cgiEnv(input, route, instances.spec.settings.env),
      stdin: input.body,
      stdout,
    },
  });
}

export const wasiCommand: Abi = {
  kinds: ['wasi'],
  imports: { wasi_snapshot_preview1: 'wasi-preview1', env: ENV_IMPORTS },
  titles: { wasi: 'WASI preview1 command' },
  expects: 'a WASI command (_start)',
  detect: (parsed) => (functionExports(parsed).has('_start') ? { kind: 'wasi', reason: 'exports _start and no Capsule entry point' } : undefined),
  // the entrypoint is checked when the route names it
  checkKind: (_parsed, kind) => ({ kind, reason: 'set by --kind' }),
  generation: () => undefined,
  check(parsed, _detection, name, options) {
    // A reactor driven through a route's entrypoint (spec README §1) needs that export instead.
    const entry = options?.entrypoint ?? '_start';
    const start = parsed.exports.find((e) => e.name === entry && e.kind === 'function');
    if (!start) {
      const fns = parsed.exports.filter((e) => e.kind === 'function').map((e) => e.name);
      throw new CapsuleError('BAD_MODULE', `${name}: a WASI command must export ${entry} (a () -> () function); the module exports [${fns.join(', ')}] (wasi-cgi.md §1)`);
    }
    checkExportTypes(parsed, { _initialize: sig([], []), [entry]: sig([], []) }, 'a WASI command', name);
    const hasMemory = parsed.exports.some((e) => e.kind === 'memory') || parsed.imports.some((i) => i.kind === 'memory');
    if (!hasMemory) throw new CapsuleError('BAD_MODULE', `${name}: a WASI command must export its memory (wasi-cgi.md §1)`);
  },
  async initialise() {
    // Commands start in their entrypoint, called by `invoke`.
  },
  async invoke(instances, input, meta): Promise<InvocationOutput> {
    if (input.type === 'http') return invokeCgi(instances, input, meta);
    if (input.type === 'lifecycle') return { type: 'lifecycle', called: false };
    if (input.type === 'message') throw new CapsuleError('BAD_MODULE', 'WASI commands cannot handle broker messages; use a Capsule module (callHandleMessage)');
    const args = [instances.spec.name, ...input.args];
    return instances.withGuest(meta, async (guest): Promise<CliOutput> => {
      try {
        return { type: 'cli', exitCode: await runEntry(guest, input.entrypoint ?? '_start'), text: undefined };
      } catch (e) {
        if (isTrap(e)) return { type: 'cli', exitCode: TRAP_EXIT_CODE, text: encoder.encode(`the function trapped: ${e.message}`) };
        throw e;
      }
    }, { wasi: { args, stdin: input.stdin ?? 'inherit' } });
  },
};
