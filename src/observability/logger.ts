/**
 * Capsule's own log (conventions.md §5): pino, pretty on a TTY, JSON lines otherwise, always on
 * stderr (stdout is for the ready line and guest output).
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export type { Logger };

/**
 * @param level minimum level (default `info`)
 * @param prettyOutput pretty lines (default: when stderr is a TTY)
 */
export function createLogger(level: LogLevel = 'info', prettyOutput = process.stderr.isTTY === true): Logger {
  const options = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (prettyOutput) {
    return pino(options, pretty({ destination: 2, colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', sync: true }));
  }
  // Lines are gathered up to 4 KiB and written at least every 100 ms: one write per line cost
  // a quarter of the main thread's time under load.
  const destination = pino.destination({ fd: 2, sync: false, minLength: 4096 });
  setInterval(() => {
    try {
      destination.flush();
    } catch {
      // a write is already in progress; the next tick flushes
    }
  }, 100).unref();
  return pino(options, destination);
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
