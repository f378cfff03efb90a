/**
 * Entry point of `capsule serve` alone (and of the `capsule-http` bin when it serves): what
 * bin/launch.js runs for such a command line when the one-file bundle of it exists
 * (dist/bundle/serve.cjs, scripts/build-bundle.ts). Like run-main.ts it reaches neither
 * program.ts nor the modules of the other commands, so a server starts from one file instead of
 * ~100 modules (docs/performance.md "Start-up"); from the sources, main.ts serves with the whole
 * program.
 */
import { BIN_COMMANDS, normaliseArgv } from './legacy.ts';
import { parseCommandLine } from './parse.ts';

/** The config-file keys of every command of the whole program, written into the bundle (run-main.ts). */
declare const CAPSULE_CONFIG_KEYS: readonly string[] | undefined;

/**
 * Whether this entry runs the command line: it is `capsule serve` once the Go spellings are
 * normalised (`capsule -wasm=x -mode=http`, `capsule-http --wasm=x`), and not `--faas` (the FaaS
 * main process) nor another command of `capsule-http`. bin/launch.js runs the whole program otherwise.
 * @param argv arguments after the executable
 * @param bin the bin's name (legacy.ts BIN_COMMANDS)
 */
export function serves(argv: string[], bin: string): boolean {
  return normaliseArgv(argv, BIN_COMMANDS[bin])[0] === 'serve';
}

/**
 * Runs `capsule serve …` (a command line `serves` accepted).
 * @param argv arguments after the executable
 */
export async function main(argv: string[], o: { bin: string }): Promise<void> {
  const keys = typeof CAPSULE_CONFIG_KEYS === 'undefined' ? [] : CAPSULE_CONFIG_KEYS;
  await parseCommandLine(argv, o.bin, async () => {
    const { buildServeProgram } = await import('./serve.ts');
    return (exit) => buildServeProgram(exit, keys);
  });
}
