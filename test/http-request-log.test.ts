/**
 * The HTTP pipeline's request log line (src/triggers/http/request-log.ts): whichever way it is
 * written, it is the line pino writes for the same fields, byte for byte.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino, type LoggerOptions } from 'pino';
import { msText, requestLogger, type RequestLine } from '../src/triggers/http/request-log.ts';
import { isoTimeAt } from '../src/observability/logger.ts';

/** A pino logger writing into an array, with a fixed time so that two renderings compare. */
function capture(options: LoggerOptions = {}): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const log = pino({ base: undefined, timestamp: () => ',"time":"2026-12-04T19:00:00.000Z"', ...options }, { write: (s: string) => lines.push(s) });
  return { log, lines };
}

/** The line pino's own `info` writes for `f` (the object the pipeline logged before). */
function pinoLine(log: pino.Logger, lines: string[], f: RequestLine): string {
  const o: Record<string, unknown> = { requestId: f.requestId, method: f.method, url: f.url, function: f.function || undefined, status: f.status, durationMs: f.durationMs };
  if (f.code) o.code = f.code;
  log.info(o, 'request');
  return lines.pop()!;
}

const LINES: RequestLine[] = [
  { requestId: '41132478-cae5-4569-8f67-b5bb9afd848f', method: 'POST', url: '/', function: 'hello-you.wasm', status: 200, durationMs: 0.761 },
  { requestId: 'req-42', method: 'GET', url: '/capsule/metrics', function: '', status: 200, durationMs: 1.5 },
  { requestId: 'trap-1', method: 'POST', url: '/x?y=1', function: 'f.wasm', status: 504, durationMs: 400.123, code: 'TIMEOUT' },
  // strings JSON escapes: quote, backslash, a control character; bytes above 0x7F as Node hands them
  { requestId: 'a"b', method: 'PUT', url: '/a"b\\c\u0001d\u00e9', function: 'caf\u00e9 "x".wasm', status: 413, durationMs: 2, code: 'TOO_LARGE' },
  { requestId: 'no-method', method: undefined, url: undefined, function: undefined, status: 400, durationMs: 0 },
];

describe('the request log line', () => {
  for (const [name, options] of [
    ['a JSON logger', {}],
    ['a logger with a mixin', { mixin: () => ({ extra: 1 }) }],
    ['a logger with a message prefix', { msgPrefix: '[http] ' }],
  ] as const) {
    it(`is the line pino writes, for ${name}`, () => {
      const { log, lines } = capture(options);
      const write = requestLogger(log);
      for (const f of LINES) {
        write(f);
        const ours = lines.pop();
        assert.equal(ours, pinoLine(log, lines, f));
      }
    });
  }

  it('carries the bindings of a child logger', () => {
    const { log, lines } = capture();
    const child = log.child({ thread: 2 });
    requestLogger(child)(LINES[0]!);
    const ours = lines.pop()!;
    assert.match(ours, /^\{"level":30,"time":"[^"]+","thread":2,"requestId":/);
    assert.equal(ours, pinoLine(child, lines, LINES[0]!));
  });

  it('writes nothing when the level is above info', () => {
    const { log, lines } = capture({ level: 'warn' });
    requestLogger(log)(LINES[0]!);
    assert.deepEqual(lines, []);
  });

  it('writes the durations pino writes, whole and fractional milliseconds', () => {
    const { log, lines } = capture();
    const write = requestLogger(log);
    const durations = [0, 0.001, 0.01, 0.1, 0.5, 0.761, 0.999, 1, 1.001, 1.01, 9.99, 10, 400.123, 1e6 + 0.002, 123456789.987];
    for (let us = 0; us < 20_000; us += 7) durations.push(Math.round(us * 1.37) / 1000);
    for (const durationMs of durations) {
      write({ ...LINES[0]!, durationMs });
      const ours = lines.pop()!;
      assert.equal(ours, pinoLine(log, lines, { ...LINES[0]!, durationMs }));
      assert.equal(msText(durationMs), String(durationMs));
    }
    for (const odd of [0.0005, 1 / 3, -1, 2 ** 60, NaN]) assert.equal(msText(odd), String(odd), 'not rounded to µs: as String');
  });

  it("follows a change of level made after it was made, in its logger or in a child's parent (a child with no level of its own)", () => {
    for (const child of [false, true]) {
      const { log, lines } = capture();
      const write = requestLogger(child ? log.child({ replica: 1 }) : log);
      log.level = 'warn';
      write(LINES[0]!);
      assert.deepEqual(lines, [], `child: ${child}`);
      log.level = 'info';
      write(LINES[0]!);
      assert.equal(lines.length, 1, `child: ${child}`);
      if (child) assert.match(lines[0]!, /"replica":1,/);
    }
  });

  it("stamps the time pino's isoTime writes, across milliseconds, seconds, days and a clock set back", () => {
    const day = Date.UTC(2026, 11, 31, 23, 59, 58, 990);
    const times = [0, 1, 999, 1000, 1001];
    for (let t = day; t < day + 2100; t += 3) times.push(t, t); // the same millisecond twice
    times.push(day - 86_400_000, day + 5, day + 5, Date.UTC(2027, 0, 1), 253402300799999);
    for (const t of times) assert.equal(isoTimeAt(t), `,"time":"${new Date(t).toISOString()}"`, `at ${t}`); // pino's isoTime
  });
});
