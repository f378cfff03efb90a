/**
 * `capsule call <plugin.wasm|manifest.json> <function>`: calls one function of an Extism plugin
 * once, like `extism call` (extism-abi.md §11). The output bytes go to stdout as they are (a
 * newline is added only for a terminal); a plugin error goes to stderr after `❌`, exit 1; a trap
 * or a deadline as for Capsule modules (`❌ <message>`, exit 1).
 */
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { CapsuleError } from '../base/errors.ts';
import { isOutputClosed, writeAllSync } from '../base/stdio.ts';
import { parseDuration, parseSize } from '../base/units.ts';
import { CapsuleFunction, DEFAULTS, type FunctionOptions } from '../engine/function.ts';
import { compileModule, loadModule, type LoadedModule } from '../engine/load.ts';
import { parseDirGrant } from '../wasi/mounts.ts';
import { parseEnvPair } from '../functions/guest-env.ts';
import { EXTISM_LOG_LEVELS, DEFAULT_MAX_VAR_BYTES, type ExtismLogLevel } from '../abi/extism/index.ts';
import { readManifest, splitWasm, wasmBytes, type ExtismManifest, type ManifestWasm } from '../abi/extism/manifest.ts';
import type { CliOutput } from '../base/invocation.ts';
import { baseProgram, collect, collectList } from './module-command.ts';

interface CallFlags {
  input?: string;
  inputFile?: string;
  config: string[];
  allowedHosts: string[];
  dir: string[];
  wasi?: boolean;
  timeout?: string;
  maxMemory?: string;
  logLevel: ExtismLogLevel;
  manifest?: string;
}

/**
 * The program of `capsule call` alone, for the one-shot bundle (run-main.ts); program.ts adds
 * the command to the whole program.
 * @param exit receives the process exit code
 */
export function buildCallProgram(exit: (code: number) => void): Command {
  const program = baseProgram();
  callCommand(program, exit);
  return program;
}

/** Adds `capsule call` to the program; `exit` receives the process exit code. */
export function callCommand(program: Command, exit: (code: number) => void): void {
  program.command('call')
    .description('call one function of an Extism plugin (a .wasm file or an Extism manifest .json) once: its output goes to stdout')
    .argument('<plugin>', 'plugin .wasm file or http(s) URL, or an Extism manifest (.json)')
    .argument('<function>', 'the exported function to call')
    .option('--input <text>', 'input of the call (default: empty)')
    .option('--input-file <path>', 'input bytes read from a file ("-" = stdin)')
    .option('--config <key=value>', 'plugin config entry (repeatable; Extism config)', collect, [])
    .option('--allowed-hosts <hosts>', 'http_request allow-list: host, *.host, host:port, * (comma-separated, repeatable)', collectList, [])
    .option('--dir <HOST[:GUEST][:ro]>', 'grant a directory to the plugin\'s WASI (repeatable; Extism allowed_paths)', collect, [])
    .option('--wasi', 'accepted for extism call\'s habit: WASI is provided whenever the plugin imports it')
    .option('--timeout <duration>', 'deadline of the call (250ms, 30s); default the manifest\'s timeout_ms, else 30s')
    .option('--max-memory <size>', 'linear memory cap (64MiB); default the manifest\'s memory.max_pages, else 256MiB')
    .addOption(new Option('--log-level <level>', 'lowest plugin log level written to stderr').choices(Object.keys(EXTISM_LOG_LEVELS)).default('info'))
    .option('--manifest <file>', 'an Extism manifest (the plugin argument then only names the call)')
    .exitOverride()
    .action(async (plugin: string, name: string, f: CallFlags) => {
      const input = readInput(f);
      const { module, options, maxVarBytes } = await loadPlugin(plugin, f);
      // in this thread (engine/inline.ts): no worker thread to start for one call
      // (unmetered: metering the module would cost more than the watchdog of one call)
      const fn = CapsuleFunction.fromModule(module, { ...options, stdio: 'inherit', inline: true, meter: false });
      try {
        exit(await callOnce(fn, name, input, [`max_var_bytes=${maxVarBytes}`, `log_level=${f.logLevel}`]));
      } finally {
        await fn.close();
      }
    });
}

function readInput(f: CallFlags): Uint8Array {
  if (f.input !== undefined && f.inputFile !== undefined) throw new CapsuleError('USAGE', 'give --input or --input-file, not both');
  if (f.inputFile === undefined) return new TextEncoder().encode(f.input ?? '');
  try {
    return new Uint8Array(readFileSync(f.inputFile === '-' ? 0 : f.inputFile));
  } catch (e) {
    throw new CapsuleError('USAGE', `--input-file ${f.inputFile}: ${(e as Error).message}`);
  }
}

/** The plugin module and its function options: the manifest's settings, then the flags. */
async function loadPlugin(plugin: string, f: CallFlags): Promise<{ module: LoadedModule; options: FunctionOptions; maxVarBytes: number }> {
  const manifestPath = f.manifest ?? (plugin.endsWith('.json') ? plugin : undefined);
  let m: ExtismManifest = { wasm: [] };
  let module: LoadedModule;
  if (manifestPath) {
    const read = await readManifest(manifestPath);
    m = read.manifest;
    const { main, others } = splitWasm(m);
    const linked = await Promise.all(others.map(async (w) => ({ name: w.name!, compiled: await compileLinked(w, read.base) })));
    const { bytes, source } = await wasmBytes(main, read.base);
    module = await compileModule(bytes, source, { kind: 'extism', linked, snapshot: false });
  } else if (/^https?:\/\//i.test(plugin)) {
    const { bytes, source } = await wasmBytes({ url: plugin }, process.cwd());
    module = await compileModule(bytes, source, { kind: 'extism', snapshot: false });
  } else {
    module = await loadModule({ path: plugin }, { kind: 'extism', snapshot: false }); // one call: no snapshot (engine/load.ts)
  }
  const pages = m.memory?.max_pages;
  const options: FunctionOptions = {
    env: [...Object.entries(m.config ?? {}), ...f.config.map(parseEnvPair)],
    allowedHosts: [...(m.allowed_hosts ?? []), ...f.allowedHosts],
    mounts: [...Object.entries(m.allowed_paths ?? {}).map(([host, guest]) => manifestMount(host, guest)), ...f.dir.map((d) => parseDirGrant(d))],
    timeoutMs: f.timeout !== undefined ? parseDuration(f.timeout, '--timeout') : m.timeout_ms ?? DEFAULTS.timeoutMs,
    maxMemoryBytes: f.maxMemory !== undefined ? parseSize(f.maxMemory, '--max-memory') : pages !== undefined ? pages * 65536 : DEFAULTS.maxMemoryBytes,
    ...(m.memory?.max_http_response_bytes !== undefined ? { http: { maxResponseBytes: m.memory.max_http_response_bytes } } : {}),
  };
  return { module, options, maxVarBytes: m.memory?.max_var_bytes ?? DEFAULT_MAX_VAR_BYTES };
}

/** A manifest module linked by name. @throws CapsuleError LOAD / BAD_MODULE naming it */
async function compileLinked(w: ManifestWasm, base: string): Promise<WebAssembly.Module> {
  const { bytes, source } = await wasmBytes(w, base);
  try {
    return await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new CapsuleError('BAD_MODULE', `${source} (manifest module ${w.name}): invalid WebAssembly module: ${(e as Error).message}`);
  }
}

/** An `allowed_paths` entry (`ro:` prefix on the host path = read-only) as a directory grant. */
function manifestMount(host: string, guest: string) {
  const ro = host.startsWith('ro:');
  return parseDirGrant(`${ro ? host.slice(3) : host}:${guest}${ro ? ':ro' : ''}`);
}

/** One call; writes the output or the failure. @returns the exit code */
async function callOnce(fn: CapsuleFunction, name: string, params: Uint8Array, args: string[]): Promise<number> {
  try {
    const { output } = await fn.invoke({ type: 'cli', params, args, entrypoint: name });
    const out = output as CliOutput;
    const text = out.text ?? new Uint8Array(0);
    if (out.exitCode !== 0) {
      writeAllSync(2, `❌ ${Buffer.from(text).toString()}\n`);
      return 1;
    }
    writeAllSync(1, text);
    if (process.stdout.isTTY) writeAllSync(1, '\n');
    return 0;
  } catch (e) {
    if (isOutputClosed(e)) return 0;
    const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
    writeAllSync(2, `❌ ${err.message}\n`);
    return 1;
  }
}
