/**
 * Gen-2 HTTP codec cost per call (not a test; issue 18): `encodeHttpRequest` of the serve bench's
 * wrk request (Host, Content-Type, Content-Length, the `{"name":"Bob Morane","age":42}` body) and
 * `decodeHttpResponse` of hello-you's response frame, CALLS calls each in a loop, against the
 * codecs as they were before their cost was cut (test/fixtures/abi-codec-reference.ts),
 * interleaved ROUNDS times in one process. Prints ns per call for each round, then the
 * fastest round and the median of each (the machine is shared: the fastest is the least disturbed).
 * Options: BENCH_CALLS (default 200000), BENCH_ROUNDS (default 7).
 */
import { encodeHttpRequest, decodeHttpResponse } from '../src/abi/capsule2/http.ts';
import * as ref from '../test/fixtures/abi-codec-reference.ts';
import type { HttpRequestInput } from '../src/base/invocation.ts';

const calls = Math.max(1, Number(process.env.BENCH_CALLS ?? 200_000));
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 7));

const body = Buffer.from('{"name":"Bob Morane","age":42}');
/** A fresh request per call, as a server makes one per request (header arrays included). */
const request = (): HttpRequestInput => ({
  type: 'http', method: 'POST', url: 'http://127.0.0.1:8080/',
  headers: [['Host', '127.0.0.1:8080'], ['Content-Length', '30'], ['Content-Type', 'application/json']],
  body, remoteAddress: '127.0.0.1', remotePort: 40000,
});
const frame = { ok: true, payload: Buffer.from('{"JSONBody":{"message":"Bob Morane 42"},"TextBody":"","Headers":{"Content-Type":"application/json; charset=utf-8"},"StatusCode":200}') };

let sink = 0;
/** ns per call of `f` over `calls` calls. */
function time(f: () => unknown): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) if (f()) sink++;
  return Number(process.hrtime.bigint() - t0) / calls;
}

const cases: [string, () => unknown][] = [
  ['encodeHttpRequest before', () => ref.encodeHttpRequest(request())],
  ['encodeHttpRequest now', () => encodeHttpRequest(request())],
  ['decodeHttpResponse before', () => ref.decodeHttpResponse(frame, [])],
  ['decodeHttpResponse now', () => decodeHttpResponse(frame, [])],
];
const results = new Map<string, number[]>(cases.map(([n]) => [n, []]));
for (const [, f] of cases) time(f); // warm-up
for (let r = 0; r < rounds; r++) {
  for (const [name, f] of cases) results.get(name)!.push(time(f));
  console.log(`round ${r + 1}: ${cases.map(([n]) => `${n} ${results.get(n)!.at(-1)!.toFixed(0)} ns`).join(', ')}`);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const [name] of cases) {
  const xs = results.get(name)!;
  console.log(`${name.padEnd(28)} fastest ${Math.min(...xs).toFixed(0)} ns/call, median ${median(xs).toFixed(0)} ns/call`);
}
if (sink < 0) console.log(sink);
