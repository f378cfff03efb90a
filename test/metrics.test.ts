// The runner's /capsule/metrics text (src/observability/metrics.ts, prom-client): histogram buckets,
// label sets and escaping, gauges read at scrape time, Node's process metrics prefixed once; prom-client
// loaded at the first scrape with no count lost.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RunnerMetrics } from '../src/observability/metrics.ts';
import { root } from './helpers.ts';

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

  it("renders the duration histogram as prom-client's Histogram does, in text and in the JSON threads send", async () => {
    const m = new RunnerMetrics(() => 0, () => 0, false);
    const { Histogram, Registry } = await import('prom-client');
    const registry = new Registry();
    const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    const theirs = new Histogram({ name: 'capsule_request_duration_seconds', help: 'Invocation duration (queue + guest), seconds', labelNames: ['function'], buckets, registers: [registry] });
    const observations: [string, number][] = [['a', 0.0005], ['we"ird\\n\n', 0.01], ['a', 0], ['b', 31], ['a', 1e-9], ['b', 2.5], ['a', 0.0250001]];
    for (const [fn, s] of observations) {
      m.duration.observe({ function: fn }, s);
      theirs.observe({ function: fn }, s);
    }
    const section = (text: string) => text.split('\n').filter((l) => l.includes('capsule_request_duration_seconds')).join('\n');
    assert.equal(section((await m.text()).body), section(await registry.metrics()));
    const ours = (await m.registry.getMetricsAsJSON()).find((x) => x.name === 'capsule_request_duration_seconds');
    assert.deepEqual(JSON.parse(JSON.stringify(ours)), JSON.parse(JSON.stringify((await registry.getMetricsAsJSON())[0])));
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

describe('prom-client loaded when needed (a server starts without it)', () => {
  /** Runs an ES module script in a new Node process (so that nothing loaded prom-client before); returns its stdout. */
  const inNewProcess = (script: string) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  const prelude = `import { createRequire } from 'node:module';
import { RunnerMetrics } from ${JSON.stringify(pathToFileURL(join(root, 'src/observability/metrics.ts')).href)};
const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/node_modules/prom-client/'));
`;

  it('loads at the first scrape, with every count made before it and after', () => {
    const out = inNewProcess(`${prelude}
const m = new RunnerMetrics(() => 0, () => 0);
m.requests.inc({ function: 'f', method: 'GET', status: 200 });
m.duration.observe({ function: 'f' }, 0.003);
m.inflight.inc(); m.inflight.inc(); m.inflight.dec();
m.errors.inc({ function: 'f', code: 'TRAP' });
const before = loaded();
const first = (await m.text()).body;
m.requests.inc({ function: 'f', method: 'GET', status: 200 });
const second = (await m.text()).body;
console.log(JSON.stringify({ before, after: loaded(), first, second }));`);
    const { before, after, first, second } = JSON.parse(out) as { before: boolean; after: boolean; first: string; second: string };
    assert.deepEqual([before, after], [false, true]);
    assert.deepEqual(lines(first, 'capsule_requests_total{'), ['capsule_requests_total{function="f",method="GET",status="200"} 1']);
    assert.deepEqual(lines(first, 'capsule_request_duration_seconds_count'), ['capsule_request_duration_seconds_count{function="f"} 1']);
    assert.deepEqual(lines(first, 'capsule_inflight_requests '), ['capsule_inflight_requests 1']);
    assert.deepEqual(lines(first, 'capsule_errors_total{'), ['capsule_errors_total{function="f",code="TRAP"} 1']);
    assert.deepEqual(lines(second, 'capsule_requests_total{'), ['capsule_requests_total{function="f",method="GET",status="200"} 2']);
  });

  it('counts thousands of updates without loading it, losing none; the registry (HTTP threads) loads it at once', () => {
    const out = inNewProcess(`${prelude}
const m = new RunnerMetrics(() => 0, () => 0, false);
for (let i = 0; i < 10000; i++) m.requests.inc({ function: 'f', method: 'POST', status: i % 2 ? 200 : '200' });
for (let i = 0; i < 10000; i++) m.duration.observe({ function: 'f' }, 0.002);
await new Promise((r) => setTimeout(r, 0));
const busy = loaded();
const text = (await m.text()).body;
const other = new RunnerMetrics(() => 0, () => 0, false);
other.timeouts.inc({ function: 'g' });
const json = await other.registry.getMetricsAsJSON();
console.log(JSON.stringify({ busy, text, timeouts: json.find((x) => x.name === 'capsule_timeouts_total').values }));`);
    const { busy, text, timeouts } = JSON.parse(out) as { busy: boolean; text: string; timeouts: { value: number; labels: object }[] };
    assert.equal(busy, false, 'not loaded by updates alone');
    assert.deepEqual(lines(text, 'capsule_requests_total{'), ['capsule_requests_total{function="f",method="POST",status="200"} 10000']);
    assert.deepEqual(lines(text, 'capsule_request_duration_seconds_count'), ['capsule_request_duration_seconds_count{function="f"} 10000']);
    assert.deepEqual(timeouts.map((t) => [t.labels, t.value]), [[{ function: 'g' }, 1]]);
  });
});
