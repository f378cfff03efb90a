/**
 * "Good beside N runaways" (`npm run bench`, after bench/http.ts; not a test): how long one good
 * request takes while N requests to the same server loop forever, next to the same request on
 * an idle server. `capsule serve build/fixtures/gen2-behaviours.wasm --timeout=2s --workers=2`:
 * a body `l` loops until the deadline stops it (504), a body `e` is echoed at once (200).
 *
 * Each round starts a fresh server, times BASELINE good requests one after the other (the
 * median is the "0 runaways" figure), then sends N runaways, waits until the server counts all
 * of them in flight (capsule_inflight_requests), and times one good request beside them. The
 * contract (README "Limits") is an answer within the deadline, + 1 s at most; the figure says
 * how far inside it the good request stays. It prints the good request's latency with 0 and N
 * runaways, their ratio, and its status in every round.
 *
 * BENCH_HTTP_THREADS=1 serves with `--http-threads` (README "HTTP threads": the metered module's
 * runaways stop themselves in their thread, and give it back every 2 ms meanwhile, so that the
 * thread also answers the scrape that counts them).
 *
 * Options: BENCH_RUNAWAYS (default 10), BENCH_ROUNDS (default 3), BENCH_TIMEOUT (default 2s),
 * BENCH_WORKERS (default 2), BENCH_HTTP_THREADS (default 0).
 */
import { root, startListening } from './lib.ts';
import { request } from 'node:http';
import { join } from 'node:path';

const runaways = Number(process.env.BENCH_RUNAWAYS ?? 10);
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const timeout = process.env.BENCH_TIMEOUT ?? '2s';
const workers = process.env.BENCH_WORKERS ?? '2';
const threads = process.env.BENCH_HTTP_THREADS === '1';
const BASELINE = 20;
const module = join(root, 'build/fixtures/gen2-behaviours.wasm');

const start = () => startListening([join(root, 'bin/capsule.js'), 'serve', module, '--http-port=0', `--timeout=${timeout}`, `--workers=${workers}`, ...(threads ? ['--http-threads'] : [])]);

/** One POST on a connection of its own: status and milliseconds to the end of the answer. */
function post(url: string, body: string): Promise<{ status: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function inflight(url: string): Promise<number> {
  const text = await (await fetch(`${url}/capsule/metrics`)).text();
  return Number(/^capsule_inflight_requests (\S+)$/m.exec(text)?.[1] ?? 0);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One round: ms of the good request alone (median) and beside the runaways; when (ms after the runaways were sent) it and the first runaway were answered. */
interface Round { alone: number; beside: number; status: number; runaways: number[]; goodAt: number; firstRunaway: number }

async function round(): Promise<Round> {
  const { child, url } = await start();
  try {
    for (let i = 0; i < 5; i++) await post(url, 'e'); // warm-up: both workers booted
    const alone: number[] = [];
    for (let i = 0; i < BASELINE; i++) alone.push((await post(url, 'e')).ms);
    const t0 = performance.now();
    const loops = Array.from({ length: runaways }, () => post(url, 'l').then((r) => ({ ...r, at: performance.now() - t0 })));
    while ((await inflight(url)) < runaways) await new Promise((r) => setTimeout(r, 10));
    const good = await post(url, 'e');
    const goodAt = performance.now() - t0;
    const done = await Promise.all(loops);
    return { alone: median(alone), beside: good.ms, status: good.status, runaways: done.map((r) => r.status), goodAt, firstRunaway: Math.min(...done.map((r) => r.at)) };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const rows: Round[] = [];
for (let i = 1; i <= rounds; i++) {
  const r = await round();
  rows.push(r);
  const codes = [...new Set(r.runaways)].join('/');
  console.error(`round ${i}/${rounds}: good alone ${r.alone.toFixed(1)} ms; beside ${runaways} runaways ${r.beside.toFixed(0)} ms (${r.status}); runaways ${codes}, first answered after ${r.firstRunaway.toFixed(0)} ms`);
}
const alone = median(rows.map((r) => r.alone));
const beside = median(rows.map((r) => r.beside));
console.log(`\ngood beside runaways: capsule serve gen2-behaviours --timeout=${timeout} --workers=${workers}${threads ? ' --http-threads' : ''}; ${rounds} rounds (medians)`);
console.log(`good request, 0 runaways:  ${alone.toFixed(1)} ms (median of ${BASELINE} per round)`);
console.log(`good request, ${runaways} runaways: ${beside.toFixed(0)} ms (every round: ${rows.map((r) => `${r.beside.toFixed(0)} ms ${r.status}`).join(', ')})`);
console.log(`ratio: ${(beside / alone).toFixed(0)}×; answered before the first runaway's 504 in ${rows.filter((r) => r.goodAt < r.firstRunaway).length}/${rounds} rounds`);
