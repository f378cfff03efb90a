/**
 * Runner metrics in Prometheus text format (served at /capsule/metrics; conventions.md §4).
 *
 * prom-client (~80 files with @opentelemetry/api, ~40 ms of a server's start and a few MiB) is
 * loaded at the first scrape, not at start (docs/performance.md "Start-up"). Until then the
 * metrics' updates are kept in order and replayed into prom-client's metrics when it loads, so
 * no count is lost; past PENDING_MAX of them (a server under load nobody scrapes yet) it loads
 * anyway. Node's process metrics (CPU, memory, event loop lag, GC) are collected from then on:
 * a GC before it is not counted (cumulative ones, CPU seconds, are read from the process).
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

type PromClient = typeof import('prom-client');
/** A label set: label name → value. */
type Labels<L extends string> = Partial<Record<L, string | number>>;
/** What the triggers do with a counter. */
export interface CounterOf<L extends string> {
  /** Adds 1 to the series of `labels`. */
  inc(labels: Labels<L>): void;
}
/** What the triggers do with a gauge. */
export interface GaugeOf {
  inc(): void;
  dec(): void;
}
/** What the triggers do with a histogram. */
export interface HistogramOf<L extends string> {
  /** Counts `value` (seconds) in the series of `labels`. */
  observe(labels: Labels<L>, value: number): void;
}

/** prom-client's metrics of one RunnerMetrics, once loaded. */
interface Real {
  registry: Registry;
  requests: Counter<'function' | 'method' | 'status'>;
  duration: Histogram<'function'>;
  errors: Counter<'function' | 'code'>;
  timeouts: Counter<'function'>;
  inflight: Gauge;
  busyWorkers: Gauge;
  messages: Counter<'function' | 'trigger' | 'outcome'>;
  dropped: Counter<'function' | 'trigger'>;
}

/** Updates kept before prom-client is loaded; more make it load (a few hundred KiB at most). */
const PENDING_MAX = 4096;

/** The runner's metric set, one per server. */
export class RunnerMetrics {
  readonly requests: CounterOf<'function' | 'method' | 'status'>;
  readonly duration: HistogramOf<'function'>;
  readonly errors: CounterOf<'function' | 'code'>;
  readonly timeouts: CounterOf<'function'>;
  readonly inflight: GaugeOf;
  /** Messages handled by the NATS/MQTT triggers, by outcome: `ok`, `failed` (F / [ERR] result), `error` (trap, timeout, …). */
  readonly messages: CounterOf<'function' | 'trigger' | 'outcome'>;
  /** Messages the NATS trigger dropped because --max-pending messages were already waiting. */
  readonly dropped: CounterOf<'function' | 'trigger'>;
  readonly #busy: () => number;
  readonly #workers: () => number;
  readonly #processMetrics: boolean;
  #real: Real | undefined;
  /** Updates made before prom-client was loaded, replayed in order by `#materialise`. */
  #pending: ((real: Real) => void)[] = [];
  #loading: Promise<Real> | undefined;

  /**
   * @param busy returns the number of workers running a call (read at scrape time)
   * @param workers returns the worker threads up now, grown ones included (read at scrape time)
   * @param processMetrics whether it holds the process and Node metrics too (default true); the
   *   sets of HTTP threads leave them out, the main thread's set has them (they are per process)
   */
  constructor(busy: () => number, workers: () => number, processMetrics = true) {
    this.#busy = busy;
    this.#workers = workers;
    this.#processMetrics = processMetrics;
    const counter = <L extends string>(of: (r: Real) => Counter<L>): CounterOf<L> => ({
      inc: (labels) => (this.#real ? of(this.#real).inc(labels) : this.#defer((r) => of(r).inc(labels))),
    });
    this.requests = counter((r) => r.requests);
    this.errors = counter((r) => r.errors);
    this.timeouts = counter((r) => r.timeouts);
    this.messages = counter((r) => r.messages);
    this.dropped = counter((r) => r.dropped);
    this.duration = {
      observe: (labels, value) => (this.#real ? this.#real.duration.observe(labels, value) : this.#defer((r) => r.duration.observe(labels, value))),
    };
    this.inflight = {
      inc: () => (this.#real ? this.#real.inflight.inc() : this.#defer((r) => r.inflight.inc())),
      dec: () => (this.#real ? this.#real.inflight.dec() : this.#defer((r) => r.inflight.dec())),
    };
  }

  /**
   * prom-client's registry of these metrics, loading prom-client now if it is not yet (the
   * HTTP threads' scrapes read it as JSON); `text()` loads it without blocking.
   */
  get registry(): Registry {
    if (!this.#real) {
      const { createRequire } = process.getBuiltinModule('node:module');
      this.#materialise(createRequire(import.meta.url)('prom-client') as PromClient);
    }
    return this.#real!.registry;
  }

  /** Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    const { registry } = this.#real ?? await this.#load();
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  #defer(update: (real: Real) => void): void {
    this.#pending.push(update);
    if (this.#pending.length >= PENDING_MAX) void this.#load();
  }

  #load(): Promise<Real> {
    return (this.#loading ??= import('prom-client').then((pc) => this.#materialise(pc)));
  }

  /** Makes prom-client's metrics (once) and replays the updates made before. */
  #materialise(pc: PromClient): Real {
    if (this.#real) return this.#real;
    const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = pc;
    const registry = new Registry();
    const registers = [registry];
    // prom-client's names already start with process_ / nodejs_: capsule_process_cpu_seconds_total,
    // capsule_nodejs_eventloop_lag_seconds, …
    if (this.#processMetrics) collectDefaultMetrics({ register: registry, prefix: 'capsule_' });
    const busy = this.#busy;
    const workers = this.#workers;
    const real: Real = {
      registry,
      requests: new Counter({ name: 'capsule_requests_total', help: 'Invocations handled, by function, method and status', labelNames: ['function', 'method', 'status'], registers }),
      duration: new Histogram({
        name: 'capsule_request_duration_seconds', help: 'Invocation duration (queue + guest), seconds', labelNames: ['function'],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers,
      }),
      errors: new Counter({ name: 'capsule_errors_total', help: 'Runner-made errors, by code (TRAP, TIMEOUT, MEMORY, …)', labelNames: ['function', 'code'], registers }),
      timeouts: new Counter({ name: 'capsule_timeouts_total', help: 'Calls stopped at their deadline', labelNames: ['function'], registers }),
      inflight: new Gauge({ name: 'capsule_inflight_requests', help: 'Invocations in progress', registers }),
      busyWorkers: new Gauge({ name: 'capsule_busy_workers', help: 'Worker threads running a guest call', registers, collect() { this.set(busy()); } }),
      messages: new Counter({ name: 'capsule_messages_total', help: 'Messages handled by the NATS/MQTT triggers, by trigger and outcome (ok, failed, error)', labelNames: ['function', 'trigger', 'outcome'], registers }),
      dropped: new Counter({ name: 'capsule_messages_dropped_total', help: 'Messages dropped because too many were waiting (--max-pending)', labelNames: ['function', 'trigger'], registers }),
    };
    new Gauge({ name: 'capsule_workers', help: 'Worker threads in the pool now (it grows beside long calls)', registers, collect() { this.set(workers()); } });
    for (const update of this.#pending) update(real);
    this.#pending = [];
    this.#real = real;
    return real;
  }
}
