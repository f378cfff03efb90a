/**
 * One HTTP thread of `capsule serve --http-threads` (threads.ts starts them; README "HTTP
 * threads"): it listens on the server's port beside the other threads (SO_REUSEPORT, the kernel
 * spreading new connections among them), parses HTTP through the same request pipeline as the
 * default server (server.ts `servePipeline`: request ids, body cap, 503s, request log lines,
 * metrics, graceful shutdown) and runs the calls of its connections itself, one at a time, with
 * no message to another thread per request.
 *
 * Deadlines: a module the meter could instrument (`ThreadVersion.module.metered`, src/wasm/meter.ts)
 * checks its own deadline: a call past it fails with TIMEOUT inside this thread (answered 504 by
 * the pipeline), its instance is dropped and the thread serves on. Before each call the thread
 * also publishes in shared memory (see `ThreadSlot`) the call's number, start, deadline and
 * connection; the main thread stops the whole thread when a call is still running at that
 * deadline (answering it `504` on its connection first when it can), and starts another: at the
 * call's deadline for a module that is not metered, `METER_GRACE_MS` after it for one that is (a
 * backstop: a host function that waits is out of the meter's reach). A call that waited in this
 * thread past its deadline is answered 504 without running.
 *
 * What a thread cannot do alone goes to the main thread (`ask`): the Prometheus scrape (the
 * counters of every thread, aggregated), `POST /load-wasm-module`, and host services.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CapsuleError } from '../../base/errors.ts';
import type { InvocationInput, InvocationMeta } from '../../base/invocation.ts';
import { MemoryPool } from '../../engine/memory-pool.ts';
import { ModuleInstances, type CallLogs } from '../../engine/instance.ts';
import type { CallResult } from '../../engine/pool.ts';
import { PendingReplies } from '../../engine/protocol.ts';
import { createLogger, flushLogger } from '../../observability/logger.ts';
import { RunnerMetrics } from '../../observability/metrics.ts';
import { isRunnerRoute, serveRunnerRoute, type RouteFunction, type RunnerRouteContext } from '../shared/runner-routes.ts';
import { MAX_RELOAD_REQUEST_BYTES, readSmallBody, sendText } from './reload.ts';
import { servePipeline, type HttpDispatch, type HttpTarget, type PipelineState, type RunningHttpTrigger } from './server.ts';
import { METER_GRACE_MS, threadSlot, type FromThread, type ThreadAsk, type ThreadInit, type ThreadVersion, type ToThread } from './thread-protocol.ts';

const port = parentPort!;
const init = workerData as ThreadInit;
const slot = threadSlot(init.slot);
const memoryPool = new MemoryPool();

/** A module version this thread runs: its instances and the calls it still has to finish. */
interface Version {
  readonly id: number;
  readonly spec: ThreadVersion;
  readonly rt: ModuleInstances;
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

function makeVersion(v: ThreadVersion): Version {
  const rt = new ModuleInstances(v.module, memoryPool, (name, request) => ask({ service: name, request, moduleId: v.id }));
  return { id: v.id, spec: v, rt, exports: new Set(v.exports), calls: 0, retired: false };
}

/** Runs calls one at a time in this thread, publishing each in the shared slot. */
class Runner {
  readonly #queue: Job[] = [];
  #busy = false;
  #seq = 0;

  /**
   * Queues a call on `version`, due within `init.timeoutMs` of now; `fd` as `Job.fd`.
   * @throws CapsuleError as the pool's calls
   */
  invoke(version: Version, input: InvocationInput, meta: InvocationMeta, fd = -1): Promise<CallResult> {
    version.calls++;
    return new Promise<CallResult>((resolve, reject) => {
      this.#queue.push({ version, input, meta, deadline: Date.now() + init.timeoutMs, fd, resolve, reject });
      if (!this.#busy) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#busy = true;
    for (let job = this.#queue.shift(); job; job = this.#queue.shift()) {
      try {
        if (Date.now() >= job.deadline) {
          job.reject(new CapsuleError('TIMEOUT', `the function was not run: this HTTP thread was busy for ${init.timeoutMs} ms (--timeout)`));
          continue;
        }
        await this.#run(job);
      } finally {
        if (--job.version.calls === 0 && job.version.retired) retire(job.version);
      }
    }
    this.#busy = false;
  }

  async #run(job: Job): Promise<void> {
    this.#seq = this.#seq >= 0x7ffffffe ? 1 : this.#seq + 1;
    const seq = this.#seq;
    const { rt } = job.version;
    slot.started[0] = Date.now();
    slot.deadline[0] = rt.metered ? job.deadline + METER_GRACE_MS : job.deadline;
    Atomics.store(slot.fd, 0, job.fd);
    Atomics.store(slot.running, 0, seq);
    rt.setDeadline(job.deadline, init.timeoutMs);
    let r: Awaited<ReturnType<typeof rt.run>>;
    try {
      r = await rt.run(job.input, job.meta);
    } finally {
      rt.setDeadline(Infinity);
    }
    // the supervisor took the call at its deadline (it answered it and is stopping this thread)
    if (Atomics.compareExchange(slot.running, 0, seq, 0) !== seq) return;
    if (r.error) {
      const err = new CapsuleError(r.error.code, r.error.message) as CapsuleError & { logs?: CallLogs };
      err.logs = r.logs;
      job.reject(err);
    } else {
      job.resolve({ output: r.output!, logs: r.logs });
    }
  }
}

/** A replaced version with no call left: dispose it and tell the main thread. */
function retire(v: Version): void {
  v.rt.dispose();
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

const versions = new Map<number, Version>([[current.id, current]]);
let running: RunningHttpTrigger;
try {
  const { tls } = init.http;
  running = await servePipeline({
    pools: [],
    metrics,
    dispatch,
    stop: async () => {
      for (const v of versions.values()) v.rt.dispose();
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
