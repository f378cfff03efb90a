/**
 * Cluster benchmark (`npm run bench`; not a test), issue 13: hello-you on one machine through a
 * gateway (`capsule proxy --backend nats`) to 1, 2 and 3 nodes (`capsule node --cluster`, one
 * worker thread each) on a NATS server started by `capsule up --temp`. Measures, in one run:
 * - throughput and p50/p99 latency through the gateway with 1, 2, 3 nodes (autocannon, POST,
 *   BENCH_CONNECTIONS connections, BENCH_SECONDS s after a 1 s warm-up; on 2 cores more nodes
 *   mostly add contention: the figures show the cost of the spread, not a speed-up);
 * - the cost of the NATS hop: p50 of BENCH_SEQUENTIAL requests one after the other, straight to
 *   the node's per-deployment listener (HTTP, no NATS), over NATS request/reply from this process
 *   (invoke.ts, no gateway) and through the gateway (HTTP + NATS);
 * - cold start of a revision: deploy a new revision, then time its first call through the gateway
 *   (fetch from the Object Store, sha256, compile, first call), with the node's own
 *   capsule_cold_start_seconds phases; median of BENCH_COLD revisions.
 */
import { root, startListening, stopProcess } from './lib.ts';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { connect } from '@nats-io/transport-node';
import { invoke } from '../src/faas/cluster/invoke.ts';
import { invokeSubject } from '../src/faas/cluster/lattice.ts';

const cli = join(root, 'bin/capsule.js');
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 20);
const sequential = Number(process.env.BENCH_SEQUENTIAL ?? 1000);
const colds = Number(process.env.BENCH_COLD ?? 3);
const helloYou = join(root, 'examples/hello-you/hello-you.wasm');
const body = JSON.stringify({ name: 'Bob Morane', age: 42 });
const json = { 'content-type': 'application/json' };

const start = (args: string[]) => startListening([cli, ...args], { what: `capsule ${args[0]}` });

const stop = stopProcess;

/** Median, in µs, of `n` sequential calls of `once` (after 100 warm-up calls). */
async function p50(once: () => Promise<void>, n: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n + 100; i++) {
    const t0 = performance.now();
    await once();
    if (i >= 100) times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

/** `once` for sequential POSTs to `url` on one keep-alive connection. */
function httpOnce(pool: Pool, url: string): () => Promise<void> {
  const path = new URL(url).pathname;
  return async () => {
    const r = await pool.request({ path, method: 'POST', body, headers: json });
    await r.body.text();
    if (r.statusCode !== 200) throw new Error(`${url}: HTTP ${r.statusCode}`);
  };
}

/** Sum of a node's cold-start histogram per phase, ms. */
async function coldPhases(node: string, rev: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${node}/capsule/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^capsule_cold_start_seconds_sum\{([^}]*)\} (\S+)$/gm)) {
    if (!m[1]!.includes(`rev="${rev}"`)) continue;
    const phase = /phase="(\w+)"/.exec(m[1]!)?.[1] ?? '?';
    out[phase] = Number(m[2]) * 1000;
  }
  return out;
}

if (!existsSync(helloYou)) {
  console.error(`${helloYou.replace(root, '')} was not built: run npm run build:guests`);
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), 'capsule-bench-cluster-'));
const files = createServer((_req, res) => void res.writeHead(200).end(readFileSync(helloYou)));
await new Promise<void>((r) => files.listen(0, '127.0.0.1', () => r()));
const downloadUrl = `http://127.0.0.1:${(files.address() as { port: number }).port}/hello-you.wasm`;
const nats = await start(['up', '--temp', '--nats-port=0', '--log-level=warn']);
const nodeArgs = (id: string) => ['node', '--http-port=0', '--http-port-counter=0', `--cluster=${nats.url}`, `--node-id=${id}`, `--cache-dir=${join(dir, id)}`, '--workers=1', '--log-level=warn'];
const gateway = await start(['proxy', '--http-port=0', '--backend=nats', `--cluster=${nats.url}`, '--log-level=warn']);
const nodes = [await start(nodeArgs('a'))];
const nc = await connect({ servers: nats.url });
try {
  const deploy = async (rev: string) => {
    const r = await fetch(`${nodes[0]!.url}/functions/deploy`, { method: 'POST', headers: json, body: JSON.stringify({ function: 'hello', revision: rev, downloadUrl }) });
    if (r.status !== 202) throw new Error(`deploy ${rev}: ${r.status} ${await r.text()}`);
    return (await r.json()) as { localUrl: string };
  };
  const routed = async (rev: string) => {
    for (;;) {
      const routes = await (await fetch(`${gateway.url}/memory/functions/list`)).json() as Record<string, Record<string, string[]>>;
      if (routes['hello']?.[rev]) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  // cold start: a new revision's first call (Object Store or cache, sha256, compile, call)
  const coldRows: { ms: number; phases: Record<string, number> }[] = [];
  for (let i = 0; i < colds; i++) {
    const rev = `cold${i}`;
    await deploy(rev);
    await routed(rev);
    const t0 = performance.now();
    const r = await fetch(`${gateway.url}/functions/hello/${rev}`, { method: 'POST', headers: json, body });
    await r.text();
    coldRows.push({ ms: performance.now() - t0, phases: await coldPhases(nodes[0]!.url, rev) });
  }

  // the NATS hop: direct listener, invoke from here, gateway (1 node)
  const { localUrl } = await deploy('blue');
  await routed('blue');
  const direct = new Pool(new URL(localUrl).origin, { connections: 1 });
  const via = new Pool(gateway.url, { connections: 1 });
  const subject = invokeSubject('default', 'hello', 'blue');
  const payload = new TextEncoder().encode(body);
  const hop = {
    direct: await p50(httpOnce(direct, `${localUrl}/`), sequential),
    nats: await p50(async () => {
      const r = await invoke(nc, subject, { method: 'POST', path: '/', query: '', headers: ['content-type', 'application/json'], body: payload, deadline: Date.now() + 30_000 }, { timeoutMs: 30_000 });
      if (r.status !== 200) throw new Error(`invoke: ${r.status}`);
    }, sequential),
    gateway: await p50(httpOnce(via, `${gateway.url}/functions/hello/blue`), sequential),
  };
  await Promise.all([direct.close(), via.close()]);

  // throughput through the gateway with 1, 2, 3 nodes
  const rows: { nodes: number; rps: number; p50: number; p99: number; errors: number }[] = [];
  for (let n = 1; n <= 3; n++) {
    if (n > 1) nodes.push(await start(nodeArgs(String.fromCharCode(96 + n))));
    const url = `${gateway.url}/functions/hello/blue`;
    const seen = new Set<string>();
    while (seen.size < n) seen.add((await fetch(url, { method: 'POST', headers: json, body })).headers.get('x-capsule-node') ?? '');
    await autocannon({ url, connections, method: 'POST', body, headers: json, duration: 1 });
    const r = await autocannon({ url, connections, method: 'POST', body, headers: json, duration: seconds });
    rows.push({ nodes: n, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx });
    console.error(`${n} node(s): ${r.requests.average.toFixed(0)} req/s`);
  }

  console.log(`\nhello-you through a gateway over NATS (one nats-server, capsule up); autocannon ${connections} connections, ${seconds} s; nodes with 1 worker thread each`);
  console.log('nodes'.padEnd(7) + 'req/s'.padStart(9) + 'p50 ms'.padStart(9) + 'p99 ms'.padStart(9) + 'errors'.padStart(8));
  for (const r of rows) console.log(String(r.nodes).padEnd(7) + r.rps.toFixed(0).padStart(9) + String(r.p50).padStart(9) + String(r.p99).padStart(9) + String(r.errors).padStart(8));
  console.log(`\nsequential p50 (${sequential} calls, 1 node): direct to the node's listener ${hop.direct.toFixed(0)} µs, NATS request/reply from the client ${hop.nats.toFixed(0)} µs, through the gateway ${hop.gateway.toFixed(0)} µs`);
  console.log(`NATS hop: +${(hop.nats - hop.direct).toFixed(0)} µs over a direct HTTP call; gateway + NATS: +${(hop.gateway - hop.direct).toFixed(0)} µs`);
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const phase = (p: string) => med(coldRows.map((c) => c.phases[p] ?? 0)).toFixed(1);
  console.log(`cold start of a revision (median of ${colds}): first call ${med(coldRows.map((c) => c.ms)).toFixed(1)} ms through the gateway; node phases fetch ${phase('fetch')} ms, compile ${phase('compile')} ms, init ${phase('init')} ms`);
} finally {
  await nc.close();
  for (const n of nodes) await stop(n.child);
  await stop(gateway.child);
  await stop(nats.child);
  files.close();
  rmSync(dir, { recursive: true, force: true });
}
