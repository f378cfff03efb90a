// The code a one-shot `capsule run` loads, in few files (docs/performance.md, "Start-up"):
// esbuild bundles
//   - src/engine/worker.ts and the ~65 engine, ABI and capability modules it imports into
//     dist/bundle/worker.js: a worker thread loads one module instead of ~65 (up ~30 ms sooner);
//   - src/cli/main.ts into dist/bundle/cli.js with chunks (code splitting keeps every dynamic
//     import lazy, so `run` loads neither fastify nor pino nor the brokers): bin/launch.js runs
//     it for `capsule run` (~40 ms less CPU than ~110 separate modules);
// npm packages stay outside (loaded from node_modules), and dist/bundle/inputs.json lists the
// sources they were made from. Run by `npm run build` (the package) and scripts/setup.sh (a
// clone). In a clone a bundle is used only while it is newer than every source it holds
// (src/engine/worker-entry.ts, bin/launch.js), else the sources. The folder is two directories
// below the root, like src/<dir>/, so that `new URL('../../package.json', import.meta.url)` and
// the like resolve the same.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist/bundle');
rmSync(out, { recursive: true, force: true }); // chunks of an earlier build have other names
mkdirSync(out, { recursive: true });
const common: BuildOptions = {
  bundle: true, platform: 'node', target: 'node24', format: 'esm', packages: 'external',
  metafile: true, logLevel: 'warning', legalComments: 'none',
};
const results = await Promise.all([
  build({ ...common, entryPoints: [join(root, 'src/engine/worker.ts')], outfile: join(out, 'worker.js') }),
  build({ ...common, entryPoints: { cli: join(root, 'src/cli/main.ts') }, outdir: out, splitting: true, chunkNames: 'chunk-[hash]' }),
]);
const inputs = [...new Set(results.flatMap((r) => Object.keys(r.metafile!.inputs)))]
  .map((p) => relative(root, join(root, p)).replaceAll('\\', '/'));
writeFileSync(join(out, 'inputs.json'), `${JSON.stringify({ inputs }, null, 1)}\n`);
// stdout belongs to `npm pack --json` (prepack runs this)
process.stderr.write(`build:bundle: dist/bundle/worker.js, dist/bundle/cli.js (${inputs.length} sources)\n`);
