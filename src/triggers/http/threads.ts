/**
 * `capsule serve --http-threads` (README "HTTP threads", docs/performance.md "Serve cost"): HTTP
 * accepted and parsed in the worker threads themselves. Each thread (thread.ts) listens on the
 * server's port with SO_REUSEPORT and runs the calls of its own connections; the main thread is
 * a supervisor that takes no part in a request:
 *
 * - it starts the threads (all at once, on a port it picked when asked for port 0) and returns
 *   once every one listens;
 * - a module the meter can instrument is sent metered (`versionOf`): a call of it past its
 *   deadline stops itself inside its thread (504), which serves on;
 * - it watches deadlines in each thread's shared memory (thread-protocol.ts) every 25 ms and
 *   stops a thread whose call runs past its deadline (a metered one: `METER_GRACE_MS` past it,
 *   a backstop), starting another in its place. The stuck
 *   request is answered `504` on its connection by this thread (plain HTTP; over TLS its
 *   connection is only closed), and the stopped thread's other connections are closed with it
 *   (logged with their number; see README "HTTP threads" for the bound);
 * - it answers what threads ask: host services, the scrape of `/capsule/metrics` (every
 *   thread's counters, aggregated with prom-client's `AggregatorRegistry`, those of the threads
 *   stopped as they sent them last, plus the process metrics of its own), and hot reload (`POST /load-wasm-module` and `--watch`: the new module
 *   is compiled here and sent to every thread, the old one retired in each once its calls are done);
 * - graceful shutdown drains every thread, then runs `OnStop`/`OnExit`.
 *
 * Lifecycle exports (`OnLoad`, `OnStop`, `OnExit`) run on the function's own worker pool, which
 * should have no thread at idle (`new WorkerPool({ workers: 0 })`).
 */
import { Worker } from 'node:worker_threads';
import { writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { WorkerPool } from '../../engine/pool.ts';
import { meteredModule } from '../../engine/load.ts';
import { bundleIfFresh } from '../../engine/worker-entry.ts';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import type { LogFormat, LogLevel } from '../../observability/log-levels.ts';
import { runLifecycle, runStopExports, settleWithin, Shutdown } from '../lifecycle.ts';
import { ModuleReloader, RELOAD_ROUTE } from './reload.ts';
import type { HttpTriggerOptions } from './server.ts';
import { listenError } from './connections.ts';
import { publishedRequest, TAKEN, threadSlot, THREAD_SLOT_BYTES, type FromThread, type ThreadAsk, type ThreadInit, type ThreadSlot, type ThreadVersion, type ToThread } from './thread-protocol.ts';

export interface HttpThreadsOptions extends HttpTriggerOptions {
  /** HTTP threads (default: CPU cores), 1–256. */
  threads?: number;
  /** The threads' log level and format (each thread writes its own lines to stderr). */
  logLevel?: LogLevel;
  logFormat?: LogFormat;
}

/** A registry's metrics as JSON (what a thread sends for a scrape). */
type Metrics = MetricObjectWithValues<MetricValue<string>>[];

/**
 * The pool a function served with HTTP threads (`serveHttpThreads`) runs its lifecycle exports
 * and host services on: no thread at idle (the HTTP threads run the calls). Give it to
 * `CapsuleFunction.load`/`fromModule` as `pool`.
 */
export function lifecyclePool(): WorkerPool {
  return new WorkerPool({ workers: 0 });
}

/** A running `--http-threads` server. */
export interface RunningHttpThreads {
  readonly url: string;
  readonly port: number;
  /** HTTP threads serving. */
  readonly threads: number;
  /** The function serving now (the last one reloaded). */
  readonly fn: CapsuleFunction;
  /** Drains every thread (up to graceMs), then runs OnStop/OnExit and closes the function and its pool. */
  shutdown(reason: string): Promise<void>;
  /** Resolves once shut down: with 1 when it stopped because threads kept dying before they listened, else nothing. */
  readonly closed: Promise<number | void>;
}

/**
 * A thread's module: the one-file bundle of thread.ts when the build made one and it is fresh
 * (dist/bundle/http-thread.js, as the pool's workers have theirs: engine/worker-entry.ts), else
 * thread.ts / thread.js beside this file. CAPSULE_BUNDLE=0 turns the bundle off.
 */
function threadEntryUrl(): URL {
  const own = new URL(`./thread${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url);
  if (process.env['CAPSULE_BUNDLE'] === '0') return own;
  return bundleIfFresh(new URL('../../../', import.meta.url), 'http-thread.js') ?? own;
}
let threadBootCode: string | undefined;
/**
 * A thread's entry, booted with Node's module compile cache as the pool's workers are
 * (engine/pool.ts). Made at the first thread, not when this module loads (the host SDK imports it).
 */
const threadBoot = (): string => threadBootCode ??= `const m = require('node:module');
m.enableCompileCache();
import(${JSON.stringify(threadEntryUrl().href)}).then(() => m.flushCompileCache());`;
/** Watchdog period, ms: deadlines are enforced to this much (as the pool's). */
const TICK_MS = 25;
/**
 * How long a scrape waits for a thread's counters before using the ones it sent last, ms: the
 * first scrape that asks a thread waits longer (its first answer loads prom-client and compiles
 * the registry's code; under load 100 ms was too short, and its requests were missing from the
 * totals); a thread busy in a call since then costs each scrape the short wait only.
 */
const SCRAPE_WAIT_MS = 250;
const FIRST_SCRAPE_WAIT_MS = 2000;
/** Threads in a row that may die before listening before the server gives up. */
const MAX_BOOT_FAILURES = 3;

/** One HTTP thread as the supervisor sees it. */
interface Thread {
  readonly index: number;
  readonly worker: Worker;
  readonly slot: ThreadSlot;
  /** Resolves with the port once it listens; rejects when it cannot. */
  readonly listening: Promise<number>;
  up: boolean;
  dead: boolean;
  /** Waiters of its `reply`s (metrics), of its `retired` versions and of its `stopped`. */
  readonly replies: Map<number, (value: unknown) => void>;
  readonly retiring: Map<number, () => void>;
  stopped?: () => void;
  /** The metrics it sent last (used when it does not answer a scrape in time). */
  lastMetrics: Metrics;
  /** Whether a scrape has asked it for its metrics yet (the first ask is waited for longer). */
  asked: boolean;
}

/**
 * Serves `fn` with HTTP accepted in worker threads (see the module comment; README "HTTP
 * threads"): what `capsule serve --http-threads` runs, the SDK's `serveHttp` with the HTTP in the
 * threads. Linux only (SO_REUSEPORT). `fn` should run on a pool of its own with no thread at idle
 * (`pool: lifecyclePool()`): it runs the lifecycle exports and host services; the shutdown closes
 * it. Its module must be registered on that pool (made by `CapsuleFunction.load`/`fromModule`
 * with it). `o.threads` threads (default: CPU cores) each write their own log lines to stderr
 * (`o.logLevel`, `o.logFormat`); `o.logger` gets the supervisor's (timeouts, reloads, shutdown).
 * Resolves once every thread listens (port 0: one picked for all of them, in `port`).
 * @throws CapsuleError USAGE for `threads` not a whole number from 1 to 256, an option this mode
 *   cannot serve yet (`stopAfterMs`), in the single executable (no thread module there), or when the port cannot be bound or the certificate used
 *   (as `serveHttp`); Error when `fn`'s module is not registered on its pool
 */
export async function serveHttpThreads(fn: CapsuleFunction, o: HttpThreadsOptions): Promise<RunningHttpThreads> {
  const n = o.threads;
  if (n !== undefined && !(Number.isInteger(n) && n >= 1 && n <= 256)) throw new CapsuleError('USAGE', `threads must be a whole number from 1 to 256, not ${n}`);
  if (o.stopAfterMs !== undefined) throw new CapsuleError('USAGE', '--stop-after cannot be used with --http-threads yet: leave one of them out');
  // the single executable carries the pool's worker module only (scripts/build-binary.ts), not the threads'
  if (process.getBuiltinModule('node:sea').isSea()) throw new CapsuleError('USAGE', '--http-threads is not available in the single executable yet: serve without it, or run the npm package');
  await runLifecycle(fn, 'OnLoad', o.logger);
  const s = new Supervisor(fn, o);
  try {
    await s.start();
  } catch (e) {
    await s.shutdown('the server could not start');
    throw e;
  }
  return s.running();
}

class Supervisor {
  readonly #o: HttpThreadsOptions;
  readonly #count: number;
  /** The process metrics, the calls stopped at their deadline, and the thread gauges (read in shared memory: a thread busy in a call answers no scrape). */
  readonly #metrics = new RunnerMetrics(
    () => this.#threads.filter((t) => !t.dead && Atomics.load(t.slot.running, 0) !== 0).length,
    () => this.#threads.filter((t) => !t.dead).length,
  );
  readonly #threads: Thread[] = [];
  readonly #retirements = new Set<Promise<void>>();
  readonly #reloader: ModuleReloader | undefined;
  readonly #shutdown: Shutdown<number | void>;
  /** Set when threads kept dying before they listened: the exit code is then 1. */
  #broken = false;
  readonly #name: string;
  #fn: CapsuleFunction;
  #version: ThreadVersion;
  #port: number;
  #draining = false;
  #bootFailures = 0;
  /**
   * The counters and histograms of the threads gone (stopped or exited), folded into one, as
   * they sent them last: a scrape adds them so that no total goes down when a thread is replaced.
   */
  #past: Promise<Metrics> = Promise.resolve([]);
  /** Id of the last `metrics` message sent to a thread: unique across scrapes, which may overlap. */
  #scrapeId = 0;
  #watchdog: NodeJS.Timeout | undefined;

  constructor(fn: CapsuleFunction, o: HttpThreadsOptions) {
    this.#o = o;
    this.#fn = fn;
    this.#name = fn.module.name;
    this.#version = versionOf(fn, o.logger);
    this.#count = o.threads ?? availableParallelism();
    this.#port = o.port ?? 8080;
    this.#shutdown = new Shutdown((reason) => this.#stop(reason));
    const current = () => this.#fn;
    this.#reloader = o.reload ? new ModuleReloader({ get fn() { return current(); }, replace: (next) => this.#replace(next) }, o.reload, o.logger) : undefined;
  }

  /**
   * Starts every thread at once. For port 0 a socket of the main thread picks the port first
   * (SO_REUSEPORT too, so the threads can join it); it is closed once they listen, before the
   * ready line, so that no client knows the port while it holds it.
   */
  async start(): Promise<void> {
    const host = this.#o.host ?? '127.0.0.1';
    const picker = this.#port === 0 ? await pickPort(host) : undefined;
    if (picker) this.#port = (picker.address() as { port: number }).port;
    try {
      const all = Array.from({ length: this.#count }, (_, i) => this.#spawn(i));
      await Promise.all(all.map((t) => t.listening));
    } finally {
      picker?.close();
    }
    this.#watchdog = setInterval(() => this.#check(), TICK_MS);
    this.#watchdog.unref();
    this.#reloader?.watch();
  }

  running(): RunningHttpThreads {
    const host = this.#o.host ?? '127.0.0.1';
    const display = host.includes(':') ? `[${host}]` : host;
    const current = () => this.#fn;
    return {
      url: `${this.#o.tls ? 'https' : 'http'}://${display}:${this.#port}`, port: this.#port, threads: this.#count,
      get fn() { return current(); },
      shutdown: (reason) => this.shutdown(reason), closed: this.#shutdown.closed,
    };
  }

  shutdown(reason: string): Promise<void> {
    return this.#shutdown.run(reason);
  }

  #spawn(index: number): Thread {
    const buffer = new SharedArrayBuffer(THREAD_SLOT_BYTES);
    const o = this.#o;
    const init: ThreadInit = {
      slot: buffer, index, threads: this.#count, version: this.#version, timeoutMs: this.#fn.timeoutMs,
      http: {
        host: o.host, port: this.#port, maxBodyBytes: o.maxBodyBytes, graceMs: o.graceMs, maxOutputBytes: o.maxOutputBytes, defaultHost: o.defaultHost,
        // --max-concurrency is the server's: each thread takes its share
        maxConcurrency: o.maxConcurrency !== undefined ? Math.max(1, Math.ceil(o.maxConcurrency / this.#count)) : undefined,
        tls: o.tls,
      },
      log: { level: o.logLevel ?? 'info', format: o.logFormat ?? (process.stderr.isTTY ? 'pretty' : 'json') },
      reloadRoute: this.#reloader ? RELOAD_ROUTE : undefined,
    };
    const worker = new Worker(threadBoot(), { eval: true, workerData: init });
    let listened!: (port: number) => void;
    let failed!: (e: Error) => void;
    const listening = new Promise<number>((resolve, reject) => {
      listened = resolve;
      failed = reject;
    });
    listening.catch(() => undefined);
    const t: Thread = { index, worker, slot: threadSlot(buffer), listening, up: false, dead: false, replies: new Map(), retiring: new Map(), lastMetrics: [], asked: false };
    this.#threads.push(t);
    worker.on('message', (msg: FromThread) => {
      if (msg.t === 'listening') {
        t.up = true;
        this.#bootFailures = 0;
        listened(msg.port);
      } else if (msg.t === 'listen-failed') {
        failed(new CapsuleError(msg.code === 'USAGE' ? 'USAGE' : 'INTERNAL', msg.message));
      } else {
        this.#onMessage(t, msg);
      }
    });
    worker.on('error', (e) => failed(new CapsuleError('INTERNAL', `an HTTP thread failed to start: ${e.message}`)));
    worker.on('exit', (code) => {
      failed(new CapsuleError('INTERNAL', `an HTTP thread exited (code ${code}) before it listened`));
      this.#gone(t, `HTTP thread ${index} exited with code ${code}`);
    });
    return t;
  }

  #onMessage(t: Thread, msg: Exclude<FromThread, { t: 'listening' | 'listen-failed' }>): void {
    switch (msg.t) {
      case 'ask':
        this.#answer(msg.what).then(
          (value) => this.#post(t, { t: 'reply', id: msg.id, value }),
          (e: unknown) => this.#post(t, { t: 'reply', id: msg.id, error: (e as Error)?.message ?? String(e) }),
        );
        break;
      case 'reply':
        t.replies.get(msg.id)?.(msg.value);
        t.replies.delete(msg.id);
        break;
      case 'retired':
        t.retiring.get(msg.id)?.();
        t.retiring.delete(msg.id);
        break;
      case 'stopped':
        t.stopped?.();
        break;
    }
  }

  #post(t: Thread, msg: ToThread): void {
    if (!t.dead) t.worker.postMessage(msg);
  }

  /** What a thread asks: a host service, the scrape, a reload. */
  async #answer(what: ThreadAsk): Promise<unknown> {
    if ('service' in what) return this.#fn.pool.runService(what.service, what.request, what.moduleId);
    if ('scrape' in what) return this.#scrape();
    if (!this.#reloader) throw new Error('this server does not reload');
    const { body } = what.reload;
    return this.#reloader.answerRequest({
      headers: what.reload.headers, remoteAddress: what.reload.remoteAddress,
      body: () => ('text' in body ? Promise.resolve(body.text) : Promise.reject(new CapsuleError('USAGE', body.error))),
    });
  }

  /**
   * `/capsule/metrics`: every thread's counters (the last ones of a thread busy in a call), those
   * of the threads gone (`#past`) and the process metrics.
   */
  async #scrape(): Promise<{ contentType: string; body: string }> {
    // the threads gone and those asked, taken at once: a thread that goes meanwhile is counted once
    const past = this.#past;
    const live = this.#threads.filter((t) => t.up && !t.dead);
    const mine = await this.#metrics.registry.getMetricsAsJSON();
    const theirs = await Promise.all(live.map(async (t) => {
      if (t.dead) return t.lastMetrics; // gone while this scraped its own: no answer to wait for
      const id = ++this.#scrapeId;
      const answer = new Promise<unknown>((resolve) => t.replies.set(id, resolve));
      this.#post(t, { t: 'metrics', id });
      const waitMs = t.asked ? SCRAPE_WAIT_MS : FIRST_SCRAPE_WAIT_MS;
      t.asked = true;
      await settleWithin(answer.then((json) => (t.lastMetrics = json as Metrics)), waitMs);
      t.replies.delete(id);
      return t.lastMetrics;
    }));
    // prom-client loads at the first scrape (as the default server's metrics: observability/metrics.ts)
    const { AggregatorRegistry } = await import('prom-client');
    const registry = AggregatorRegistry.aggregate([mine, await past, ...theirs]);
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  /** Stops threads whose call runs past its deadline. */
  #check(): void {
    const now = Date.now();
    for (const t of [...this.#threads]) {
      const seq = Atomics.load(t.slot.running, 0);
      if (t.dead || seq <= 0 || now < t.slot.deadline[0]!) continue;
      // the call's connection and id, read before taking it: once it is taken, its thread may
      // publish its next call in the slot (a swap that succeeds says these were still `seq`'s)
      const fd = Atomics.load(t.slot.fd, 0);
      const call = fd < 0 ? undefined : publishedRequest(t.slot);
      if (Atomics.compareExchange(t.slot.running, 0, seq, TAKEN) !== seq) continue; // it has just returned
      const ms = this.#fn.timeoutMs;
      const requestId = call && (call.requestId ?? randomUUID());
      const answered = requestId !== undefined && answerTimeout(fd, ms, requestId);
      const connections = Atomics.load(t.slot.connections, 0);
      this.#o.logger.warn({ thread: t.index, function: this.#name, connections, code: 'TIMEOUT', answered, requestId },
        `a call did not return within ${ms} ms (--timeout): ${answered ? 'answered 504, ' : ''}HTTP thread ${t.index} stopped with its ${connections} open connection(s); another replaces it`);
      // an answered request counts as the thread would have counted it (its duration: the deadline's, at least)
      if (answered) {
        this.#metrics.requests.inc({ function: this.#name, method: call!.method, status: 504 });
        this.#metrics.duration.observe({ function: this.#name }, ms / 1000);
      }
      this.#metrics.timeouts.inc({ function: this.#name });
      this.#metrics.errors.inc({ function: this.#name, code: 'TIMEOUT' });
      this.#gone(t, undefined);
    }
  }

  /**
   * A thread is gone: stopped at a deadline (`why` undefined) or exited (`why`). Its waiters
   * are released; another thread takes its place unless the server is shutting down or threads
   * keep dying before they listen.
   */
  #gone(t: Thread, why: string | undefined): void {
    if (t.dead) return;
    t.dead = true;
    void t.worker.terminate();
    this.#threads.splice(this.#threads.indexOf(t), 1);
    for (const wake of t.retiring.values()) wake();
    for (const wake of t.replies.values()) wake(t.lastMetrics);
    this.#keepCounters(t.lastMetrics);
    t.stopped?.();
    if (this.#draining) return;
    if (why) this.#o.logger.warn(`worker replaced: ${why}`);
    if (!t.up && ++this.#bootFailures >= MAX_BOOT_FAILURES) {
      this.#o.logger.error(`HTTP threads cannot start (${MAX_BOOT_FAILURES} tries): shutting down`);
      this.#broken = true;
      void this.shutdown('HTTP threads cannot start');
      return;
    }
    this.#spawn(t.index);
  }

  /**
   * Folds the counters and histograms of a thread gone (as it sent them last: not what it
   * counted after its last scrape) into `#past`. Its gauges go with it.
   */
  #keepCounters(last: Metrics): void {
    // prom-client's JSON holds the type as text ('counter'), though its typings say an enum
    const kept = last.filter((m) => ['counter', 'histogram'].includes(m.type as unknown as string));
    if (kept.length === 0) return;
    this.#past = this.#past.then(async (past) => {
      const { AggregatorRegistry } = await import('prom-client');
      return AggregatorRegistry.aggregate([past, kept]).getMetricsAsJSON() as Promise<Metrics>;
    });
  }

  /** Hot reload: `OnLoad` of `next`, then every thread swaps to it; the old one is stopped once every thread let it go. */
  async #replace(next: CapsuleFunction): Promise<void> {
    if (this.#draining) throw new CapsuleError('OVERLOADED', 'the server is shutting down');
    await runLifecycle(next, 'OnLoad', this.#o.logger);
    if (this.#draining) throw new CapsuleError('OVERLOADED', 'the server is shutting down');
    const old = this.#fn;
    const oldId = this.#version.id;
    this.#fn = next;
    this.#version = versionOf(next, this.#o.logger);
    const released = this.#threads.filter((t) => !t.dead).map((t) => new Promise<void>((resolve) => {
      t.retiring.set(oldId, resolve);
      this.#post(t, { t: 'swap', version: this.#version });
    }));
    const retired = Promise.all(released).then(async () => {
      await runStopExports(old, this.#o.logger);
      await old.close();
    });
    this.#retirements.add(retired);
    void retired.finally(() => this.#retirements.delete(retired));
  }

  /** Graceful shutdown: every thread drains (the grace), then OnStop/OnExit, then the pool closes. */
  async #stop(reason: string): Promise<number | void> {
    const log = this.#o.logger;
    log.info({ reason }, 'shutting down');
    this.#draining = true;
    await this.#reloader?.close();
    const graceMs = this.#o.graceMs ?? 10_000;
    const live = this.#threads.filter((t) => !t.dead);
    await settleWithin(Promise.all(live.map((t) => new Promise<void>((resolve) => {
      t.stopped = resolve;
      this.#post(t, { t: 'stop', reason });
    }))), graceMs + 2000);
    if (this.#watchdog) clearInterval(this.#watchdog);
    await Promise.all(this.#threads.splice(0).map((t) => {
      t.dead = true;
      return t.worker.terminate();
    }));
    await Promise.all(this.#retirements);
    await runStopExports(this.#fn, log);
    const pool = this.#fn.pool;
    await this.#fn.close();
    await pool.close();
    return this.#broken ? 1 : undefined;
  }
}

/**
 * Writes the runner's `504` TIMEOUT answer (JSON, `X-Request-Id: requestId` as every answer of
 * the runner, `Connection: close`) on the connection `fd` of a call taken at its deadline, before
 * its thread is stopped (which closes the connection).
 * @returns whether it was written whole
 */
function answerTimeout(fd: number, timeoutMs: number, requestId: string): boolean {
  const body = JSON.stringify({ error: `the function did not return within ${timeoutMs} ms (--timeout); its HTTP thread was stopped`, code: 'TIMEOUT' });
  const head = `HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`
    + `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n`;
  const bytes = Buffer.from(head + body);
  try {
    return writeSync(fd, bytes) === bytes.length;
  } catch {
    return false; // the client has gone, or its buffer is full: the connection is only closed
  }
}

/** A listening socket on a free port of `host`, with SO_REUSEPORT. @throws CapsuleError USAGE as `listen` */
async function pickPort(host: string): Promise<NetServer> {
  const server = createNetServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: 0, host, reusePort: true }, () => resolve());
    });
  } catch (e) {
    throw new CapsuleError('USAGE', listenError(e as NodeJS.ErrnoException, host, 0));
  }
  return server;
}

/**
 * A function's module as its threads receive it: metered when the meter can instrument it (its
 * calls then stop themselves at their deadline, docs/performance.md "Deadlines without a
 * thread"), else as compiled, with why in a log line.
 * @throws Error when it is not registered on its pool
 */
function versionOf(fn: CapsuleFunction, logger: HttpThreadsOptions['logger']): ThreadVersion {
  const registered = fn.pool.workerModuleOf(fn.module);
  if (!registered) throw new Error(`${fn.module.name} is not registered on its worker pool`);
  const exports = fn.module.parsed.exports.filter((e) => e.kind === 'function').map((e) => e.name);
  // CAPSULE_METER=0: every module as compiled (to measure what the meter costs; README "HTTP threads")
  const metered = process.env['CAPSULE_METER'] === '0' ? { skipped: 'CAPSULE_METER=0' } : meteredModule(fn.module);
  if ('skipped' in metered) {
    logger.info({ function: fn.module.name }, `not metered (${metered.skipped}): a call past its deadline stops its HTTP thread`);
    return { id: registered.id, module: registered.module, exports };
  }
  return { id: registered.id, module: { ...registered.module, compiled: metered.compiled, metered: true }, exports };
}
