/**
 * Parsing a command line with a program and turning failures into exit codes (conventions.md
 * §4): 0 success, 1 guest failure, 2 usage error; WASI commands pass their own exit code
 * through. Shared by main.ts (every command) and run-main.ts (`capsule run` alone).
 */
import type { Command } from 'commander';
import { CapsuleError } from '../base/errors.ts';
import { BIN_COMMANDS, normaliseArgv } from './legacy.ts';

/** Builds a program whose actions call `exit(code)` when done. */
export type ProgramBuilder = (exit: (code: number) => void) => Command;

/**
 * Normalises the Go spellings of `argv` (legacy.ts), builds the program `load` chooses for the
 * normalised command line, runs it, and sets the process's exit code.
 * @param argv arguments after the executable
 * @param load gives the program builder for the normalised arguments (loaded when called)
 */
export async function parseCommandLine(argv: string[], bin: string, load: (normalised: readonly string[]) => Promise<ProgramBuilder>): Promise<void> {
  const exit = (code: number) => {
    process.exitCode = code;
    // let stdout/stderr drain, then leave even if a handle lingers
    setImmediate(() => process.exit(code));
  };
  const normalised = normaliseArgv(argv, BIN_COMMANDS[bin]);
  const [build, { CommanderError }] = await Promise.all([load(normalised), import('commander')]);
  const program = build(exit);
  if (bin !== 'capsule') program.name(bin);
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
