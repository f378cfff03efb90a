/**
 * `caps`, the gen-1 FaaS client of Go Capsule (faas-api.md §4; capsule-ctl v0.2.x): `caps <command>
 * [-flags]` with Go's commands, flags (`-registryUrl -wasmFile -wasmInfo -wasmOrg -wasmName -wasmTag
 * -function -revision -downloadUrl -envVariables`, one or two dashes, `-flag=value` or `-flag value`),
 * environment variables and printed lines, so the capsule-faas-demo scripts run unchanged.
 * Deliberate differences (docs/compatibility.md): any error reply fails the command with the
 * service's message and exit 1 (Go failed only on `"code":"KO"` and printed success otherwise);
 * service URLs default to the Go services' ports instead of an empty URL; `publish` sends the
 * module's SHA-256 so the registry verifies the upload.
 */
import { CapsuleError } from '../../base/errors.ts';
import { CAPSULE_VERSION } from '../../base/version.ts';
import { callService, ServiceError } from './http.ts';
import { clientContext, deployRevision, envVariablesOf, downscaleRevision, publishModule, setDefaultRevision, undeployRevision, unsetDefaultRevision, type ClientContext } from './operations.ts';

/** Go's commands and help texts (capsule-ctl main.go). */
const COMMANDS: Record<string, string> = {
  publish: 'publish a wasm module to the capsule registry',
  deploy: 'deploy a function\'s revision',
  downscale: 'downscale a function\'s revision',
  'un-deploy': 'undeploy a function\'s revision',
  'set-default': 'set the default revision of a function (and remove the previous one if it exists)',
  'unset-default': 'remove the default revision of a function',
  worker: 'display information about the worker',
  'reverse-proxy': 'display information about the reverse-proxy',
  help: '',
  version: 'get the capsulectl version',
};

/** What `caps help` prints after Go's command list: the flags and the environment (Go printed neither). */
const HELP_MORE = [
  '',
  'flags (-flag=value or -flag value):',
  '  publish: -wasmFile <path> -wasmOrg -wasmName -wasmTag (the registry module) -wasmInfo <text> -registryUrl <url>',
  '  deploy: -function -revision -downloadUrl <url> -envVariables <JSON object, e.g. {"MESSAGE":"hi"}>',
  '  un-deploy, downscale, set-default: -function -revision; unset-default: -function',
  'environment: CAPSULE_WORKER_URL (default http://localhost:9999), CAPSULE_REVERSE_PROXY_URL (default http://localhost:8080),',
  '  CAPSULE_BACKEND (default memory), tokens CAPSULE_REGISTRY_ADMIN_TOKEN, CAPSULE_WORKER_ADMIN_TOKEN, CAPSULE_REVERSE_PROXY_ADMIN_TOKEN',
];

/** Go's flags and their defaults. */
const FLAG_DEFAULTS = {
  registryUrl: '', wasmFile: '', wasmInfo: '', wasmName: '', wasmTag: '', wasmOrg: '',
  function: '', revision: '', downloadUrl: '', envVariables: '{}',
};

/** The parsed flags of one caps command. */
export type CapsFlags = typeof FLAG_DEFAULTS;

/** Lines to print and the exit code. */
interface Outcome {
  out: string[];
  code: number;
}

/**
 * Parses flags as Go's `flag` package did: `-name=value`, `--name=value`, `-name value`; `--`
 * or the first non-flag argument ends the flags.
 * @throws Error naming an unknown flag or a flag without its value (Go exited 2)
 */
export function parseCapsFlags(args: readonly string[]): CapsFlags {
  const flags: CapsFlags = { ...FLAG_DEFAULTS };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    const m = /^--?([^=-][^=]*)(?:=([\s\S]*))?$/.exec(a);
    if (!m) break;
    const name = m[1]!;
    if (!Object.hasOwn(flags, name)) throw new Error(`flag provided but not defined: -${name}`);
    let value = m[2];
    if (value === undefined) {
      if (i + 1 >= args.length) throw new Error(`flag needs an argument: -${name}`);
      value = args[++i]!;
    }
    flags[name as keyof CapsFlags] = value;
  }
  return flags;
}

/** The services' URLs and tokens, from the environment as Go caps read them (the registry only from `-registryUrl`). */
function capsContext(f: CapsFlags, env: NodeJS.ProcessEnv): ClientContext {
  return clientContext({ registry: f.registryUrl }, env, {});
}

/** A JSON object reply's field as Go's `fmt.Println` showed it. */
function field(json: unknown, name: string): string {
  const v = json !== null && typeof json === 'object' ? (json as Record<string, unknown>)[name] : undefined;
  return v === undefined || v === null ? '<nil>' : typeof v === 'string' ? v : JSON.stringify(v);
}

/** `caps deploy`: `POST <worker>/functions/deploy`, `-envVariables` a JSON object. */
async function deploy(f: CapsFlags, ctx: ClientContext): Promise<Outcome> {
  let envVariables: Record<string, string>;
  try {
    envVariables = envVariablesOf(f.envVariables);
  } catch (err) {
    return { out: [`😡 [(envVariables->map)deploying function revision] -envVariables: ${(err as Error).message}`], code: 1 };
  }
  const r = await deployRevision(ctx, { function: f.function, revision: f.revision, downloadUrl: f.downloadUrl, envVariables });
  return { out: [`🙂 [deployed to worker] ${f.function} / ${f.revision}`, `🌍 [serving] ${field(r, 'remoteUrl')}`], code: 0 };
}

/** `caps set-default`: removes the default revision, then sets it (as Go did). */
async function setDefault(f: CapsFlags, ctx: ClientContext): Promise<Outcome> {
  // Go ignored the reply of the removal (there may be no default yet); a connection failure still fails
  await callService('node', ctx.node, 'DELETE', '/functions/remove_default_revision', { json: { function: f.function }, token: ctx.tokens.node, accept: () => true });
  const r = await setDefaultRevision(ctx, f.function, f.revision);
  return { out: [`🙂 [the default revision is set]-> ${f.function} / ${f.revision}`, `🌍 [serving] ${field(r, 'url')}`], code: 0 };
}

/** `caps downscale`: one replica less; Go's message when it is the last one. */
async function downscale(f: CapsFlags, ctx: ClientContext): Promise<Outcome> {
  const r = await downscaleRevision(ctx, f.function, f.revision);
  if (r['code'] === 'WASM_MODULE_DEPLOYMENT_NOT_REMOVED') {
    return { out: ['😡 [the revision is not downscaled]-> the revision needs at least one running wasm module'], code: 1 };
  }
  return { out: [`🙂 [the revision is downscaled (one process killed)]-> ${f.function} / ${f.revision} pid: ${field(r, 'pid')}`], code: 0 };
}

/** Go's bracketed context of each command's failure line. */
const FAILURE: Record<string, string> = {
  publish: '[publishing to registry]',
  deploy: '[when deploying to worker]',
  'un-deploy': '[when un-deploying the revision]',
  downscale: '[when downscaling the revision]',
  'set-default': '[when setting the default revision]',
  'unset-default': '[when unsetting the default revision]',
};

/** Runs one caps command. @throws ServiceError from the service calls, CapsuleError for an unreadable file (reported by the caller) */
async function runCaps(cmd: string, f: CapsFlags, ctx: ClientContext): Promise<Outcome> {
  switch (cmd) {
    case 'publish':
      await publishModule(ctx, f.wasmFile, { org: f.wasmOrg, name: f.wasmName, tag: f.wasmTag }, f.wasmInfo);
      return { out: [`🙂 [publishing to registry] ${f.wasmFile} published`], code: 0 };
    case 'deploy': return deploy(f, ctx);
    case 'set-default': return setDefault(f, ctx);
    case 'downscale': return downscale(f, ctx);
    case 'un-deploy':
      await undeployRevision(ctx, f.function, f.revision);
      return { out: [`🙂 [the revision is un-deployed (all processes killed)]-> ${f.function} / ${f.revision}`], code: 0 };
    case 'unset-default':
      await unsetDefaultRevision(ctx, f.function);
      return { out: [`🙂 [the default revision is unset]-> ${f.function}`], code: 0 };
    case 'worker':
      return { out: [(await callService('node', ctx.node, 'GET', '/functions/list')).text], code: 0 };
    case 'reverse-proxy':
      return { out: [(await callService('proxy', ctx.proxy, 'GET', `/${ctx.backend}/functions/list`)).text], code: 0 };
    case 'version':
      return { out: [`caps ${CAPSULE_VERSION} (Capsule)`], code: 0 };
    default: // help: Go's command list, then (beyond Go) the flags and the environment
      return { out: [...Object.entries(COMMANDS).filter(([c]) => c !== 'help').map(([c, text]) => `- ${c} : ${text}`), ...HELP_MORE], code: 0 };
  }
}

/** The line Go printed when a command started. */
function startLine(cmd: string, f: CapsFlags): string | undefined {
  switch (cmd) {
    case 'un-deploy': return `⏳ [un-deploying revision] ${f.function} / ${f.revision}`;
    case 'unset-default': return `⏳ [unsetting default revision] ${f.function}`;
    case 'publish': return `⏳ [publishing to registry] ${f.wasmOrg} ${f.wasmName} ${f.wasmTag}`;
    case 'deploy': return `⏳ [deploying to worker] ${f.function} / ${f.revision}`;
    case 'set-default': return `⏳ [setting default revision] ${f.function} / ${f.revision}`;
    case 'downscale': return `⏳ [downscaling revision] ${f.function} / ${f.revision}`;
    default: return undefined;
  }
}

/**
 * Runs `caps` with its arguments (after the executable).
 * @returns the lines it prints (stdout) and its exit code: 0 done, 1 refused or failed, 2 bad flags
 */
export async function caps(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Outcome> {
  const cmd = argv[0];
  if (cmd === undefined) return { out: ['😮 no args. Type caps help or caps --help'], code: 0 };
  const command = cmd === '--help' || cmd === '-help' || cmd === '-h' ? 'help' : cmd;
  if (!Object.hasOwn(COMMANDS, command)) return { out: [`😡 ${cmd} is not a recognized command`], code: 1 };
  let flags: CapsFlags;
  try {
    flags = parseCapsFlags(argv.slice(1));
  } catch (e) {
    return { out: [`😡 ${(e as Error).message}`], code: 2 };
  }
  const first = startLine(command, flags);
  const head = first === undefined ? [] : [first];
  try {
    const r = await runCaps(command, flags, capsContext(flags, env));
    return { out: [...head, ...r.out], code: r.code };
  } catch (e) {
    if (!(e instanceof ServiceError) && !(e instanceof CapsuleError)) throw e;
    const context = FAILURE[command];
    return { out: [...head, `😡${context ? ` ${context}` : ''} ${e.message}`], code: 1 };
  }
}

/**
 * Entry of the `caps` bin (bin/caps.js through bin/launch.js).
 * @param argv arguments after the executable
 */
export async function main(argv: string[], _o: { bin: string }): Promise<void> {
  const r = await caps(argv);
  if (r.out.length > 0) process.stdout.write(`${r.out.join('\n')}\n`);
  process.exitCode = r.code;
}
