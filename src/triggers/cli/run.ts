/**
 * CLI trigger (`capsule run`): one invocation, its result on stdout, an exit code
 * (conventions.md §4): Capsule ABI modules 0 success, 1 guest failure (F / [ERR] result, trap,
 * deadline), 2 a `--handler` the module cannot honour; WASI commands pass their exit code through,
 * a trap exits 134, a deadline 124.
 */
import { isOutputClosed, writeAllSync } from '../../base/stdio.ts';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import type { CallLogs } from '../../engine/instance.ts';
import type { CliInput, CliOutput } from '../../base/invocation.ts';

export interface CliRunOptions {
  /** Raw bytes for the handler (`--params`, `--params-file`, or the joined positional args). */
  params?: Uint8Array;
  /** Positional arguments after the module. */
  args: string[];
  /**
   * `--handler`: the handler export to call, `handle` (callHandle) or `json` (callHandleJSON,
   * gen 2 only); absent = callHandle with the callHandleJSON fallback of capsule-abi.md §5.2.
   */
  handler?: 'handle' | 'json';
  /**
   * `--json`: print one {@link CliRunReport} on stdout instead of the result (the function must
   * capture its guest's output: `stdio: 'capture'`). The exit code is the same.
   */
  json?: boolean;
  /** `--json`: host messages (warnings) to list among the report's logs. */
  hostLogs?: string[];
}

/** One line of a {@link CliRunReport}: guest stdout/stderr, the guest's host-log calls, or the runner's own. */
export interface CliLogLine {
  stream: 'stdout' | 'stderr' | 'log' | 'host';
  text: string;
}

/**
 * What `capsule run --json` prints, one JSON object on stdout (README "capsule run --json").
 * Capsule ABI modules: `result` is the handler's result on success, `error` its failure text;
 * WASI commands: `result` is the command's standard output (so `logs` has no stdout lines).
 */
export interface CliRunReport {
  /** The result as UTF-8 text, or base64 when it is not valid UTF-8 (then `encoding` says so). */
  result?: string;
  encoding?: 'base64';
  logs: CliLogLine[];
  /** Wall time of the call (instantiation included, the worker thread's start not), milliseconds. */
  durationMs: number;
  /** The process exit code (conventions.md §4), the same as without `--json`. */
  exitCode: number;
  /** Why the call failed: the guest's failure text, a trap, the deadline. */
  error?: string;
  /** Set when the guest's output went past the capture limit and was cut. */
  truncated?: true;
}

/** Why `--handler` does not apply to this module, or undefined when it does. */
function handlerMisuse(fn: CapsuleFunction, handler: CliRunOptions['handler']): string | undefined {
  if (handler === undefined) return undefined;
  const kind = fn.module.detection.kind;
  if (kind === 'wasi') return `--handler applies to Capsule modules; ${fn.module.name} is a WASI command (it runs _start)`;
  if (handler === 'json' && kind !== 'capsule-2') return `--handler json: ${fn.module.name} is a ${kind} module, which has no callHandleJSON (gen 2 only)`;
  return undefined;
}

/**
 * Runs the function once and writes its result. Never throws for guest failures.
 * @returns the process exit code
 */
export async function runCli(fn: CapsuleFunction, o: CliRunOptions): Promise<number> {
  const wasi = fn.module.detection.kind === 'wasi';
  const misuse = handlerMisuse(fn, o.handler);
  if (misuse) {
    writeAllSync(2, `❌ ${misuse}\n`);
    return 2;
  }
  const input: CliInput = { type: 'cli', params: o.params, args: o.args, ...(o.handler ? { handler: o.handler } : {}) };
  if (o.json) return runJson(fn, input, o.hostLogs ?? []);
  try {
    const { output } = await fn.invoke(input);
    const out = output as CliOutput;
    if (out.text !== undefined) {
      const fd = out.exitCode === 0 ? 1 : 2;
      writeAllSync(fd, out.text);
      writeAllSync(fd, '\n');
    }
    return out.exitCode;
  } catch (e) {
    if (isOutputClosed(e)) return 0; // the reader went away (`| head -1`): end quietly, as Unix tools do
    const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
    writeAllSync(2, `❌ ${err.message}\n`);
    if (wasi) return err.code === 'TIMEOUT' ? 124 : 134;
    return 1;
  }
}

/** `--json`: the call, then its {@link CliRunReport} on stdout. @returns the exit code */
async function runJson(fn: CapsuleFunction, input: CliInput, hostLogs: string[]): Promise<number> {
  const wasi = fn.module.detection.kind === 'wasi';
  await fn.executor.whenUp(); // the duration is the call's, not a worker thread's start
  const started = performance.now();
  let report: Omit<CliRunReport, 'durationMs' | 'logs'>;
  let logs: CallLogs | undefined;
  try {
    const done = await fn.invoke(input);
    const out = done.output as CliOutput;
    logs = done.logs;
    report = { exitCode: out.exitCode };
    if (wasi) Object.assign(report, textField(new TextEncoder().encode(logs?.stdout ?? '')));
    else if (out.exitCode === 0 && out.text !== undefined) Object.assign(report, textField(out.text));
    // a failure's text (F / [ERR] result; a WASI command's trap)
    if (out.exitCode !== 0 && out.text !== undefined) report.error = new TextDecoder().decode(out.text);
  } catch (e) {
    const err = e instanceof CapsuleError ? e : new CapsuleError('INTERNAL', (e as Error).message);
    logs = (e as { logs?: CallLogs }).logs;
    report = { exitCode: wasi ? (err.code === 'TIMEOUT' ? 124 : 134) : 1, error: err.message };
    if (wasi && logs?.stdout) Object.assign(report, textField(new TextEncoder().encode(logs.stdout)));
  }
  const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
  const lines = [
    ...(wasi ? [] : linesOf('stdout', logs?.stdout)), ...linesOf('stderr', logs?.stderr),
    ...(logs?.log ?? []).map((text) => ({ stream: 'log' as const, text: text.replace(/\n$/, '') })),
    ...hostLogs.map((text) => ({ stream: 'host' as const, text })),
  ];
  const full: CliRunReport = {
    ...(report.result !== undefined ? { result: report.result } : {}), ...(report.encoding ? { encoding: report.encoding } : {}),
    logs: lines, durationMs, exitCode: report.exitCode,
    ...(report.error !== undefined ? { error: report.error } : {}), ...(logs?.truncated ? { truncated: true as const } : {}),
  };
  try {
    writeAllSync(1, `${JSON.stringify(full)}\n`);
  } catch (e) {
    if (!isOutputClosed(e)) throw e;
  }
  return full.exitCode;
}

/** `result` as text, or base64 with `encoding` when the bytes are not UTF-8. */
function textField(bytes: Uint8Array): Pick<CliRunReport, 'result' | 'encoding'> {
  try {
    return { result: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    return { result: Buffer.from(bytes).toString('base64'), encoding: 'base64' };
  }
}

/** A stream's text as log lines (a last line without its newline counts). */
function linesOf(stream: 'stdout' | 'stderr', text: string | undefined): CliLogLine[] {
  if (!text) return [];
  const parts = text.split('\n');
  if (parts.at(-1) === '') parts.pop();
  return parts.map((t) => ({ stream, text: t }));
}
