/**
 * Per-revision metrics of a function node, served at the node's `/capsule/metrics` (issue 12
 * point 7, faas-cluster.md §1.6): requests, errors, latency, calls in flight, replicas, and cold
 * starts by phase (`fetch` = download, `compile` = validation and compilation, `init` = load on
 * the pool with `OnLoad`). Labels `fn` and `rev` name the function and revision.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { CapsuleError, STATUS_BY_CODE } from '../../base/errors.ts';
import type { HttpResponseOutput } from '../../base/invocation.ts';
import type { CallResult } from '../../engine/pool.ts';
import { FaasError } from '../shared/service.ts';

/** The metric set of one node. */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'fn' | 'rev' | 'status'>;
  readonly errors: Counter<'fn' | 'rev' | 'code'>;
  readonly duration: Histogram<'fn' | 'rev'>;
  readonly inflight: Gauge<'fn' | 'rev'>;
  readonly replicas: Gauge<'fn' | 'rev'>;
  readonly coldStart: Histogram<'fn' | 'rev' | 'phase'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'capsule_' });
    this.requests = new Counter({ name: 'capsule_revision_requests_total', help: 'Calls of a deployed revision, by status', labelNames: ['fn', 'rev', 'status'], registers });
    this.errors = new Counter({ name: 'capsule_revision_errors_total', help: 'Failed calls of a revision (runner error or guest failure), by code', labelNames: ['fn', 'rev', 'code'], registers });
    this.duration = new Histogram({
      name: 'capsule_revision_request_duration_seconds', help: 'Call duration of a revision (queue + guest), seconds', labelNames: ['fn', 'rev'], registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    this.inflight = new Gauge({ name: 'capsule_inflight', help: 'Calls of a revision in progress', labelNames: ['fn', 'rev'], registers });
    this.replicas = new Gauge({ name: 'capsule_revision_replicas', help: 'Running replicas (listeners or child processes) of a revision', labelNames: ['fn', 'rev'], registers });
    this.coldStart = new Histogram({
      name: 'capsule_cold_start_seconds', help: 'Time to make a revision (or a new generation of it) ready, by phase: fetch, compile, init', labelNames: ['fn', 'rev', 'phase'], registers,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
  }

  /**
   * Counts one call of a revision: in flight while `run` runs, then its duration, its status
   * (the guest's HTTP status, a FaasError's status, or the status of a CapsuleError code) and,
   * when it failed, its error code. Rethrows what `run` throws.
   * @param labels `{ fn, rev }`
   */
  async track(labels: { fn: string; rev: string }, run: () => Promise<CallResult>): Promise<CallResult> {
    this.inflight.inc(labels);
    const end = this.duration.startTimer(labels);
    try {
      const r = await run();
      const out = r.output as HttpResponseOutput;
      this.requests.inc({ ...labels, status: out.status });
      if (out.failure) this.errors.inc({ ...labels, code: out.failure.code });
      return r;
    } catch (e) {
      const code = e instanceof CapsuleError || e instanceof FaasError ? e.code : 'INTERNAL';
      this.requests.inc({ ...labels, status: e instanceof FaasError ? e.status : STATUS_BY_CODE[code as keyof typeof STATUS_BY_CODE] ?? 500 });
      this.errors.inc({ ...labels, code });
      throw e;
    } finally {
      this.inflight.dec(labels);
      end();
    }
  }
}
