/**
 * The log levels of `--log-level` (conventions.md §5), apart from the logger itself so that a
 * command can declare the flag without loading pino (CLI start-up, docs/performance.md).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
