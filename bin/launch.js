// Shared by the bins: Capsule needs Node.js 24.20+ (JSPI; in a clone also TypeScript type stripping). When started
// by an older Node, re-run the bin with the Node 24 that `npm install` put in node_modules, as a
// child that stands for this process: SIGTERM, SIGINT and SIGHUP are passed on to it (`kill PID`
// of a server stops the real server), and this process ends the way the child did (its exit
// code, or the same signal).
//
// The `--` before the script (here and in the bins' `#!/usr/bin/env -S node --` line) ends
// Node's own options: Node looks for `--env-file` among *all* its arguments up to the first
// `--`, even after the script, and would read (or fail on) a guest's `--env-file` itself.
import { existsSync, readFileSync, statSync } from 'node:fs';
import nodeModule from 'node:module';
import { fileURLToPath } from 'node:url';

const FORWARDED = /** @type {const} */ (['SIGTERM', 'SIGINT', 'SIGHUP']);
/**
 * Every bin answers a lone `--version` / `-v` and exits 0: the CLI's bins (`capsule`,
 * `capsule-http`, the service aliases) with the bare version, printed here; the Go clients with
 * their own line (`caps version`, `capsctl --version`), through these arguments.
 * @type {Record<string, string[]>}
 */
const OWN_VERSION_ARGS = { 'faas/clients/caps': ['version'], 'faas/gen2/capsctl': ['--version'] };

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
  const { main } = await import((entry === 'cli/main' && args[0] === 'run' && await bundledCli()) || cliEntry(entry));
  await main(args, { bin });
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
 * `capsule run`'s entry when scripts/build-bundle.ts made one (dist/bundle/run.js: `capsule run`
 * in one file, ~40 ms less to load than its ~110 modules; docs/performance.md "Start-up"): in
 * a clone only while it is newer than every source it was made from, as for the workers.
 * CAPSULE_BUNDLE=0 turns it off. The rule is src/engine/worker-entry.ts bundleIfFresh's,
 * written again here in JavaScript: importing that TypeScript file would load Node's type
 * stripper before the bundle that is there to avoid it.
 * @returns {Promise<string | undefined>}
 */
async function bundledCli() {
  if (process.env.CAPSULE_BUNDLE === '0') return undefined;
  const root = fileURLToPath(new URL('../', import.meta.url));
  const bundle = `${root}dist/bundle/run.js`;
  try {
    const built = statSync(bundle).mtimeMs;
    if (existsSync(`${root}src`)) {
      const { inputs } = /** @type {{ inputs: string[] }} */ (JSON.parse(readFileSync(`${root}dist/bundle/inputs.json`, 'utf8')));
      for (const input of inputs) if (statSync(root + input).mtimeMs > built) return undefined;
    }
    return new URL('../dist/bundle/run.js', import.meta.url).href;
  } catch {
    return undefined; // no bundle, or a source gone: the sources
  }
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
