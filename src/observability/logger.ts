/**
 * Capsule's own log (conventions.md §5): pino, pretty on a TTY, JSON lines otherwise, always on
 * stderr (stdout is for the ready line and guest output).
 */
import { write as fsWrite } from 'node:fs';
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { writeAllSync } from '../base/stdio.ts';
import type { LogFormat, LogLevel } from './log-levels.ts';
export { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './log-levels.ts';
export type { Logger };

/**
 * @param level minimum level (default `info`)
 * @param format `json` lines, `pretty` lines (`--log-format`), or a boolean (true = pretty);
 *   default: pretty when stderr is a TTY, JSON otherwise
 */
export function createLogger(level: LogLevel = 'info', format?: LogFormat | boolean): Logger {
  const prettyOutput = format === undefined ? process.stderr.isTTY === true : format === true || format === 'pretty';
  if (prettyOutput) {
    const options = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
    // loaded only for a terminal: its ~30 modules cost every non-TTY start (services, tests) otherwise
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(options, pretty({ destination: 2, colorize: process.stderr.isTTY === true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', sync: true }));
  }
  return pino({ level, base: undefined, timestamp: isoTimeCached }, new LineBatch(2));
}

/** Writes out buffered log lines; resolves when done (at most 2 s). Call before exiting. */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2000);
    try {
      logger.flush(() => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      clearTimeout(timer);
      resolve(); // a pretty stream writes synchronously
    }
  });
}

let lastMs = -1;
let lastTime = '';
let lastSecond = -1;
/** `,"time":"YYYY-MM-DDTHH:MM:SS.` of `lastSecond`. */
let secondPrefix = '';
/** `000Z"` … `999Z"`: the end of the time field by millisecond. */
const MS_SUFFIX = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, '0')}Z"`);
/**
 * pino's `isoTime` (`,"time":"<ISO 8601 of now>"`), the same bytes made for less: under load
 * many lines share a millisecond (the string is reused), and `toISOString` (1–2 µs here) runs
 * once per second, the milliseconds appended from a table.
 */
function isoTimeCached(): string {
  return isoTimeAt(Date.now());
}

/** `isoTimeCached` at `now` (ms since the epoch, ≥ 0). Exported for tests. */
export function isoTimeAt(now: number): string {
  if (now !== lastMs) {
    lastMs = now;
    const second = Math.floor(now / 1000);
    if (second !== lastSecond) {
      lastSecond = second;
      secondPrefix = `,"time":"${new Date(now).toISOString().slice(0, 20)}`;
    }
    lastTime = secondPrefix + MS_SUFFIX[now - second * 1000]!;
  }
  return lastTime;
}

/**
 * A pino destination that gathers lines and writes them with one asynchronous `write(2)` per
 * 16 KiB, or at least every 100 ms. One write per line cost a quarter of the main thread's time
 * under load; sonic-boom's buffered mode measures its buffer (`Buffer.byteLength` of the growing
 * string) at every line, 2.6 µs a line here, where this costs 0.5 µs. At most one write is in
 * flight; lines that arrive meanwhile wait for the next one. `flush` writes the rest.
 */
class LineBatch {
  readonly #fd: number;
  #lines: string[] = [];
  #size = 0;
  #writing = false;
  #waiting: (() => void)[] = [];
  static readonly MIN = 16 * 1024;
  /** Bytes of lines held while a write is slow (a stalled reader): past this, new lines are dropped until it catches up. */
  static readonly MAX = 16 * 1024 * 1024;

  constructor(fd: number) {
    this.#fd = fd;
    setInterval(() => this.#start(), 100).unref();
  }

  write(line: string): void {
    if (this.#size > LineBatch.MAX) return;
    this.#lines.push(line);
    this.#size += line.length;
    if (this.#size >= LineBatch.MIN) this.#start();
  }

  /** Writes everything gathered (synchronously once no write is in flight), then calls `cb`. */
  flush(cb?: (err?: Error) => void): void {
    if (this.#writing) {
      this.#waiting.push(() => this.flush(cb));
      return;
    }
    try {
      if (this.#lines.length > 0) writeAllSync(this.#fd, this.#take());
      cb?.();
    } catch (e) {
      cb?.(e as Error);
    }
  }

  #take(): string {
    const out = this.#lines.join('');
    this.#lines = [];
    this.#size = 0;
    return out;
  }

  #start(): void {
    if (this.#writing || this.#lines.length === 0) return;
    this.#writing = true;
    let data: Buffer = Buffer.from(this.#take());
    const done = (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err && err.code === 'EAGAIN') n = 0; // a full non-blocking pipe: try again shortly
      else if (err) data = data.subarray(data.length); // EPIPE, EBADF…: the log is gone, keep serving
      data = data.subarray(n);
      if (data.length > 0) {
        if (n === 0) setTimeout(() => fsWrite(this.#fd, data, done), 1);
        else fsWrite(this.#fd, data, done);
        return;
      }
      this.#writing = false;
      for (const f of this.#waiting.splice(0)) f();
      if (this.#size >= LineBatch.MIN) this.#start();
    };
    fsWrite(this.#fd, data, done);
  }
}
