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
//   - src/cli/serve-main.ts, `capsule serve` alone (and the `capsule-http` bin), likewise into
//     dist/bundle/serve.cjs: a server starts from one file instead of ~100 modules, with a V8
//     code cache made once it has started. Its modules keep the `import.meta.url` of their
//     source file (they find the workers' entry, the HTTP threads' and package.json beside it);
// npm packages stay outside (loaded from node_modules), and dist/bundle/inputs.json lists the
// sources they were made from. Run by `npm run build` (the package) and scripts/setup.sh (a
// clone). In a clone a bundle is used only while it is newer than every source it holds
// (src/engine/worker-entry.ts, bin/launch.js), else the sources. The folder is two directories
// below the root, like src/<dir>/, so that `new URL('../../package.json', import.meta.url)` and
// the like resolve the same.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions, type BuildResult, type Plugin } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const final = join(root, 'dist/bundle');
// Built beside it (same depth: the bundles find node_modules and src/ from where they run), then
// moved in file by file, each rename atomic: a server, or a test, that starts a worker meanwhile
// finds a whole old bundle or a whole new one, never none (`npm pack`'s prepack rebuilds a
// clone's bundles while other tests of the suite run).
const out = join(root, `dist/bundle.staging-${process.pid}`);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
process.on('exit', () => rmSync(out, { recursive: true, force: true }));
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
/** What the two CommonJS bundles of the CLI (run.cjs, serve.cjs) share: bin/launch.js runs them as a vm.Script. */
const cliBundle = (entry: string, outfile: string, plugins: Plugin[] = []): BuildOptions => ({
  ...common, format: 'cjs', packages: undefined, plugins: [runPackages, ...plugins], entryPoints: [join(root, entry)], outfile: join(out, outfile),
  define: { 'import.meta.url': '__capsuleModuleUrl', CAPSULE_CONFIG_KEYS: JSON.stringify(configKeys) },
  banner: { js: 'const __capsuleModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
});
/**
 * In the serve bundle each module's `import.meta.url` is the URL of its source file (src/…), as
 * when it runs from the sources: the modules that find a file beside themselves (the pool's
 * worker entry, the HTTP threads' entry, package.json) are at several depths under src/, which
 * one URL for the whole bundle (the run bundle's) cannot stand for. In the package (no src/)
 * those modules use the bundles of dist/bundle, found from the root as in a clone.
 */
const sourceUrls: Plugin = {
  name: 'source-urls',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (a) => ({
      contents: readFileSync(a.path, 'utf8').replaceAll('import.meta.url', `__capsuleSourceUrl(${JSON.stringify(relative(root, a.path).replaceAll('\\', '/'))})`),
      loader: 'ts',
    }));
  },
};
const serveOptions = cliBundle('src/cli/serve-main.ts', 'serve.cjs', [sourceUrls]);
serveOptions.banner = { js: 'const __capsuleSourceUrl = (p) => require("node:url").pathToFileURL(require("node:path").join(__dirname, "../..", p)).href;' };
const results = await Promise.all([
  build({ ...common, entryPoints: [join(root, 'src/engine/worker.ts')], outfile: join(out, 'worker.js') }),
  build(cliBundle('src/cli/run-main.ts', 'run.cjs')),
  // an HTTP thread of `capsule serve --http-threads` (triggers/http/threads.ts picks it like the worker's)
  build({ ...common, entryPoints: [join(root, 'src/triggers/http/thread.ts')], outfile: join(out, 'http-thread.js') }),
  build(serveOptions),
]);
/**
 * Checks a CLI bundle: the packages it imports statically load at every start of it, so only
 * those of `allowed` may be; its import() of packages are redirected to the launcher's
 * (`__capsuleImport`): a vm.Script has no import() of its own.
 */
function finishCliBundle(result: BuildResult, file: string, allowed: readonly string[]): void {
  const imports = Object.values(result.metafile!.outputs).flatMap((o) => o.imports);
  const eager = imports.filter((i) => i.external && (i.kind === 'import-statement' || i.kind === 'require-call') && !i.path.startsWith('node:') && !allowed.includes(i.path));
  if (eager.length > 0) throw new Error(`dist/bundle/${file} would load ${[...new Set(eager.map((i) => i.path))].join(', ')} at every start: import it dynamically where it is used`);
  const path = join(out, file);
  const dynamic = new Set(imports.filter((i) => i.external && i.kind === 'dynamic-import').map((i) => i.path));
  let replaced = 0;
  writeFileSync(path, readFileSync(path, 'utf8').replace(/\bimport\(("[^"]+")\)/g, (all, spec: string) => (dynamic.has(JSON.parse(spec) as string) ? (replaced++, `__capsuleImport(${spec})`) : all)));
  if (replaced < dynamic.size) throw new Error(`dist/bundle/${file}: ${replaced} of its import() of ${[...dynamic].join(', ')} were redirected to the launcher's`);
}
finishCliBundle(results[1], 'run.cjs', []);
// A server logs from its start (pino). In a CommonJS bundle a module's require() of a package
// runs when the module is first imported: yaml and smol-toml load with functions/routes.ts,
// which serve.ts imports for --functions and --routes only, prom-client with
// triggers/http/threads.ts (--http-threads) or at the first scrape (observability/metrics.ts);
// a plain serve loads none of them (test/cli-polish.test.ts).
finishCliBundle(results[3], 'serve.cjs', ['pino', 'prom-client', 'yaml', 'smol-toml']);
const inputs = [...new Set(results.flatMap((r) => Object.keys(r.metafile!.inputs)))].filter((p) => !/^(<define:|lazy-builtin:)/.test(p)) // esbuild's inputs that are no file
  .map((p) => relative(root, join(root, p)).replaceAll('\\', '/'));
writeFileSync(join(out, 'inputs.json'), `${JSON.stringify({ inputs }, null, 1)}\n`);
mkdirSync(final, { recursive: true });
const made = readdirSync(out);
for (const file of made) renameSync(join(out, file), join(final, file));
// chunks of an earlier build have other names
for (const file of readdirSync(final)) if (!made.includes(file)) rmSync(join(final, file), { recursive: true, force: true });
// stdout belongs to `npm pack --json` (prepack runs this)
process.stderr.write(`build:bundle: dist/bundle/worker.js, dist/bundle/run.cjs, dist/bundle/http-thread.js, dist/bundle/serve.cjs (${inputs.length} sources)\n`);
