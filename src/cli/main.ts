/**
 * Entry point of the `capsule` bins (bin/launch.js): normalises the Go spellings (legacy.ts),
 * parses the command line with the program of program.ts and turns failures into exit codes
 * (conventions.md §4): 0 success, 1 guest failure, 2 usage error; WASI commands pass their own
 * exit code through.
 *
 * Start-up (docs/performance.md): this module loads almost nothing before it has read the
 * command line; then it loads program.ts, whose actions import what they need. `capsule run`
 * and `capsule call` start no worker thread: their call runs in this thread (engine/inline.ts).
 */
import { CapsuleError } from '../base/errors.ts';
import { BIN_COMMANDS, normaliseArgv } from './legacy.ts';

/**
 * Entry point of the `capsule` and `capsule-http` bins.
 * @param argv arguments after the executable
 */
export async function main(argv: string[], o: { bin: string }): Promise<void> {
  const exit = (code: number) => {
    process.exitCode = code;
    // let stdout/stderr drain, then leave even if a handle lingers
    setImmediate(() => process.exit(code));
  };
  const normalised = normaliseArgv(argv, BIN_COMMANDS[o.bin]);
  const [{ buildProgram }, { CommanderError }] = await Promise.all([import('./program.ts'), import('commander')]);
  const program = buildProgram(exit);
  if (o.bin !== 'capsule') program.name(o.bin);
  try {
    if (normalised.length === 0) {
      program.outputHelp();
      exit(2);
      return;
    }
    const unknownMode = normalised.find((a) => a.startsWith('--unknown-mode='));
    if (unknownMode) throw new CapsuleError('USAGE', `-mode=${unknownMode.split('=')[1]}: expected cli, http, nats or mqtt`);
    await program.parseAsync(normalised, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      exit(e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? 0 : 2);
      return;
    }
    if (e instanceof CapsuleError) {
      process.stderr.write(`❌ ${e.message}\n`);
      exit(e.code === 'USAGE' ? 2 : 1);
      return;
    }
    process.stderr.write(`❌ ${(e as Error).stack ?? String(e)}\n`);
    exit(1);
  }
}
