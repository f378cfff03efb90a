/**
 * Entry point of the one-shot commands alone, `capsule run` and `capsule call`: what
 * bin/launch.js runs for a command line starting with `run` or `call` when the one-file bundle
 * of it exists (dist/bundle/run.cjs, scripts/build-bundle.ts). It reaches neither program.ts nor
 * the modules of the other commands, so the bundle holds only what those two need (most of it
 * the engine both use; docs/performance.md "Start-up"); from the sources, main.ts runs them with
 * the whole program.
 */
import { parseCommandLine } from './parse.ts';

/**
 * The config-file keys of every command of the whole program, written into the bundle by
 * scripts/build-bundle.ts (the bundle holds no other command to read them from).
 */
declare const CAPSULE_CONFIG_KEYS: readonly string[] | undefined;

/**
 * Runs `capsule run …` (`argv[0]` is `run`, or a Go spelling of it) or `capsule call …`.
 * @param argv arguments after the executable
 */
export async function main(argv: string[], o: { bin: string }): Promise<void> {
  const keys = typeof CAPSULE_CONFIG_KEYS === 'undefined' ? [] : CAPSULE_CONFIG_KEYS;
  await parseCommandLine(argv, o.bin, async (normalised) => {
    if (normalised[0] === 'call') return (await import('./call.ts')).buildCallProgram;
    const { buildRunProgram } = await import('./module-command.ts');
    return (exit) => buildRunProgram(exit, keys);
  });
}
