/**
 * One HTTP thread of `capsule serve --http-threads` (threads.ts starts them; README "HTTP
 * threads"): it listens on the server's port beside the other threads (SO_REUSEPORT, the kernel
 * spreading new connections among them), parses HTTP through the same request pipeline as the
 * default server (server.ts `servePipeline`: request ids, body cap, 503s, request log lines,
 * metrics, graceful shutdown) and runs the calls of its connections itself, with no message to
 * another thread per request.
 *
 * Deadlines: a module the meter could instrument (`ThreadVersion.module.metered`, src/wasm/meter.ts)
 * checks its own deadline: a call past it fails with TIMEOUT inside this thread (answered 504 by
 * the pipeline), its instance is dropped and the thread serves on. Its calls also give the thread
 * back every `YIELD_EVERY_MS` (JSPI), so that a runaway does not hold up the thread's other
 * requests: calls that have yielded let the next ones start beside them (`Runner`), up to
 * `MAX_CALLS_IN_FLIGHT` interleaved, each on an instance set of its own; a call of a module
 * that is not metered runs alone. The thread publishes in shared memory (see
 * `ThreadSlot`) the oldest running call's number, deadline and connection; the main thread
 * stops the whole thread when that call is still running at that deadline (answering it `504` on
 * its connection first when it can), and starts another: at the call's deadline for a module
 * that is not metered, `METER_GRACE_MS` after it for one that is (a backstop: a host function
 * that waits is out of the meter's reach). A call that waited in this thread past its deadline
 * is answered 504 without running.
 *
 * What a thread cannot do alone goes to the main thread (`ask`): the Prometheus scrape (the
 * counters of every thread, aggregated), `POST /load-wasm-module`, and host services.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CapsuleError } from '../../base/errors.ts';
import type { InvocationInput, InvocationMeta } from '../../base/invocation.ts';
import { IdleTrim, MemoryPool } from '../../engine/memory-pool.ts';
import { ModuleInstances, type CallLogs } from '../../engine/instance.ts';
import type { CallResult } from '../../engine/pool.ts';
import { PendingReplies } from '../../engine/protocol.ts';
import { createLogger, flushLogger } from '../../observability/logger.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { isRunnerRoute, serveRunnerRoute, type RouteFunction, type RunnerRouteContext } from '../shared/runner-routes.ts';
import { MAX_RELOAD_REQUEST_BYTES, readSmallBody, sendText } from './reload.ts';
import { servePipeline, type HttpDispatch, type HttpTarget, type PipelineState, type RunningHttpTrigger } from './server.ts';
import { METER_GRACE_MS, publishRequest, threadSlot, type FromThread, type ThreadAsk, type ThreadInit, type ThreadVersion, type ToThread } from './thread-protocol.ts';

const port = parentPort!;
const init = workerData as ThreadInit;
const slot = threadSlot(init.slot);
const memoryPool = new MemoryPool();
/** Idle after calls, the thread gives back what a burst left (docs/performance.md, "Memory"). */
const trim = new IdleTrim(memoryPool);

/**
 * How long a call of a metered module runs before it gives the thread back (ms): it resumes on
 * `setImmediate`, after the event loop has read the thread's connections and run its other
 * calls' slices (`ModuleInstances` `yieldEveryMs`, src/wasm/meter.ts). CAPSULE_YIELD=0: never
 * (one call at a time, as before; to measure what yielding costs).
 */
const YIELD_EVERY_MS = process.env.CAPSULE_YIELD === '0' ? undefined : 2;

/**
 * Calls of metered modules one thread runs at once, interleaved at their yields; more wait in
 * its queue. Each has its own instances (`Version.idle`), so a bound on memory too.
 */
const MAX_CALLS_IN_FLIGHT = 16;

/** A module version this thread runs: its instances and the calls it still has to finish. */
interface Version {
  readonly id: number;
  readonly spec: ThreadVersion;
  /** Instance sets free for a call: one per call in flight (a set runs one call at a time). */
  readonly idle: ModuleInstances[];
  /** Every instance set made for it (disposed when it retires). */
  readonly all: ModuleInstances[];
  /** Its calls give the thread back now and then (metered): several can be in flight. */
  readonly yields: boolean;
  readonly exports: ReadonlySet<string>;
  /** Calls queued or running on it. */
  calls: number;
  /** Replaced: disposed (and the main thread told) once `calls` is 0. */
  retired: boolean;
}

/** A call waiting for the thread. */
interface Job {
  version: Version;
  input: InvocationInput;
  meta: InvocationMeta;
  /** ms, Date.now clock. */
  deadline: number;
  /** The connection's descriptor the supervisor may answer on at the deadline, or -1 (see ThreadSlot.fd). */
  fd: number;
  resolve(r: CallResult): void;
  reject(e: CapsuleError & { logs?: CallLogs }): void;
}

const asks = new PendingReplies();

/** Asks the main thread (threads.ts answers `ask` messages). @throws Error with its refusal */
function ask(what: ThreadAsk): Promise<unknown> {
  return asks.send((id) => port.postMessage({ t: 'ask', id, what } satisfies FromThread));
}

/** A new instance set of a module version (one per call in flight). @throws CapsuleError MEMORY as `ModuleInstances` */
function newInstances(v: ThreadVersion): ModuleInstances {
  const service = (name: string, request: unknown) => ask({ service: name, request, moduleId: v.id });
  return new ModuleInstances(v.module, memoryPool, service, undefined, { yieldEveryMs: YIELD_EVERY_MS, onYield: () => runner.pump() });
}

/** One more instance set of `v` (all its sets are busy), counted in `v.all`. @throws as `newInstances` */
function moreInstances(v: Version): ModuleInstances {
  const rt = newInstances(v.spec);
  v.all.push(rt);
  return rt;
}

function makeVersion(v: ThreadVersion): Version {
  const rt = newInstances(v);
  return { id: v.id, spec: v, idle: [rt], all: [rt], yields: rt.metered && YIELD_EVERY_MS !== undefined, exports: new Set(v.exports), calls: 0, retired: false };
}

/** A call running in this thread. */
interface Running {
  seq: number;
  job: Job;
  /** The instance set it runs on, once taken. */
  rt?: ModuleInstances;
  /** `rt.yields` when it began: it has given the thread back once that grew. */
  yieldsAtStart: number;
}

/** Whether a running call has given the thread back at least once (a long call, maybe a runaway). */
const hasYielded = (r: Running): boolean => r.rt !== undefined && r.rt.yields > r.yieldsAtStart;

/**
 * Runs the calls of this thread in the order they came: one at a time, except that a call of a
 * metered module starts beside running ones when each of them has given the thread back at
 * least once (long calls: up to `MAX_CALLS_IN_FLIGHT` interleaved, each on an instance set of
 * its own). Short calls thus run one after the other on one instance set, as before. The shared
 * slot shows the oldest running call (the first to reach its deadline).
 */
class Runner {
  readonly #queue: Job[] = [];
  /** In the order they started. */
  readonly #running: Running[] = [];
  /** Calls running that do not yield (at most one, and then alone). */
  #alone = 0;
  #seq = 0;

  /**
   * Runs a call on `version`, due within `init.timeoutMs` of now: at once when nothing is queued
   * or running, else queued (`pump`); `fd` as `Job.fd`.
   * @throws CapsuleError as the pool's calls
   */
  invoke(version: Version, input: InvocationInput, meta: InvocationMeta, fd = -1): Promise<CallResult> {
    version.calls++;
    const deadline = Date.now() + init.timeoutMs;
    if (this.#queue.length === 0 && this.#running.length === 0) {
      // nothing ahead of it: it starts now, with no job queued, and a call that runs without a
      // promise (runSync) is over before this returns (issue 18: fewer promises per request)
      const job: Job = { version, input, meta, deadline, fd, resolve: unused, reject: unused };
      const ended = this.#runNow(job);
      if (!(ended instanceof Promise)) return this.#over(job, ended);
      return ended.then((o) => this.#over(job, o));
    }
    return new Promise<CallResult>((resolve, reject) => {
      this.#queue.push({ version, input, meta, deadline, fd, resolve, reject });
      this.pump();
    });
  }

  /** A call `invoke` started at once ended with `o`: its answer, as a queued call's settles its job. */
  #over(job: Job, o: Outcome): Promise<CallResult> {
    this.#after(job.version);
    if (o === TAKEN) return new Promise<CallResult>(() => {}); // the supervisor answers it and stops this thread
    return 'error' in o ? Promise.reject(o.error) : Promise.resolve(o.result);
  }

  /** A call of `v` is over: the queued calls that may start now start, the thread trims when idle. */
  #after(v: Version): void {
    done(v);
    this.pump();
    if (this.#running.length === 0 && this.#queue.length === 0) trim.idle();
  }

  /** Starts the queued calls that may start now (also when a running call gives the thread back). */
  pump(): void {
    for (let job = this.#queue[0]; job; job = this.#queue[0]) {
      if (Date.now() >= job.deadline) {
        this.#queue.shift();
        job.reject(new CapsuleError('TIMEOUT', `the function was not run: this HTTP thread was busy for ${init.timeoutMs} ms (--timeout)`));
        done(job.version);
        continue;
      }
      const n = this.#running.length;
      if (n > 0 && (!job.version.yields || this.#alone > 0 || n >= MAX_CALLS_IN_FLIGHT || !this.#running.every(hasYielded))) return;
      this.#queue.shift();
      // settled in a later microtask, as a call that runs at once (runSync) too: `pump` is not re-entered
      void Promise.resolve(this.#runNow(job)).then((o) => {
        if (o !== TAKEN) {
          if ('error' in o) job.reject(o.error);
          else job.resolve(o.result);
        }
        this.#after(job.version);
      });
    }
  }

  /** Publishes `r` in the shared slot (the supervisor watches its deadline). */
  #publish(r: Running): void {
    // metered, yielding or not (CAPSULE_YIELD=0): the call stops itself at its deadline, the supervisor is a backstop
    slot.deadline[0] = r.job.version.spec.module.metered ? r.job.deadline + METER_GRACE_MS : r.job.deadline;
    Atomics.store(slot.fd, 0, r.job.fd);
    if (r.job.fd >= 0) publishRequest(slot, r.job.meta.requestId, r.job.input.type === 'http' ? r.job.input.method : undefined); // for the supervisor's 504
    Atomics.store(slot.running, 0, r.seq);
  }

  /**
   * `r` is over: out of the slot (the next oldest in it). @returns false when the supervisor
   * took it at its deadline (it answered it and is stopping this thread)
   */
  #finish(r: Running): boolean {
    const at = this.#running.indexOf(r);
    this.#running.splice(at, 1);
    if (!r.job.version.yields) this.#alone--;
    if (at !== 0) return true;
    if (Atomics.compareExchange(slot.running, 0, r.seq, 0) !== r.seq) return false;
    const next = this.#running[0];
    if (next) this.#publish(next);
    return true;
  }

  /** `job` starts: counted as running, in the slot when it is the oldest. */
  #begin(job: Job): Running {
    this.#seq = this.#seq >= 0x7ffffffe ? 1 : this.#seq + 1;
    const running: Running = { seq: this.#seq, job, yieldsAtStart: 0 };
    trim.busy();
    if (!job.version.yields) this.#alone++;
    this.#running.push(running);
    if (this.#running.length === 1) this.#publish(running);
    return running;
  }

  /** An instance set for `running`, its deadline set. @throws CapsuleError MEMORY as `ModuleInstances` */
  #take(running: Running): ModuleInstances {
    const { job } = running;
    const rt = running.rt = job.version.idle.pop() ?? moreInstances(job.version);
    running.yieldsAtStart = rt.yields;
    rt.setDeadline(job.deadline, init.timeoutMs);
    return rt;
  }

  /** `running`'s call ended with `r` (its instance set given back before): out of the slot, and how it ended. */
  #end(running: Running, r: RunResult): Outcome {
    if (!this.#finish(running)) return TAKEN;
    if (r.error) {
      const err = new CapsuleError(r.error.code, r.error.message) as CapsuleError & { logs?: CallLogs };
      err.logs = r.logs;
      return { error: err };
    }
    return { result: { output: r.output!, logs: r.logs } };
  }

  /** Runs `job` now: its outcome, at once when `runSync` could run it. */
  #runNow(job: Job): Outcome | Promise<Outcome> {
    const running = this.#begin(job);
    let rt: ModuleInstances | undefined;
    let r: RunResult | undefined;
    try {
      rt = this.#take(running);
      r = rt.runSync(job.input, job.meta);
    } catch (e) {
      r = failure(e);
    }
    if (r === undefined) return this.#runLater(running, rt!);
    giveBack(job, rt);
    return this.#end(running, r);
  }

  /** The rest of `#runNow` for a call `runSync` could not run. */
  async #runLater(running: Running, rt: ModuleInstances): Promise<Outcome> {
    let r: RunResult;
    try {
      r = await rt.run(running.job.input, running.job.meta);
    } catch (e) {
      r = failure(e);
    } finally {
      giveBack(running.job, rt);
    }
    return this.#end(running, r);
  }
}

/** What `ModuleInstances.run` returns. */
type RunResult = Awaited<ReturnType<ModuleInstances['run']>>;
/** How a call ended: its result or error, or `TAKEN` by the supervisor at its deadline (never answered here). */
type Outcome = { result: CallResult } | { error: CapsuleError & { logs?: CallLogs } } | typeof TAKEN;
const TAKEN = Symbol('taken');
/** The `resolve`/`reject` of a job `invoke` runs at once (its outcome is returned, not settled). */
const unused = (): void => {};

/** A call that threw before or instead of running (`moreInstances`…), as `run` reports one. */
function failure(e: unknown): RunResult {
  return { error: { code: (e as CapsuleError).code ?? 'INTERNAL', message: (e as Error).message } };
}

/** `rt` (when one was taken) is free again for `job`'s version, its deadline off. */
function giveBack(job: Job, rt: ModuleInstances | undefined): void {
  if (!rt) return;
  rt.setDeadline(Infinity);
  job.version.idle.push(rt);
}

/** A call of `v` is over (answered or refused): a retired version with none left goes. */
function done(v: Version): void {
  if (--v.calls === 0 && v.retired) retire(v);
}

/** A replaced version with no call left: dispose it and tell the main thread. */
function retire(v: Version): void {
  for (const rt of v.all) rt.dispose();
  port.postMessage({ t: 'retired', id: v.id } satisfies FromThread);
}

const runner = new Runner();
let current = makeVersion(init.version);
const log = createLogger(init.log.level, init.log.format).child({ thread: init.index });
// the busy and thread gauges are the main thread's (it reads them in shared memory)
const metrics = new RunnerMetrics(() => 0, () => 0, false);

/** The served function as the runner routes see it (`/health` with `OnHealthCheck`, `/capsule/ready`). */
const routeFunction: RouteFunction = {
  get module() {
    return { name: current.spec.module.name, detection: current.spec.module.detection };
  },
  pool: { size: init.threads },
  exports: (name) => current.exports.has(name),
  invoke: (input, meta = {}) => runner.invoke(current, input, meta),
};

const fname = init.version.module.name;
const target: HttpTarget = {
  name: fname,
  invoke: (input, meta, exchange) => {
    // a reload that changed the module's kind between the dispatch and the call (as serveHttp)
    const wasi = current.spec.module.detection.kind === 'wasi';
    if (wasi !== (input.cgi !== undefined)) {
      input = { ...input, cgi: wasi ? { route: '/...', maxOutputBytes: init.http.maxOutputBytes, defaultHost: init.http.defaultHost ?? listening } : undefined };
    }
    return runner.invoke(current, input, meta, exchange && answerableFd(exchange.req, exchange.res));
  },
};

/**
 * The descriptor of the connection `res` answers on, when the supervisor may write a `504` on
 * it at the deadline: plain HTTP (not TLS), the response first in line and nothing waiting to
 * be written on the connection. Else -1 (the connection is then only closed with the thread).
 */
function answerableFd(req: IncomingMessage, res: ServerResponse): number {
  if (init.http.tls || res.socket !== req.socket || req.socket.writableLength > 0) return -1;
  // the stream handle's descriptor (Unix): not public API, but long-standing
  const fd = (req.socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}
const callFunction: HttpDispatch = { type: 'function', target };
const callCommand: HttpDispatch = { type: 'function', target, cgi: { route: '/...' } };
let listening = '';
let routes: RunnerRouteContext | undefined;
const runnerRoutes = (state: PipelineState): RunnerRouteContext => routes ??= {
  fn: routeFunction,
  metrics: { text: () => ask({ scrape: true }) as Promise<{ contentType: string; body: string }> },
  notReady: () => (state.draining ? 'shutting down' : undefined),
  trigger: { httpPort: state.port },
  logGuest: (logs, requestId) => state.logGuest(logs, { requestId, function: fname }),
};

/** `POST /load-wasm-module`: the main thread reloads (every thread then swaps). */
async function forwardReload(req: IncomingMessage, res: ServerResponse): Promise<number> {
  const body = readSmallBody(req, MAX_RELOAD_REQUEST_BYTES).then((text) => ({ text }), (e: Error) => ({ error: e.message }));
  const r = await ask({ reload: { headers: req.headers, remoteAddress: req.socket.remoteAddress, body: await body } })
    .catch((e: Error) => ({ status: 500, text: `😡[${init.reloadRoute}] ${e.message}` })) as { status: number; text: string };
  return sendText(res, r.status, r.text);
}

function dispatch(path: string, req: IncomingMessage, state: PipelineState): HttpDispatch {
  if (isRunnerRoute(path)) {
    return { type: 'answer', name: fname, runner: true, respond: (rq, res, requestId) => serveRunnerRoute(path, rq, res, requestId, runnerRoutes(state)) };
  }
  if (init.reloadRoute !== undefined && path === init.reloadRoute && req.method === 'POST') {
    return { type: 'answer', name: fname, runner: true, respond: forwardReload };
  }
  return current.spec.module.detection.kind === 'wasi' ? callCommand : callFunction;
}

/** How long the start-up's warm-up may run, ms (the pool's default `warmLimitMs`): the meter stops a looping initialisation there. */
const WARM_LIMIT_MS = 2_000;

/**
 * Before the thread listens (so before the ready line), the first call's work done ahead as the
 * pool's workers do (`ModuleInstances.warm`: the snapshot probe and an instance at it), so that
 * the first request costs what later ones do. Only for a metered module: the meter bounds a
 * looping initialisation to `WARM_LIMIT_MS`; nothing would bound it for an unmetered one, which
 * is warmed by its first call, as before. Never throws (as `warm`).
 */
async function warmUp(v: Version): Promise<void> {
  const rt = v.idle[0];
  if (!rt?.metered) return;
  rt.setDeadline(Date.now() + WARM_LIMIT_MS, WARM_LIMIT_MS);
  try {
    await rt.warm();
  } finally {
    rt.setDeadline(Infinity);
  }
}

await warmUp(current);
const versions = new Map<number, Version>([[current.id, current]]);
let running: RunningHttpTrigger;
try {
  const { tls } = init.http;
  running = await servePipeline({
    pools: [],
    metrics,
    dispatch,
    stop: async () => {
      for (const v of versions.values()) for (const rt of v.all) rt.dispose();
    },
  }, { ...init.http, tls: tls ? { cert: Buffer.from(tls.cert), key: Buffer.from(tls.key) } : undefined, reusePort: true, logger: log });
} catch (e) {
  port.postMessage({ t: 'listen-failed', code: (e as CapsuleError).code ?? 'INTERNAL', message: (e as Error).message } satisfies FromThread);
  throw e;
}
listening = new URL(running.url).host;
running.server.on('connection', (socket) => {
  Atomics.add(slot.connections, 0, 1);
  socket.once('close', () => Atomics.sub(slot.connections, 0, 1));
});

port.on('message', (msg: ToThread) => {
  switch (msg.t) {
    case 'swap': {
      const old = current;
      current = makeVersion(msg.version);
      versions.set(current.id, current);
      old.retired = true;
      if (old.calls === 0) retire(old);
      versions.delete(old.id);
      break;
    }
    case 'metrics':
      void metrics.registry.getMetricsAsJSON().then((json) => port.postMessage({ t: 'reply', id: msg.id, value: json } satisfies FromThread));
      break;
    case 'reply':
      asks.settle(msg);
      break;
    case 'stop':
      // the log lines of the thread are written before it is told to end
      void running.shutdown(msg.reason).then(() => flushLogger(log)).then(() => port.postMessage({ t: 'stopped' } satisfies FromThread));
      break;
  }
});
port.postMessage({ t: 'listening', port: running.port } satisfies FromThread);
