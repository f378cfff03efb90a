// Shared by the bins: Capsule needs Node.js 24.20+ (JSPI; in a clone also TypeScript type stripping). When started
// by an older Node, re-run the bin with the Node 24 that `npm install` put in node_modules, as a
// child that stands for this process: SIGTERM, SIGINT and SIGHUP are passed on to it (`kill PID`
// of a server stops the real server), and this process ends the way the child did (its exit
// code, or the same signal).
//
// The `--` before the script (here and in the bins' `#!/usr/bin/env -S node --` line) ends
// Node's own options: Node looks for `--env-file` among *all* its arguments up to the first
// `--`, even after the script, and would read (or fail on) a guest's `--env-file` itself.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import nodeModule from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FORWARDED = /** @type {const} */ (['SIGTERM', 'SIGINT', 'SIGHUP']);
/**
 * Every bin answers a lone `--version` / `-v` and exits 0: the CLI's bins (`capsule`,
 * `capsule-http`, the service aliases) with the bare version, printed here; the Go clients with
 * their own line (`caps version`, `capsctl --version`), through these arguments.
 * @type {Record<string, string[]>}
 */
const OWN_VERSION_ARGS = { 'faas/clients/caps': ['version'], 'faas/gen2/capsctl': ['--version'] };

/** The commands dist/bundle/run.cjs holds (src/cli/run-main.ts): one-shot, where start-up counts. */
const ONE_SHOT = new Set(['run', 'call']);
/** ms after a server's bundle loaded when its code cache is made (loadRunBundle): started, and usually idle. */
const IDLE_CACHE_MS = 2000;

/**
 * @param {string} bin the bin's name (src/cli/legacy.ts BIN_COMMANDS)
 * @param {string} [entry] the program, a path under src/ without extension (default the CLI,
 *   `cli/main`; `capsctl` runs `faas/gen2/capsctl`); it exports `main(argv, {bin})`
 */
export async function launch(bin, entry = 'cli/main') {
  const major = Number(process.versions.node.split('.')[0]);
  // Async host functions suspend the guest with JSPI (WebAssembly.Suspending), on by default
  // from Node 24.20 (and 25): an earlier 24 runs plain guests but garbles every awaited host call.
  const jspi = typeof (/** @type {{ Suspending?: unknown }} */ (WebAssembly)).Suspending === 'function';
  if (major < 24 || !jspi) {
    const local = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
    if (!existsSync(local)) {
      const hint = existsSync(new URL('../scripts/setup.sh', import.meta.url)) ? 'run `npm run setup` to install one locally' : 'see https://nodejs.org';
      process.stderr.write(`${bin} needs Node.js 24.20 or newer (this is ${process.version}); ${hint}.\n`);
      process.exit(2);
    }
    await relaunch(local, [process.argv[1] ?? '', ...process.argv.slice(2)]);
    return;
  }
  let args = process.argv.slice(2);
  if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
    const own = OWN_VERSION_ARGS[entry];
    if (own) {
      args = own; // the Go clients print their version their own way
    } else {
      // the version alone loads nothing else (src/base/version.ts reads the same file)
      const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
      process.stdout.write(`${version}\n`);
      return;
    }
  }
  // Node's module compile cache (<tmpdir>/node-compile-cache; NODE_COMPILE_CACHE=dir moves it,
  // NODE_DISABLE_COMPILE_CACHE=1 turns it off): later starts neither strip the TypeScript of a
  // clone again nor compile the CLI's modules again (docs/performance.md, "Start-up").
  // (a namespace lookup: Node < 22.1 has no enableCompileCache, and this file must load there to relaunch)
  nodeModule.enableCompileCache?.();
  // A reader that goes away (`capsule --help | head -1`) ends the output, not in a stack trace:
  // stream writes (help, tables) fail with EPIPE asynchronously; exit as quietly as `git | head`.
  process.stdout.on('error', (e) => {
    if (/** @type {NodeJS.ErrnoException} */ (e).code === 'EPIPE') process.exit(0);
  });
  const bundled = entry === 'cli/main' ? bundledMain(bin, args) : undefined;
  const { main } = bundled ?? await import(cliEntry(entry));
  await main(args, { bin });
}

/**
 * The bundle of the command line's command, loaded, when there is a fresh one (runBundle):
 * dist/bundle/run.cjs for `run` and `call`, dist/bundle/serve.cjs for `capsule serve` and what
 * `capsule-http` serves (its `serves` tells, once the Go spellings are normalised: `-mode=http`,
 * not `--faas`). Else undefined: the whole program.
 * @param {string} bin
 * @param {string[]} args
 * @returns {{ main: (argv: string[], o: { bin: string }) => Promise<void> } | undefined}
 */
function bundledMain(bin, args) {
  const first = args[0] ?? '';
  if (ONE_SHOT.has(first)) {
    const bundle = runBundle('run.cjs');
    return bundle ? loadRunBundle(bundle, 'run', 'exit') : undefined;
  }
  if (first === 'serve' || bin === 'capsule-http' || args.some((a) => /^--?mode(=http)?$/.test(a))) {
    // the FaaS main process (`capsule-http --faas`) is never the bundle's: not even loaded for it
    // (a stray `--faas` elsewhere only costs the bundle's speed, the whole program runs it right)
    if (args.some((a) => /^--?faas(=|$)/.test(a))) return undefined;
    const bundle = runBundle('serve.cjs');
    if (!bundle) return undefined;
    // a --help of serve or capsule-http makes no cache: V8 would take that thin one for good, and
    // every server start after it would compile what serving runs again
    const when = args.some((a) => /^(-h|--help|help)$/.test(a)) ? 'never' : 'idle';
    const loaded = /** @type {ReturnType<typeof loadRunBundle> & { serves(argv: string[], bin: string): boolean }} */ (loadRunBundle(bundle, 'serve', when));
    return loaded.serves(args, bin) ? loaded : undefined;
  }
  return undefined;
}

/**
 * The program's entry: the TypeScript sources in a clone (Node strips their types), else the
 * JavaScript build in dist/ — the published package ships no sources, and Node does not strip
 * types under node_modules. A clone never runs a stale dist/ this way.
 * @param {string} entry path under src/ (and dist/) without extension
 * @returns {string}
 */
function cliEntry(entry) {
  const source = new URL(`../src/${entry}.ts`, import.meta.url);
  return existsSync(source) ? source.href : new URL(`../dist/${entry}.js`, import.meta.url).href;
}

/**
 * A CLI bundle when scripts/build-bundle.ts made one (dist/bundle/run.cjs: `capsule run` and
 * `capsule call` in one file, ~40 ms less to load than their ~90 modules; dist/bundle/serve.cjs:
 * `capsule serve`; docs/performance.md "Start-up"):
 * in a clone only while it is newer than every source it was made from, as for the workers.
 * CAPSULE_BUNDLE=0 turns it off. The rule is src/engine/worker-entry.ts bundleIfFresh's,
 * written again here in JavaScript: importing that TypeScript file would load Node's type
 * stripper before the bundle that is there to avoid it.
 * @param {string} file the bundle's name in dist/bundle
 * @returns {string | undefined} its path
 */
function runBundle(file) {
  if (process.env.CAPSULE_BUNDLE === '0') return undefined;
  const root = fileURLToPath(new URL('../', import.meta.url));
  const bundle = `${root}dist/bundle/${file}`;
  try {
    const built = statSync(bundle).mtimeMs;
    if (existsSync(`${root}src`)) {
      const { inputs } = /** @type {{ inputs: string[] }} */ (JSON.parse(readFileSync(`${root}dist/bundle/inputs.json`, 'utf8')));
      for (const input of inputs) if (statSync(root + input).mtimeMs > built) return undefined;
    }
    return bundle;
  } catch {
    return undefined; // no bundle, or a source gone: the sources
  }
}

/**
 * Runs a CommonJS bundle of the CLI with a V8 code cache made after it ran: for `capsule run` /
 * `call` at exit (the first command to run with no cache makes it, for both), for `capsule
 * serve` at the first idle moment after its start (IDLE_CACHE_MS after loading, with the
 * functions of the start and of the first requests compiled), or at a clean exit (code 0) if that
 * comes first; never for a server's usage error or its --help (`never`), whose cache would hold
 * little of what serving runs and be kept, V8 accepting it, until the bundle changes.
 * Node's own compile cache is made when a module has just compiled, before it runs, so it holds
 * only the code V8 compiles eagerly: every function a run calls was compiled again at each
 * start. The cache made here holds them too (a run starts ~25 ms sooner). It is kept
 * where Node keeps its compile cache (`NODE_COMPILE_CACHE`, else <tmpdir>/node-compile-cache),
 * one file per bundle path and Node version, and remade when V8 rejects it (another bundle or
 * V8); `NODE_DISABLE_COMPILE_CACHE` turns it off, as it does Node's.
 * @param {string} file the bundle
 * @param {string} name its name in the cache file's (`capsule-<name>-<hash>.v8cache`)
 * @param {'exit' | 'idle' | 'never'} when when the cache is made
 * @returns {{ main: (argv: string[], o: { bin: string }) => Promise<void> }} its exports
 */
function loadRunBundle(file, name, when) {
  // loaded here: --version and the other commands do not need them
  const vm = process.getBuiltinModule('node:vm');
  const { tmpdir } = process.getBuiltinModule('node:os');
  const source = readFileSync(file, 'utf8');
  const cacheFile = process.env.NODE_DISABLE_COMPILE_CACHE ? undefined
    : join(process.env.NODE_COMPILE_CACHE || join(tmpdir(), 'node-compile-cache'), `capsule-${name}-${fnv1a(`${file}\0${process.version}`)}.v8cache`);
  let cachedData;
  try {
    if (cacheFile) cachedData = readFileSync(cacheFile);
  } catch {
    // none yet
  }
  // the bundle's import() of packages (scripts/build-bundle.ts) reach this module's: a
  // vm.Script has no import() of its own without an experimental flag
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __capsuleImport) { 'use strict'; ${source}\n})`, { filename: file, cachedData });
  if (cacheFile && (cachedData === undefined || script.cachedDataRejected)) {
    let written = false;
    const write = () => {
      if (written) return;
      written = true;
      try {
        mkdirSync(dirname(cacheFile), { recursive: true });
        const tmp = `${cacheFile}.${process.pid}`;
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cacheFile); // a run reading it meanwhile sees the old file or the new one
      } catch {
        // no cache then: the next run compiles as this one did
      }
    };
    if (when === 'exit') process.once('exit', write);
    if (when === 'idle') process.once('exit', (code) => code === 0 && write());
    // a server: once started (the ready line is out long before), not only at its exit, which a SIGKILL skips
    if (when === 'idle') setTimeout(write, IDLE_CACHE_MS).unref();
  }
  const mod = { exports: {} };
  const importPackage = (/** @type {string} */ specifier) => import(specifier);
  script.runInThisContext().call(mod.exports, mod.exports, nodeModule.createRequire(file), mod, file, dirname(file), importPackage);
  return /** @type {{ main: (argv: string[], o: { bin: string }) => Promise<void> }} */ (mod.exports);
}

/** FNV-1a of a string, 8 hex digits (a file name; node:crypto would cost ~4 ms to load). */
function fnv1a(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/**
 * Runs `node -- script args…` as a child with this process's stdio, forwards signals to it,
 * and exits like it.
 * @param {string} node
 * @param {string[]} args the script, then its arguments
 */
async function relaunch(node, args) {
  // loaded here: the common path (Node 24) never needs them, and every start pays for a module
  const [{ spawn }, { constants }] = await Promise.all([import('node:child_process'), import('node:os')]);
  const child = spawn(node, ['--', ...args], { stdio: 'inherit' });
  /** @type {Map<NodeJS.Signals, () => void>} */
  const handlers = new Map();
  for (const sig of FORWARDED) {
    const h = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    };
    handlers.set(sig, h);
    process.on(sig, h);
  }
  child.on('error', (e) => {
    process.stderr.write(`❌ cannot start ${node}: ${e.message}\n`);
    process.exit(2);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // end the same way: no handler of ours left for it, so the default action applies
      for (const [sig, h] of handlers) process.off(sig, h);
      process.kill(process.pid, signal);
      // a signal Node ignores (SIGPIPE) does not end us: exit as a shell reports it
      setImmediate(() => process.exit(128 + (constants.signals[signal] ?? 0)));
      return;
    }
    process.exit(code ?? 1);
  });
}
