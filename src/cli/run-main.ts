/**
 * Entry point of `capsule run` alone: what bin/launch.js runs for a command line starting with
 * `run` when the one-file bundle of it exists (dist/bundle/run.js, scripts/build-bundle.ts).
 * It reaches neither program.ts nor the modules of the other commands, so the bundle holds only
 * what a run needs (docs/performance.md "Start-up"); from the sources, main.ts runs `run` with
 * the whole program.
 */
import { parseCommandLine } from './parse.ts';

/**
 * The config-file keys of every command of the whole program, written into the bundle by
 * scripts/build-bundle.ts (the bundle holds no other command to read them from).
 */
declare const CAPSULE_CONFIG_KEYS: readonly string[] | undefined;

/**
 * Runs `capsule run …` (`argv[0]` is `run`, or a Go spelling of it).
 * @param argv arguments after the executable
 */
export async function main(argv: string[], o: { bin: string }): Promise<void> {
  const keys = typeof CAPSULE_CONFIG_KEYS === 'undefined' ? [] : CAPSULE_CONFIG_KEYS;
  await parseCommandLine(argv, o.bin, async () => {
    const { buildRunProgram } = await import('./module-command.ts');
    return (exit) => buildRunProgram(exit, keys);
  });
}
