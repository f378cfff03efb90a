/**
 * Proxy overhead benchmark (`npm run bench`; not a test), issue 12: hello-you served by
 * `capsule serve`, called directly, through `capsule proxy` (`/functions/hello`) and through a
 * minimal node:http → node:http forwarder (keep-alive Agent, `pipe`, nothing else: the floor of
 * any Node forwarder on this machine), in the same run with the same load tool. Measures:
 * - throughput: wrk when installed (one thread, it takes less CPU from the servers), else
 *   autocannon; 50 connections, POST; the sides' rounds interleaved, each side's best round (a
 *   2-core VM varies a lot from one run to the next, docs/performance.md);
 * - CPU µs per request of the forwarding process (/proc utime+stime over the timed run): less
 *   noisy than req/s on a shared machine, and what the forwarder takes from the upstream;
 * - added latency: one connection, requests one after the other, p50 of each side in µs
 *   (autocannon's latency has millisecond resolution, too coarse for a 1 ms budget).
 * Targets: proxied ≥ 0.6× direct throughput, ≤ 1 ms added p50. The proxy runs as shipped
 * (one info log line per request). Options: BENCH_SECONDS (default 3), BENCH_ROUNDS (default 2),
 * BENCH_CONNECTIONS (default 50), BENCH_SEQUENTIAL (requests for the latency, default 2000),
 * BENCH_TOOL (`wrk` or `autocannon`), BENCH_COMPARE (another checkout of Capsule, built: its
 * `capsule proxy` is measured as one more side, for a before/after in one run).
 */
import { root, startListening, stopProcess } from './lib.ts';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { Pool } from 'undici';

const cli = join(root, 'bin/capsule.js');
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2));
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const sequential = Number(process.env.BENCH_SEQUENTIAL ?? 2000);
const helloYou = join(root, 'examples/hello-you/hello-you.wasm');
const body = JSON.stringify({ name: 'Bob Morane', age: 42 });
const wrk = ['/usr/bin/wrk', '/usr/local/bin/wrk'].find((f) => existsSync(f));
const tool = process.env.BENCH_TOOL ?? (wrk ? 'wrk' : 'autocannon');
const run = promisify(execFile);

/** The floor: a node:http server forwarding every request to argv[1] with a keep-alive Agent and pipe. */
const FORWARDER = `
import http from 'node:http';
const up = new URL(process.argv[1]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const server = http.createServer((req, res) => {
  const out = http.request({ host: up.hostname, port: up.port, path: req.url, method: req.method, headers: req.headers, agent }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  out.on('error', () => { res.statusCode = 502; res.end(); });
  req.pipe(out);
});
server.listen(0, '127.0.0.1', () => console.log('capsule listening on http://127.0.0.1:' + server.address().port));
process.on('SIGTERM', () => process.exit(0));
`;

const start = (args: string[], node: string[] = [cli], cwd = root) => startListening([...node, ...args], { cwd, what: `capsule ${args[0]}` });

const stop = stopProcess;

interface Row {
  rps: number;
  errors: number;
  /** CPU time of the forwarding process per request, µs (Linux /proc), for the forwarded sides. */
  proxyCpu?: number;
}

/** CPU time (ms) a process used so far, from /proc (undefined elsewhere). */
function processCpu(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // clock ticks of 10 ms
  } catch {
    return undefined;
  }
}

/** One timed load of `seconds` on `url` (wrk when installed, else autocannon). */
async function load(url: string, duration: number): Promise<{ rps: number; total: number; errors: number }> {
  if (tool === 'wrk') {
    const script = join(tmpdir(), 'capsule-bench-proxy.lua');
    writeFileSync(script, `wrk.method = "POST"\nwrk.body = '${body}'\nwrk.headers["content-type"] = "application/json"\n`);
    const { stdout } = await run(wrk!, ['-t1', `-c${connections}`, `-d${duration}s`, '-s', script, url]);
    const num = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? 0);
    const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
    const errors = num(/Non-2xx or 3xx responses: (\d+)/) + (socket ? socket.slice(1).reduce((n, x) => n + Number(x), 0) : 0);
    return { rps: num(/Requests\/sec:\s+([\d.]+)/), total: num(/(\d+) requests in/), errors };
  }
  const r = await autocannon({ url, connections, method: 'POST', body, headers: { 'content-type': 'application/json' }, duration });
  return { rps: r.requests.average, total: r.requests.total, errors: r.errors + r.timeouts + r.non2xx };
}

async function throughput(url: string, proxyPid?: number): Promise<Row> {
  await load(url, 1); // warm-up
  const before = proxyPid ? processCpu(proxyPid) : undefined;
  const r = await load(url, seconds);
  const after = proxyPid ? processCpu(proxyPid) : undefined;
  const proxyCpu = before !== undefined && after !== undefined ? ((after - before) * 1000) / Math.max(1, r.total) : undefined;
  return { rps: r.rps, errors: r.errors, proxyCpu };
}

/** Median latency (µs) of `n` requests sent one after the other on one connection. */
async function latencyP50(url: string, n: number): Promise<number> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < n + 100; i++) {
      const t0 = performance.now();
      const r = await pool.request({ path: u.pathname, method: 'POST', body, headers: { 'content-type': 'application/json' } });
      await r.body.text();
      if (r.statusCode !== 200) throw new Error(`${url}: HTTP ${r.statusCode}`);
      if (i >= 100) times.push((performance.now() - t0) * 1000); // the first 100 warm up
    }
  } finally {
    await pool.close();
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

if (!existsSync(helloYou)) {
  console.error(`${helloYou.replace(root, '')} was not built: run npm run build:guests`);
  process.exit(1);
}
const upstream = await start(['serve', helloYou, '--http-port=0', '--log-level=warn']);
const proxy = await start(['proxy', '--http-port=0']);
const floor = await start([upstream.url], ['--input-type=module', '-e', FORWARDER]);
const compare = process.env.BENCH_COMPARE ? resolve(process.env.BENCH_COMPARE) : undefined;
const other = compare ? await start(['proxy', '--http-port=0'], [join(compare, 'bin/capsule.js')], compare) : undefined;
try {
  for (const p of [proxy, other]) {
    if (!p) continue;
    const reg = await fetch(`${p.url}/memory/functions/registration`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ function: 'hello', revision: 'default', url: upstream.url }),
    });
    if (reg.status !== 202) throw new Error(`registration failed: ${reg.status} ${await reg.text()}`);
  }
  const sides = [
    { name: 'direct', url: `${upstream.url}/` },
    { name: 'through proxy', url: `${proxy.url}/functions/hello`, pid: proxy.child.pid },
    { name: 'node:http fwd', url: `${floor.url}/`, pid: floor.child.pid },
    ...(other ? [{ name: 'compared proxy', url: `${other.url}/functions/hello`, pid: other.child.pid }] : []),
  ];
  const rows = sides.map(() => [] as Row[]);
  for (let round = 1; round <= rounds; round++) {
    for (const [i, s] of sides.entries()) {
      const row = await throughput(s.url, 'pid' in s ? s.pid : undefined);
      rows[i]!.push(row);
      console.error(`round ${round}/${rounds} ${s.name}: ${row.rps.toFixed(0)} req/s${row.proxyCpu !== undefined ? `, forwarder CPU ${row.proxyCpu.toFixed(0)} µs/req` : ''}`);
    }
  }
  const p50 = [] as number[];
  for (const s of sides) p50.push(await latencyP50(s.url, sequential));
  const best = rows.map((r) => r.reduce((a, b) => (b.rps > a.rps ? b : a)));
  const ratio = best[1]!.rps / best[0]!.rps;
  const added = (p50[1]! - p50[0]!) / 1000;
  console.log(`\nhello-you via capsule serve; ${tool}, ${connections} connections, ${seconds} s × ${rounds} rounds (best round); latency: ${sequential} sequential requests on 1 connection`);
  console.log('side'.padEnd(16) + 'req/s'.padStart(9) + 'ratio'.padStart(7) + 'p50 µs'.padStart(9) + 'CPU µs/req'.padStart(12) + 'errors'.padStart(8));
  for (const [i, s] of sides.entries()) {
    const cpu = rows[i]!.map((x) => x.proxyCpu).filter((x) => x !== undefined);
    const cpuText = cpu.length ? Math.min(...cpu).toFixed(0) : '—';
    console.log(s.name.padEnd(16) + best[i]!.rps.toFixed(0).padStart(9) + (best[i]!.rps / best[0]!.rps).toFixed(2).padStart(7) + p50[i]!.toFixed(0).padStart(9)
      + cpuText.padStart(12) + String(rows[i]!.reduce((n, x) => n + x.errors, 0)).padStart(8));
  }
  console.log('CPU µs/req: the forwarding process alone, lowest round (the part of the 2 cores it takes from the upstream and the load tool)');
  console.log(`throughput ratio ${ratio.toFixed(2)} (target ≥ 0.60: ${ratio >= 0.6 ? 'met' : 'NOT met'}); added p50 ${added.toFixed(3)} ms (target ≤ 1 ms: ${added <= 1 ? 'met' : 'NOT met'})`);
} finally {
  await Promise.all([stop(proxy.child), stop(floor.child), stop(upstream.child), ...(other ? [stop(other.child)] : [])]);
}
