/**
 * `capsule faas-mode` — Go's `capsule-http --faas=true` (faas-api.md §5–§6), which the
 * `capsule-http` bin reaches through src/cli/legacy.ts: options only, the service is imported when
 * the command runs. Env: CAPSULE_FAAS_TOKEN, CAPSULE_DOMAIN, CAPSULE_PROCESSES_STORAGE.
 */
import type { Command } from 'commander';
import { CapsuleError } from '../../base/errors.ts';
import { workersFlag } from '../../cli/flags.ts';
import { listenOptions, serveServices, serviceOptions, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';
import { clusterNodeFlags, clusterNodeOptions, type ClusterNodeFlags } from '../node/command.ts';

interface FaasFlags extends ServiceFlags, ClusterNodeFlags {
  wasm?: string;
  url?: string;
  authHeaderName?: string;
  authHeaderValue?: string;
  process: boolean;
  workers?: string;
  parentEndpoint?: string;
  moduleName?: string;
  moduleRevision?: string;
}

/** The main module as the child arguments an in-process revision reads (`args[0]` is the program slot). */
function mainArgs(f: FaasFlags): string[] | undefined {
  if (!f.wasm && !f.url) return undefined;
  if ((f.authHeaderName === undefined) !== (f.authHeaderValue === undefined)) throw new CapsuleError('USAGE', '--auth-header-name and --auth-header-value go together');
  const args = [''];
  if (f.wasm) args.push(`-wasm=${f.wasm}`);
  if (f.url) args.push(`-url=${f.url}`);
  if (f.authHeaderName) args.push(`-authHeaderName=${f.authHeaderName}`, `-authHeaderValue=${f.authHeaderValue}`);
  return args;
}

/** Registers `capsule faas-mode`. */
export const faasModeCommand: CommandRegistrar = (program: Command, exit) => {
  clusterNodeOptions(serviceOptions(program.command('faas-mode').description('gen-2 FaaS main process (Go capsule-http --faas): start, list, duplicate, drop and call function revisions (capsctl)'), '8080')
    .option('--wasm <path>', 'main module served at every other path (with --url: where to save it)')
    .option('--url <url>', 'download the main module from this URL')
    .option('--auth-header-name <name>', 'header sent with --url')
    .option('--auth-header-value <value>', 'value of --auth-header-name')
    .option('--process', 'run every revision as a child process (default: this Capsule\'s revisions run in-process on the worker pool)', false)
    .option('--workers <n>', 'worker threads of the in-process revisions (default: CPU cores)')
    .option('--parent-endpoint <url>', 'notify this FaaS main process on shutdown (Go child flag)')
    .option('--module-name <name>', 'function name given to --parent-endpoint')
    .option('--module-revision <revision>', 'revision given to --parent-endpoint'))
    .addHelpText('after', `
Environment: CAPSULE_FAAS_TOKEN (admin routes: header CAPSULE_FAAS_TOKEN or Authorization: Bearer),
CAPSULE_DOMAIN (base URL of the revisions, default http://127.0.0.1), CAPSULE_PROCESSES_STORAGE
(records saved to this JSON file and read back at start). Go spelling: capsule-http --faas=true --httpPort=8080
With --cluster it is a cluster node (as capsule node --cluster): the routes write desired state
(DEPLOY, ROUTES, PROCS) and every node of the lattice serves what is started (docs/cluster.md).`)
    .exitOverride()
    .action(async (f: FaasFlags) => {
      const listen = listenOptions(f);
      const workers = workersFlag(f.workers);
      const args = mainArgs(f);
      const cluster = await clusterNodeFlags(f);
      if (cluster && (args || f.process || f.parentEndpoint)) throw new CapsuleError('USAGE', '--cluster cannot be used with --wasm, --url, --process or --parent-endpoint (a cluster node runs what is started on its worker pool)');
      const { createLogger } = await import('../../observability/logger.ts');
      if (cluster) {
        const { startNode } = await import('../node/index.ts');
        const logger = createLogger(f.logLevel, f.logFormat);
        const env = process.env;
        const node = await startNode({
          ...listen, logger, workers, cluster, portCounter: 0,
          faasToken: env['CAPSULE_FAAS_TOKEN'], faasDomain: env['CAPSULE_DOMAIN'], adminToken: env['CAPSULE_WORKER_ADMIN_TOKEN'], insecureAdmin: f.insecureAdmin,
        });
        return exit(await serveServices([node], logger));
      }
      const { startFaas } = await import('./index.ts');
      const logger = createLogger(f.logLevel, f.logFormat);
      const env = process.env;
      const faas = await startFaas({
        ...listen, logger, token: env['CAPSULE_FAAS_TOKEN'], insecureAdmin: f.insecureAdmin,
        domain: env['CAPSULE_DOMAIN'], storage: env['CAPSULE_PROCESSES_STORAGE'] || undefined,
        processes: f.process, workers, mainArgs: args,
        notify: f.parentEndpoint ? { parentEndpoint: f.parentEndpoint, moduleName: f.moduleName ?? '', moduleRevision: f.moduleRevision ?? '' } : undefined,
      });
      exit(await serveServices([faas], logger));
    });
};
