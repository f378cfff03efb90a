/**
 * `capsule node` (also `capsule worker`, bin `capsule-worker`; Go flags of faas-api.md §3:
 * `-httpPort -backend -reverseProxy -workerDomain -capsulePath -httpPortCounter -crt -key`):
 * options only, the node is imported when the command runs.
 */
import type { Command } from 'commander';
import type { ClusterNodeOptions } from './cluster/index.ts';
import { CapsuleError } from '../../base/errors.ts';
import { intFlag, workersFlag } from '../../cli/flags.ts';
import { clusterFlag, listenOptions, replicasFlag, REPLICAS_HELP, serveServices, serviceOptions, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';

/** The cluster flags of a node (`capsule node`, and `capsule faas-mode --cluster`). */
export interface ClusterNodeFlags {
  cluster?: string;
  lattice: string;
  labels?: string;
  maxInflight: string;
  cacheDir?: string;
  nodeId?: string;
  idleSeconds: string;
  replicas?: string;
}

/** Declares the cluster flags of a node on `cmd`. */
export function clusterNodeOptions(cmd: Command): Command {
  return cmd
    .option('--cluster <urls>', 'join the NATS cluster at these servers (comma-separated): the worker API writes desired state, the node serves every eligible revision over NATS')
    .option('--lattice <name>', 'with --cluster: lattice prefix (isolates Capsule clusters sharing one NATS)', 'default')
    .option('--labels <k=v,...>', 'with --cluster: labels of this node, matched by a deploy\'s "placement"')
    .option('--max-inflight <n>', 'with --cluster: calls in progress on this node at once; more are answered "busy" (the gateway retries elsewhere)', '256')
    .option('--cache-dir <dir>', 'with --cluster: content-addressed module cache (default: ~/.cache/capsule)')
    .option('--node-id <id>', 'with --cluster: this node\'s id (X-Capsule-Node, NODES bucket; default: <host>-<pid>)')
    .option('--replicas <n>', REPLICAS_HELP)
    .option('--idle-seconds <n>', 'with --cluster: scale-to-zero delay of deploys that give no "idleSeconds" (0 = never)', '0');
}

/**
 * The cluster options of a node from its flags, undefined without `--cluster`.
 * @throws CapsuleError USAGE for a bad value
 */
export async function clusterNodeFlags(f: ClusterNodeFlags): Promise<ClusterNodeOptions | undefined> {
  if (f.cluster === undefined) return undefined;
  return {
    servers: clusterFlag(f.cluster), lattice: f.lattice, nodeId: f.nodeId,
    labels: await labelsFlag(f.labels), maxInflight: intFlag(f.maxInflight, '--max-inflight', 1, 1_000_000),
    cacheDir: f.cacheDir ?? await defaultCacheDir(), idleSeconds: intFlag(f.idleSeconds, '--idle-seconds', 0, 31_536_000),
    replicas: replicasFlag(f.replicas),
  };
}

interface NodeFlags extends ServiceFlags, ClusterNodeFlags {
  backend: string;
  reverseProxy?: string;
  workerDomain: string;
  capsulePath?: string;
  httpPortCounter: string;
  process: boolean;
  workers?: string;
  modulesDir?: string;
}

/** `--cache-dir` default: `$XDG_CACHE_HOME/capsule`, else `~/.cache/capsule`, else under the OS temp directory. */
export async function defaultCacheDir(): Promise<string> {
  const { homedir, tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const base = process.env['XDG_CACHE_HOME'] || (homedir() ? join(homedir(), '.cache') : tmpdir());
  return join(base, 'capsule');
}

/** `--labels k=v,…`. @throws CapsuleError USAGE */
async function labelsFlag(text: string | undefined): Promise<Record<string, string>> {
  const { parseLabels } = await import('./cluster/records.ts');
  try {
    return parseLabels(text);
  } catch (e) {
    throw new CapsuleError('USAGE', `--labels: ${(e as Error).message}`);
  }
}

/** Registers `capsule node` (alias `worker`). */
export const nodeCommand: CommandRegistrar = (program: Command, exit) => {
  clusterNodeOptions(serviceOptions(program.command('node').alias('worker').description('function node: deploy, scale, list and undeploy revisions from download URLs, registered in the reverse proxy (Go capsule-worker API)'), '9999')
    .option('--backend <name>', 'route prefix of the reverse proxy registration API', 'memory')
    .option('--reverse-proxy <url>', 'reverse proxy to register deployments in (none: not registered)')
    .option('--worker-domain <host>', 'host name of this node in the localUrl of deployments; given empty (--worker-domain=), the machine\'s host name', 'localhost')
    .option('--http-port-counter <port>', 'each deployment listens on the next port after this one (0 = free ports)', '10000')
    .option('--process', 'one child process per replica (OS isolation) instead of in-process listeners', false)
    .option('--capsule-path <command>', 'with --process: the capsule command a replica runs (default: this capsule)')
    .option('--workers <n>', 'worker threads shared by every deployment (default: CPU cores)')
    .option('--modules-dir <dir>', 'module cache (default: a temporary directory removed at exit)'))
    .addHelpText('after', '\nEnvironment: CAPSULE_WORKER_ADMIN_TOKEN protects every route but the list; CAPSULE_REVERSE_PROXY_ADMIN_TOKEN is sent to the reverse proxy; CAPSULE_FAAS_TOKEN and CAPSULE_DOMAIN are those of the gen-2 FaaS routes (/functions/start, …) the node serves too.')
    .exitOverride()
    .action(async (f: NodeFlags) => {
      const listen = listenOptions(f);
      const portCounter = intFlag(f.httpPortCounter, '--http-port-counter', 0, 65534);
      const workers = workersFlag(f.workers);
      const { createLogger } = await import('../../observability/logger.ts');
      const { startNode, httpProxyRegistration } = await import('./index.ts');
      const { hostname } = await import('node:os');
      const logger = createLogger(f.logLevel, f.logFormat);
      // Go's start-worker.sh passes -capsulePath=capsule: without --process it has nothing to name
      if (f.capsulePath !== undefined && !f.process) logger.warn({ capsulePath: f.capsulePath }, '--capsule-path is ignored without --process (deployments run in this process)');
      const proxyUrl = f.reverseProxy?.replace(/\/+$/, '');
      const cluster = await clusterNodeFlags(f);
      const node = await startNode({
        cluster,
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
