/**
 * The replicas of a deployed revision (faas-api.md §3: one Go launcher process per deployment).
 * A replica listens on its own port (the Go `localUrl`), in one of two ways:
 * - in-process (default, §9.7): an HTTP listener of the shared request pipeline
 *   (triggers/http/server.ts `servePipeline`) whose every path calls the revision's function in
 *   the node's function table, on the shared worker pool;
 * - `--process`: a child `capsule serve --wasm <cached module> --http-port <port>` per replica
 *   for OS isolation; its exit is detected (status Stopped or Failed with the exit code).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CapsuleError } from '../../base/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import { servePipeline, type HttpTarget, type RunningHttpTrigger } from '../../triggers/http/server.ts';
import type { WorkerPool } from '../../engine/pool.ts';
import type { CgiRoute } from '../../base/invocation.ts';
import type { TlsFiles } from '../shared/service.ts';

/** Go-style state of a replica (the gen-2 process labels of faas-api.md §6). */
export type ReplicaStatus = 'Started' | 'Stopped' | 'Failed';

/** One running (or ended) replica. */
export interface Replica {
  /** Go's `pid`: the child's process id with `--process`, else a synthetic id unique in the node. */
  readonly pid: number;
  readonly port: number;
  /** `http://<worker domain>:<port>`. */
  readonly localUrl: string;
  status: ReplicaStatus;
  /** Exit code of an ended `--process` child (or the signal's name). */
  exit?: number | string;
  /** Stops it; in-flight calls finish first (up to `graceMs`). Idempotent. */
  stop(): Promise<void>;
}

/** Where replicas listen. */
export interface ReplicaListen {
  /** Interface to bind. */
  host: string;
  /** Host name put in `localUrl` (Go `-workerDomain`). */
  domain: string;
  tls?: TlsFiles;
  logger: Logger;
  /** Time given to in-flight calls when a replica stops, ms. */
  graceMs: number;
}

let syntheticPid = 0;

/** What an in-process replica calls. */
export interface ReplicaTarget extends HttpTarget {
  /** Whether the version serving now is a WASI command or an Extism plugin (called through CGI). */
  cgi(): boolean;
}


/**
 * Starts an in-process replica: every request path calls `target` (the revision's current
 * version, looked up per call, so a reload never changes the listener).
 * @throws CapsuleError USAGE when the port cannot be bound
 */
export async function startInProcessReplica(target: ReplicaTarget, pool: WorkerPool, port: number, o: ReplicaListen): Promise<Replica> {
  const whole: CgiRoute = { route: '/...' };
  const running: RunningHttpTrigger = await servePipeline({
    pools: [pool],
    // WASI commands and Extism plugins get the CGI view of the whole path (as serve --functions)
    dispatch: () => (target.cgi() ? { type: 'function', target, cgi: whole } : { type: 'function', target }),
    stop: async () => undefined, // the function belongs to the table, not to this listener
  }, { host: o.host, port, tls: o.tls, logger: o.logger.child({ replica: port }), graceMs: o.graceMs });
  const replica: Replica = {
    pid: ++syntheticPid,
    port: running.port,
    localUrl: `${o.tls ? 'https' : 'http'}://${o.domain}:${running.port}`,
    status: 'Started',
    stop: async () => {
      await running.shutdown('replica removed');
      if (replica.status === 'Started') replica.status = 'Stopped';
    },
  };
  return replica;
}

/** The `capsule` command of this package: this Node and bin/capsule.js. */
export function ownCapsuleCommand(): string[] {
  return [process.execPath, fileURLToPath(new URL('../../../bin/capsule.js', import.meta.url))];
}

/** What a `--process` replica runs. */
export interface ProcessReplicaSpec {
  /** The command and its first arguments (`ownCapsuleCommand()`, or `--capsule-path`). */
  command: string[];
  /** The cached module file. */
  wasm: string;
  /** The guest's environment (the child gets `--no-inherit-env` and these as `--env`). */
  env: [string, string][];
  /** Called once when the child exits on its own or is stopped (status already set). */
  onExit(replica: Replica): void;
}

/**
 * Starts a child `capsule serve` for one replica and waits for its ready line
 * (`capsule listening on URL`, conventions.md §1).
 * Children serve plain HTTP (the node's `--crt`/`--key` are not passed on). A child that does
 * not exit within `graceMs` + 5 s of `stop` is killed.
 * @throws CapsuleError INTERNAL when the child cannot start or exits before it is ready (with the end of its stderr)
 */
export function startProcessReplica(spec: ProcessReplicaSpec, port: number, o: ReplicaListen): Promise<Replica> {
  const [cmd, ...first] = spec.command;
  const args = [...first, 'serve', '--wasm', spec.wasm, '--http-port', String(port), '--host', o.host, '--no-inherit-env',
    '--grace', `${o.graceMs}ms`, ...spec.env.flatMap(([k, v]) => ['--env', `${k}=${v}`])];
  const child: ChildProcess = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = o.logger.child({ replicaPid: child.pid });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
    log.debug({ stderr: d.toString().trimEnd() }, 'replica output');
  });
  return new Promise<Replica>((resolve, reject) => {
    let ready: Replica | undefined;
    let stopping = false;
    let buf = '';
    const onData = (d: Buffer) => {
      if (ready) return; // later output is the child's request log: not kept
      buf += d.toString();
      const m = /capsule listening on (\S+)/.exec(buf);
      if (!m) return;
      const url = new URL(m[1]!);
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      ready = {
        pid: child.pid!,
        port: Number(url.port),
        localUrl: `http://${o.domain}:${url.port}`,
        status: 'Started',
        stop: () => {
          stopping = true;
          return stopChild(child, exited, o.graceMs + 5000);
        },
      };
      resolve(ready);
    };
    child.stdout!.on('data', onData);
    child.once('error', (e) => reject(new CapsuleError('INTERNAL', `cannot start ${cmd}: ${e.message}`)));
    child.once('exit', (code, signal) => {
      if (!ready) {
        reject(new CapsuleError('INTERNAL', `the replica process (${cmd} ${args.slice(0, first.length + 3).join(' ')} …) exited with ${code ?? signal} before it was ready${stderr ? `: ${stderr.trim()}` : ''}`));
        return;
      }
      ready.exit = code ?? signal ?? undefined;
      ready.status = stopping || code === 0 ? 'Stopped' : 'Failed';
      log.info({ pid: ready.pid, exit: ready.exit, status: ready.status }, 'replica process exited');
      spec.onExit(ready);
    });
  });
}

/** SIGTERM (the child's serve drains its calls), SIGKILL if it is still there after `killAfterMs`. */
async function stopChild(child: ChildProcess, exited: Promise<void>, killAfterMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill('SIGTERM');
  const kill = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  kill.unref();
  await exited;
  clearTimeout(kill);
}
