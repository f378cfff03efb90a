/**
 * HTTP benchmark (`npm run bench`; not a test). In one run, with the same load tool
 * (autocannon, 50 connections): a plain node:http hello world (the baseline), then
 * `capsule serve` with hello-you, fresh instance per request and with --reuse. Prints requests
 * per second, p50/p99 latency and the ratio to the baseline measured in this run.
 *
 * Targets on a 2-core machine: fresh ≥ 0.40× plain, --reuse ≥ 0.75× plain, p99 ≤ 10 ms.
 * Options: BENCH_SECONDS (default 8), BENCH_CONNECTIONS (default 50), BENCH_MODULE.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import autocannon from 'autocannon';

const root = fileURLToPath(new URL('..', import.meta.url));
const seconds = Number(process.env.BENCH_SECONDS ?? 8);
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

function start(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /capsule listening on (\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
}

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function measure(name: string, args: string[]): Promise<Row> {
  const { child, url } = await start(args);
  try {
    const opts = { url, connections, method: 'POST' as const, body, headers: { 'content-type': 'application/json' } };
    await autocannon({ ...opts, duration: 2 }); // warm-up
    const r = await autocannon({ ...opts, duration: seconds });
    return { name, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const cli = join(root, 'bin/capsule.js');
const rows: Row[] = [];
rows.push(await measure('plain node:http', ['-e', PLAIN]));
rows.push(await measure('capsule fresh', [cli, 'serve', module, '--http-port=0']));
rows.push(await measure('capsule --reuse', [cli, 'serve', module, '--http-port=0', '--reuse']));

const base = rows[0]!.rps;
const target: Record<string, string> = { 'capsule fresh': '≥ 0.40', 'capsule --reuse': '≥ 0.75' };
console.log(`\nmodule: ${module.replace(root, '')}; ${connections} connections, ${seconds} s each, POST ${body}`);
console.log('server'.padEnd(18) + 'req/s'.padStart(10) + 'p50 ms'.padStart(9) + 'p99 ms'.padStart(9) + 'ratio'.padStart(8) + '  target   errors');
for (const r of rows) {
  console.log(
    r.name.padEnd(18) + r.rps.toFixed(0).padStart(10) + String(r.p50).padStart(9) + String(r.p99).padStart(9) +
    (r.rps / base).toFixed(2).padStart(8) + '  ' + (target[r.name] ?? 'baseline').padEnd(9) + String(r.errors + r.non2xx),
  );
}
