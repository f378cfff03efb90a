/**
 * CLI trigger (`capsule run`): one invocation, its result on stdout, an exit code
 * (conventions.md §4): Capsule ABI modules 0 success, 1 guest failure (F / [ERR] result, trap,
 * deadline); WASI commands pass their exit code through, a trap exits 134, a deadline 124.
 */
import { isOutputClosed, writeAllSync } from '../../engine/stdio.ts';
import { CapsuleError } from '../../engine/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CliInput, CliOutput } from '../../engine/invocation.ts';

export interface CliRunOptions {
  /** Raw bytes for the handler (`--params`, `--params-file`, or the joined positional args). */
  params?: Uint8Array;
  /** Positional arguments after the module. */
  args: string[];
}

/**
 * Runs the function once and writes its result. Never throws for guest failures.
 * @returns the process exit code
 */
export async function runCli(fn: CapsuleFunction, o: CliRunOptions): Promise<number> {
  const wasi = fn.module.detection.kind === 'wasi';
  const input: CliInput = { type: 'cli', params: o.params, args: o.args };
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
