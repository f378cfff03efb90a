/**
 * Runner metrics in Prometheus text format (served at /capsule/metrics; conventions.md §4).
 *
 * The runner's own metrics are kept in small in-process counters and written out at scrape time;
 * prom-client (Node's process and runtime metrics, `capsule_process_*` / `capsule_nodejs_*`) is
 * loaded at the first scrape, not at start: it costs ~15 MiB of RSS and ~80 modules, and a
 * labelled prom-client update costs more per request than a Map lookup (docs/performance.md,
 * "Serve cost"). The default metrics therefore count from the first scrape (GC durations and
 * event-loop figures; CPU and memory are cumulative or read at scrape time).
 */
import type { Registry } from 'prom-client';

type Labels<L extends string> = Partial<Record<L, string | number>>;

/** Escapes a label value for the text format (backslash, double quote, newline). */
const escapeLabel = (v: string | number) => String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** `{a="x",b="y"}` for the given label names and values, or '' without labels. */
function labelText(names: readonly string[], values: readonly (string | number)[], first = ''): string {
  const parts = first ? [first] : [];
  names.forEach((n, i) => parts.push(`${n}="${escapeLabel(values[i] ?? '')}"`));
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** Values by label set: the key is the label values joined by NUL, in the metric's label order. */
class Series<L extends string, V> {
  readonly #values = new Map<string, { labels: (string | number)[]; value: V }>();
  readonly names: readonly L[];
  readonly make: () => V;
  constructor(names: readonly L[], make: () => V) {
    this.names = names;
    this.make = make;
  }
  /** The value of one label set (created on first use). */
  at(labels: Labels<L>): V {
    const values = this.names.map((n) => labels[n] ?? '');
    const key = values.join('\0');
    let e = this.#values.get(key);
    if (!e) this.#values.set(key, (e = { labels: values, value: this.make() }));
    return e.value;
  }
  entries(): Iterable<{ labels: (string | number)[]; value: V }> {
    return this.#values.values();
  }
}

/** A Prometheus counter with labels (the subset of prom-client's `Counter` the runner uses). */
export class LabelledCounter<L extends string> {
  readonly #series: Series<L, { n: number }>;
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string, labelNames: readonly L[]) {
    this.name = name;
    this.help = help;
    this.#series = new Series(labelNames, () => ({ n: 0 }));
  }
  /** Adds `by` (default 1) to the label set's count. */
  inc(labels: Labels<L>, by = 1): void {
    this.#series.at(labels).n += by;
  }
  /** Text exposition. */
  text(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const e of this.#series.entries()) out += `${this.name}${labelText(this.#series.names, e.labels)} ${e.value.n}\n`;
    return out;
  }
}

/** A Prometheus histogram with labels (seconds; cumulative buckets at scrape time). */
export class LabelledHistogram<L extends string> {
  readonly #series: Series<L, { counts: number[]; sum: number; count: number }>;
  readonly name: string;
  readonly help: string;
  /** Upper bounds, seconds, increasing. */
  readonly buckets: readonly number[];
  constructor(name: string, help: string, labelNames: readonly L[], buckets: readonly number[]) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
    this.#series = new Series(labelNames, () => ({ counts: new Array<number>(buckets.length).fill(0), sum: 0, count: 0 }));
  }
  /** Records one observation of `value` (seconds) for the label set. */
  observe(labels: Labels<L>, value: number): void {
    const s = this.#series.at(labels);
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  /** Text exposition. */
  text(): string {
    const names = this.#series.names;
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const { labels, value } of this.#series.entries()) {
      let acc = 0;
      this.buckets.forEach((b, i) => {
        acc += value.counts[i]!;
        out += `${this.name}_bucket${labelText(names, labels, `le="${b}"`)} ${acc}\n`;
      });
      out += `${this.name}_bucket${labelText(names, labels, 'le="+Inf"')} ${value.count}\n`;
      out += `${this.name}_sum${labelText(names, labels)} ${value.sum}\n${this.name}_count${labelText(names, labels)} ${value.count}\n`;
    }
    return out;
  }
}

/** A Prometheus gauge without labels, set in place or read at scrape time. */
export class PlainGauge {
  #value = 0;
  readonly name: string;
  readonly help: string;
  readonly read?: () => number;
  constructor(name: string, help: string, read?: () => number) {
    this.name = name;
    this.help = help;
    this.read = read;
  }
  inc(): void {
    this.#value++;
  }
  dec(): void {
    this.#value--;
  }
  /** Text exposition. */
  text(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n${this.name} ${this.read ? this.read() : this.#value}\n`;
  }
}

/** prom-client's content type of the text format 0.0.4. */
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** The runner's metric set, one per server. */
export class RunnerMetrics {
  readonly requests = new LabelledCounter('capsule_requests_total', 'Invocations handled, by function, method and status', ['function', 'method', 'status'] as const);
  readonly duration = new LabelledHistogram('capsule_request_duration_seconds', 'Invocation duration (queue + guest), seconds', ['function'] as const,
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
  readonly errors = new LabelledCounter('capsule_errors_total', 'Runner-made errors, by code (TRAP, TIMEOUT, MEMORY, …)', ['function', 'code'] as const);
  readonly timeouts = new LabelledCounter('capsule_timeouts_total', 'Calls stopped at their deadline', ['function'] as const);
  readonly inflight = new PlainGauge('capsule_inflight_requests', 'Invocations in progress');
  readonly busyWorkers: PlainGauge;
  /** Messages handled by the NATS/MQTT triggers, by outcome: `ok`, `failed` (F / [ERR] result), `error` (trap, timeout, …). */
  readonly messages = new LabelledCounter('capsule_messages_total', 'Messages handled by the NATS/MQTT triggers, by trigger and outcome (ok, failed, error)', ['function', 'trigger', 'outcome'] as const);
  /** Messages the NATS trigger dropped because --max-pending messages were already waiting. */
  readonly dropped = new LabelledCounter('capsule_messages_dropped_total', 'Messages dropped because too many were waiting (--max-pending)', ['function', 'trigger'] as const);
  readonly #workers: PlainGauge;
  /** prom-client's registry of the default metrics, made at the first scrape. */
  #defaults?: Promise<Registry>;

  /**
   * @param busy returns the number of workers running a call (read at scrape time)
   * @param workers returns the worker threads up now, grown ones included (read at scrape time)
   */
  constructor(busy: () => number, workers: () => number) {
    this.busyWorkers = new PlainGauge('capsule_busy_workers', 'Worker threads running a guest call', busy);
    this.#workers = new PlainGauge('capsule_workers', 'Worker threads in the pool now (it grows beside long calls)', workers);
  }

  /** Prometheus text exposition: the runner's metrics, then Node's process and runtime metrics. */
  async text(): Promise<{ contentType: string; body: string }> {
    this.#defaults ??= import('prom-client').then(({ Registry, collectDefaultMetrics }) => {
      const registry = new Registry();
      // prom-client's names already start with process_ / nodejs_: capsule_process_cpu_seconds_total,
      // capsule_nodejs_eventloop_lag_seconds, …
      collectDefaultMetrics({ register: registry, prefix: 'capsule_' });
      return registry;
    });
    const defaults = await (await this.#defaults).metrics();
    const own = [this.requests, this.duration, this.errors, this.timeouts, this.inflight, this.busyWorkers, this.messages, this.dropped, this.#workers];
    return { contentType: CONTENT_TYPE, body: own.map((m) => m.text()).join('\n') + '\n' + defaults };
  }
}
