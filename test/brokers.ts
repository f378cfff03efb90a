/**
 * Test helpers for the message triggers: real `nats-server` and `mosquitto` processes on free
 * loopback ports (restartable on the same port), and `capsule nats|mqtt` runners.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, root } from './helpers.ts';

/** Path of a broker binary, or undefined when it is not installed. */
export function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** A free loopback TCP port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = tcpConnect(port, '127.0.0.1');
      sock.once('connect', () => { sock.destroy(); resolve(true); });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
}

/** A broker process on a fixed port that can be killed and started again. */
export interface Broker {
  readonly port: number;
  readonly url: string;
  /** Kills the broker (SIGKILL) and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Everything it printed. */
  logs(): string;
}

async function broker(cmd: string, args: string[], port: number, url: string): Promise<Broker> {
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
  await start();
  return { port, url, start, kill, logs: () => out };
}

/** Starts `nats-server` on a free loopback port. */
export async function startNatsServer(bin: string): Promise<Broker> {
  const port = await freePort();
  return broker(bin, ['-a', '127.0.0.1', '-p', String(port)], port, `nats://127.0.0.1:${port}`);
}

/** Starts `mosquitto` on a free loopback port (a config file: mosquitto 2 needs one for a listener). */
export async function startMosquitto(bin: string): Promise<Broker> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'capsule-mosquitto-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  return broker(bin, ['-c', conf], port, `mqtt://127.0.0.1:${port}`);
}

/** A running `capsule nats|mqtt`. */
export interface Runner {
  child: ChildProcess;
  /** The ready line. */
  line: string;
  /** The runner routes' URL (with --http-port). */
  httpUrl?: string;
  /** Everything it wrote on stderr so far. */
  logs(): string;
  /** Sends a signal (default SIGTERM) and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/**
 * Starts `capsule <args>` and waits for its ready line `capsule subscribed to …`.
 * @throws when it exits first (with its stderr)
 */
export function startRunner(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Runner> {
  const child = spawn(process.execPath, [cli, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /^capsule subscribed to .*$/m.exec(stdout);
      if (m) {
        resolve({
          child, line: m[0], httpUrl: /runner routes on (\S+)/.exec(m[0])?.[1], logs: () => stderr, exited,
          stop: async (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
    void exited.then((code) => reject(new Error(`capsule exited with ${code} before it subscribed:\n${stderr}`)));
  });
}

/** Reads a counter from Prometheus text (sum over the series whose labels include `labels`). */
export async function metric(httpUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${httpUrl}/capsule/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}
