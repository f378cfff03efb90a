/**
 * Serve cost (`npm run bench`; not a test; issue 18): what `capsule serve` pays per request
 * against a one-process `node:http` server answering the same bytes, measured in one run with
 * wrk (Debian's `wrk` package: one thread, light enough not to eat the server's cores).
 *
 * Measured, for (a) the plain server (baseline), (b) `capsule serve` of the gen-2 hello
 * (examples/hello-you, POST `{"name":"Bob Morane","age":42}` → `{"message":"Bob Morane 42"}`,
 * a fresh instance per call), (c) the same with `--http-threads` (HTTP accepted in the
 * worker threads) and (d) the bare server of bench/bare-server.mjs (two node:http threads running
 * the guest on a raw instance reset by copy, with no deadline, limit, log or metric: the floor of
 * what any Node server running this guest with a fresh instance per call can reach on this
 * machine; left out, with a line, for a BENCH_MODULE it cannot run), interleaved ROUNDS times:
 * - requests per second (wrk, 1 thread, CONNECTIONS connections, SECONDS after a 1 s warm-up);
 * - CPU µs per request of the server's whole process tree (utime + stime of every process of the
 *   tree, all threads included, from /proc/<pid>/stat);
 * - RSS of the tree when idle after start (one function, 11 requests answered, 1 s later), its peak
 *   (VmHWM) during the load and its RSS again 2 s after the load (memory given back);
 * - start → first answer: wall time from the spawn to the first answered guest request (sent as
 *   soon as the ready line is read), and that first request against a steady one.
 * Prints each round, the per-round ratios and their medians against the targets of issue 18:
 * CPU per request ≤ 1.5× plain, throughput ≥ 0.75× plain, idle RSS ≤ 80 MiB, start → first
 * answer ≤ 150 ms, first request ≤ 3× a steady one. The machine is shared: ratios of one run are
 * what count, not absolute figures; the load average is printed at the start and the end.
 *
 * Options: BENCH_SECONDS (default 5), BENCH_ROUNDS (default 3), BENCH_CONNECTIONS (default 64),
 * BENCH_MODULE, BENCH_SERVE_ARGS (extra `capsule serve` arguments, space-separated, e.g.
 * `--reuse`). Linux only (/proc); needs wrk on PATH (skipped with one line without it).
 *
 * `BENCH_STUCK=1` measures instead what a thread stopped at a deadline costs with
 * `--http-threads` (see `stuckThread`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, startListening, stopProcess } from './lib.ts';
import { parseModule } from '../src/wasm/binary.ts';
import { prepareSnapshot } from '../src/engine/snapshot.ts';

const seconds = Math.max(1, Number(process.env.BENCH_SECONDS ?? 5));
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const connections = Math.max(1, Number(process.env.BENCH_CONNECTIONS ?? 64));
const module = process.env.BENCH_MODULE ?? join(root, 'examples/hello-you/hello-you.wasm');
const extra = (process.env.BENCH_SERVE_ARGS ?? '').split(' ').filter(Boolean);
const body = JSON.stringify({ name: 'Bob Morane', age: 42 });
const answer = JSON.stringify({ message: 'Bob Morane 42' });
const TICK_US = 1e6 / Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);

const PLAIN = `
const http = require('node:http');
const s = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(${JSON.stringify(answer)}); });
});
s.listen(0, '127.0.0.1', () => console.log('capsule listening on http://127.0.0.1:' + s.address().port));
`;

/** The pids of a process and of all its descendants (from /proc/<pid>/stat's ppid field). */
function tree(pid: number): number[] {
  const parent = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(ppid, [...(parent.get(ppid) ?? []), Number(name)]);
    } catch {
      // the process ended meanwhile
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(parent.get(out[i]!) ?? []));
  return out;
}

/** CPU time (µs) of a process tree: utime + stime of each process (all its threads). */
function treeCpu(pid: number): number {
  let ticks = 0;
  for (const p of tree(pid)) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // ended meanwhile
    }
  }
  return ticks * TICK_US;
}

/** A /proc/<pid>/status field in kB (VmRSS, VmHWM), summed over the tree, as MiB. */
function treeMem(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  let kb = 0;
  for (const p of tree(pid)) {
    try {
      const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      kb += Number(m?.[1] ?? 0);
    } catch {
      // ended meanwhile
    }
  }
  return kb / 1024;
}

/** One POST of the bench's body on a new connection; resolves with its wall time in ms. */
function post(url: string): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let got = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (got += d));
      res.on('end', () =>
        res.statusCode === 200 && got === answer ? resolve(performance.now() - t) : reject(new Error(`answer ${res.statusCode} ${got}`)),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Started {
  child: ChildProcess;
  url: string;
  /** ms from the spawn to the first answer, and that first request alone */
  toFirst: number;
  first: number;
}

/** Spawns a server, reads its ready line and (unless `first` is false) sends the first request at once. */
async function start(args: string[], first = true): Promise<Started> {
  const t0 = performance.now();
  const { child, url } = await startListening(args);
  const firstMs = first ? await post(url) : 0;
  return { child, url, toFirst: performance.now() - t0, first: firstMs };
}

/** Runs wrk against url; returns requests/s and the number of requests answered. */
function wrk(url: string, luaPath: string, duration: number): Promise<{ rps: number; total: number; errors: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '-s', luaPath, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const total = /(\d+) requests in/.exec(out);
      if (code !== 0 || !rps || !total) return reject(new Error(`wrk failed (${code}): ${out}`));
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const errors = non2xx + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0);
      resolve({ rps: Number(rps[1]), total: Number(total[1]), errors });
    });
  });
}

interface Row {
  rps: number;
  cpuUs: number;
  errors: number;
  idleMiB: number;
  peakMiB: number;
  afterMiB: number;
  toFirst: number;
  first: number;
  steady: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function measure(args: string[], luaPath: string): Promise<Row> {
  const s = await start(args);
  const pid = s.child.pid!;
  try {
    const steadies: number[] = [];
    for (let i = 0; i < 10; i++) steadies.push(await post(s.url));
    await sleep(1000);
    const idleMiB = treeMem(pid, 'VmRSS');
    await wrk(s.url, luaPath, 1); // warm-up
    const before = treeCpu(pid);
    const r = await wrk(s.url, luaPath, seconds);
    const cpuUs = (treeCpu(pid) - before) / Math.max(1, r.total);
    const peakMiB = treeMem(pid, 'VmHWM');
    await sleep(2000);
    const afterMiB = treeMem(pid, 'VmRSS');
    return { rps: r.rps, cpuUs, errors: r.errors, idleMiB, peakMiB, afterMiB, toFirst: s.toFirst, first: s.first, steady: median(steadies) };
  } finally {
    await stopProcess(s.child);
  }
}

/** Prints the rows of each server (`names[k]`'s in `rows[k]`, plain first) and their medians against the targets. */
function report(names: string[], rows: Row[][]): void {
  const plain = rows[0]!;
  const f = (x: number, d = 1) => x.toFixed(d);
  console.log(`\nserve cost: ${module.replace(root, '')} ${extra.join(' ')}; wrk -t1 -c${connections}, ${seconds} s × ${rounds} rounds (interleaved); load average ${loadAverage()}`);
  console.log('round  server   req/s  CPU µs/req  idle MiB  peak MiB  after MiB  start→first ms  first/steady ms  errors');
  for (let i = 0; i < rounds; i++) {
    for (const [k, name] of names.entries()) {
      const r = rows[k]![i]!;
      console.log(
        `${String(i + 1).padEnd(7)}${name.padEnd(8)}${f(r.rps, 0).padStart(7)}${f(r.cpuUs).padStart(12)}${f(r.idleMiB).padStart(10)}` +
          `${f(r.peakMiB).padStart(10)}${f(r.afterMiB).padStart(11)}${f(r.toFirst).padStart(16)}${`${f(r.first, 2)}/${f(r.steady, 2)}`.padStart(17)}${String(r.errors).padStart(8)}`,
      );
    }
  }
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  for (const [k, name] of names.entries()) {
    if (k === 0) continue;
    const capsule = rows[k]!;
    const rpsRatio = median(capsule.map((c, i) => c.rps / plain[i]!.rps));
    const cpuRatio = median(capsule.map((c, i) => c.cpuUs / plain[i]!.cpuUs));
    const idle = median(capsule.map((c) => c.idleMiB));
    const toFirst = median(capsule.map((c) => c.toFirst));
    const firstRatio = median(capsule.map((c) => c.first / c.steady));
    console.log(`${name}: medians of the per-round figures (against plain of the same round)${name === 'bare' ? '; a floor (bench/bare-server.mjs), not Capsule: what any Node server running this guest with a fresh instance per call reaches here' : ''}:`);
    console.log(`  throughput       ${f(rpsRatio, 2)}× plain (target ≥ 0.75×: ${verdict(rpsRatio >= 0.75)})`);
    console.log(`  CPU per request  ${f(median(capsule.map((c) => c.cpuUs)))} µs against ${f(median(plain.map((c) => c.cpuUs)))} µs, ${f(cpuRatio, 2)}× (target ≤ 1.5×: ${verdict(cpuRatio <= 1.5)})`);
    console.log(`  idle RSS         ${f(idle)} MiB, plain ${f(median(plain.map((c) => c.idleMiB)))} MiB (target ≤ 80 MiB: ${verdict(idle <= 80)}); peak ${f(median(capsule.map((c) => c.peakMiB)))}, 2 s after the load ${f(median(capsule.map((c) => c.afterMiB)))} MiB`);
    console.log(`  start → first    ${f(toFirst)} ms, plain ${f(median(plain.map((c) => c.toFirst)))} ms (target ≤ 150 ms: ${verdict(toFirst <= 150)})`);
    const plainFirst = median(plain.map((c) => c.first / c.steady));
    console.log(`  first request    ${f(firstRatio, 1)}× a steady one, plain ${f(plainFirst, 1)}× (target ≤ 3×: ${verdict(firstRatio <= 3)})`);
  }
}

/** /proc/loadavg's three averages. */
function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** One POST of `text` with `agent`; resolves with its status (0: the connection failed) and wall time in ms. */
function postWith(url: string, text: string, agent: Agent | false): Promise<{ status: number; ms: number }> {
  const t = performance.now();
  return new Promise((resolve) => {
    const req = request(url, { method: 'POST', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t }));
      res.on('error', () => resolve({ status: 0, ms: performance.now() - t }));
    });
    req.on('error', () => resolve({ status: 0, ms: performance.now() - t }));
    req.end(text);
  });
}

/**
 * `BENCH_STUCK=1`: `capsule serve --http-threads --workers=2 --timeout=2s` of the behaviours
 * fixture; CONNECTIONS keep-alive clients send echo requests one after the other for SECONDS,
 * a client opens a new connection for one request every 20 ms, and after 1 s one runaway (a
 * guest that loops) is sent. Prints, for the keep-alive requests and the new connections, how
 * many were answered and how many failed (connection closed or reset), and the longest wait of
 * an answered request: what a stopped thread costs besides its own request.
 */
async function stuckThread(): Promise<void> {
  const guest = join(root, 'build/fixtures/gen2-behaviours.wasm');
  const s = await start([join(root, 'bin/capsule.js'), 'serve', guest, '--http-port=0', '--http-threads', '--workers=2', '--timeout=2s'], false);
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const end = performance.now() + seconds * 1000;
  const tally = () => ({ ok: 0, failed: 0, longest: 0 });
  const kept = tally();
  const fresh = tally();
  const count = (t: ReturnType<typeof tally>, r: { status: number; ms: number }) => {
    if (r.status === 200) {
      t.ok++;
      t.longest = Math.max(t.longest, r.ms);
    } else {
      t.failed++;
    }
  };
  const loop = async () => {
    while (performance.now() < end) count(kept, await postWith(s.url, 'e', agent));
  };
  const opener = async () => {
    const pending: Promise<void>[] = [];
    while (performance.now() < end) {
      pending.push(postWith(s.url, 'e', false).then((r) => count(fresh, r)));
      await sleep(20);
    }
    await Promise.all(pending);
  };
  const runaway = sleep(1000).then(() => postWith(s.url, 'l', false));
  try {
    await Promise.all([...Array.from({ length: connections }, loop), opener()]);
    const r = await runaway;
    console.log(`stuck thread: load average ${loadAverage()}; ${connections} keep-alive connections, ${seconds} s, runaway answered: ${r.status === 0 ? 'no (connection closed)' : r.status}`);
    for (const [name, t] of [['keep-alive requests', kept], ['new connections', fresh]] as const) {
      console.log(`  ${name.padEnd(20)} answered ${t.ok}, failed ${t.failed}, longest wait of an answered one ${t.longest.toFixed(0)} ms`);
    }
  } finally {
    agent.destroy();
    s.child.kill('SIGTERM');
  }
}

/**
 * The arguments that start bench/bare-server.mjs on `module`: the module as `prepareSnapshot`
 * rewrites it (its mutable globals exported), written to `dir`, and the names of those globals.
 * Undefined, with the reason on stderr, for a module the bare server cannot run (it gives a gen-2
 * module `fd_write` and nothing else, and resets it by copy): the other servers are still measured.
 */
function bareServer(path: string, dir: string): string[] | undefined {
  const skip = (why: string): undefined => void console.error(`bench/serve-cost.ts: no bare row, ${path} ${why}`);
  try {
    const bytes = readFileSync(path);
    const parsed = parseModule(bytes);
    const other = parsed.imports.find((i) => i.module !== 'wasi_snapshot_preview1' || i.name !== 'fd_write');
    if (other) return skip(`imports ${other.module}.${other.name} (the bare server gives fd_write alone)`);
    const missing = ['malloc', 'callHandleHTTP', 'memory'].find((name) => !parsed.exports.some((e) => e.name === name));
    if (missing) return skip(`does not export ${missing} (the bare server runs gen-2 HTTP modules)`);
    const prepared = prepareSnapshot(bytes, parsed, 'capsule-2');
    if (!prepared.plan) return skip(`cannot be reset by copy (${prepared.refused})`);
    const out = join(dir, 'bare.wasm');
    writeFileSync(out, prepared.bytes);
    return [join(root, 'bench/bare-server.mjs'), out, ...prepared.plan.globals];
  } catch (e) {
    return skip(`cannot be read (${(e as Error).message})`); // capsule serve's row fails with its own error
  }
}

/**
 * Sends a few POSTs to a server in this process first: the bench's own first request (Node's
 * HTTP client code compiled then) would otherwise count in the first server's first request.
 */
async function warmClient(): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(answer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  for (let i = 0; i < 3; i++) await post(`http://127.0.0.1:${port}/`);
  server.close();
}

if (process.env.BENCH_STUCK === '1') {
  await stuckThread();
} else if (spawnSync('wrk', ['--version']).error) {
  console.log('bench/serve-cost.ts: wrk is not installed (Debian package `wrk`): skipped');
} else if (!existsSync(module)) {
  console.log(`bench/serve-cost.ts: ${module} was not built (npm run build:guests): skipped`);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-serve-cost-'));
  const luaPath = join(dir, 'post.lua');
  writeFileSync(luaPath, `wrk.method = "POST"\nwrk.body = ${JSON.stringify(body)}\nwrk.headers["Content-Type"] = "application/json"\n`);
  const cli = join(root, 'bin/capsule.js');
  // the servers measured, in the order they run in each round: a name and the arguments of node
  const bare = bareServer(module, dir);
  const servers: [string, string[]][] = [
    ['plain', ['-e', PLAIN]],
    ['capsule', [cli, 'serve', module, '--http-port=0', ...extra]],
    ['threads', [cli, 'serve', module, '--http-port=0', '--http-threads', ...extra]],
    ...(bare ? [['bare', bare] as [string, string[]]] : []),
  ];
  console.error(`load average at the start: ${loadAverage()}`);
  const rows: Row[][] = servers.map(() => []);
  try {
    await warmClient();
    for (let round = 0; round < rounds; round++) {
      for (const [i, [name, args]] of servers.entries()) {
        const r = await measure(args, luaPath);
        rows[i]!.push(r);
        console.error(`round ${round + 1}/${rounds} ${name}: ${r.rps.toFixed(0)} req/s, ${r.cpuUs.toFixed(1)} µs CPU/req`);
      }
    }
    report(servers.map(([name]) => name), rows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
