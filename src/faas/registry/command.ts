/**
 * `capsule registry` (bin `capsule-registry`; Go flags `-files -httpPort -crt -key`,
 * faas-api.md §2): options only, the service is imported when the command runs.
 */
import type { Command } from 'commander';
import { parseSize } from '../../base/units.ts';
import { listenOptions, serveServices, serviceOptions, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';

/** Registers `capsule registry`. */
export const registryCommand: CommandRegistrar = (program: Command, exit) => {
  serviceOptions(program.command('registry').description('module registry: upload (multipart), download with SHA-256 digests, info, list (Go capsule-registry API)'), '4999')
    .option('--files <dir>', 'root directory of the modules (<dir>/<org>/<module>/<tag>/<module>.wasm)', './registry')
    .option('--max-module-size <size>', 'largest module accepted (larger → 413)', '64MiB')
    .addHelpText('after', '\nEnvironment: CAPSULE_REGISTRY_ADMIN_TOKEN protects uploads (header CAPSULE_REGISTRY_ADMIN_TOKEN or Authorization: Bearer).')
    .exitOverride()
    .action(async (f: ServiceFlags & { files: string; maxModuleSize: string }) => {
      const listen = listenOptions(f);
      const maxModuleSize = parseSize(f.maxModuleSize, '--max-module-size');
      const { createLogger } = await import('../../observability/logger.ts');
      const { startRegistry } = await import('./index.ts');
      const logger = createLogger(f.logLevel);
      const registry = await startRegistry({
        ...listen, logger, files: f.files, maxModuleSize,
        adminToken: process.env['CAPSULE_REGISTRY_ADMIN_TOKEN'], insecureAdmin: f.insecureAdmin,
      });
      exit(await serveServices([registry], logger));
    });
};
