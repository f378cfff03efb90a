/**
 * Runner metrics in Prometheus text format (served at /capsule/metrics; conventions.md §4).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The runner's metric set, one per server. */
export class RunnerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'function' | 'method' | 'status'>;
  readonly duration: Histogram<'function'>;
  readonly errors: Counter<'function' | 'code'>;
  readonly timeouts: Counter<'function'>;
  readonly inflight: Gauge;
  readonly busyWorkers: Gauge;
  /** Messages handled by the NATS/MQTT triggers, by outcome: `ok`, `failed` (F / [ERR] result), `error` (trap, timeout, …). */
  readonly messages: Counter<'function' | 'trigger' | 'outcome'>;
  /** Messages the NATS trigger dropped because --max-pending messages were already waiting. */
  readonly dropped: Counter<'function' | 'trigger'>;

  /**
   * @param busy returns the number of workers running a call (read at scrape time)
   * @param workers returns the worker threads up now, grown ones included (read at scrape time)
   * @param processMetrics whether it holds the process and Node metrics too (default true); the
   *   sets of HTTP threads leave them out, the main thread's set has them (they are per process)
   */
  constructor(busy: () => number, workers: () => number, processMetrics = true) {
    // prom-client's names already start with process_ / nodejs_: capsule_process_cpu_seconds_total,
    // capsule_nodejs_eventloop_lag_seconds, …
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'capsule_' });
    this.requests = new Counter({ name: 'capsule_requests_total', help: 'Invocations handled, by function, method and status', labelNames: ['function', 'method', 'status'], registers: [this.registry] });
    this.duration = new Histogram({
      name: 'capsule_request_duration_seconds', help: 'Invocation duration (queue + guest), seconds', labelNames: ['function'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
    });
    this.errors = new Counter({ name: 'capsule_errors_total', help: 'Runner-made errors, by code (TRAP, TIMEOUT, MEMORY, …)', labelNames: ['function', 'code'], registers: [this.registry] });
    this.timeouts = new Counter({ name: 'capsule_timeouts_total', help: 'Calls stopped at their deadline', labelNames: ['function'], registers: [this.registry] });
    this.inflight = new Gauge({ name: 'capsule_inflight_requests', help: 'Invocations in progress', registers: [this.registry] });
    this.busyWorkers = new Gauge({ name: 'capsule_busy_workers', help: 'Worker threads running a guest call', registers: [this.registry], collect() { this.set(busy()); } });
    this.messages = new Counter({ name: 'capsule_messages_total', help: 'Messages handled by the NATS/MQTT triggers, by trigger and outcome (ok, failed, error)', labelNames: ['function', 'trigger', 'outcome'], registers: [this.registry] });
    this.dropped = new Counter({ name: 'capsule_messages_dropped_total', help: 'Messages dropped because too many were waiting (--max-pending)', labelNames: ['function', 'trigger'], registers: [this.registry] });
    new Gauge({ name: 'capsule_workers', help: 'Worker threads in the pool now (it grows beside long calls)', registers: [this.registry], collect() { this.set(workers()); } });
  }

  /** Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
