/**
 * Entry of the single executable (`npm run build:binary`, scripts/build-binary.ts): the CLI
 * bundled into one CommonJS script that Node runs from inside its own binary (SEA). Named
 * `capsule-http`, the binary is that command.
 *
 * The worker pool's threads cannot load code from inside the binary: their module (the bundled
 * engine/worker.ts) is an asset of the executable, written once per content hash to
 * `$XDG_CACHE_HOME/capsule` (else `~/.cache/capsule`, else a fresh temporary folder) and checked
 * by that hash before each use. The bundle's `import.meta.url` is defined as a URL in that
 * folder (see `seaModuleUrl`), so the pool finds the worker beside it.
 */
import { main } from '../../src/cli/main.ts';
import { basename } from 'node:path';

const bin = basename(process.execPath).replace(/\.exe$/, '') === 'capsule-http' ? 'capsule-http' : 'capsule';
main(process.argv.slice(2), { bin }).catch((e: unknown) => {
  process.stderr.write(`❌ ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
