/**
 * Extism benchmark (`npm run bench`; not a test): Capsule against the official Extism JS SDK
 * (`@extism/extism`) in the same run, on the same plugin (the AssemblyScript PDK fixture,
 * build/fixtures/extism-as.wasm). Figures, with the ratio Capsule / SDK (goal ≥ 2×, issue 14):
 *
 * 1. per-call latency of a warm plugin (count_vowels of a short text), called one after the other
 *    through the host SDK in this thread (`CapsuleFunction` with `inline: true`, no deadline, as
 *    the JS SDK's foreground plugin has none; then with a 30 s deadline, a watchdog per call)
 *    and on a worker thread (the default), and through the JS SDK (foreground, and
 *    `runInWorker`, its mode with a worker thread as Capsule's). The figure is the time of a
 *    batch of back-to-back calls (each awaited, as a caller would) divided by its size: median
 *    of interleaved rounds. A second line gives the median of calls timed one by one, for
 *    comparison: its two clock reads and `await` per call are a constant of the order of the
 *    fast calls themselves, added to both sides, which pulls the ratio towards 1×;
 * 2. MiB/s echoing 10 MiB (input in, the same bytes out);
 * 3. requests per second of an HTTP server built on each: `capsule serve --routes` (raw mode)
 *    and a node:http server calling a JS SDK plugin (one per process, calls serialised; in the
 *    foreground, then with `runInWorker`), under the same autocannon load.
 *
 * Options: BENCH_BATCH (calls per batch of the in-thread modes, default 10 000; the modes with a
 * worker thread or a watchdog, 100× slower, batch a tenth of it), BENCH_ROUNDS (7),
 * BENCH_CALLS (calls timed one by one, all rounds together, default 5000), BENCH_SECONDS (HTTP,
 * default 5), BENCH_CONNECTIONS (50).
 */
import { root, startListening } from './lib.ts';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import createPlugin, { type Plugin } from '@extism/extism';
import { CapsuleFunction } from '../src/index.ts';

const plugin = join(root, 'build/fixtures/extism-as.wasm');
const calls = Number(process.env.BENCH_CALLS ?? 5000);
const batch = Number(process.env.BENCH_BATCH ?? 10_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 7);
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const text = 'Hello, World! The quick brown fox jumps over the lazy dog.';
const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} } as unknown as Console;

if (!existsSync(plugin)) {
  console.error(`bench/extism: ${plugin} is missing (node scripts/build-guests.ts builds it)`);
  process.exit(1);
}
const wasm = readFileSync(plugin);

/**
 * µs per call of `n` back-to-back calls, each awaited (one clock read before and one after them
 * all), after `n / 5` warm-up calls: elapsed (`wall`) and the CPU time of the process, all its
 * threads (`cpu`; moves less than `wall` when other work takes the cores).
 */
async function batchLatency(call: () => Promise<unknown>, n: number): Promise<{ wall: number; cpu: number }> {
  for (let i = 0; i < n / 5; i++) await call();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await call();
  const wall = ((performance.now() - t0) * 1000) / n;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / n };
}

/** Median of per-call times (µs) of `n` sequential calls each timed alone, after `n / 5` warm-up calls. */
async function latency(call: () => Promise<unknown>, n: number): Promise<number> {
  for (let i = 0; i < n / 5; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await call();
    times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** MiB/s of echoing `data` `rounds` times (after one warm-up), checking the bytes come back. */
async function echoRate(echo: (data: Uint8Array) => Promise<Uint8Array>, data: Uint8Array, rounds: number): Promise<number> {
  const first = await echo(data);
  if (first.length !== data.length || !Buffer.from(first).equals(data)) throw new Error('echo changed the bytes');
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) await echo(data);
  return (data.length * rounds) / (1024 * 1024) / ((performance.now() - t0) / 1000);
}

const sdkServer = `
const http = require('node:http');
const { readFileSync } = require('node:fs');
import('@extism/extism').then(async ({ default: createPlugin }) => {
  const plugin = await createPlugin({ wasm: [{ data: readFileSync(process.argv[1]) }] }, { useWasi: false, runInWorker: process.argv[3] === 'worker' });
  let queue = Promise.resolve();
  const s = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      queue = queue.then(async () => {
        try {
          const out = await plugin.call(process.argv[2], Buffer.concat(chunks));
          res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(out ? out.bytes() : '');
        } catch (e) {
          res.writeHead(500, { 'content-type': 'text/plain' }).end(String(e.message));
        }
      });
    });
  });
  s.listen(0, '127.0.0.1', () => console.log('capsule listening on http://127.0.0.1:' + s.address().port));
});
`;

/**
 * The ceiling of point 3 on this machine: node:http on two threads (SO_REUSEPORT), answering
 * the same bytes with no plugin at all. No Node server, Capsule's included, answers faster than
 * its own HTTP does; if this is under 2× the SDK server, the 2× goal cannot be met here.
 */
const ceilingServer = `
const { Worker, isMainThread, parentPort } = require('node:worker_threads');
const http = require('node:http');
if (isMainThread) {
  const code = process.argv[1];
  const w1 = new Worker(code, { eval: true, workerData: 0 });
  w1.once('message', (p) => {
    const w2 = new Worker(code, { eval: true, workerData: p });
    w2.once('message', () => console.log('capsule listening on http://127.0.0.1:' + p));
  });
} else {
  const s = http.createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('{"count":3,"total":3,"vowels":"aeiouAEIOU"}'));
  });
  s.listen({ port: require('node:worker_threads').workerData, host: '127.0.0.1', reusePort: true }, () => parentPort.postMessage(s.address().port));
}
`;

const start = (args: string[]) => startListening(args, { stderr: 'inherit' });

/** Requests per second of a server under autocannon, after a warm-up. */
async function throughput(args: string[], path: string): Promise<{ rps: number; p99: number; errors: number }> {
  const { child, url } = await start(args);
  try {
    const opts = { url: url + path, connections, method: 'POST', body: text };
    await autocannon({ ...opts, duration: 1 });
    const r = await autocannon({ ...opts, duration: seconds });
    return { rps: r.requests.average, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const fmt = (n: number, digits = 1) => n.toFixed(digits).padStart(9);
const ratio = (ours: number, theirs: number) => `${(ours / theirs).toFixed(2)}×`;

async function main(): Promise<void> {
  const fn = await CapsuleFunction.load({ path: plugin }, { workers: 1 });
  const inline = await CapsuleFunction.load({ path: plugin }, { inline: true, timeoutMs: Infinity });
  const inlineDeadline = await CapsuleFunction.load({ path: plugin }, { inline: true });
  const fg: Plugin = await createPlugin({ wasm: [{ data: wasm }] }, { useWasi: false, logger: silent });
  const bg: Plugin = await createPlugin({ wasm: [{ data: wasm }] }, { useWasi: false, logger: silent, runInWorker: true });
  const input = Buffer.from(text);
  const via = (f: CapsuleFunction) => async (name: string, data: Uint8Array) => {
    const { output } = await f.invoke({ type: 'cli', params: data, args: [], entrypoint: name });
    return (output as { text?: Uint8Array }).text ?? new Uint8Array(0);
  };
  const viaCapsule = via(fn);
  const viaSdk = (p: Plugin) => async (name: string, data: Uint8Array) => (await p.call(name, data))?.bytes() ?? new Uint8Array(0);

  console.log(`Extism plugin ${plugin.replace(root, '')}: Capsule vs @extism/extism (same run)\n`);
  console.log('1. per-call latency, warm plugin, count_vowels (µs per call; lower is better)');
  console.log(`   batch: ${batch} back-to-back awaited calls (${batch / 10} for the slow modes) ÷ their number, median of ${rounds} interleaved rounds after one not counted;`);
  console.log('   timed: median of calls timed one by one (two clock reads and an await each, on both sides: narrows the ratio)');
  // each call is the API's own, as a caller writes it (no wrapper of ours around it): Capsule's
  // result holds the output bytes (output.text), the SDK's the output view (.bytes())
  const vowels = (f: CapsuleFunction) => () => f.invoke({ type: 'cli', params: input, args: [], entrypoint: 'count_vowels' });
  const sdkVowels = (p: Plugin) => () => p.call('count_vowels', input);
  const same = [await via(inline)('count_vowels', input), await viaSdk(fg)('count_vowels', input)];
  if (!Buffer.from(same[0]!).equals(same[1]!)) throw new Error(`count_vowels differs: ${Buffer.from(same[0]!)} / ${Buffer.from(same[1]!)}`);
  const modes: { call: () => Promise<unknown>; n: number }[] = [
    { call: vowels(inline), n: batch },
    { call: sdkVowels(fg), n: batch },
    { call: vowels(inlineDeadline), n: batch / 10 },
    { call: vowels(fn), n: batch / 10 },
    { call: sdkVowels(bg), n: batch / 10 },
  ];
  const batched = modes.map(() => [] as number[]);
  const cpu = modes.map(() => [] as number[]);
  const timed = modes.map(() => [] as number[]);
  // interleaved rounds, so that a slow spell of the machine hits every mode alike: first the two
  // in-thread modes (taking turns at going first), then the three slow ones. Between the fast
  // batches, the slow modes' thread hops and watchdogs left both sides slower and the ratio
  // lower (1.7-1.9x against 2.2-2.4x for the pair alone, same sources, 2026-12-04); and the
  // calls timed one by one come after all the batches: run between them, they lowered the batch
  // ratio too (1.65-1.71x against 1.95-2.09x without, 17:27)
  const measure = async (ks: number[]) => {
    for (const k of ks) await batchLatency(modes[k]!.call, Math.ceil(modes[k]!.n)); // a round not counted: the JIT's
    for (let r = 0; r < rounds; r++) {
      for (const k of r % 2 === 0 ? ks : [...ks].reverse()) {
        const b = await batchLatency(modes[k]!.call, Math.ceil(modes[k]!.n));
        batched[k]!.push(b.wall);
        cpu[k]!.push(b.cpu);
      }
    }
    for (let r = 0; r < rounds; r++) for (const k of ks) timed[k]!.push(await latency(modes[k]!.call, Math.ceil(calls / rounds)));
  };
  await measure([0, 1]);
  await measure([2, 3, 4]);
  const median = (m: number[]) => m.sort((a, b) => a - b)[Math.floor(m.length / 2)]!;
  const perRound = (m: number[]) => m.map((x) => x.toFixed(2)).join(' ');
  const ratios = (a: number[], b: number[]) => a.map((x, i) => (x / b[i]!).toFixed(2)).join(' ');
  const lines = (label: string, ms: number[][]) => {
    const [li, lf, ld, lc, lb] = ms.map((m) => median([...m])) as [number, number, number, number, number];
    console.log(`   ${label}`);
    console.log(`   Capsule inline (this thread, no deadline)    ${fmt(li, 2)} µs   speed-up vs JS SDK foreground ${ratio(lf, li)}`);
    console.log(`   JS SDK foreground                            ${fmt(lf, 2)} µs`);
    console.log(`   Capsule inline with a deadline (metered)     ${fmt(ld)} µs   vs JS SDK foreground ${ratio(lf, ld)}`);
    console.log(`   Capsule on a worker thread (the default)     ${fmt(lc)} µs   vs JS SDK foreground ${ratio(lf, lc)}`);
    console.log(`   JS SDK runInWorker                           ${fmt(lb)} µs   Capsule worker speed-up ${ratio(lb, lc)}`);
  };
  lines('batch (the figure of the ≥ 2× goal):', batched);
  console.log(`     rounds, inline: ${perRound(batched[0]!)} µs; SDK: ${perRound(batched[1]!)} µs; speed-up: ${ratios(batched[1]!, batched[0]!)}`);
  console.log(`     CPU time of the process per call in the batches (median): inline ${median([...cpu[0]!]).toFixed(2)} µs, SDK ${median([...cpu[1]!]).toFixed(2)} µs, ${ratio(median([...cpu[1]!]), median([...cpu[0]!]))}`);
  lines('timed one by one (for comparison):', timed);
  console.log(`   (load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})\n`);

  console.log('2. MiB/s echoing 10 MiB (higher is better)');
  const big = randomBytes(10 * 1024 * 1024);
  const ec = await echoRate((d) => viaCapsule('echo', d), big, 5);
  const ef = await echoRate((d) => viaSdk(fg)('echo', d), big, 5);
  const eb = await echoRate((d) => viaSdk(bg)('echo', d), big, 5);
  console.log(`   Capsule                 ${fmt(ec)} MiB/s`);
  console.log(`   JS SDK foreground       ${fmt(ef)} MiB/s   ratio ${ratio(ec, ef)}`);
  console.log(`   JS SDK runInWorker      ${fmt(eb)} MiB/s   ratio ${ratio(ec, eb)}\n`);
  await fn.close();
  await inline.close();
  await inlineDeadline.close();
  await fg.close();
  await bg.close();

  console.log(`3. HTTP server throughput, count_vowels, ${connections} connections, ${seconds} s (requests/s; higher is better)`);
  const dir = mkdtempSync(join(tmpdir(), 'capsule-bench-extism-'));
  try {
    const routes = join(dir, 'routes.yaml');
    writeFileSync(routes, `functions:\n  vowels:\n    wasm: ${plugin}\n    route: /vowels\n    entrypoint: count_vowels\n`);
    const hc = await throughput(['bin/capsule.js', 'serve', `--routes=${routes}`, '--http-port=0', '--log-level=error'], '/vowels');
    const hs = await throughput(['-e', sdkServer, plugin, 'count_vowels'], '/');
    const hw = await throughput(['-e', sdkServer, plugin, 'count_vowels', 'worker'], '/');
    console.log(`   capsule serve           ${fmt(hc.rps, 0)} req/s  p99 ${hc.p99} ms  errors ${hc.errors}`);
    console.log(`   node:http + JS SDK      ${fmt(hs.rps, 0)} req/s  p99 ${hs.p99} ms  errors ${hs.errors}   ratio ${ratio(hc.rps, hs.rps)}`);
    console.log(`   the same, runInWorker   ${fmt(hw.rps, 0)} req/s  p99 ${hw.p99} ms  errors ${hw.errors}   ratio ${ratio(hc.rps, hw.rps)}`);
    const top = await throughput(['-e', ceilingServer, ceilingServer], '/');
    console.log(`   ceiling: node:http on 2 threads, no plugin  ${fmt(top.rps, 0)} req/s = ${ratio(top.rps, hs.rps)} the SDK server (no Node server passes this here; the goal is 2×)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
