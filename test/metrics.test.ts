// The runner's /capsule/metrics text (src/observability/metrics.ts, prom-client): histogram buckets,
// label sets and escaping, gauges read at scrape time, Node's process metrics prefixed once.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RunnerMetrics } from '../src/observability/metrics.ts';

const lines = (text: string, prefix: string) => text.split('\n').filter((l) => l.startsWith(prefix));

describe('runner metrics exposition', () => {
  it('writes cumulative histogram buckets, +Inf, sum and count per label set', async () => {
    const m = new RunnerMetrics(() => 0, () => 0);
    for (const s of [0.0004, 0.003, 0.003, 40]) m.duration.observe({ function: 'a' }, s);
    m.duration.observe({ function: 'b' }, 0.2);
    const { body } = await m.text();
    const a = lines(body, 'capsule_request_duration_seconds_bucket{le=').filter((l) => l.includes('function="a"'));
    assert.equal(a.length, 16);
    assert.equal(a[0], 'capsule_request_duration_seconds_bucket{le="0.0005",function="a"} 1');
    assert.equal(a[2], 'capsule_request_duration_seconds_bucket{le="0.0025",function="a"} 1');
    assert.equal(a[3], 'capsule_request_duration_seconds_bucket{le="0.005",function="a"} 3');
    assert.equal(a[14], 'capsule_request_duration_seconds_bucket{le="30",function="a"} 3');
    assert.equal(a[15], 'capsule_request_duration_seconds_bucket{le="+Inf",function="a"} 4');
    assert.deepEqual(lines(body, 'capsule_request_duration_seconds_count'), [
      'capsule_request_duration_seconds_count{function="a"} 4', 'capsule_request_duration_seconds_count{function="b"} 1',
    ]);
    const sum = Number(lines(body, 'capsule_request_duration_seconds_sum{function="a"}')[0]!.split(' ')[1]);
    assert.ok(Math.abs(sum - 40.0064) < 1e-9, `sum ${sum}`);
    assert.match(body, /^# TYPE capsule_request_duration_seconds histogram$/m);
  });

  it('counts by label set, escapes label values and reads the gauges at scrape time', async () => {
    let busy = 1;
    const m = new RunnerMetrics(() => busy, () => 3);
    m.requests.inc({ function: 'f', method: 'POST', status: 200 });
    m.requests.inc({ function: 'f', method: 'POST', status: 200 });
    m.requests.inc({ function: 'f', method: 'GET', status: 404 });
    m.errors.inc({ function: 'we"ird\\na\nme', code: 'TRAP' });
    m.inflight.inc();
    m.inflight.inc();
    m.inflight.dec();
    busy = 2;
    const { contentType, body } = await m.text();
    assert.equal(contentType, 'text/plain; version=0.0.4; charset=utf-8');
    assert.deepEqual(lines(body, 'capsule_requests_total{'), [
      'capsule_requests_total{function="f",method="POST",status="200"} 2', 'capsule_requests_total{function="f",method="GET",status="404"} 1',
    ]);
    assert.deepEqual(lines(body, 'capsule_errors_total{'), ['capsule_errors_total{function="we\\"ird\\\\na\\nme",code="TRAP"} 1']);
    assert.deepEqual(lines(body, 'capsule_inflight_requests '), ['capsule_inflight_requests 1']);
    assert.deepEqual(lines(body, 'capsule_busy_workers '), ['capsule_busy_workers 2']);
    assert.deepEqual(lines(body, 'capsule_workers '), ['capsule_workers 3']);
    assert.deepEqual(lines(body, '# TYPE capsule_timeouts_total '), ['# TYPE capsule_timeouts_total counter'], 'declared even when nothing timed out');
  });

  it("adds Node's process metrics, prefixed once", async () => {
    const m = new RunnerMetrics(() => 0, () => 0);
    for (let i = 0; i < 2; i++) {
      const { body } = await m.text();
      assert.equal(lines(body, 'capsule_process_cpu_seconds_total ').length, 1);
      assert.match(body, /^capsule_nodejs_eventloop_lag_seconds /m);
      assert.doesNotMatch(body, /capsule_process_process_|capsule_process_nodejs_/);
    }
  });
});
