/**
 * Test helpers for the message triggers: real `nats-server` and `mosquitto` processes on free
 * loopback ports (restartable on the same port), and `capsule nats|mqtt` runners.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary, freePort, restartable, startUntil, type Started } from './helpers.ts';

export { findBinary, freePort };

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
  return { ...(await restartable(cmd, args, port)), url };
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
export interface Runner extends Started {
  /** The ready line. */
  line: string;
  /** The runner routes' URL (with --http-port). */
  httpUrl?: string;
}

/** Starts `capsule <args>` and waits for its ready line `capsule subscribed to …`. */
export async function startRunner(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Runner> {
  const s = await startUntil(args, /^capsule subscribed to .*$/m, { env });
  return { ...s, line: s.ready[0], httpUrl: /runner routes on (\S+)/.exec(s.ready[0])?.[1] };
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
