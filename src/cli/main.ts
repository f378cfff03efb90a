/**
 * Entry point of the `capsule` bins (bin/launch.js): parses the command line with the program
 * of program.ts (parse.ts: Go spellings, exit codes).
 *
 * Start-up (docs/performance.md): this module loads almost nothing before it has read the
 * command line; then it loads program.ts, whose actions import what they need. The bundle of
 * `capsule run` starts from run-main.ts instead, which declares that command alone. `capsule
 * run` and `capsule call` start no worker thread: their call runs in this thread
 * (engine/inline.ts).
 */
import { parseCommandLine } from './parse.ts';

/**
 * Entry point of the `capsule` and `capsule-http` bins.
 * @param argv arguments after the executable
 */
export async function main(argv: string[], o: { bin: string }): Promise<void> {
  await parseCommandLine(argv, o.bin, async () => (await import('./program.ts')).buildProgram);
}
