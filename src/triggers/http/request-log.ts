/**
 * The HTTP pipeline's `request` log line, one per request (conventions.md §5): the same JSON
 * line pino writes for `log.info({requestId, method, url, function, status, durationMs, code},
 * 'request')`, built as one template string and handed to the logger's destination when that
 * gives the same bytes, which is checked once per logger against pino's own rendering. Under
 * load pino's generic path (a loop over the object's keys, each key and value escaped) was ~3 µs
 * of a request's main-thread time against ~1 µs for the template (docs/performance.md, "Serve
 * cost"), ~0.3 µs since the duration's text comes from a table (`msText`; "HTTP pipeline").
 * A logger the template does not render (a mixin, hooks, a message prefix, a destination that
 * reads pino's metadata, other formatters…) and any line with a string that JSON would escape go
 * through pino as before. The level is the logger's, read again when it changes.
 */
import { pino } from 'pino';
import type { Logger } from '../../observability/logger.ts';

/** The fields of one request's line, in the order they are written. */
export interface RequestLine {
  requestId: string;
  method: string | undefined;
  url: string | undefined;
  /** The `function` label; '' or undefined leaves the field out. */
  function: string | undefined;
  status: number;
  /** Milliseconds, rounded to µs by the caller. */
  durationMs: number;
  /** The runner's error code, when the request failed with one. */
  code?: string;
}

/** Writes one request line (see the module comment). */
export type RequestLogger = (line: RequestLine) => void;

const S = pino.symbols;
/** Not in pino's typings (lib/symbols.js has it). */
const msgPrefixSym = (S as unknown as Record<string, symbol | undefined>)['msgPrefixSym'];

/** A string JSON writes as `"` + itself + `"` (no quote, backslash, control character or lone surrogate half). */
const PLAIN = /^[^"\\\x00-\x1f\ud800-\udfff]*$/;

/** pino's internals this module reads (pino 10: lib/symbols.js, lib/proto.js `write`). */
interface PinoInternals {
  [key: symbol]: unknown;
}

/**
 * @returns a function that writes the request line of `log`, by the template when it renders
 *   the same bytes as pino for this logger, else by `log.info`
 */
export function requestLogger(log: Logger): RequestLogger {
  const generic: RequestLogger = (f) => log.info(fields(f), 'request');
  const l = log as unknown as PinoInternals;
  const stream = l[S.streamSym] as { write?: (s: string) => void; [key: symbol]: unknown } | undefined;
  const hooks = (l[S.hooksSym] ?? {}) as { logMethod?: unknown; streamWrite?: unknown };
  const prefix = (l[S.lsCacheSym] as Record<number, string> | undefined)?.[30];
  const asJson = l[S.asJsonSym] as ((obj: object, msg: string, num: number, time: string) => string) | undefined;
  const time = l[S.timeSym] as (() => string) | undefined;
  if (typeof stream?.write !== 'function' || stream[S.needsMetadataGsym] === true || l[S.mixinSym] || hooks.logMethod || hooks.streamWrite
    || (msgPrefixSym !== undefined && l[msgPrefixSym] !== undefined) || typeof prefix !== 'string' || typeof asJson !== 'function' || typeof time !== 'function') {
    return generic;
  }
  const end = l[S.endSym] as string;
  // the method and function of the last line, known plain: the same strings come line after line
  let plainMethod = '';
  let plainFunction = '';
  const build = (f: RequestLine, t: string): string | undefined => {
    const { requestId, method, url, function: fname, code } = f;
    if (method === undefined || url === undefined || !PLAIN.test(requestId) || !PLAIN.test(url)) return undefined;
    if (method !== plainMethod) {
      if (!PLAIN.test(method)) return undefined;
      plainMethod = method;
    }
    if (fname && fname !== plainFunction) {
      if (!PLAIN.test(fname)) return undefined;
      plainFunction = fname;
    }
    if (code && !PLAIN.test(code)) return undefined;
    return `${prefix}${t}${l[S.chindingsSym] as string},"requestId":"${requestId}","method":"${method}","url":"${url}"${fname ? `,"function":"${fname}"` : ''}` +
      `,"status":${f.status},"durationMs":${msText(f.durationMs)}${code ? `,"code":"${code}"` : ''},"msg":"request"${end}`;
  };
  // the template is used only if it renders these lines as pino does for this logger
  const probes: RequestLine[] = [
    { requestId: 'req-1', method: 'POST', url: '/a/b?c=d', function: 'hello.wasm', status: 200, durationMs: 0.761 },
    { requestId: 'req-2', method: 'GET', url: '/', function: '', status: 504, durationMs: 12, code: 'TIMEOUT' },
  ];
  const t = ',"time":"1970-01-01T00:00:00.000Z"';
  if (!probes.every((p) => build(p, t) === asJson.call(log, fields(p), 'request', 30, t))) return generic;
  const write = stream.write.bind(stream);
  // pino's isLevelEnabled('info') (a few look-ups) asked again only when the level's value
  // changed: a child without a level of its own follows its parent's, which tells it no event
  let levelVal = log.levelVal;
  let on = log.isLevelEnabled('info');
  return (f) => {
    if (log.levelVal !== levelVal) {
      levelVal = log.levelVal;
      on = log.isLevelEnabled('info');
    }
    if (!on) return;
    const line = build(f, time.call(log));
    if (line === undefined) generic(f);
    else write(line);
  };
}

/** `.001` … `.999` with no trailing zero (`.5`, `.25`): a duration's fraction by its µs (index 0 unused). */
const FRACTIONS = Array.from({ length: 1000 }, (_, i) => `.${String(i).padStart(3, '0')}`.replace(/0+$/, ''));

/**
 * `String(ms)` for a duration rounded to µs (`Math.round(x * 1000) / 1000`, ≥ 0): its whole
 * milliseconds and a fraction from a table. V8's shortest form of a fractional double cost
 * ~0.5 µs a line; the text is the same (a double k/1000 prints as the decimal k/1000).
 */
export function msText(ms: number): string {
  const us = Math.round(ms * 1000);
  if (!(us >= 0 && us < 2 ** 50) || us / 1000 !== ms) return `${ms}`;
  const whole = Math.floor(us / 1000);
  const frac = us - whole * 1000;
  return frac === 0 ? `${whole}` : `${whole}${FRACTIONS[frac]!}`;
}

/** The object pino logs for a line (undefined fields are left out by pino). */
function fields(f: RequestLine): Record<string, unknown> {
  const o: Record<string, unknown> = { requestId: f.requestId, method: f.method, url: f.url, function: f.function || undefined, status: f.status, durationMs: f.durationMs };
  if (f.code) o.code = f.code;
  return o;
}
