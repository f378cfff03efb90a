/**
 * HTTP benchmark (`npm run bench`; not a test). In one run, with the same load tool
 * (autocannon, 50 connections): a plain node:http hello world (the baseline), then
 * `capsule serve` with hello-you, fresh instance per request and with --reuse. Prints requests
 * per second, p50/p99 latency and the ratio to the baseline measured in this run.
 *
 * The three servers are measured in turn, ROUNDS times (interleaved, so that a slow spell of the
 * machine hits all of them), and each server's figures come from its best round (the most
 * requests per second): on a 2-core VM the same server gives twice the throughput from one run
 * to the next, depending on whether the scheduler puts it on the load generator's core (see
 * docs/performance.md); `BENCH_PICK=median` reports medians instead. On Linux it also prints the
 * CPU time per request of the server's threads and of the load generator, from /proc: where the
 * time goes, independent of that placement.
 *
 * When the Go examples were built (Go ≥ 1.24), the Go hello-you (examples/go/hello-you, the Go
 * MDK) is measured too, fresh instance per request, beside the AssemblyScript one.
 *
 * Targets on a 2-core machine: fresh ≥ 0.40× plain, --reuse ≥ 0.75× plain, p99 ≤ 10 ms.
 * Options: BENCH_SECONDS (default 6), BENCH_ROUNDS (default 3), BENCH_PICK (best | median),
 * BENCH_CONNECTIONS (default 50), BENCH_MODULE.
 */
import { root, startListening } from './lib.ts';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';

const seconds = Number(process.env.BENCH_SECONDS ?? 6);
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const pickMedian = process.env.BENCH_PICK === 'median';
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const helloYou = join(root, 'examples/hello-you/hello-you.wasm');
const fallback = join(root, 'build/fixtures/gen2-echo.wasm');
const module = process.env.BENCH_MODULE ?? (existsSync(helloYou) ? helloYou : fallback);
const body = JSON.stringify({ name: 'Bob Morane', age: 42 });

const PLAIN = `
const http = require('node:http');
const s = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"message":"Hello World"}'); });
});
s.listen(0, '127.0.0.1', () => console.log('capsule listening on http://127.0.0.1:' + s.address().port));
`;

const start = (args: string[]) => startListening(args);

/** CPU time (ms) of each thread of a process, by kind: the main thread, worker threads, the rest. */
function threadCpu(pid: number): Map<string, number> | undefined {
  const dir = `/proc/${pid}/task`;
  if (!existsSync(dir)) return undefined;
  const out = new Map<string, number>();
  for (const tid of readdirSync(dir)) {
    try {
      const stat = readFileSync(`${dir}/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const comm = readFileSync(`${dir}/${tid}/comm`, 'utf8').trim();
      const kind = Number(tid) === pid ? 'main' : comm === 'WorkerThread' ? 'workers' : 'other';
      out.set(kind, (out.get(kind) ?? 0) + (Number(fields[11]) + Number(fields[12])) * 10); // clock ticks of 10 ms
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

interface Row {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU µs per request: server main thread, its worker threads, the load generator. */
  cpu?: { main: number; workers: number; load: number };
}

async function measure(args: string[]): Promise<Row> {
  const { child, url } = await start(args);
  try {
    const opts = { url, connections, method: 'POST' as const, body, headers: { 'content-type': 'application/json' } };
    await autocannon({ ...opts, duration: 2 }); // warm-up
    const before = threadCpu(child.pid!);
    const self = process.cpuUsage();
    const r = await autocannon({ ...opts, duration: seconds });
    const load = process.cpuUsage(self);
    const after = threadCpu(child.pid!);
    const n = Math.max(1, r.requests.total);
    const per = (k: string) => ((after?.get(k) ?? 0) - (before?.get(k) ?? 0)) * 1000 / n;
    return {
      rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx,
      cpu: before && after ? { main: per('main'), workers: per('workers'), load: (load.user + load.system) / n } : undefined,
    };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const cli = join(root, 'bin/capsule.js');
const goHelloYou = join(root, 'examples/go/hello-you/hello-you.wasm');
const servers: { name: string; args: string[]; target?: number }[] = [
  { name: 'plain node:http', args: ['-e', PLAIN] },
  { name: 'capsule fresh', args: [cli, 'serve', module, '--http-port=0'], target: 0.4 },
  { name: 'capsule --reuse', args: [cli, 'serve', module, '--http-port=0', '--reuse'], target: 0.75 },
  ...(existsSync(goHelloYou) ? [{ name: 'go hello-you fresh', args: [cli, 'serve', goHelloYou, '--http-port=0'] }] : []),
];
const results = servers.map(() => [] as Row[]);
for (let round = 1; round <= rounds; round++) {
  for (const [i, s] of servers.entries()) {
    const row = await measure(s.args);
    results[i]!.push(row);
    console.error(`round ${round}/${rounds} ${s.name}: ${row.rps.toFixed(0)} req/s, p99 ${row.p99} ms`);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
/** The figures of one server: its best round, or the medians of its rounds (BENCH_PICK=median). */
const pick = (rows: Row[]): Row => {
  if (!pickMedian) return rows.reduce((a, b) => (b.rps > a.rps ? b : a));
  const cpu = rows.every((r) => r.cpu)
    ? { main: median(rows.map((r) => r.cpu!.main)), workers: median(rows.map((r) => r.cpu!.workers)), load: median(rows.map((r) => r.cpu!.load)) }
    : undefined;
  return { rps: median(rows.map((r) => r.rps)), p50: median(rows.map((r) => r.p50)), p99: median(rows.map((r) => r.p99)), errors: 0, cpu };
};
const picked = results.map(pick);
const base = picked[0]!.rps;
console.log(`\nmodule: ${module.replace(root, '')}; ${connections} connections, ${seconds} s × ${rounds} rounds each (${pickMedian ? 'medians' : 'best round'}), POST ${body}`);
console.log('server'.padEnd(18) + 'req/s'.padStart(9) + 'p50 ms'.padStart(8) + 'p99 ms'.padStart(8) + 'ratio'.padStart(7) + '  target'.padEnd(16) + 'errors' + '   CPU µs/req: main workers loadgen');
for (const [i, s] of servers.entries()) {
  const r = picked[i]!;
  const cpu = r.cpu ? [r.cpu.main, r.cpu.workers, r.cpu.load].map((v) => v.toFixed(1).padStart(6)).join('') : '  (no /proc)';
  const ratio = r.rps / base;
  const verdict = s.target === undefined ? (i === 0 ? 'baseline' : '') : `≥ ${s.target.toFixed(2)} ${ratio >= s.target ? 'met' : 'NOT met'}`;
  console.log(
    s.name.padEnd(18) + r.rps.toFixed(0).padStart(9) + String(r.p50).padStart(8) + String(r.p99).padStart(8) +
    ratio.toFixed(2).padStart(7) + '  ' + verdict.padEnd(14) + String(results[i]!.reduce((n, x) => n + x.errors, 0)).padStart(6) + '   ' + cpu,
  );
}
console.log(`every round (req/s): ${servers.map((s, i) => `${s.name} ${results[i]!.map((r) => r.rps.toFixed(0)).join('/')}`).join('; ')}`);
