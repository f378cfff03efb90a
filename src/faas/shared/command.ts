/**
 * Flags and process handling every FaaS service command shares (`capsule proxy`, `registry`,
 * `node`, `faas`): `--http-port --host --crt --key --insecure-admin --log-level --log-format`, Go spellings
 * (`-httpPort`) arriving normalised by src/cli/legacy.ts. A command file defines its options and
 * lazily imports its service (start-up cost: only the chosen service is loaded).
 */
import { Option, type Command } from 'commander';
import { CapsuleError } from '../../base/errors.ts';
import { LOG_LEVELS, type LogFormat, type LogLevel } from '../../observability/log-levels.ts';
import type { Logger } from '../../observability/logger.ts';
import { intFlag, listenFlags, logFormatOption, type ListenFlags } from '../../cli/flags.ts';
import type { RunningService } from './service.ts';

/** Registers one command on the `capsule` program (see src/faas/commands.ts). */
export type CommandRegistrar = (program: Command, exit: (code: number) => void) => void;

/** The flags of {@link serviceOptions}, parsed by commander. */
export interface ServiceFlags extends ListenFlags {
  insecureAdmin: boolean;
  logLevel: LogLevel;
  /** `--log-format`; absent: pretty on a terminal, JSON otherwise. */
  logFormat?: LogFormat;
}

/** Adds the shared service flags; `port` is the Go default of the service (8080, 4999, 9999). */
export function serviceOptions(cmd: Command, port: string): Command {
  return listenFlags(cmd, port)
    .option('--insecure-admin', 'without an admin token, accept admin calls from any address (default: loopback only)', false)
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS as string[]).default('info'))
    .addOption(logFormatOption());
}

/** Host, port and TLS of the shared flags (src/cli/flags.ts, shared with `capsule serve`). */
export { listenOptions } from '../../cli/flags.ts';

/**
 * Runs services until SIGTERM/SIGINT: prints the ready line of the first (`capsule listening on
 * URL`, conventions.md §1), logs the others, closes them all on a signal.
 * @returns exit code 0
 */
export async function serveServices(services: RunningService[], logger: Logger, describe: string[] = []): Promise<number> {
  const { serveUntilClosed, Shutdown } = await import('../../triggers/lifecycle.ts');
  const shutdown = new Shutdown<number>(async (reason) => {
    logger.info({ reason }, 'shutting down');
    await Promise.allSettled(services.map((s) => s.close()));
    return 0;
  });
  services.slice(1).forEach((s, i) => logger.info({ url: s.url }, `${describe[i + 1] ?? 'service'} listening`));
  return serveUntilClosed({ shutdown: (r) => shutdown.run(r), closed: shutdown.closed }, `capsule listening on ${services[0]!.url}`, logger);
}

/**
 * The `--lattice` flag checked (faas-cluster.md §1.2: it becomes part of bucket and subject names).
 * @throws CapsuleError USAGE naming the flag and the rule
 */
export async function latticeFlag(name: string): Promise<string> {
  const { checkLattice } = await import('../cluster/lattice.ts');
  try {
    return checkLattice(name);
  } catch (e) {
    throw new CapsuleError('USAGE', `--lattice: ${(e as Error).message}`);
  }
}

/** Help text of `--replicas` (every cluster command has it). */
export const REPLICAS_HELP = 'with --cluster: JetStream replicas of buckets this process creates (1-5; default: min(3, servers the cluster announces)); an existing bucket is opened as it is';

/**
 * The `--replicas` flag (faas-cluster.md §1.2): undefined when not given (then the rule of
 * cluster/state.ts `clusterReplicas` decides).
 * @throws CapsuleError USAGE outside 1–5
 */
export function replicasFlag(text: string | undefined): number | undefined {
  return text === undefined ? undefined : intFlag(text, '--replicas', 1, 5);
}

/**
 * The `--cluster` flag: NATS server URLs, comma-separated (faas-cluster.md §1.1).
 * @throws CapsuleError USAGE when it names no server
 */
export function clusterFlag(text: string | undefined): string[] {
  const servers = (text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (servers.length === 0) throw new CapsuleError('USAGE', '--cluster: give at least one NATS server URL, e.g. --cluster=nats://127.0.0.1:4222 (`capsule up` starts one)');
  return servers;
}
