/**
 * The FaaS client commands of `capsule` (issue 12 point 6) and the all-in-one `capsule faas`:
 * options only; each action imports what it runs. Clients find the services with
 * `--registry/--worker/--proxy` or `CAPSULE_REGISTRY_URL`, `CAPSULE_WORKER_URL`,
 * `CAPSULE_REVERSE_PROXY_URL` (defaults: the Go ports 4999, 9999, 8080 on localhost), send the
 * admin tokens of the environment, print aligned tables (or `--json`) and exit 0 (done), 1 (a
 * service refused or could not be reached; the message names it), 2 (bad usage).
 */
import type { Command } from 'commander';
import { CapsuleError } from '../../base/errors.ts';
import { intFlag, workersFlag } from '../../cli/flags.ts';
import { listenOptions, serveServices, serviceOptions, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';
import type { ClientContext } from './operations.ts';

/** Flags every client command has. */
interface ClientFlags {
  registry?: string;
  worker?: string;
  proxy?: string;
  backend?: string;
  json: boolean;
}

/** Adds the client flags to a command. */
function clientOptions(cmd: Command): Command {
  return cmd
    .option('--registry <url>', 'registry base URL (env CAPSULE_REGISTRY_URL, default http://localhost:4999)')
    .option('--worker <url>', 'function node base URL (env CAPSULE_WORKER_URL, default http://localhost:9999)')
    .option('--proxy <url>', 'reverse proxy base URL (env CAPSULE_REVERSE_PROXY_URL, default http://localhost:8080)')
    .option('--backend <name>', 'prefix of the proxy registration API (env CAPSULE_BACKEND, default memory)')
    .option('--json', 'print the result as JSON (for scripts)', false)
    .addHelpText('after', '\nTokens: CAPSULE_REGISTRY_ADMIN_TOKEN, CAPSULE_WORKER_ADMIN_TOKEN, CAPSULE_REVERSE_PROXY_ADMIN_TOKEN.\nExit codes: 0 done, 1 a service refused or could not be reached, 2 bad usage.')
    .exitOverride();
}

/** The services' URLs and tokens from the flags and the environment. */
async function context(f: ClientFlags): Promise<ClientContext> {
  const { clientContext } = await import('./operations.ts');
  return clientContext({ registry: f.registry, node: f.worker, proxy: f.proxy, backend: f.backend });
}

/**
 * Runs a client action: its text lines or its JSON on stdout, exit 0; a service failure on
 * stderr, exit 1; usage errors go up to the CLI (exit 2).
 */
function clientAction<A extends unknown[]>(exit: (code: number) => void, run: (ctx: ClientContext, f: ClientFlags, ...args: A) => Promise<{ json: unknown; text: string[] }>) {
  return async (...all: unknown[]) => {
    const cmd = all[all.length - 1] as Command;
    const f = cmd.opts<ClientFlags>();
    const { ServiceError } = await import('./http.ts');
    const { print, printJson } = await import('./output.ts');
    try {
      const r = await run(await context(f), f, ...(all.slice(0, cmd.registeredArguments.length) as A));
      if (f.json) printJson(r.json);
      else print(r.text);
      exit(0);
    } catch (e) {
      if (!(e instanceof ServiceError)) throw e;
      process.stderr.write(`❌ ${e.message}\n`);
      exit(1);
    }
  };
}

/** `K=V` pairs of `--env` and the JSON object of `--env-variables` (Go caps) as one map. @throws CapsuleError USAGE */
async function envOf(pairs: string[], json: string | undefined): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  if (json !== undefined) {
    const { envVariablesOf } = await import('./operations.ts');
    try {
      Object.assign(env, envVariablesOf(json));
    } catch (e) {
      throw new CapsuleError('USAGE', `--env-variables: ${(e as Error).message}`);
    }
  }
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new CapsuleError('USAGE', `--env ${p}: expected NAME=value`);
    env[p.slice(0, i)] = p.slice(i + 1);
  }
  return env;
}

/** A required name from a positional or its Go flag. @throws CapsuleError USAGE when neither is given */
function required(value: string | undefined, what: string): string {
  if (!value) throw new CapsuleError('USAGE', `missing ${what}`);
  return value;
}

/** `capsule publish` and `capsule deploy`. */
function publishAndDeploy(program: Command, exit: (code: number) => void): void {
  clientOptions(program.command('publish').description('upload a module to the registry (its SHA-256 is verified there)'))
    .argument('<file>', 'the module (.wasm)')
    .argument('<module>', 'where in the registry: <org>/<name>/<tag>, e.g. demo/hello/0.0.0')
    .option('--info <text>', 'description stored with the module', '')
    .action(clientAction(exit, async (ctx, f, file: string, module: string) => {
      const { publishModule, parseModuleRef } = await import('./operations.ts');
      const p = await publishModule(ctx, file, parseModuleRef(module), (f as ClientFlags & { info: string }).info);
      return { json: p, text: [`published ${p.module} (${p.size} bytes, sha256 ${p.sha256})`, `download: ${p.downloadUrl}`] };
    }));
  type DeployFlags = ClientFlags & { url?: string; downloadUrl?: string; env: string[]; envVariables?: string; sha256?: string; function?: string; revision?: string };
  clientOptions(program.command('deploy').description('deploy a revision of a function on the node (again: one more replica)'))
    .argument('[function]', 'function name (or --function)')
    .argument('[revision]', 'revision name (or --revision)')
    .argument('[module]', 'registry module <org>/<name>/<tag> (or --url)')
    .option('--url <url>', 'download URL of the module instead of a registry module (Go: -downloadUrl)')
    .option('--env <NAME=value>', 'environment variable of the revision (repeatable)', (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--env-variables <json>', 'environment as a JSON object (Go caps: -envVariables)')
    .option('--sha256 <hex>', 'refuse the module unless its SHA-256 matches')
    .option('--function <name>', 'function name instead of the first argument (Go caps: -function)')
    .option('--revision <name>', 'revision name instead of the second argument (Go caps: -revision)')
    .option('--download-url <url>', 'same as --url (Go caps: -downloadUrl)')
    .action(clientAction(exit, async (ctx, flags, fnArg?: string, revArg?: string, module?: string) => {
      const f = flags as DeployFlags;
      const { deployRevision, moduleUrl, parseModuleRef } = await import('./operations.ts');
      const fn = required(fnArg ?? f.function, 'the function name: capsule deploy <function> <revision> <org/name/tag>');
      const rev = required(revArg ?? f.revision, 'the revision name: capsule deploy <function> <revision> <org/name/tag>');
      const url = f.url ?? f.downloadUrl ?? (module === undefined ? undefined : /^https?:\/\//.test(module) ? module : moduleUrl(ctx.registry, parseModuleRef(module)));
      const r = await deployRevision(ctx, { function: fn, revision: rev, downloadUrl: required(url, 'the module: a registry module <org>/<name>/<tag> or --url <download URL>'), envVariables: await envOf(f.env, f.envVariables), sha256: f.sha256 });
      return { json: r, text: [`deployed ${fn}/${rev}: ${String(r['remoteUrl'] ?? '')}`, `replica: ${String(r['localUrl'] ?? '')}`] };
    }));
}

/** `capsule undeploy | scale | set-default | unset-default`. */
function revisionCommands(program: Command, exit: (code: number) => void): void {
  clientOptions(program.command('undeploy').description('remove every replica of a revision (and its routes)'))
    .argument('<function>').argument('<revision>')
    .action(clientAction(exit, async (ctx, _f, fn: string, rev: string) => {
      const { undeployRevision } = await import('./operations.ts');
      return { json: await undeployRevision(ctx, fn, rev), text: [`undeployed ${fn}/${rev}`] };
    }));
  clientOptions(program.command('scale').description('bring a deployed revision to a number of replicas (same module and environment)'))
    .argument('<function>').argument('<revision>').argument('<replicas>', 'replicas wanted (≥ 1)')
    .action(clientAction(exit, async (ctx, _f, fn: string, rev: string, n: string) => {
      const { scaleRevision } = await import('./operations.ts');
      const s = await scaleRevision(ctx, fn, rev, intFlag(n, 'replicas', 1, 1000));
      return { json: s, text: [`${fn}/${rev}: ${s.from} → ${s.to} replica${s.to === 1 ? '' : 's'}`, ...s.localUrls.map((u) => `  ${u}`)] };
    }));
  clientOptions(program.command('set-default').description('make a revision the default of its function (/functions/<function>), or split it: blue=90 green=10'))
    .argument('<function>').argument('<revisions...>', 'one revision, or <revision>=<percent> targets summing to 100')
    .option('--sticky <from>', 'with a split: header:<name> or cookie:<name> keeps one client on one revision')
    .action(clientAction(exit, async (ctx, f, fn: string, revs: string[]) => {
      const { setDefaultRevision, splitTraffic, parseTargets } = await import('./operations.ts');
      const sticky = (f as ClientFlags & { sticky?: string }).sticky;
      if (revs.length === 1 && !revs[0]!.includes('=') && sticky === undefined) {
        const r = await setDefaultRevision(ctx, fn, revs[0]!);
        return { json: r, text: [`default of ${fn} is ${revs[0]}: ${String(r['url'] ?? '')}`] };
      }
      const targets = parseTargets(revs);
      const r = await splitTraffic(ctx, fn, targets, sticky);
      const split = targets.map((t) => `${t.revision} ${t.percent}%`).join(', ');
      return { json: r, text: [`default of ${fn} is split: ${split}${sticky ? ` (sticky by ${sticky})` : ''}: ${ctx.proxy}/functions/${fn}`] };
    }));
  clientOptions(program.command('unset-default').description('remove the default revision of a function'))
    .argument('<function>')
    .action(clientAction(exit, async (ctx, _f, fn: string) => {
      const { unsetDefaultRevision } = await import('./operations.ts');
      return { json: await unsetDefaultRevision(ctx, fn), text: [`${fn} has no default revision now`] };
    }));
}

/** A client command printing rows as an aligned table (or `--json`): `capsule list`, `capsule routes`. */
function tableCommand<R>(program: Command, exit: (code: number) => void, t: {
  name: string; description: string; header: string[];
  rows: (ctx: ClientContext) => Promise<R[]>; empty: (ctx: ClientContext) => string; row: (r: R) => string[];
}): void {
  clientOptions(program.command(t.name).description(t.description))
    .action(clientAction(exit, async (ctx) => {
      const { formatTable } = await import('./output.ts');
      const rows = await t.rows(ctx);
      if (rows.length === 0) return { json: rows, text: [t.empty(ctx)] };
      return { json: rows, text: formatTable(t.header, rows.map(t.row)) };
    }));
}

/** `capsule list` and `capsule routes`. */
function listCommands(program: Command, exit: (code: number) => void): void {
  tableCommand(program, exit, {
    name: 'list', description: 'the revisions deployed on the node',
    header: ['FUNCTION', 'REVISION', 'DEFAULT', 'REPLICAS', 'MODULE', 'URL'],
    rows: async (ctx) => (await import('./operations.ts')).listDeployments(ctx),
    empty: (ctx) => `no deployment on ${ctx.node}`,
    row: (r) => [r.function, r.revision, r.default ? 'yes' : '', String(r.replicas), r.module, r.url],
  });
  tableCommand(program, exit, {
    name: 'routes', description: 'the routing table of the reverse proxy',
    header: ['FUNCTION', 'REVISION', 'PATH', 'TRAFFIC', 'UPSTREAMS'],
    rows: async (ctx) => (await import('./operations.ts')).listRoutes(ctx),
    empty: (ctx) => `no route on ${ctx.proxy}`,
    row: (r) => [r.function, r.revision, r.revision === 'default' ? `/functions/${r.function}` : `/functions/${r.function}/${r.revision}`,
      r.traffic ? `→ ${r.traffic.map((t) => `${t.revision} ${t.percent}%`).join(', ')}${r.sticky ? ` (sticky ${r.sticky})` : ''}` : '', r.upstreams.join(', ')],
  });
}

/** Registers the client commands: publish, deploy, undeploy, scale, set-default, unset-default, list, routes. */
export const clientCommands: CommandRegistrar = (program, exit) => {
  publishAndDeploy(program, exit);
  revisionCommands(program, exit);
  listCommands(program, exit);
};

interface KitFlags extends ServiceFlags {
  registryPort: string;
  nodePort: string;
  httpPortCounter: string;
  files: string;
  workers?: string;
  modulesDir?: string;
}

/** Registers `capsule faas`: proxy + registry + node in one process. */
export const faasCommand: CommandRegistrar = (program, exit) => {
  serviceOptions(program.command('faas').description('the FaaS kit in one process: reverse proxy (--http-port), registry and function node, deployments registered straight into the proxy'), '8080')
    .option('--registry-port <port>', 'registry port (0 = a free port)', '4999')
    .option('--node-port <port>', 'function node (worker API) port (0 = a free port)', '9999')
    .option('--http-port-counter <port>', 'each replica listens on the next port after this one (0 = free ports)', '10000')
    .option('--files <dir>', 'registry root directory', './registry')
    .option('--workers <n>', 'worker threads shared by every deployment (default: CPU cores)')
    .option('--modules-dir <dir>', 'module cache of the node (default: a temporary directory removed at exit)')
    .addHelpText('after', '\nEnvironment: CAPSULE_REVERSE_PROXY_ADMIN_TOKEN, CAPSULE_REGISTRY_ADMIN_TOKEN, CAPSULE_WORKER_ADMIN_TOKEN (one per service, as with the separate services).')
    .exitOverride()
    .action(async (f: KitFlags) => {
      const listen = listenOptions(f);
      const registryPort = intFlag(f.registryPort, '--registry-port', 0, 65535);
      const nodePort = intFlag(f.nodePort, '--node-port', 0, 65535);
      const portCounter = intFlag(f.httpPortCounter, '--http-port-counter', 0, 65534);
      const workers = workersFlag(f.workers);
      const { createLogger } = await import('../../observability/logger.ts');
      const { startFaasKit } = await import('./index.ts');
      const logger = createLogger(f.logLevel, f.logFormat);
      const env = process.env;
      const kit = await startFaasKit({
        logger, host: listen.host, tls: listen.tls, proxyPort: listen.port, registryPort, nodePort, portCounter, files: f.files, workers,
        modulesDir: f.modulesDir, insecureAdmin: f.insecureAdmin,
        tokens: { proxy: env['CAPSULE_REVERSE_PROXY_ADMIN_TOKEN'] || undefined, registry: env['CAPSULE_REGISTRY_ADMIN_TOKEN'] || undefined, node: env['CAPSULE_WORKER_ADMIN_TOKEN'] || undefined },
      }).catch((e: Error) => {
        const taken = /already in use/.test(e.message) ? ' (another port: --http-port, --registry-port, --node-port; 0 = a free one)' : '';
        throw new CapsuleError('USAGE', `capsule faas cannot start ${e.message}${taken}`);
      });
      // stdout holds the ready line only (conventions.md §1); the three URLs go to the terminal's stderr
      process.stderr.write(`proxy     ${kit.proxy.url}\nregistry  ${kit.registry.url}\nnode      ${kit.node.url}\n`);
      exit(await serveServices([{ ...kit.proxy, close: kit.close }], logger));
    });
};
