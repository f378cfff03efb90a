/**
 * `capsule serve` (and the `capsule-http` bin): one module over HTTP, or many (`--functions`,
 * `--routes`). program.ts declares it in the whole program; serve-main.ts alone in the program
 * of the serve bundle (dist/bundle/serve.cjs, docs/performance.md "Start-up"), which is why it
 * is a module of its own. The action imports the logger, the trigger and the engine when it runs.
 */
import type { Command } from 'commander';
import { CapsuleError } from '../base/errors.ts';
import type { FunctionOptions } from '../engine/function.ts';
import type { LoadedModule } from '../engine/load.ts';
import type { WorkerPool } from '../engine/pool.ts';
import { parseDuration, parseSize } from '../base/units.ts';
import { EXTISM_MODE_SETTING, functionOptionsOf, functionSpecFromFlags } from '../functions/spec.ts';
import { allConfigKeys } from '../functions/config-file.ts';
import { intFlag, listenFlags, listenOptions, logFormatOption, workersFlag, type ListenFlags } from './flags.ts';
import { settingOptions } from './capabilities.ts';
import { buildOneCommandProgram, functionOptions, loadFromFlags, moduleOptions, type ModuleFlags } from './module-command.ts';

/** The flags of `capsule serve`. */
type ServeFlags = ModuleFlags & ListenFlags & {
  stopAfter?: string; maxBody: string;
  maxConcurrency: string; reuse: boolean; fresh: boolean; workers?: string; grace: string;
  functions?: string; routes?: string; maxOutput: string; defaultHost?: string; watch?: boolean;
  modulesDir?: string; insecureAdmin: boolean; httpThreads: boolean;
};

/** The HTTP options every form of `capsule serve` shares, read from its flags. */
type ServeHttp = Parameters<typeof import('../triggers/http/server.ts').serveHttp>[1];

/** The program with only `capsule serve` (serve-main.ts, the serve bundle); program.ts adds the command to the whole program. */
export function buildServeProgram(exit: (code: number) => void, configKeys: readonly string[]): Command {
  return buildOneCommandProgram(serveCommand, exit, configKeys);
}

/** `capsule serve`: one module over HTTP, or many (`--functions`, `--routes`). */
export function serveCommand(program: Command, exit: (code: number) => void): void {
  const cmd = settingOptions(moduleOptions(program.command('serve').description('serve a module over HTTP (every method and path goes to its handler), or many with --functions / --routes')), [EXTISM_MODE_SETTING])
    .argument('[module]', 'module file (or use --wasm / --url)');
  listenFlags(cmd, '8080')
    .option('--stop-after <duration>', 'stop after this long without a request')
    .option('--max-body <size>', 'request body limit (larger → 413)', '10MiB')
    .option('--max-concurrency <n>', 'requests in progress at once (more → 503 + Retry-After)', '1024')
    .option('--reuse', 'gen-2 modules: keep long-lived instances (globals persist between calls)', false)
    .option('--fresh', 'Extism plugins: a fresh instance per call (default: one instance per worker thread)', false)
    .option('--workers <n>', 'worker threads running guests (default: CPU cores)')
    .option('--grace <duration>', 'time given to in-flight calls on SIGTERM', '10s')
    .option('--functions <dir>', 'serve every <name>.wasm of a directory at /<name> (and <name>/<revision>.wasm at /functions/<name>/<revision>)')
    .option('--routes <file>', 'serve the routes of a WAGI modules.toml or a Capsule routes YAML (--config x.toml works too)')
    .option('--max-output <size>', 'WASI commands: standard output limit per request (larger → 500)', '10MiB')
    .option('--default-host <host:port>', 'WASI commands: SERVER_NAME/SERVER_PORT when a request has no Host header (default: the listening address)')
    .option('--watch', 'one module: reload it when its .wasm changes (and rebuild it when the sources of its capsule new project change)')
    .option('--no-watch', '--functions/--routes: do not reload modules and routes when their files change (they do by default)')
    .option('--modules-dir <dir>', 'one module: POST /load-wasm-module may save modules only in this directory (default: the served module\'s directory)')
    .option('--insecure-admin', 'accept POST /load-wasm-module from any client when CAPSULE_RELOAD_TOKEN is not set (default: loopback only)', false)
    .option('--http-threads', 'one module: accept and parse HTTP in the --workers threads themselves, each running its own calls (Linux; README "HTTP threads")', false)
    .addOption(logFormatOption())
    .exitOverride()
    .action(async (positional: string | undefined, f: ServeFlags) => {
      const routesFile = f.routes ?? (f.config && /\.toml$/i.test(f.config) ? f.config : undefined);
      // one module on worker threads: the threads boot while the rest loads (the log, the
      // module, the HTTP server: docs/performance.md "Start-up"); the function runs on them
      const one = f.functions === undefined && routesFile === undefined && !f.httpThreads;
      const pool = one ? new (await import('../engine/pool.ts')).WorkerPool({ workers: workersFlag(f.workers) }) : undefined;
      let code: number;
      try {
        code = await serve(program, positional, f, routesFile, pool);
      } finally {
        await pool?.close(); // the function does not own it (engine/function.ts): closed here
      }
      exit(code);
    });
}

/** Serves until stopped (see serveCommand); returns the exit code. */
async function serve(program: Command, positional: string | undefined, f: ServeFlags, routesFile: string | undefined, pool: WorkerPool | undefined): Promise<number> {
  const [{ createLogger }, { serveUntilClosed }] = await Promise.all([import('../observability/logger.ts'), import('../triggers/lifecycle.ts')]);
  const logger = createLogger(f.logLevel, f.logFormat);
  const http: ServeHttp = {
    ...listenOptions(f), logger,
    maxBodyBytes: parseSize(f.maxBody, '--max-body'),
    maxConcurrency: intFlag(f.maxConcurrency, '--max-concurrency', 1, 1_000_000),
    stopAfterMs: f.stopAfter ? parseDuration(f.stopAfter, '--stop-after') : undefined,
    graceMs: parseDuration(f.grace, '--grace'),
    maxOutputBytes: parseSize(f.maxOutput, '--max-output'),
    defaultHost: f.defaultHost,
  };
  if (f.httpThreads && (f.functions !== undefined || routesFile !== undefined)) throw new CapsuleError('USAGE', '--http-threads serves one module for now: it cannot be used with --functions or --routes');
  const trigger = f.functions !== undefined || routesFile !== undefined
    ? await serveMany(program, positional, f, http, routesFile)
    : await serveOne(positional, f, http, pool);
  return serveUntilClosed(trigger, `capsule listening on ${trigger.url}`, logger);
}

/** `capsule serve --functions / --routes`: many modules over the function table (wasi-cgi.md §9). */
async function serveMany(program: Command, positional: string | undefined, f: ServeFlags, http: ServeHttp, routesFile: string | undefined) {
  if (positional !== undefined || f.wasm || f.url) throw new CapsuleError('USAGE', '--functions and --routes serve many modules: give no module (nor --wasm / --url)');
  const spec = functionSpecFromFlags(f, false);
  const [{ serveFunctions }, { loadRoutesFile, mergeRouteTables, scanFunctionsDir }] = await Promise.all([
    import('../triggers/http/multi.ts'), import('../functions/routes.ts'),
  ]);
  return serveFunctions({
    ...http,
    table: () => mergeRouteTables([
      ...(routesFile !== undefined ? [loadRoutesFile(routesFile)] : []),
      ...(f.functions !== undefined ? [scanFunctionsDir(f.functions, { otherKeys: allConfigKeys(program) })] : []),
    ]),
    // multi-function servers never pass the runner's environment (conventions.md §2)
    defaults: { ...functionOptionsOf({ ...spec, dirs: [] }), reuse: f.reuse, fresh: f.fresh },
    dirs: spec.dirs,
    workers: workersFlag(f.workers),
    watch: f.watch !== false,
  });
}

/** `capsule serve [module]`: one module, with hot reload (POST /load-wasm-module, --watch). */
async function serveOne(positional: string | undefined, f: ServeFlags, http: ServeHttp, pool: WorkerPool | undefined) {
  const logger = http.logger;
  const [{ CapsuleFunction }, { reloadOptionsFor }] = await Promise.all([import('../engine/function.ts'), import('../triggers/http/reload.ts')]);
  const workers = workersFlag(f.workers); // a bad value is told before the module is read
  const options = (m: LoadedModule): FunctionOptions => ({
    ...functionOptions(f, m, true), stdio: 'capture', reuse: f.reuse, fresh: f.fresh, workers,
    onWarning: (w) => logger.warn(w),
  });
  // hot reload (POST /load-wasm-module, --watch): new versions on the first one's worker pool
  const reload = await reloadOptionsFor({
    served: f.wasm ?? positional, url: f.url !== undefined, modulesDir: f.modulesDir, watch: f.watch === true,
    insecureAdmin: f.insecureAdmin, kind: f.kind, log: (t) => logger.info(t),
    make: (m) => CapsuleFunction.fromModule(m, { ...options(m), pool: fn.pool }),
  });
  const module = await loadFromFlags(f, reload.watch?.path ?? positional);
  // --http-threads: HTTP in the worker threads (triggers/http/threads.ts); the function's own pool has no thread at idle
  const threads = f.httpThreads ? await import('../triggers/http/threads.ts') : undefined;
  const fn = CapsuleFunction.fromModule(module, { ...options(module), pool: threads ? threads.lifecyclePool() : pool });
  if (threads) {
    const threaded = await threads.serveHttpThreads(fn, { ...http, reload, threads: workers, logLevel: f.logLevel, logFormat: f.logFormat });
    logger.info({ module: module.name, kind: module.detection.kind, digest: module.digest, workers: threaded.threads, httpThreads: true, reuse: fn.settings.reuse }, 'module loaded');
    return threaded;
  }
  // the module is compiled; its worker threads boot before the port opens and the ready
  // line is printed, so the first request costs what later ones do. The HTTP server's modules
  // load meanwhile (docs/performance.md "Start-up": not before the threads are started)
  const [{ serveHttp }] = await Promise.all([import('../triggers/http/server.ts'), fn.pool.whenUp()]);
  const trigger = await serveHttp(fn, { ...http, reload });
  logger.info({ module: module.name, kind: module.detection.kind, digest: module.digest, workers: fn.pool.size, reuse: fn.settings.reuse }, 'module loaded');
  return trigger;
}
