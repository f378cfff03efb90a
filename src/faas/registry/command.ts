/**
 * `capsule registry` (bin `capsule-registry`; Go flags `-files -httpPort -crt -key`,
 * faas-api.md §2): options only, the service is imported when the command runs.
 */
import { Option, type Command } from 'commander';
import { parseSize } from '../../base/units.ts';
import { clusterFlag, listenOptions, replicasFlag, REPLICAS_HELP, serveServices, serviceOptions, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';

/** Registers `capsule registry`. */
export const registryCommand: CommandRegistrar = (program: Command, exit) => {
  serviceOptions(program.command('registry').description('module registry: upload (multipart), download with SHA-256 digests, info, list (Go capsule-registry API)'), '4999')
    .option('--files <dir>', 'root directory of the modules (<dir>/<org>/<module>/<tag>/<module>.wasm)', './registry')
    .option('--max-module-size <size>', 'largest module accepted (larger → 413)', '64MiB')
    .addOption(new Option('--backend <backend>', 'where modules are kept: files (--files) or the NATS Object Store (--cluster)').choices(['fs', 'files', 'nats']).default('fs'))
    .option('--cluster <urls>', 'NATS servers of the cluster, comma-separated (with --backend nats)', 'nats://127.0.0.1:4222')
    .option('--lattice <name>', 'lattice prefix: isolates Capsule clusters sharing one NATS', 'default')
    .option('--replicas <n>', REPLICAS_HELP)
    .addHelpText('after', '\nEnvironment: CAPSULE_REGISTRY_ADMIN_TOKEN protects uploads (header CAPSULE_REGISTRY_ADMIN_TOKEN or Authorization: Bearer).')
    .exitOverride()
    .action(async (f: ServiceFlags & { files: string; maxModuleSize: string; backend: string; cluster: string; lattice: string; replicas?: string }) => {
      const listen = listenOptions(f);
      const maxModuleSize = parseSize(f.maxModuleSize, '--max-module-size');
      const { createLogger } = await import('../../observability/logger.ts');
      const { startRegistry } = await import('./index.ts');
      const logger = createLogger(f.logLevel, f.logFormat);
      const store = f.backend === 'nats' ? await clusterStore(f.cluster, f.lattice, replicasFlag(f.replicas), logger) : undefined;
      const registry = await startRegistry({
        ...listen, logger, files: f.files, maxModuleSize, store,
        adminToken: process.env['CAPSULE_REGISTRY_ADMIN_TOKEN'], insecureAdmin: f.insecureAdmin,
      });
      exit(await serveServices([registry], logger));
    });
};

/** The Object Store of a lattice (faas-cluster.md §1.7), replicated as cluster/state.ts `clusterReplicas` says. */
async function clusterStore(urls: string, lattice: string, replicas: number | undefined, logger: import('../../observability/logger.ts').Logger) {
  const { connectCluster, clusterReplicas } = await import('../cluster/state.ts');
  const { bucketName, checkLattice } = await import('../cluster/lattice.ts');
  const { ObjectModuleStore } = await import('./nats-store.ts');
  const servers = clusterFlag(urls);
  const nc = await connectCluster({ servers, name: 'capsule-registry', logger });
  return ObjectModuleStore.open(nc, bucketName(checkLattice(lattice), 'MODULES'), { replicas: await clusterReplicas(nc, replicas) });
}
