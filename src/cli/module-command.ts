/**
 * What every command that loads a module shares (its flags, reading them, loading the module,
 * config files and `CAPSULE_*` variables), and `capsule run` itself, with the program of
 * `capsule run` alone (`buildRunProgram`): the bundle of `capsule run` (run-main.ts) builds that
 * one, so that a one-shot run neither loads nor declares the other commands (docs/performance.md
 * "Start-up"); program.ts builds the whole program from the same pieces.
 */
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { CapsuleError } from '../base/errors.ts';
import type { FunctionOptions } from '../engine/function.ts';
import type { UrlSource, LoadedModule } from '../engine/load.ts';
import type { ModuleKind } from '../base/kinds.ts';
import { KINDS } from '../abi/index.ts';
import { functionOptionsOf, functionSpecFromFlags, LIMIT_SETTINGS } from '../functions/spec.ts';
import { LOG_LEVELS, type LogFormat, type LogLevel } from '../observability/log-levels.ts';
import { CAPSULE_VERSION } from '../base/version.ts';
import { capabilityOptions, settingOptions, type CapabilityFlags } from './capabilities.ts';
import { addEnvVars, applyConfigFor, declareOtherCommandsKeys } from '../functions/config-file.ts';

/**
 * The program's own settings (name, version flag, parsing and error behaviour), which both the
 * whole program and `capsule run`'s share.
 */
export function baseProgram(): Command {
  return new Command('capsule')
    .description('Run WebAssembly functions (Capsule ABI modules, WASI commands) from the terminal and over HTTP')
    .version(CAPSULE_VERSION, '-v, --version')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
}

/**
 * A program with one command that loads a module (the bundles of `capsule run` and `capsule
 * serve`: run-main.ts, serve-main.ts), with the config hooks of the whole program.
 * @param add adds the command (`runCommand`, serve.ts `serveCommand`)
 * @param exit receives the process exit code
 * @param configKeys the config-file keys of every command of the whole program (a file beside a
 *   module may hold settings of other commands: accepted and ignored, as by the whole program)
 */
export function buildOneCommandProgram(add: (program: Command, exit: (code: number) => void) => void, exit: (code: number) => void, configKeys: readonly string[]): Command {
  const program = baseProgram();
  add(program, exit);
  configHooks(program);
  declareOtherCommandsKeys(program, configKeys);
  return program;
}

/** The program with only `capsule run` (run-main.ts, the bundle of `capsule run`). */
export function buildRunProgram(exit: (code: number) => void, configKeys: readonly string[]): Command {
  return buildOneCommandProgram(runCommand, exit, configKeys);
}

/** Options shared by every command that loads a module. */
export interface ModuleFlags extends CapabilityFlags {
  wasm?: string;
  url?: string;
  authHeaderName?: string;
  authHeaderValue?: string;
  digest?: string;
  kind?: ModuleKind;
  env: string[];
  envFile: string[];
  inheritEnv: boolean;
  dir: string[];
  allowedHosts: string[];
  timeout: string;
  maxMemory: string;
  logLevel: LogLevel;
  /** `--log-format` of the serving commands; absent: pretty on a terminal, JSON otherwise. */
  logFormat?: LogFormat;
}

/** Commander reducer of a repeatable option: every value, in order. */
export const collect = (v: string, prev: string[]) => [...prev, v];
/** Commander reducer of a repeatable comma-separated option: every item, trimmed, in order. */
export const collectList = (v: string, prev: string[]) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

/** Declares on `cmd` the options of every command that loads a module (module, grants, limits, capabilities). */
export function moduleOptions(cmd: Command): Command {
  cmd
    .option('--wasm <path>', 'the module file (.wasm); with --url, where to save the download')
    .option('--url <url>', 'download the module from this URL')
    .option('--auth-header-name <name>', 'header sent with --url (e.g. PRIVATE-TOKEN)')
    .option('--auth-header-value <value>', 'value of --auth-header-name')
    .option('--digest <sha256:hex>', 'refuse the module unless its SHA-256 matches')
    .addOption(new Option('--kind <kind>', 'module kind, instead of detecting it').choices(KINDS as string[]))
    .option('--env <NAME=value>', 'environment variable for the guest (repeatable)', collect, [])
    .option('--env-file <path>', 'dotenv file of guest variables (repeatable)', collect, [])
    .option('--no-inherit-env', 'do not pass the runner\'s environment to the guest')
    .option('--dir <HOST[:GUEST][:ro]>', 'grant a directory to the guest (repeatable)', collect, [])
    .option('--allowed-hosts <hosts>', 'outbound HTTP allow-list: host, *.host, host:port, scheme://host, * (comma-separated, repeatable)', collectList, []);
  settingOptions(cmd, LIMIT_SETTINGS);
  return capabilityOptions(cmd.addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS as string[]).default('info')));
}

async function urlSource(f: ModuleFlags, interactive: boolean): Promise<UrlSource | undefined> {
  if (!f.url) return undefined;
  if ((f.authHeaderName === undefined) !== (f.authHeaderValue === undefined)) {
    throw new CapsuleError('USAGE', '--auth-header-name and --auth-header-value go together');
  }
  return {
    url: f.url,
    authHeader: f.authHeaderName ? { name: f.authHeaderName, value: f.authHeaderValue! } : undefined,
    saveTo: f.wasm,
    onProgress: interactive ? await (await import('./progress.ts')).progressReporter(f.url) : undefined,
  };
}

/**
 * Reads and compiles the module the flags name (`--wasm`, `--url` or the positional path).
 * @param o.snapshot false for a module called once (engine/load.ts `LoadOptions.snapshot`)
 * @throws CapsuleError USAGE when no module is named; LOAD / BAD_MODULE from the loader
 */
export async function loadFromFlags(f: ModuleFlags, positional: string | undefined, o: { snapshot?: boolean } = {}): Promise<LoadedModule> {
  const path = f.wasm ?? positional;
  const url = await urlSource(f, process.stderr.isTTY === true);
  if (!url && !path) throw new CapsuleError('USAGE', 'no module: give a path (capsule run hello.wasm), --wasm=<path> or --url=<url>');
  const { loadModule } = await import('../engine/load.ts');
  return loadModule(url ?? { path: path! }, { kind: f.kind, digest: f.digest, snapshot: o.snapshot });
}

/** The function options the flags (and config file, `CAPSULE_*` variables) give a module. */
export function functionOptions(f: ModuleFlags, module: LoadedModule, singleModule: boolean): FunctionOptions {
  // WASI commands get only configured variables (conventions.md §2), as wasmtime run does.
  const inherit = singleModule && f.inheritEnv && module.detection.kind !== 'wasi';
  return functionOptionsOf(functionSpecFromFlags(f, inherit));
}

/** Gen 1 joins CLI arguments with its era's separator, gen 2 with a space (conventions.md §4). */
function joinParams(module: LoadedModule, args: string[], separator?: string): string {
  if (separator !== undefined) return args.join(separator);
  const k = module.detection.kind;
  if (k === 'capsule-1a') return args.join('°');
  if (k === 'capsule-1b' || k === 'capsule-1c') {
    const nats = module.parsed.exports.some((e) => e.name === 'callNatsMessageHandle');
    return args.join(nats || k === 'capsule-1c' ? '²' : '°');
  }
  return args.join(' ');
}

/**
 * Whether `arg` first appears after a `--` in the command line (`capsule run -- -x.wasm`): then
 * it is an operand (a module whose name starts with a dash), not an unknown option.
 */
function afterDoubleDash(cmd: Command, arg: string): boolean {
  let root = cmd;
  while (root.parent) root = root.parent;
  const raw = (root as Command & { rawArgs?: string[] }).rawArgs ?? [];
  const dashdash = raw.indexOf('--');
  return dashdash >= 0 && raw.indexOf(arg) > dashdash;
}

/** `capsule run`: one call, the result on stdout. */
export function runCommand(program: Command, exit: (code: number) => void): void {
  moduleOptions(program.command('run').description('run a module once: its result goes to stdout, the exit code says how it went'))
    .argument('[module]', 'module file (or use --wasm / --url)')
    .argument('[args...]', 'arguments: the params of a Capsule module, argv of a WASI command (unknown flags and everything after -- are passed on)')
    .option('--params <text>', 'input of a Capsule module\'s callHandle (instead of the arguments)')
    .option('--params-file <path>', 'raw bytes for callHandle, read from a file ("-" = stdin)')
    .option('--separator <text>', 'gen-1 modules: join the arguments with this instead of the era\'s separator')
    .addOption(new Option('--handler <export>', 'Capsule modules: call only callHandle (handle) or callHandleJSON (json, gen 2); default: callHandle, then callHandleJSON on a fresh instance when it traps on JSON input').choices(['handle', 'json']))
    .option('--json', 'print one JSON object on stdout: result, logs (guest output, host logs), durationMs, exitCode, error')
    .allowUnknownOption()
    .exitOverride()
    .action(async (positional: string | undefined, rest: string[], f: ModuleFlags & { params?: string; paramsFile?: string; separator?: string; handler?: 'handle' | 'json'; json?: boolean }, cmd: Command) => {
      if (!(f.wasm || f.url) && positional?.startsWith('-') && positional !== '-' && !afterDoubleDash(cmd, positional)) {
        // an unknown option before the module: commander took it for the module's path
        throw new CapsuleError('USAGE', `unknown option '${positional}' (options of the guest go after the module, or after --)`);
      }
      const all = [...(positional !== undefined ? [positional] : []), ...rest];
      const dashdash = all.indexOf('--');
      if (dashdash >= 0) all.splice(dashdash, 1);
      if (!(f.wasm || f.url)) all.shift();
      const args = all;
      // The call runs in this thread (engine/inline.ts): no worker thread starts, and --timeout
      // stops a looping guest with V8's TerminateExecution (docs/performance.md "Start-up").
      const [{ CapsuleFunction }, { runCli }] = await Promise.all([import('../engine/function.ts'), import('../triggers/cli/run.ts')]);
      let module: LoadedModule;
      try {
        // one call: no snapshot to reset instances with (engine/load.ts)
        module = await loadFromFlags(f, f.wasm || f.url ? undefined : positional, { snapshot: false });
      } catch (e) {
        if (f.json && e instanceof CapsuleError && e.code !== 'USAGE') {
          // --json: a module that cannot be loaded is a report too (exit code 1, as without it)
          process.stdout.write(`${JSON.stringify({ logs: [], durationMs: 0, exitCode: 1, error: e.message })}\n`);
          exit(1);
          return;
        }
        throw e;
      }
      const hostLogs: string[] = [];
      // --json captures the guest's output into the report (up to 16 MiB, then `truncated`)
      const fn = CapsuleFunction.fromModule(module, {
        // one call: metering the module would cost more than the watchdog (engine/inline.ts)
        ...functionOptions(f, module, true), inline: true, meter: false,
        ...(f.json ? { stdio: 'capture', maxLogBytes: 16 * 1024 * 1024 } : { stdio: 'inherit' }),
        onWarning: (m) => (f.json ? hostLogs.push(m) : process.stderr.write(`⚠️  ${m}\n`)),
      });
      let params: Uint8Array | undefined;
      if (f.paramsFile !== undefined) {
        try {
          params = new Uint8Array(readFileSync(f.paramsFile === '-' ? 0 : f.paramsFile));
        } catch (e) {
          throw new CapsuleError('USAGE', `--params-file ${f.paramsFile}: ${(e as Error).message}`);
        }
      } else if (f.params !== undefined) {
        params = new TextEncoder().encode(f.params);
      } else if (module.detection.kind !== 'wasi') {
        params = new TextEncoder().encode(joinParams(module, args, f.separator));
      }
      const code = await runCli(fn, { params, args, handler: f.handler, json: f.json, hostLogs });
      await fn.close();
      exit(code);
    });
}


/** Config files and `CAPSULE_*` variables of every command that loads a module. */
export function configHooks(program: Command): void {
  // Config files (--config, <module>.capsule.yaml) and CAPSULE_* variables for every command
  // that loads a module: precedence flags > file > CAPSULE_* > defaults (src/functions/config-file.ts).
  for (const cmd of program.commands) if (cmd.options.some((o) => o.long === '--config')) addEnvVars(cmd);
  program.hook('preAction', (_program, action) => {
    // `capsule call --config k=v` is Extism's plugin config, not a config file
    // FaaS services' --config is their own file (proxy routes YAML), not a module's config
    if (action.name() === 'call' || !action.options.some((o) => o.long === '--config') || !action.options.some((o) => o.long === '--wasm')) return;
    applyConfigFor(action, (action.getOptionValue('wasm') as string | undefined) ?? action.args[0]);
  });
}
