/**
 * CLI trigger (`capsule run`): one invocation, its result on stdout, an exit code
 * (conventions.md §4): Capsule ABI modules 0 success, 1 guest failure (F / [ERR] result, trap,
 * deadline), 2 a `--handler` the module cannot honour; WASI commands pass their exit code through,
 * a trap exits 134, a deadline 124.
 */
import { isOutputClosed, writeAllSync } from '../../base/stdio.ts';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CliInput, CliOutput } from '../../base/invocation.ts';

export interface CliRunOptions {
  /** Raw bytes for the handler (`--params`, `--params-file`, or the joined positional args). */
  params?: Uint8Array;
  /** Positional arguments after the module. */
  args: string[];
  /**
   * `--handler`: the handler export to call, `handle` (callHandle) or `json` (callHandleJSON,
   * gen 2 only); absent = callHandle with the callHandleJSON fallback of capsule-abi.md §5.2.
   */
  handler?: 'handle' | 'json';
}

/** Why `--handler` does not apply to this module, or undefined when it does. */
function handlerMisuse(fn: CapsuleFunction, handler: CliRunOptions['handler']): string | undefined {
  if (handler === undefined) return undefined;
  const kind = fn.module.detection.kind;
  if (kind === 'wasi') return `--handler applies to Capsule modules; ${fn.module.name} is a WASI command (it runs _start)`;
  if (handler === 'json' && kind !== 'capsule-2') return `--handler json: ${fn.module.name} is a ${kind} module, which has no callHandleJSON (gen 2 only)`;
  return undefined;
}

/**
 * Runs the function once and writes its result. Never throws for guest failures.
 * @returns the process exit code
 */
export async function runCli(fn: CapsuleFunction, o: CliRunOptions): Promise<number> {
  const wasi = fn.module.detection.kind === 'wasi';
  const misuse = handlerMisuse(fn, o.handler);
  if (misuse) {
    writeAllSync(2, `❌ ${misuse}\n`);
    return 2;
  }
  const input: CliInput = { type: 'cli', params: o.params, args: o.args, ...(o.handler ? { handler: o.handler } : {}) };
  try {
    const { output } = await fn.invoke(input);
    const out = output as CliOutput;
    if (out.text !== undefined) {
      const fd = out.exitCode === 0 ? 1 : 2;
      writeAllSync(fd, out.text);
      writeAllSync(fd, '\n');
    }
    return out.exitCode;
  } catch (e) {
    if (isOutputClosed(e)) return 0; // the reader went away (`| head -1`): end quietly, as Unix tools do
    const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
    writeAllSync(2, `❌ ${err.message}\n`);
    if (wasi) return err.code === 'TIMEOUT' ? 124 : 134;
    return 1;
  }
}
