/**
 * `capsule proxy` (bin `capsule-reverse-proxy`; Go flags `-httpPort -config -backend -crt -key`,
 * faas-api.md §1): options only, the service is imported when the command runs.
 */
import { CapsuleError } from '../../base/errors.ts';
import { clusterFlag, latticeFlag, replicasFlag, REPLICAS_HELP, serviceOptions, listenOptions, serveServices, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';

interface ProxyFlags extends ServiceFlags {
  config?: string;
  backend: string;
  timeout: string;
  cluster?: string;
  lattice: string;
  replicas?: string;
  redisUri?: string;
}

/** Registers `capsule proxy`. */
export const proxyCommand: CommandRegistrar = (program, exit) => {
  serviceOptions(program.command('proxy').description('the FaaS gateway: routes /functions/<name>[/<revision>[/path]] to upstream URLs, with the Go registration API under /memory/… (faas-api.md §1)'), '8080')
    .option('--config <file>', 'YAML routes loaded at start (functions: {name: {revision: [urls]}})')
    .option('--backend <name>', 'where routes live: memory, redis (shared by several proxies, --redis-uri) or nats (cluster gateway, --cluster)', 'memory')
    .option('--cluster <urls>', 'NATS servers of the cluster, comma-separated (with --backend nats)')
    .option('--lattice <name>', 'lattice prefix: isolates Capsule clusters sharing one NATS', 'default')
    .option('--replicas <n>', REPLICAS_HELP)
    .option('--redis-uri <url>', 'Redis server of --backend redis (default: REDIS_URI, else redis://localhost:6379)')
    .option('--timeout <duration>', 'wait for an upstream\'s response headers (and between body chunks)', '30s')
    .exitOverride()
    .action(async (f: ProxyFlags) => {
      if (f.backend !== 'memory' && f.backend !== 'redis' && f.backend !== 'nats') throw new CapsuleError('USAGE', `--backend ${f.backend}: expected memory, redis or nats`);
      if (f.backend === 'nats' && !f.cluster) throw new CapsuleError('USAGE', '--backend nats needs --cluster nats://host:4222[,nats://…] (the NATS servers of the cluster)');
      if (f.backend !== 'nats' && f.cluster) throw new CapsuleError('USAGE', '--cluster is for --backend nats');
      const { createLogger } = await import('../../observability/logger.ts');
      const { parseDuration } = await import('../../base/units.ts');
      const { startProxy, loadRoutesConfig, openBackend, PROXY_TOKEN } = await import('./index.ts');
      const logger = createLogger(f.logLevel, f.logFormat);
      const listen = listenOptions(f);
      const timeoutMs = parseDuration(f.timeout, '--timeout');
      const routes = f.config ? loadRoutesConfig(f.config, logger) : undefined;
      const backend = await openBackend(f.backend === 'memory' ? { backend: 'memory' }
        : f.backend === 'redis' ? { backend: 'redis', redisUri: await redisUri(f.redisUri), logger }
          : { backend: 'nats', servers: clusterFlag(f.cluster), lattice: await latticeFlag(f.lattice), logger, timeoutMs, replicas: replicasFlag(f.replicas) })
        .catch((e: Error) => {
          throw e instanceof CapsuleError ? e : new CapsuleError('LOAD', `--backend ${f.backend}: ${e.message}`);
        });
      const proxy = await startProxy({
        logger, ...listen, routes, timeoutMs, backend,
        adminToken: process.env[PROXY_TOKEN] || undefined, insecureAdmin: f.insecureAdmin,
      });
      if (routes) logger.info({ config: f.config, functions: Object.keys(routes).length }, 'static routes loaded');
      if (f.backend !== 'memory') logger.info({ backend: f.backend, functions: proxy.table.names().length }, 'routes shared through the backend');
      exit(await serveServices([proxy], logger));
    });
};

/** The Redis URL of --backend redis: the flag, else REDIS_URI/REDIS_ADDR, else localhost. @throws CapsuleError USAGE */
async function redisUri(flag: string | undefined): Promise<string> {
  const { parseRedisUri, redisFromEnv } = await import('../../capabilities/redis/config.ts');
  return flag ? parseRedisUri(flag).url : redisFromEnv().url;
}

