/**
 * `capsule proxy` (bin `capsule-reverse-proxy`; Go flags `-httpPort -config -backend -crt -key`,
 * faas-api.md §1): options only, the service is imported when the command runs.
 */
import { CapsuleError } from '../../base/errors.ts';
import { serviceOptions, listenOptions, serveServices, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';

interface ProxyFlags extends ServiceFlags {
  config?: string;
  backend: string;
  timeout: string;
}

/** Registers `capsule proxy`. */
export const proxyCommand: CommandRegistrar = (program, exit) => {
  serviceOptions(program.command('proxy').description('the FaaS gateway: routes /functions/<name>[/<revision>[/path]] to upstream URLs, with the Go registration API under /memory/… (faas-api.md §1)'), '8080')
    .option('--config <file>', 'YAML routes loaded at start (functions: {name: {revision: [urls]}})')
    .option('--backend <name>', 'where routes live: memory (redis and nats come with the cluster mode)', 'memory')
    .option('--timeout <duration>', 'wait for an upstream\'s response headers (and between body chunks)', '30s')
    .exitOverride()
    .action(async (f: ProxyFlags) => {
      if (f.backend !== 'memory') {
        throw new CapsuleError('USAGE', f.backend === 'redis' || f.backend === 'nats'
          ? `--backend ${f.backend} is not available yet (planned with the cluster mode); use --backend memory`
          : `--backend ${f.backend}: expected memory`);
      }
      const { createLogger } = await import('../../observability/logger.ts');
      const { parseDuration } = await import('../../base/units.ts');
      const { startProxy, loadRoutesConfig, PROXY_TOKEN } = await import('./index.ts');
      const logger = createLogger(f.logLevel);
      const listen = listenOptions(f);
      const timeoutMs = parseDuration(f.timeout, '--timeout');
      const routes = f.config ? loadRoutesConfig(f.config, logger) : undefined;
      const proxy = await startProxy({
        logger, ...listen, routes, timeoutMs,
        adminToken: process.env[PROXY_TOKEN] || undefined, insecureAdmin: f.insecureAdmin,
      });
      if (routes) logger.info({ config: f.config, functions: Object.keys(routes).length }, 'static routes loaded');
      exit(await serveServices([proxy], logger));
    });
};
