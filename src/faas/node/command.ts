/**
 * `capsule node` (also `capsule worker`, bin `capsule-worker`; Go flags of faas-api.md §3:
 * `-httpPort -backend -reverseProxy -workerDomain -capsulePath -httpPortCounter -crt -key`):
 * options only, the node is imported when the command runs.
 */
import type { Command } from 'commander';
import { intFlag } from '../../cli/flags.ts';
import { listenOptions, serveServices, serviceOptions, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';

interface NodeFlags extends ServiceFlags {
  backend: string;
  reverseProxy?: string;
  workerDomain: string;
  capsulePath?: string;
  httpPortCounter: string;
  process: boolean;
  workers?: string;
  modulesDir?: string;
}

/** Registers `capsule node` (alias `worker`). */
export const nodeCommand: CommandRegistrar = (program: Command, exit) => {
  serviceOptions(program.command('node').alias('worker').description('function node: deploy, scale, list and undeploy revisions from download URLs, registered in the reverse proxy (Go capsule-worker API)'), '9999')
    .option('--backend <name>', 'route prefix of the reverse proxy registration API', 'memory')
    .option('--reverse-proxy <url>', 'reverse proxy to register deployments in (none: not registered)')
    .option('--worker-domain <host>', 'host name of this node in the localUrl of deployments (empty: the machine\'s host name)', 'localhost')
    .option('--http-port-counter <port>', 'each deployment listens on the next port after this one (0 = free ports)', '10000')
    .option('--process', 'one child process per replica (OS isolation) instead of in-process listeners', false)
    .option('--capsule-path <command>', 'with --process: the capsule command a replica runs (default: this capsule)')
    .option('--workers <n>', 'worker threads shared by every deployment (default: CPU cores)')
    .option('--modules-dir <dir>', 'module cache (default: a temporary directory removed at exit)')
    .addHelpText('after', '\nEnvironment: CAPSULE_WORKER_ADMIN_TOKEN protects every route but the list; CAPSULE_REVERSE_PROXY_ADMIN_TOKEN is sent to the reverse proxy; CAPSULE_FAAS_TOKEN and CAPSULE_DOMAIN are those of the gen-2 FaaS routes (/functions/start, …) the node serves too.')
    .exitOverride()
    .action(async (f: NodeFlags) => {
      const listen = listenOptions(f);
      const portCounter = intFlag(f.httpPortCounter, '--http-port-counter', 0, 65534);
      const workers = f.workers === undefined ? undefined : intFlag(f.workers, '--workers', 1, 1024);
      const { createLogger } = await import('../../observability/logger.ts');
      const { startNode, httpProxyRegistration } = await import('./index.ts');
      const { hostname } = await import('node:os');
      const logger = createLogger(f.logLevel);
      // Go's start-worker.sh passes -capsulePath=capsule: without --process it has nothing to name
      if (f.capsulePath !== undefined && !f.process) logger.warn({ capsulePath: f.capsulePath }, '--capsule-path is ignored without --process (deployments run in this process)');
      const proxyUrl = f.reverseProxy?.replace(/\/+$/, '');
      const node = await startNode({
        ...listen, logger, portCounter, workers, process: f.process, modulesDir: f.modulesDir,
        capsuleCommand: f.capsulePath === undefined || !f.process ? undefined : f.capsulePath.split(/\s+/).filter(Boolean),
        workerDomain: f.workerDomain === '' ? hostname() : f.workerDomain,
        adminToken: process.env['CAPSULE_WORKER_ADMIN_TOKEN'], insecureAdmin: f.insecureAdmin,
        faasToken: process.env['CAPSULE_FAAS_TOKEN'], faasDomain: process.env['CAPSULE_DOMAIN'],
        proxyUrl, proxy: proxyUrl ? httpProxyRegistration(proxyUrl, process.env['CAPSULE_REVERSE_PROXY_ADMIN_TOKEN'], f.backend) : undefined,
      });
      exit(await serveServices([node], logger));
    });
};
