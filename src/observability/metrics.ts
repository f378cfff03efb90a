/**
 * Runner metrics in Prometheus text format (served at /capsule/metrics; conventions.md §4).
 *
 * The triggers count in plain per-series records of this module (a few nested `Map` look-ups and
 * an add per update); prom-client is the exposition only: its counters and gauges take what was
 * counted since the last scrape in their `collect()`, and the request histogram is a metric
 * object of this module that renders exactly what prom-client's `Histogram` renders. prom-client's
 * own `observe`/`inc` validate and hash the label set, allocate a closure and look a bucket up by a
 * float-keyed property at every update: ~4 µs of a served request under load, against ~0.3 µs
 * here (docs/performance.md, "HTTP pipeline").
 *
 * prom-client (~80 files with @opentelemetry/api, ~40 ms of a server's start and a few MiB) is
 * loaded at the first scrape, not at start (docs/performance.md "Start-up"); counts made before
 * are in the records, so none is lost and nothing grows with the number of updates. Node's
 * process metrics (CPU, memory, event loop lag, GC) are collected from then on: a GC before it is
 * not counted (cumulative ones, CPU seconds, are read from the process).
 */
import type { Counter, Gauge, MetricValueWithName, Registry } from 'prom-client';

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

/** Upper bounds of the request duration histogram's buckets, seconds. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The series of one labelled metric, found by its label values in `names` order through nested
 * maps (no key string built per update); `make` creates a series' record the first time.
 */
class SeriesTable<L extends string, S> {
  readonly #names: readonly L[];
  readonly #make: (labels: Labels<L>) => S;
  readonly #root = new Map<unknown, unknown>();
  /** Every series, in the order they first appeared (prom-client's order too). */
  readonly all: S[] = [];

  constructor(names: readonly L[], make: (labels: Labels<L>) => S) {
    this.#names = names;
    this.#make = make;
  }

  /** The record of `labels`' series (made the first time; a copy of `labels` is kept). */
  of(labels: Labels<L>): S {
    const names = this.#names;
    let map = this.#root;
    const last = names.length - 1;
    for (let i = 0; i < last; i++) {
      const v = key(labels[names[i]!]);
      let next = map.get(v) as Map<unknown, unknown> | undefined;
      if (!next) map.set(v, next = new Map());
      map = next;
    }
    const v = key(labels[names[last]!]);
    let s = map.get(v) as S | undefined;
    if (!s) {
      map.set(v, s = this.#make({ ...labels }));
      this.all.push(s);
    }
    return s;
  }
}

/** A label value as prom-client tells series apart (by its string: 200 and '200' are one series). */
const key = (v: string | number | undefined): string | undefined => (typeof v === 'number' ? String(v) : v);

/** A counter's series: what was counted and not yet handed to prom-client. */
interface CounterSeries<L extends string> {
  readonly labels: Labels<L>;
  pending: number;
}

/** A counter counted here, handed to a prom-client `Counter` at each scrape (`flushInto`). */
class FastCounter<L extends string> implements CounterOf<L> {
  readonly #table: SeriesTable<L, CounterSeries<L>>;

  constructor(names: readonly L[]) {
    this.#table = new SeriesTable(names, (labels) => ({ labels, pending: 0 }));
  }

  inc(labels: Labels<L>): void {
    this.#table.of(labels).pending++;
  }

  /** Adds what was counted since the last call to `counter`. */
  flushInto(counter: Counter<L>): void {
    for (const s of this.#table.all) {
      if (s.pending === 0) continue;
      counter.inc(s.labels, s.pending);
      s.pending = 0;
    }
  }
}

/** A histogram's series: per-bucket counts (not cumulative), sum and count. */
interface HistogramSeries<L extends string> {
  readonly labels: Labels<L>;
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram counted here and rendered as prom-client's `Histogram` renders it (the same
 * `get()` value: `_bucket` series with `le` first, `+Inf`, `_sum`, `_count`, aggregator `sum`),
 * registered in prom-client's registry as a metric of its own.
 */
class FastHistogram<L extends string> implements HistogramOf<L> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #bounds: readonly number[];
  #table: SeriesTable<L, HistogramSeries<L>>;
  readonly #names: readonly L[];

  constructor(name: string, help: string, names: readonly L[], bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.#names = names;
    this.#bounds = bounds;
    this.#table = this.#newTable();
  }

  #newTable(): SeriesTable<L, HistogramSeries<L>> {
    return new SeriesTable(this.#names, (labels) => ({ labels, buckets: new Float64Array(this.#bounds.length), sum: 0, count: 0 }));
  }

  observe(labels: Labels<L>, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const s = this.#table.of(labels);
    const bounds = this.#bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
    s.sum += value;
    s.count++;
  }

  /** prom-client's registry reads this (as `Histogram.get()`). */
  async get(): Promise<{ name: string; help: string; type: 'histogram'; values: MetricValueWithName<string>[]; aggregator: 'sum' }> {
    const values: MetricValueWithName<string>[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#table.all) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.buckets[i]!;
        values.push({ value: acc, metricName: bucket, exemplar: null, labels: { le: this.#bounds[i]!, ...s.labels } } as MetricValueWithName<string>);
      }
      values.push({ value: s.count, metricName: bucket, exemplar: null, labels: { le: '+Inf', ...s.labels } } as MetricValueWithName<string>);
      values.push({ value: s.sum, metricName: `${this.name}_sum`, labels: { ...s.labels } });
      values.push({ value: s.count, metricName: `${this.name}_count`, labels: { ...s.labels } });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** `Registry.resetMetrics()`. */
  reset(): void {
    this.#table = this.#newTable();
  }
}

/** The runner's metric set, one per server. */
export class RunnerMetrics {
  readonly requests = new FastCounter<'function' | 'method' | 'status'>(['function', 'method', 'status']);
  readonly duration = new FastHistogram<'function'>(
    'capsule_request_duration_seconds', 'Invocation duration (queue + guest), seconds', ['function'], DURATION_BUCKETS);
  readonly errors = new FastCounter<'function' | 'code'>(['function', 'code']);
  readonly timeouts = new FastCounter<'function'>(['function']);
  readonly inflight: GaugeOf;
  /** Messages handled by the NATS/MQTT triggers, by outcome: `ok`, `failed` (F / [ERR] result), `error` (trap, timeout, …). */
  readonly messages = new FastCounter<'function' | 'trigger' | 'outcome'>(['function', 'trigger', 'outcome']);
  /** Messages the NATS trigger dropped because --max-pending messages were already waiting. */
  readonly dropped = new FastCounter<'function' | 'trigger'>(['function', 'trigger']);
  readonly #busy: () => number;
  readonly #workers: () => number;
  readonly #processMetrics: boolean;
  #registry: Registry | undefined;
  #loading: Promise<Registry> | undefined;
  #inflight = 0;

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
    this.inflight = {
      inc: () => {
        this.#inflight++;
      },
      dec: () => {
        this.#inflight--;
      },
    };
  }

  /**
   * prom-client's registry of these metrics, loading prom-client now if it is not yet (the
   * HTTP threads' scrapes read it as JSON); `text()` loads it without blocking.
   */
  get registry(): Registry {
    if (!this.#registry) {
      const { createRequire } = process.getBuiltinModule('node:module');
      this.#materialise(createRequire(import.meta.url)('prom-client') as PromClient);
    }
    return this.#registry!;
  }

  /** Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    const registry = this.#registry ?? await (this.#loading ??= import('prom-client').then((pc) => this.#materialise(pc)));
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  /** Makes prom-client's registry and metrics (once), each reading what was counted here at a scrape. */
  #materialise(pc: PromClient): Registry {
    if (this.#registry) return this.#registry;
    const { Counter, Gauge, Registry, collectDefaultMetrics } = pc;
    const registry = new Registry();
    const registers = [registry];
    // prom-client's names already start with process_ / nodejs_: capsule_process_cpu_seconds_total,
    // capsule_nodejs_eventloop_lag_seconds, …
    if (this.#processMetrics) collectDefaultMetrics({ register: registry, prefix: 'capsule_' });
    const counter = <L extends string>(name: string, help: string, labelNames: L[], from: FastCounter<L>): void => {
      new Counter({ name, help, labelNames, registers, collect() { from.flushInto(this); } });
    };
    counter('capsule_requests_total', 'Invocations handled, by function, method and status', ['function', 'method', 'status'], this.requests);
    registry.registerMetric(this.duration as unknown as Parameters<Registry['registerMetric']>[0]);
    counter('capsule_errors_total', 'Runner-made errors, by code (TRAP, TIMEOUT, MEMORY, …)', ['function', 'code'], this.errors);
    counter('capsule_timeouts_total', 'Calls stopped at their deadline', ['function'], this.timeouts);
    const inflight = () => this.#inflight;
    new Gauge({ name: 'capsule_inflight_requests', help: 'Invocations in progress', registers, collect() { this.set(inflight()); } });
    const busy = this.#busy;
    const workers = this.#workers;
    new Gauge({ name: 'capsule_busy_workers', help: 'Worker threads running a guest call', registers, collect() { this.set(busy()); } });
    counter('capsule_messages_total', 'Messages handled by the NATS/MQTT triggers, by trigger and outcome (ok, failed, error)', ['function', 'trigger', 'outcome'], this.messages);
    counter('capsule_messages_dropped_total', 'Messages dropped because too many were waiting (--max-pending)', ['function', 'trigger'], this.dropped);
    new Gauge({ name: 'capsule_workers', help: 'Worker threads in the pool now (it grows beside long calls)', registers, collect() { this.set(workers()); } });
    this.#registry = registry;
    return registry;
  }
}
