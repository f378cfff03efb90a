/**
 * `capsule up` (faas-cluster.md §1.1, like `wash up`): starts a local `nats-server -js` so the
 * cluster mode can be tried on one machine, prints the `--cluster` URL to give the other commands,
 * and with `--all` also runs a gateway, a registry and a node against it in this process.
 * SIGTERM/SIGINT stop the services first, then the server. Options only: the code is imported
 * when the command runs.
 */
import { CapsuleError } from '../../base/errors.ts';
import { intFlag, workersFlag } from '../../cli/flags.ts';
import { latticeFlag, listenOptions, serviceOptions, type CommandRegistrar, type ServiceFlags } from '../shared/command.ts';
import { defaultCacheDir } from '../node/command.ts';

interface UpFlags extends ServiceFlags {
  natsPort: string;
  natsServer?: string;
  storeDir?: string;
  temp: boolean;
  lattice: string;
  all: boolean;
  registryPort: string;
  nodePort: string;
  httpPortCounter: string;
  workers?: string;
  cacheDir?: string;
  timeout: string;
}

/** Registers `capsule up`. */
export const upCommand: CommandRegistrar = (program, exit) => {
  serviceOptions(program.command('up').description('start a local NATS server with JetStream (nats-server -js) for cluster mode and print its --cluster URL; --all also runs a gateway, a registry and a node against it'), '8080')
    .option('--nats-port <port>', 'client port of the NATS server (0 = a free port)', '4222')
    .option('--nats-server <path>', 'the nats-server program (default: CAPSULE_NATS_SERVER, else PATH, /usr/sbin)')
    .option('--store-dir <dir>', 'JetStream store directory, kept across runs (default: ~/.local/share/capsule/nats)')
    .option('--temp', 'use a temporary JetStream store, removed at exit', false)
    .option('--lattice <name>', 'lattice prefix of the services of --all', 'default')
    .option('--all', 'also run a gateway (--http-port), a registry (--registry-port) and a node (--node-port) in this process', false)
    .option('--registry-port <port>', 'with --all: registry port (0 = a free port)', '4999')
    .option('--node-port <port>', 'with --all: node (worker API) port (0 = a free port)', '9999')
    .option('--http-port-counter <port>', 'with --all: the node\'s per-deployment listeners start after this port (0 = free ports)', '10000')
    .option('--workers <n>', 'with --all: worker threads of the node (default: CPU cores)')
    .option('--cache-dir <dir>', 'with --all: the node\'s module cache (default: ~/.cache/capsule)')
    .option('--timeout <duration>', 'with --all: the gateway\'s wait for a node\'s answer', '30s')
    .addHelpText('after', `
nats-server is Debian's package "nats-server" or a download from https://nats.io/download/.
With --all: CAPSULE_REVERSE_PROXY_ADMIN_TOKEN, CAPSULE_REGISTRY_ADMIN_TOKEN, CAPSULE_WORKER_ADMIN_TOKEN
protect the admin routes as with the separate services. For production run several servers
(nats-server 2.10 or newer) and the services apart: see deploy/ and docs/cluster.md.`)
    .exitOverride()
    .action(async (f: UpFlags) => exit(await up(f)));
};

/** Runs `capsule up` until a signal (or the NATS server's own exit). @returns the exit code */
async function up(f: UpFlags): Promise<number> {
  const listen = listenOptions(f);
  const natsPort = intFlag(f.natsPort, '--nats-port', 0, 65535);
  if (f.temp && f.storeDir) throw new CapsuleError('USAGE', '--temp and --store-dir exclude each other');
  const { findNatsServer, startLocalNats, defaultStoreDir } = await import('./nats.ts');
  const bin = findNatsServer(f.natsServer ?? (process.env['CAPSULE_NATS_SERVER'] || undefined));
  const lattice = await latticeFlag(f.lattice);
  const ports = f.all ? {
    registry: intFlag(f.registryPort, '--registry-port', 0, 65535), node: intFlag(f.nodePort, '--node-port', 0, 65535),
    counter: intFlag(f.httpPortCounter, '--http-port-counter', 0, 65534), workers: workersFlag(f.workers),
  } : undefined;
  const { createLogger } = await import('../../observability/logger.ts');
  const { Shutdown, serveUntilClosed } = await import('../../triggers/lifecycle.ts');
  const logger = createLogger(f.logLevel, f.logFormat);
  let shutdown: InstanceType<typeof Shutdown<number>> | undefined;
  let code = 0;
  const nats = await startLocalNats({
    bin, host: listen.host, port: natsPort, storeDir: f.temp ? undefined : (f.storeDir ?? defaultStoreDir()),
    onExit: (exitCode, output) => {
      logger.error({ code: exitCode, output: output.trim().split('\n').slice(-5).join('\n') }, 'nats-server ended on its own; stopping');
      code = 1;
      void shutdown?.run('nats-server exited');
    },
  }).catch((e: Error) => {
    const taken = /address already in use/.test(e.message) ? `\nport ${natsPort} is taken (another nats-server? then use --cluster nats://127.0.0.1:${natsPort} directly, or --nats-port 0)` : '';
    throw e instanceof CapsuleError ? new CapsuleError(e.code, `${e.message}${taken}`) : e;
  });
  process.stderr.write(`nats      ${nats.url} (JetStream, store ${nats.storeDir}${f.temp ? ', removed at exit' : ''})\n`
    + `use       --cluster ${nats.url} --lattice ${lattice}\n`);
  let services: Awaited<ReturnType<typeof import('./index.ts').startClusterServices>> | undefined;
  if (ports) {
    const { startClusterServices } = await import('./index.ts');
    const { parseDuration } = await import('../../base/units.ts');
    const env = process.env;
    services = await startClusterServices({
      logger, servers: [nats.url], lattice, host: listen.host, tls: listen.tls, gatewayPort: listen.port, registryPort: ports.registry, nodePort: ports.node,
      portCounter: ports.counter, workers: ports.workers, cacheDir: f.cacheDir ?? await defaultCacheDir(), timeoutMs: parseDuration(f.timeout, '--timeout'),
      insecureAdmin: f.insecureAdmin,
      tokens: { proxy: env['CAPSULE_REVERSE_PROXY_ADMIN_TOKEN'] || undefined, registry: env['CAPSULE_REGISTRY_ADMIN_TOKEN'] || undefined, node: env['CAPSULE_WORKER_ADMIN_TOKEN'] || undefined },
    }).catch(async (e: Error) => {
      await nats.stop();
      throw new CapsuleError('USAGE', `capsule up --all cannot start ${e.message}`);
    });
    process.stderr.write(`gateway   ${services.gateway.url}\nregistry  ${services.registry.url}\nnode      ${services.node.url}\n`);
  }
  shutdown = new Shutdown<number>(async (reason) => {
    logger.info({ reason }, 'shutting down');
    await services?.close().catch((e: Error) => logger.warn({ err: e.message }, 'closing the services'));
    await nats.stop();
    return code;
  });
  const s = shutdown;
  return serveUntilClosed({ shutdown: (r) => s.run(r), closed: s.closed }, `capsule listening on ${services?.gateway.url ?? nats.url}`, logger);
}

