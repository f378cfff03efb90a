/**
 * Extism benchmark (`npm run bench`; not a test): Capsule against the official Extism JS SDK
 * (`@extism/extism`) in the same run, on the same plugin (the AssemblyScript PDK fixture,
 * build/fixtures/extism-as.wasm). Figures, with the ratio Capsule / SDK (goal ≥ 2×, issue 14):
 *
 * 1. per-call latency of a warm plugin (count_vowels of a short text), called one after the other
 *    through the host SDK in this thread (`CapsuleFunction` with `inline: true`, no deadline, as
 *    the JS SDK's foreground plugin has none; then with a 30 s deadline, a watchdog per call)
 *    and on a worker thread (the default), and through the JS SDK (foreground, and
 *    `runInWorker`, its mode with a worker thread as Capsule's);
 * 2. requests per second of an HTTP server built on each: `capsule serve --routes` (raw mode)
 *    and a node:http server calling a JS SDK plugin (one per process, calls serialised; in the
 *    foreground, then with `runInWorker`), under the same autocannon load;
 * 3. MiB/s echoing 10 MiB (input in, the same bytes out).
 *
 * Options: BENCH_CALLS (default 5000), BENCH_SECONDS (HTTP, default 5), BENCH_CONNECTIONS (50).
 */
import { startListening } from './lib.ts';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import createPlugin, { type Plugin } from '@extism/extism';
import { CapsuleFunction } from '../src/index.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const plugin = join(root, 'build/fixtures/extism-as.wasm');
const calls = Number(process.env.BENCH_CALLS ?? 5000);
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const text = 'Hello, World! The quick brown fox jumps over the lazy dog.';
const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} } as unknown as Console;

if (!existsSync(plugin)) {
  console.error(`bench/extism: ${plugin} is missing (node scripts/build-guests.ts builds it)`);
  process.exit(1);
}
const wasm = readFileSync(plugin);

/** Median of per-call times (µs) of `n` sequential calls, after `n / 5` warm-up calls. */
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
  console.log('1. per-call latency, warm plugin, count_vowels (median µs per call; lower is better)');
  // interleaved rounds, so that a slow spell of the machine hits every mode alike
  const modes = [
    () => via(inline)('count_vowels', input), () => viaSdk(fg)('count_vowels', input),
    () => via(inlineDeadline)('count_vowels', input), () => viaCapsule('count_vowels', input), () => viaSdk(bg)('count_vowels', input),
  ];
  const rounds = 5;
  const medians = modes.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) for (const [k, call] of modes.entries()) medians[k]!.push(await latency(call, Math.ceil(calls / rounds)));
  const [li, lf, ld, lc, lb] = medians.map((m) => m.sort((a, b) => a - b)[Math.floor(m.length / 2)]!) as [number, number, number, number, number];
  console.log(`   Capsule inline (this thread, no deadline)    ${fmt(li)} µs   speed-up vs JS SDK foreground ${ratio(lf, li)} (goal ≥ 2×)`);
  console.log(`   JS SDK foreground                            ${fmt(lf)} µs`);
  console.log(`   Capsule inline with a deadline (watchdog)    ${fmt(ld)} µs   vs JS SDK foreground ${ratio(lf, ld)}`);
  console.log(`   Capsule on a worker thread (the default)     ${fmt(lc)} µs   vs JS SDK foreground ${ratio(lf, lc)}`);
  console.log(`   JS SDK runInWorker                           ${fmt(lb)} µs   Capsule worker speed-up ${ratio(lb, lc)}`);
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
