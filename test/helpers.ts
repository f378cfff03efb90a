/**
 * Test helpers: run the real `capsule` CLI as a child process, start real servers on free
 * loopback ports, find built guests.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const cli = join(root, 'bin/capsule.js');

/** Path of a built test fixture (`build/fixtures/<name>.wasm`). */
export function fixture(name: string): string {
  return join(root, 'build/fixtures', `${name}.wasm`);
}

/** Path of a built example (`examples/<name>/<name>.wasm`). */
export function example(name: string): string {
  return join(root, 'examples', name, `${name}.wasm`);
}

/** A `skip` reason when a guest was not built (its toolchain is missing), else false. */
export function missing(path: string): string | false {
  return existsSync(path) ? false : `${path.replace(root, '')} was not built (toolchain missing: see scripts/setup.sh)`;
}

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

/** Runs the CLI to completion. */
export function runCapsule(args: string[], o: { env?: NodeJS.ProcessEnv; stdin?: string | Buffer; bin?: string; cwd?: string } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [o.bin ?? cli, ...args], {
      cwd: o.cwd ?? root, env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.end(o.stdin ?? '');
    collect(child).then(resolve, reject);
  });
}

/** Waits for a child to close and gathers its output. */
function collect(child: ChildProcess): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes });
    });
  });
}

/**
 * Runs the CLI through bash, for argv bytes Node cannot pass (invalid UTF-8).
 * `$CAPSULE` in the line is the CLI (`node bin/capsule.js`).
 */
export function runShell(line: string): Promise<Ran> {
  return collect(spawn('bash', ['-c', line], { cwd: root, env: { ...process.env, CAPSULE: `${process.execPath} ${cli}` } }));
}

/** A CLI process that printed its ready line. */
export interface Started {
  child: ChildProcess;
  /** The ready line's match. */
  ready: RegExpExecArray;
  /** Everything it wrote on stderr so far. */
  logs(): string;
  /** Sends a signal (default SIGTERM) and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/**
 * Starts `capsule <args>` (or `o.bin`) and waits until stdout matches `ready`.
 * @throws when the process exits first (with its stderr)
 */
export function startUntil(args: string[], ready: RegExp, o: { env?: NodeJS.ProcessEnv; bin?: string } = {}): Promise<Started> {
  const child = spawn(process.execPath, [o.bin ?? cli, ...args], { cwd: root, env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = ready.exec(stdout);
      if (m) {
        resolve({
          child, ready: m, logs: () => stderr, exited,
          stop: async (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
    void exited.then((code) => reject(new Error(`capsule exited with ${code} before it was ready:\n${stderr}`)));
  });
}

export interface Server extends Started {
  url: string;
}

/** Starts `capsule <args>` and waits for `capsule listening on <url>`. */
export async function startServer(args: string[], o: { env?: NodeJS.ProcessEnv; bin?: string } = {}): Promise<Server> {
  const s = await startUntil(args, /capsule listening on (\S+)/, o);
  return { ...s, url: s.ready[1]! };
}

/** A free loopback TCP port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createTcpServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Waits until something accepts connections on 127.0.0.1:`port`. @throws after `ms` */
export async function waitForPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = tcpConnect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
}

/** A server process on a fixed port that can be killed and started again (a crash and a restart). */
export interface Restartable {
  readonly port: number;
  /** Starts it (again) and waits until it accepts connections. */
  start(): Promise<void>;
  /** Kills it (SIGKILL, connections drop as in a crash) and waits for the exit. */
  kill(): Promise<void>;
  /** Everything it printed. */
  logs(): string;
}

/** Starts `cmd args` (listening on `port`) and returns it running. */
export async function restartable(cmd: string, args: string[], port: number): Promise<Restartable> {
  let child: ChildProcess | undefined;
  let out = '';
  const start = async () => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitForPort(port);
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start().catch(async (e: unknown) => {
    await kill(); // not left running when it never listened
    throw new Error(`${cmd} did not listen on ${port}: ${(e as Error).message}\n${out.split('\n').slice(-5).join('\n')}`, { cause: e });
  });
  return { port, start, kill, logs: () => out };
}

/** Path of an installed program (PATH, then the sbin folders Debian uses), or undefined. */
export function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), '/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin', '/sbin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * Polls `check` until it returns true or `ms` pass.
 * @param last what the failure message adds, read when time is up (e.g. the last answer seen)
 */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000, last?: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`condition not met in time${last ? `: ${last()}` : ''}`);
}

/**
 * Writes a self-signed certificate for `localhost` into `dir`: `crt.pem` and `key.pem` (openssl).
 * @returns false when openssl is not installed (the test then skips)
 */
export function selfSignedCert(dir: string): boolean {
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'crt.pem')], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A static file server over a directory (where reloads download modules from), on a free loopback port. */
export async function fileServer(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: HttpServer = createHttpServer((req, res) => {
    const file = join(dir, decodeURIComponent((req.url ?? '/').split('?')[0]!));
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/wasm' }).end(readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}
