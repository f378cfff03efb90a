/** Flag readers shared by every command (errors are USAGE errors: exit code 2). */
import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { CapsuleError } from '../base/errors.ts';
import { LOG_FORMATS } from '../observability/log-levels.ts';

/**
 * `--log-format json|pretty` of every serving command (Capsule's own log on stderr); absent:
 * pretty on a terminal, JSON lines otherwise (observability/logger.ts createLogger).
 */
export function logFormatOption(): Option {
  return new Option('--log-format <format>', 'log lines: json, or pretty (default: pretty on a terminal, json otherwise)').choices(LOG_FORMATS as string[]);
}

/**
 * A whole number flag within bounds.
 * @throws CapsuleError USAGE naming the flag and the range
 */
export function intFlag(text: string, name: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new CapsuleError('USAGE', `${name}: "${text}" must be a whole number from ${min} to ${max}`);
  return n;
}

/**
 * `--workers <n>` of the commands that run guests: worker threads, 1 to 256; absent: undefined
 * (the pool's default, CPU cores).
 * @throws CapsuleError USAGE naming the flag and the range
 */
export function workersFlag(text: string | undefined): number | undefined {
  return text ? intFlag(text, '--workers', 1, 256) : undefined;
}

/**
 * The bytes of a file named by a flag.
 * @throws CapsuleError USAGE naming the flag and the path
 */
export function readFlagFile(path: string, name: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new CapsuleError('USAGE', `${name} ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

/**
 * TLS material from `--crt`/`--key` (both or neither).
 * @throws CapsuleError USAGE when only one is given or a file cannot be read
 */
export function tlsFromFlags(f: { crt?: string; key?: string }): { cert: Buffer; key: Buffer } | undefined {
  if ((f.crt === undefined) !== (f.key === undefined)) throw new CapsuleError('USAGE', '--crt and --key go together');
  return f.crt ? { cert: readFlagFile(f.crt, '--crt'), key: readFlagFile(f.key!, '--key') } : undefined;
}

/** The flags {@link listenFlags} adds, as commander parses them. */
export interface ListenFlags {
  httpPort: string;
  host: string;
  crt?: string;
  key?: string;
}

/**
 * Adds the listening flags of every HTTP-serving command (`serve` and the FaaS services):
 * `--http-port` (default `port`), `--host` (default 127.0.0.1), `--crt`, `--key`.
 */
export function listenFlags(cmd: Command, port: string): Command {
  return cmd
    .option('--http-port <port>', 'port to listen on (0 = a free port, printed)', port)
    .option('--host <address>', 'interface to bind', '127.0.0.1')
    .option('--crt <path>', 'TLS certificate (PEM): serve HTTPS')
    .option('--key <path>', 'TLS private key (PEM)');
}

/**
 * Host, port and TLS material of {@link listenFlags}.
 * @throws CapsuleError USAGE on a port outside 0..65535, or a TLS pair that is incomplete or unreadable
 */
export function listenOptions(f: ListenFlags): { host: string; port: number; tls?: { cert: Buffer; key: Buffer } } {
  return { host: f.host, port: intFlag(f.httpPort, '--http-port', 0, 65535), tls: tlsFromFlags(f) };
}
