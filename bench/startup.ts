/**
 * Start-up benchmark (`npm run bench`; not a test; issue 15 point 3). In one run, interleaved
 * (a slow spell of the machine hits every command alike), RUNS times each: `node -e 0` (the
 * baseline: Node's own start), `capsule --version`, `capsule run hello-world Bob`. Prints the
 * median wall time of each and its ratio to the baseline, against the targets (--version ≤ 1.3×,
 * run ≤ 2×). Then the first-request latency of `capsule serve` (hello-you): the first guest
 * request after the ready line (the connection opened by a `/capsule/health` request first)
 * against the median of the next ones.
 *
 * One unmeasured warm-up run of each command fills Node's module compile cache first (the bins
 * enable it; a user's second start onwards is what is measured). The bundles of `run` and of
 * the worker threads are built first (scripts/build-bundle.ts), and `run` is measured once more
 * without them (CAPSULE_BUNDLE=0: the ~90 modules of the sources). `capsule run` starts no worker
 * thread: its call runs in the CLI's thread (src/engine/inline.ts).
 *
 * Then the start of a server (issue 18 point 4): spawn → first answered request of `capsule serve
 * hello-you` (from its bundle, dist/bundle/serve.cjs, and from the sources, CAPSULE_BUNDLE=0)
 * against a plain node:http server answering the same JSON, BENCH_SERVE_STARTS times each,
 * interleaved (target ≤ 150 ms for capsule). The first request is sent as soon as the ready line
 * is read, on a new connection.
 * Options: BENCH_STARTUP_RUNS (default 15, at least 10), BENCH_FIRST_REQUESTS (default 3 servers),
 * BENCH_SERVE_STARTS (default 7).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, startListening, stopProcess } from './lib.ts';

const cli = join(root, 'bin/capsule.js');
const runs = Math.max(10, Number(process.env.BENCH_STARTUP_RUNS ?? 15));
const servers = Math.max(1, Number(process.env.BENCH_FIRST_REQUESTS ?? 3));
const helloWorld = join(root, 'examples/hello-world/hello-world.wasm');
const helloYou = join(root, 'examples/hello-you/hello-you.wasm');

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const ms = (x: number) => `${x.toFixed(1)} ms`;

/** Wall time of one run of `node <args>`, ms; throws when it fails. */
function timeRun(args: string[], env?: NodeJS.ProcessEnv): number {
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  const elapsed = performance.now() - t;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited with ${r.status}: ${r.stderr.toString()}`);
  return elapsed;
}

function startup(): void {
  if (!existsSync(helloWorld)) throw new Error(`${helloWorld} was not built: npm run build:guests`);
  // the bundles of `run` and of the worker threads (scripts/build-bundle.ts), fresh for this run
  const built = spawnSync(process.execPath, [join(root, 'scripts/build-bundle.ts')], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) throw new Error('scripts/build-bundle.ts failed');
  const commands: { name: string; args: string[]; env?: NodeJS.ProcessEnv; target?: number }[] = [
    { name: 'node -e 0', args: ['-e', '0'] },
    { name: 'capsule --version', args: [cli, '--version'], target: 1.3 },
    { name: 'capsule run hello-world Bob', args: [cli, 'run', helloWorld, 'Bob'], target: 2 },
    { name: '  the same, CAPSULE_BUNDLE=0', args: [cli, 'run', helloWorld, 'Bob'], env: { CAPSULE_BUNDLE: '0' } },
  ];
  for (const c of commands) timeRun(c.args, c.env); // warm-up: the compile cache
  const times = commands.map(() => [] as number[]);
  for (let i = 0; i < runs; i++) commands.forEach((c, k) => times[k]!.push(timeRun(c.args, c.env)));
  const base = median(times[0]!);
  // the load average beside the figures: 2 cores shared with other jobs move them a lot
  const load = existsSync('/proc/loadavg') ? `; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}` : '';
  console.log(`start-up, median of ${runs} runs (interleaved${load}):`);
  commands.forEach((c, k) => {
    const m = median(times[k]!);
    const ratio = m / base;
    const verdict = k === 0 ? 'baseline' : `${ratio.toFixed(2)}× node -e 0${c.target === undefined ? '' : ` (target ≤ ${c.target}×: ${ratio <= c.target ? 'met' : 'NOT met'})`}`;
    console.log(`  ${c.name.padEnd(30)} ${ms(m).padStart(10)}  ${verdict}`);
  });
}

/** Starts `capsule serve`, times the first request after the ready line, then 20 more. */
async function firstRequest(): Promise<{ first: number; later: number }> {
  const { child, url } = await startListening([cli, 'serve', helloYou, '--http-port=0'], { what: 'capsule serve' });
  try {
    const call = async () => {
      const t = performance.now();
      const res = await fetch(url, { method: 'POST', body: JSON.stringify({ name: 'Bob Morane' }), headers: { 'content-type': 'application/json' } });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return performance.now() - t;
    };
    // the client's own first-request costs (connection, fetch set-up) are paid on a runner route
    await (await fetch(`${url}/capsule/health`)).arrayBuffer();
    const first = await call();
    const later: number[] = [];
    for (let i = 0; i < 20; i++) later.push(await call());
    return { first, later: median(later) };
  } finally {
    child.kill('SIGTERM');
  }
}

/** A plain node:http server answering hello-you's JSON (the baseline of serveStarts). */
const PLAIN_SERVER = `const s = require('node:http').createServer((req, res) => {
  let body = ''; req.on('data', (d) => (body += d)); req.on('end', () => {
    const out = JSON.stringify({ message: 'Hello ' + JSON.parse(body).name });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) }); res.end(out);
  });
});
s.listen(0, '127.0.0.1', () => console.log('capsule listening on http://127.0.0.1:' + s.address().port));`;

/** ms from the spawn of `node <args>` to the answer of its first request (sent at its ready line). */
async function toFirstAnswer(args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  const { child, url } = await startListening(args, { env, what: `node ${args.join(' ')}` });
  try {
    const res = await fetch(url, { method: 'POST', body: JSON.stringify({ name: 'Bob Morane' }), headers: { 'content-type': 'application/json', connection: 'close' } });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return performance.now() - t0;
  } finally {
    await stopProcess(child);
  }
}

/** Start of a server: spawn → first answer, capsule serve (bundle, sources) against plain node:http. */
async function serveStarts(): Promise<void> {
  const starts = Math.max(3, Number(process.env.BENCH_SERVE_STARTS ?? 7));
  const servers: { name: string; args: string[]; env?: NodeJS.ProcessEnv }[] = [
    { name: 'plain node:http', args: ['-e', PLAIN_SERVER] },
    { name: 'capsule serve hello-you', args: [cli, 'serve', helloYou, '--http-port=0'] },
    { name: '  the same, CAPSULE_BUNDLE=0', args: [cli, 'serve', helloYou, '--http-port=0'], env: { CAPSULE_BUNDLE: '0' } },
  ];
  for (const s of servers) await toFirstAnswer(s.args, s.env); // warm-up: the compile caches
  const times = servers.map(() => [] as number[]);
  for (let i = 0; i < starts; i++) for (const [k, s] of servers.entries()) times[k]!.push(await toFirstAnswer(s.args, s.env));
  const base = median(times[0]!);
  const load = existsSync('/proc/loadavg') ? `; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}` : '';
  console.log(`server start, spawn → first answered request, median of ${starts} (interleaved${load}):`);
  servers.forEach((s, k) => {
    const m = median(times[k]!);
    const verdict = k === 0 ? 'baseline' : `${(m / base).toFixed(2)}× plain${k === 1 ? ` (target ≤ 150 ms: ${m <= 150 ? 'met' : 'NOT met'})` : ''}`;
    console.log(`  ${s.name.padEnd(30)} ${ms(m).padStart(10)}  ${verdict}`);
  });
}

startup();
if (existsSync(helloYou)) await serveStarts();
if (existsSync(helloYou)) {
  const results: { first: number; later: number }[] = [];
  for (let i = 0; i < servers; i++) results.push(await firstRequest());
  const first = median(results.map((r) => r.first));
  const later = median(results.map((r) => r.later));
  console.log(`capsule serve hello-you, first request after the ready line (median of ${servers} servers): ${ms(first)}; later requests: ${ms(later)} (${(first / later).toFixed(1)}×)`);
} else {
  console.log(`${helloYou} was not built: first-request latency skipped`);
}
