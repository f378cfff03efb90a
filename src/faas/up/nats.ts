/**
 * A local `nats-server -js` for `capsule up` (faas-cluster.md §1.1, like `wash up`): one JetStream
 * server on loopback, so cluster mode can be tried on one machine. The server gets a generated
 * config (8 MB `max_payload`, short ping timeouts as in deploy/nats/), its store directory and
 * reports the ports it took through `--ports_file_dir`, so port 0 means a free port without a race.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { CapsuleError } from '../../base/errors.ts';

/** Where `nats-server` comes from when it is missing (the message of {@link findNatsServer}). */
export const NATS_INSTALL_HINT = 'install it with the Debian/Ubuntu package "nats-server" (sudo apt install nats-server), or download it from https://nats.io/download/ (https://github.com/nats-io/nats-server/releases), or name it with --nats-server <path>';

/**
 * The `nats-server` program: `given` (flag or CAPSULE_NATS_SERVER) when set, else the first on
 * PATH or in the sbin folders Debian uses (its package installs /usr/sbin/nats-server, outside a
 * user's PATH).
 * @throws CapsuleError USAGE when it is not there, naming the package and the download page
 */
export function findNatsServer(given?: string): string {
  if (given) {
    if (!existsSync(given)) throw new CapsuleError('USAGE', `--nats-server ${given}: no such file; ${NATS_INSTALL_HINT}`);
    return given;
  }
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) if (dir && existsSync(join(dir, 'nats-server'))) return join(dir, 'nats-server');
  throw new CapsuleError('USAGE', `capsule up needs nats-server (NATS with JetStream), which was not found on PATH or in /usr/sbin: ${NATS_INSTALL_HINT}`);
}

/** `~/.local/share/capsule/nats` (or `$XDG_DATA_HOME/capsule/nats`): the default JetStream store of `capsule up`. */
export function defaultStoreDir(): string {
  const base = process.env['XDG_DATA_HOME'] || join(homedir() || tmpdir(), '.local', 'share');
  return join(base, 'capsule', 'nats');
}

/** Options of {@link startLocalNats}. */
export interface LocalNatsOptions {
  /** Path of `nats-server` (see {@link findNatsServer}). */
  bin: string;
  /** Interface the client port binds (default 127.0.0.1). */
  host?: string;
  /** Client port (0 = a free one). */
  port: number;
  /** JetStream store directory (created); undefined = a temporary one removed at stop. */
  storeDir?: string;
  /** Called with the server's exit code if it ends before {@link LocalNats.stop}. */
  onExit?: (code: number | null, output: string) => void;
  /** Longest wait for the server to be ready, ms (default 20 000). */
  readyMs?: number;
}

/** A running local server. */
export interface LocalNats {
  /** `nats://HOST:PORT`: what `--cluster` takes. */
  readonly url: string;
  /** Monitoring endpoint, `http://127.0.0.1:PORT`. */
  readonly monitor: string;
  readonly storeDir: string;
  readonly pid: number;
  /** Its last output (log lines), for error messages. */
  output(): string;
  /** SIGTERM, waits for the exit (SIGKILL after 10 s); removes a temporary store. Idempotent. */
  stop(): Promise<void>;
}

/** The server's config file text. */
function config(host: string, port: number, storeDir: string): string {
  return [
    'server_name: capsule-up',
    `listen: "${host}:${port === 0 ? -1 : port}"`,
    'http: "127.0.0.1:-1"',
    'max_payload: 8MB',
    'ping_interval: "2s"',
    'ping_max: 2',
    `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
    '',
  ].join('\n');
}

/**
 * Starts `nats-server -c <generated config>` in its own process group (a terminal's Ctrl-C reaches
 * Capsule, which stops the server after its services) and waits until `/healthz` answers.
 * @throws CapsuleError LOAD when the server exits or is not healthy within `readyMs`, with its last output
 */
export async function startLocalNats(o: LocalNatsOptions): Promise<LocalNats> {
  const run = mkdtempSync(join(tmpdir(), 'capsule-up-'));
  const storeDir = o.storeDir ?? join(run, 'store');
  mkdirSync(storeDir, { recursive: true });
  const conf = join(run, 'nats.conf');
  writeFileSync(conf, config(o.host ?? '127.0.0.1', o.port, storeDir));
  const child = spawn(o.bin, ['-c', conf, '--ports_file_dir', run], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  const keep = (d: Buffer) => void (out = (out + d.toString()).slice(-8192));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let stopping = false;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const spawnFailed = new Promise<Error>((r) => child.once('error', r));
  const killNow = () => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  process.once('exit', killNow);
  const cleanup = () => {
    process.removeListener('exit', killNow);
    rmSync(run, { recursive: true, force: true });
  };
  let ports: { url: string; monitor: string };
  try {
    ports = await waitReady(child, run, o.readyMs ?? 20_000, exited, spawnFailed, () => out);
  } catch (e) {
    killNow();
    await exited;
    cleanup();
    throw e;
  }
  void exited.then((code) => {
    if (!stopping) o.onExit?.(code, out);
  });
  let stopped: Promise<void> | undefined;
  return {
    ...ports, storeDir, pid: child.pid!, output: () => out,
    stop: () => (stopped ??= (async () => {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const late = setTimeout(killNow, 10_000);
        await exited;
        clearTimeout(late);
      }
      cleanup();
    })()),
  };
}

/** Waits for the ports file, then for `/healthz` 200. @throws CapsuleError LOAD */
async function waitReady(child: ChildProcess, run: string, ms: number, exited: Promise<number | null>, spawnFailed: Promise<Error>,
  output: () => string): Promise<{ url: string; monitor: string }> {
  const end = Date.now() + ms;
  let gone: string | undefined;
  void exited.then((code) => (gone = `nats-server exited with code ${code}`));
  void spawnFailed.then((e) => (gone = `nats-server could not start: ${e.message}`));
  const fail = (why: string) => new CapsuleError('LOAD', `${why}\n${output().trim().split('\n').slice(-8).join('\n')}`);
  for (;;) {
    if (gone) throw fail(gone);
    const file = readdirSync(run).find((f) => f.endsWith(`_${child.pid}.ports`));
    if (file) {
      const p = parsePorts(readFileSync(join(run, file), 'utf8'));
      const url = p.nats?.[0];
      const monitor = p.monitoring?.[0];
      if (url && monitor && (await fetch(`${monitor}/healthz`).then((r) => r.ok, () => false))) return { url, monitor };
    }
    if (Date.now() > end) throw fail(`nats-server was not ready within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The ports file's JSON (empty while nats-server is still writing it). */
function parsePorts(text: string): { nats?: string[]; monitoring?: string[] } {
  try {
    return JSON.parse(text) as { nats?: string[]; monitoring?: string[] };
  } catch {
    return {};
  }
}
