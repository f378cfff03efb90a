/**
 * Entry point of `capsule run` alone: what bin/launch.js runs for a command line starting with
 * `run` when the one-file bundle of it exists (dist/bundle/run.js, scripts/build-bundle.ts).
 * It reaches neither program.ts nor the modules of the other commands, so the bundle holds only
 * what a run needs (docs/performance.md "Start-up"); main.ts does the same from the sources.
 */
import { parseCommandLine } from './parse.ts';

/**
 * Runs `capsule run …` (`argv[0]` is `run`, or a Go spelling of it).
 * @param argv arguments after the executable
 */
export async function main(argv: string[], o: { bin: string }): Promise<void> {
  await parseCommandLine(argv, o.bin, async () => (await import('./module-command.ts')).buildRunProgram);
}
