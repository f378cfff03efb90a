/**
 * `capsctl`, the gen-2 FaaS client (faas-api.md §7): `capsctl --cmd=start|drop|duplicate|…` with
 * Go's flags (one or two dashes, camelCase or kebab-case) and env `CAPSULE_MAIN_PROCESS_URL`
 * (default http://localhost:8080), `CAPSULE_FAAS_TOKEN` (sent as header `CAPSULE_FAAS_TOKEN`).
 * Output texts are Go's. Beyond Go: `processes` prints the records, a refused or failed request
 * prints the reply and exits 1 (Go printed success after any non-404 reply).
 */
import { Command, CommanderError } from 'commander';
import { CAPSULE_VERSION } from '../../base/version.ts';
import { kebab } from '../../cli/legacy.ts';

/** The flags of capsctl (Go names). */
interface CapsCtlFlags {
  cmd: string;
  name: string;
  revision: string;
  newRevision: string;
  description: string;
  wasm: string;
  stopAfter: string;
  url: string;
  path: string;
  env: string;
  version?: boolean;
}

/** The text flags of capsctl, each '' when not given. */
const TEXT_FLAGS_UNSET = { cmd: '', name: '', revision: '', newRevision: '', description: '', wasm: '', stopAfter: '', url: '', path: '', env: '' };

/** What a command prints and its exit code. */
interface Outcome {
  out: string[];
  code: number;
}

/** Go spellings → commander's: `-newRevision=x` → `--new-revision=x`; a short flag (`-h`) stays as written. */
function normaliseCapsctlArgv(argv: readonly string[]): string[] {
  return argv.map((a) => {
    const m = /^--?([A-Za-z][A-Za-z0-9-]+)(=[\s\S]*)?$/.exec(a);
    return m ? `--${kebab(m[1]!)}${m[2] ?? ''}` : a;
  });
}

/** The `args` Go's capsctl sends with `start` (faas-api.md §6, the child's flags). */
function startArgs(f: CapsCtlFlags, main: string): string[] {
  return ['', `-wasm=${f.wasm}`, `-stopAfter=${f.stopAfter}`, `-url=${f.url}`, `-parentEndpoint=${main}`, `-moduleName=${f.name}`, `-moduleRevision=${f.revision}`];
}

/** `--env` as Go read it: a JSON array of `K=V` strings. @throws Error on anything else */
function envList(text: string): string[] {
  if (text === '') return [];
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`--env must be a JSON array of strings, e.g. '["MESSAGE=hi"]' (got ${text})`);
  }
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error(`--env must be a JSON array of strings, e.g. '["MESSAGE=hi"]'`);
  return v as string[];
}

/** Sends one request to the main process with capsctl's headers. */
async function request(method: string, url: string, body?: unknown): Promise<{ status: number; statusText: string; text: string }> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json; charset=utf-8', CAPSULE_FAAS_TOKEN: process.env['CAPSULE_FAAS_TOKEN'] ?? '' };
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, statusText: res.statusText, text: await res.text() };
}

/** Go's reply check: 404 (and our 401/403) = bad token or FaaS mode off; other failures print the reply. */
function refused(r: { status: number; statusText: string; text: string }, what: string): Outcome | undefined {
  if (r.status === 404 || r.status === 401 || r.status === 403) {
    return { out: [`🤚 ${r.text} ${r.status} ${r.statusText}`, '🔴 faas mode not activated or bad token'], code: 1 };
  }
  if (r.status >= 400) return { out: [`🔴 Error when ${what}: ${r.text} ${r.status} ${r.statusText}`], code: 1 };
  return undefined;
}

/** Runs one capsctl command against the main process. */
async function runCommand(f: CapsCtlFlags, main: string): Promise<Outcome> {
  const fn = `${f.name}/${f.revision}`;
  switch (f.cmd) {
    case 'start': {
      const body = { name: f.name, revision: f.revision, description: f.description, path: f.path, args: startArgs(f, main), env: envList(f.env) };
      const r = await request('POST', `${main}/functions/start`, body);
      return refused(r, `starting a wasm module ${f.wasm}`) ?? { out: [`✅ ${fn} is started`, `ℹ️ url: ${main}/functions/${fn}`], code: 0 };
    }
    case 'drop': {
      const r = await request('DELETE', `${main}/functions/drop/${fn}`);
      return refused(r, `dropping a wasm module ${f.wasm}`) ?? { out: [`✅ ${fn} is dropped`, `ℹ️ url: ${main}/functions/${fn}`], code: 0 };
    }
    case 'duplicate': {
      const r = await request('PUT', `${main}/functions/duplicate/${fn}/${f.newRevision}`);
      return refused(r, `duplication a wasm module revision ${f.wasm}`)
        ?? { out: [`✅ ${fn} is duplicated to ${f.newRevision}`, `ℹ️ url: ${main}/functions/${f.name}/${f.newRevision}`], code: 0 };
    }
    case 'processes': {
      const r = await request('GET', `${main}/functions/processes`);
      return refused(r, 'listing the processes') ?? { out: [r.text], code: 0 };
    }
    case 'launch': case 'scale': case 'publish':
      return { out: [], code: 0 }; // work in progress in Go: nothing
    case 'call':
      return { out: ['🙏 Please, use curl to call a function'], code: 0 };
    default:
      return { out: [`🔴 Unknown command: ${f.cmd}`], code: 0 };
  }
}

function program(): Command {
  return new Command('capsctl')
    .description('client of the gen-2 FaaS main process (capsule-http --faas / capsule faas-mode)')
    .option('--cmd <command>', 'start | drop | duplicate | processes | call | launch | scale | publish')
    .option('--name <name>', 'function/module name')
    .option('--revision <revision>', 'function/module revision')
    .option('--new-revision <revision>', 'used when duplicating an existing revision')
    .option('--description <text>', 'function/module description')
    .option('--wasm <path>', 'wasm module file path')
    .option('--stop-after <seconds>', 'stop after n seconds if not used')
    .option('--url <url>', 'url for downloading the wasm module file')
    .option('--path <path>', 'path of the Capsule HTTP binary (empty: the main process runs the revision itself)')
    .option('--env <json>', 'variables as a JSON array, e.g. \'["MESSAGE=hello"]\'')
    .option('--version', 'print the capsctl version')
    .addHelpText('after', '\nEnvironment: CAPSULE_MAIN_PROCESS_URL (default http://localhost:8080), CAPSULE_FAAS_TOKEN.')
    .helpOption('-h, --help')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
}

/**
 * Entry of the `capsctl` bin (bin/capsctl.js through bin/launch.js).
 * @param argv arguments after the executable
 */
export async function main(argv: string[], _o: { bin: string }): Promise<void> {
  const done = (code: number) => {
    process.exitCode = code;
  };
  if (argv.length === 0) {
    process.stderr.write('CapsCtl needs some args to start.\n');
    return done(0);
  }
  const cmd = program();
  try {
    cmd.parse(normaliseCapsctlArgv(argv), { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return done(e.exitCode === 0 ? 0 : 2);
    throw e;
  }
  // every text flag is '' when not given (as Go's flag defaults), without `(default: "")` in the help
  const f: CapsCtlFlags = { ...TEXT_FLAGS_UNSET, ...cmd.opts<Partial<CapsCtlFlags>>() };
  if (f.version) {
    process.stdout.write(`CapsCtl ${CAPSULE_VERSION} (Capsule)\n`);
    return done(0);
  }
  const mainUrl = (process.env['CAPSULE_MAIN_PROCESS_URL'] ?? 'http://localhost:8080').replace(/\/+$/, '');
  try {
    envList(f.env);
  } catch (e) {
    process.stderr.write(`❌ ${(e as Error).message}\n`);
    return done(2);
  }
  try {
    const r = await runCommand(f, mainUrl);
    if (r.out.length > 0) process.stdout.write(`${r.out.join('\n')}\n`);
    done(r.code);
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    process.stdout.write(`🔴 Error when calling ${mainUrl} (${f.cmd}): ${cause?.code ?? cause?.message ?? (e as Error).message}\n`);
    done(1);
  }
}
