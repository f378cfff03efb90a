/**
 * The log levels of `--log-level` (conventions.md §5), apart from the logger itself so that a
 * command can declare the flag without loading pino (CLI start-up, docs/performance.md).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/**
 * The formats of `--log-format` (conventions.md §5): `json` lines or `pretty` coloured lines.
 * Without the flag: pretty when stderr is a terminal, JSON otherwise.
 */
export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];
