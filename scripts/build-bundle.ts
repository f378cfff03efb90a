// The code a one-shot `capsule run` or `capsule call` loads, in few files (docs/performance.md,
// "Start-up"): esbuild bundles
//   - src/engine/worker.ts and the ~65 engine, ABI and capability modules it imports into
//     dist/bundle/worker.js: a worker thread loads one module instead of ~65 (up ~30 ms sooner);
//     src/triggers/http/thread.ts likewise into dist/bundle/http-thread.js (`serve --http-threads`);
//   - src/cli/run-main.ts, the one-shot commands `capsule run` and `capsule call` alone, into one
//     CommonJS file, dist/bundle/run.cjs: bin/launch.js runs it for both, through vm.Script with
//     a V8 code cache it makes after a run (CommonJS, so that it can be run that way;
//     `import.meta.url` becomes the file's URL). Its graph holds no other command (program.ts is
//     not in it), so
//     one file loads none of fastify, pino or the brokers: an npm package imported statically by
//     a module of the graph would load at start, which is why such imports stay dynamic there
//     (cli-progress, redis, NATS, MQTT). One file starts ~15 ms sooner than the same code in
//     ~20 chunks (each a module to resolve and link);
// npm packages stay outside (loaded from node_modules), and dist/bundle/inputs.json lists the
// sources they were made from. Run by `npm run build` (the package) and scripts/setup.sh (a
// clone). In a clone a bundle is used only while it is newer than every source it holds
// (src/engine/worker-entry.ts, bin/launch.js), else the sources. The folder is two directories
// below the root, like src/<dir>/, so that `new URL('../../package.json', import.meta.url)` and
// the like resolve the same.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions, type Plugin } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist/bundle');
rmSync(out, { recursive: true, force: true }); // chunks of an earlier build have other names
mkdirSync(out, { recursive: true });
const common: BuildOptions = {
  bundle: true, platform: 'node', target: 'node24', format: 'esm', packages: 'external',
  metafile: true, logLevel: 'warning', legalComments: 'none',
};
/**
 * The run bundle holds commander, one CommonJS package whose files cost ~5 ms to resolve and
 * load at start; every other package stays outside (imported dynamically where it is used).
 * Commander's node:child_process (for executable subcommands, which Capsule has none of) is
 * loaded at its first use: at start it costs ~3 ms (net, dgram, streams).
 */
const COMMANDER = /[\\/]node_modules[\\/]commander[\\/]/;
const runPackages: Plugin = {
  name: 'run-packages',
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (a) => (COMMANDER.test(a.importer) ? { path: 'child_process', namespace: 'lazy-builtin' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, () => ({
      contents: 'module.exports = new Proxy({}, { get: (_, k) => process.getBuiltinModule("node:child_process")[k] });', loader: 'js',
    }));
    b.onResolve({ filter: /^[^./]/ }, (a) => (a.path === 'commander' || COMMANDER.test(a.importer) ? undefined : { path: a.path, external: true }));
  },
};
// the run bundle declares `run` alone: the other commands' config-file keys are written into it
const { buildProgram } = await import('../src/cli/program.ts');
const { allConfigKeys } = await import('../src/functions/config-file.ts');
const configKeys = [...allConfigKeys(buildProgram(() => {}))].sort();
const results = await Promise.all([
  build({ ...common, entryPoints: [join(root, 'src/engine/worker.ts')], outfile: join(out, 'worker.js') }),
  build({
    ...common, format: 'cjs', packages: undefined, plugins: [runPackages], entryPoints: [join(root, 'src/cli/run-main.ts')], outfile: join(out, 'run.cjs'),
    define: { 'import.meta.url': '__capsuleModuleUrl', CAPSULE_CONFIG_KEYS: JSON.stringify(configKeys) },
    banner: { js: 'const __capsuleModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
  }),
  // an HTTP thread of `capsule serve --http-threads` (triggers/http/threads.ts picks it like the worker's)
  build({ ...common, entryPoints: [join(root, 'src/triggers/http/thread.ts')], outfile: join(out, 'http-thread.js') }),
]);
// the run bundle would load at start every package it imports statically
const eager = Object.values(results[1].metafile!.outputs).flatMap((o) => o.imports)
  .filter((i) => i.external && (i.kind === 'import-statement' || i.kind === 'require-call') && !i.path.startsWith('node:'));
if (eager.length > 0) throw new Error(`dist/bundle/run.cjs would load ${[...new Set(eager.map((i) => i.path))].join(', ')} at every start: import it dynamically where it is used`);
// run.cjs runs as a vm.Script (bin/launch.js), which has no import() of its own: its import()
// of packages call the launcher's, passed in as __capsuleImport
const runFile = join(out, 'run.cjs');
const dynamic = new Set(Object.values(results[1].metafile!.outputs).flatMap((o) => o.imports).filter((i) => i.external && i.kind === 'dynamic-import').map((i) => i.path));
let replaced = 0;
writeFileSync(runFile, readFileSync(runFile, 'utf8').replace(/\bimport\(("[^"]+")\)/g, (all, spec: string) => (dynamic.has(JSON.parse(spec) as string) ? (replaced++, `__capsuleImport(${spec})`) : all)));
if (replaced < dynamic.size) throw new Error(`dist/bundle/run.cjs: ${replaced} of its import() of ${[...dynamic].join(', ')} were redirected to the launcher's`);
const inputs = [...new Set(results.flatMap((r) => Object.keys(r.metafile!.inputs)))].filter((p) => !/^(<define:|lazy-builtin:)/.test(p)) // esbuild's inputs that are no file
  .map((p) => relative(root, join(root, p)).replaceAll('\\', '/'));
writeFileSync(join(out, 'inputs.json'), `${JSON.stringify({ inputs }, null, 1)}\n`);
// stdout belongs to `npm pack --json` (prepack runs this)
process.stderr.write(`build:bundle: dist/bundle/worker.js, dist/bundle/run.cjs, dist/bundle/http-thread.js (${inputs.length} sources)\n`);
