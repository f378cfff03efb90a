/**
 * Gen-2 HTTP codec cost per call (not a test; issue 18): `encodeHttpRequest` of the serve bench's
 * wrk request (Host, Content-Type, Content-Length, the `{"name":"Bob Morane","age":42}` body) and
 * `decodeHttpResponse` of hello-you's response frame, CALLS calls each in a loop, against the
 * codecs as they were before their cost was cut (test/fixtures/abi-codec-reference.ts),
 * interleaved ROUNDS times in one process. Prints ns per call for each round, then the
 * fastest round and the median of each (the machine is shared: the fastest is the least disturbed).
 * Then the same pair of calls (encode + decode) with the CPU caches emptied before each call (a
 * 4 MiB walk, not timed), closer to a server where other work runs between two requests:
 * COLD_CALLS calls a round, ROUNDS rounds.
 * Options: BENCH_CALLS (default 200000), BENCH_ROUNDS (default 7), BENCH_COLD_CALLS (default 1000).
 */
import { encodeHttpRequest, decodeHttpResponse } from '../src/abi/capsule2/http.ts';
import * as ref from '../test/fixtures/abi-codec-reference.ts';
import type { HttpRequestInput } from '../src/base/invocation.ts';

const calls = Math.max(1, Number(process.env.BENCH_CALLS ?? 200_000));
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 7));
const coldCalls = Math.max(1, Number(process.env.BENCH_COLD_CALLS ?? 1000));

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

const big = new Float64Array(512 * 1024);
/** ns per call of `f` over `coldCalls` calls, each after a walk through 4 MiB (not timed). */
function timeCold(f: () => unknown): number {
  let ns = 0n;
  for (let i = 0; i < coldCalls; i++) {
    for (let j = 0; j < big.length; j += 8) sink += big[j]!;
    const t0 = process.hrtime.bigint();
    if (f()) sink++;
    ns += process.hrtime.bigint() - t0;
  }
  return Number(ns) / coldCalls;
}
const cold: [string, () => unknown][] = [
  ['cold encode+decode before', () => ref.encodeHttpRequest(request()).length + ref.decodeHttpResponse(frame, []).body.length],
  ['cold encode+decode now', () => encodeHttpRequest(request()).length + decodeHttpResponse(frame, []).body.length],
];
const coldResults = new Map<string, number[]>(cold.map(([n]) => [n, []]));
for (let r = 0; r < rounds; r++) for (const [name, f] of cold) coldResults.get(name)!.push(timeCold(f));
for (const [name, xs] of coldResults) console.log(`${name.padEnd(28)} fastest ${Math.min(...xs).toFixed(0)} ns/call, median ${median(xs).toFixed(0)} ns/call`);
if (sink < 0) console.log(sink);
