/**
 * Test helpers for the host capabilities: a real `redis-server` on a free loopback port (that can
 * be stopped and started again on the same port), local HTTP servers, and in-process functions
 * driven through the host SDK (`CapsuleFunction`) for the capability probes.
 */
import { existsSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { CapsuleFunction, type FunctionOptions } from '../src/engine/function.ts';
import type { CliOutput } from '../src/base/invocation.ts';
import { findBinary, freePort, restartable } from './helpers.ts';

export { freePort };

/** Path of `redis-server`, or undefined when it is not installed. */
export function redisServerBinary(): string | undefined {
  return findBinary('redis-server');
}

/** A `redis-server` on a fixed loopback port, without persistence. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops it (SIGKILL: the connection drops as in a crash) and waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: no persistence). */
  start(): Promise<void>;
}

/** Starts `redis-server --port <free> --save '' --appendonly no` on 127.0.0.1. */
export async function startRedis(bin: string): Promise<RedisServer> {
  const port = await freePort();
  const p = await restartable(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], port);
  return { port, url: `redis://127.0.0.1:${port}`, start: p.start, stop: p.kill };
}

/** A local HTTP server for outbound calls. */
export interface LocalServer {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  close(): Promise<void>;
}

/** Starts a `node:http` server on a free loopback port. */
export function startHttp(handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void): Promise<LocalServer> {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks)));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port, url: `http://127.0.0.1:${port}`,
        close: () => new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
      });
    });
  });
}

/** What a probe command answered: `ok` for an `S` / plain result, the text either way. */
export interface ProbeAnswer {
  ok: boolean;
  text: string;
}

/** A probe module loaded in-process (real workers, real services). */
export interface Probe {
  fn: CapsuleFunction;
  /** Runs one `callHandle` command (gen 1: the arguments are joined with `²`). */
  run(...args: string[]): Promise<ProbeAnswer>;
  close(): Promise<void>;
}

/** Loads a probe module with these settings. */
export async function loadProbe(path: string, options: FunctionOptions = {}): Promise<Probe> {
  const fn = await CapsuleFunction.load({ path }, { workers: 1, ...options });
  const gen1 = fn.module.detection.kind.startsWith('capsule-1');
  const sep = fn.module.detection.kind === 'capsule-1a' ? '°' : '²';
  return {
    fn,
    async run(...args: string[]) {
      const params = new TextEncoder().encode(gen1 ? args.join(sep) : args.join(''));
      const { output } = await fn.invoke({ type: 'cli', params, args: [] });
      const out = output as CliOutput;
      return { ok: out.exitCode === 0, text: new TextDecoder().decode(out.text ?? new Uint8Array(0)) };
    },
    close: () => fn.close(),
  };
}
