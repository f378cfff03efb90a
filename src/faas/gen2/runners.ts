/**
 * What runs a gen-2 FaaS revision replica (faas-api.md §6, §9.7): either a listener inside this
 * process (the module on the shared worker pool, served by the HTTP trigger on its own port) or a
 * child process started from `path` + `args`, whose exit is detected directly. Both are started
 * lazily again after they stopped (scale to zero, crash): {@link Runner.ensureRunning}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { CapsuleError } from '../../base/errors.ts';
import { parseDuration } from '../../base/units.ts';
import { CapsuleFunction, type FunctionOptions } from '../../engine/function.ts';
import { loadModule, type UrlSource } from '../../engine/load.ts';
import type { WorkerPool } from '../../engine/pool.ts';
import type { ModuleKind } from '../../base/kinds.ts';
import { KINDS } from '../../abi/index.ts';
import { functionOptionsOf, functionSpecFromFlags } from '../../functions/spec.ts';
import { normaliseArgv } from '../../cli/legacy.ts';
import { serveHttp, type RunningHttpTrigger } from '../../triggers/http/server.ts';
import type { Logger } from '../../observability/logger.ts';

/** How a runner ended on its own (not by {@link Runner.stop}). */
export interface RunnerExit {
  /** Exit code of a child (null when a signal ended it); 0 for an idle in-process revision. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** `idle` = scale to zero (`--stopAfter`), `exit` = the process ended. */
  reason: 'idle' | 'exit';
}

/** A running (or restartable) revision replica. */
export interface Runner {
  readonly inProcess: boolean;
  /** The port it listens on (0 before an in-process runner's first start). */
  readonly port: number;
  /** The child's pid, or a synthesized one for an in-process runner. */
  readonly pid: number;
  /** True while it serves (listener open, child alive). */
  readonly running: boolean;
  /**
   * Starts it if it is not running and waits until it accepts connections.
   * @throws Error (CapsuleError for a module that cannot load) when it cannot start
   */
  ensureRunning(): Promise<void>;
  /** A call through the FaaS call route starts (in-process runners count these for --stopAfter). */
  callStarted(): void;
  /** That call ended. */
  callEnded(): void;
  /** Stops it: SIGINT to a child (Go), graceful shutdown of a listener. Idempotent. */
  stop(): Promise<void>;
}

/** What an in-process revision runs, read from the child arguments Go would have passed. */
export interface InProcessSpec {
  source: { path: string } | UrlSource;
  kind?: ModuleKind;
  digest?: string;
  stopAfterMs?: number;
  options: FunctionOptions;
  /** The guest environment of a WASI command: `env` and `-env` only, never the runner's (conventions.md §2). */
  ownEnv: [string, string][];
}

const VALUE_FLAGS = new Set(['wasm', 'url', 'auth-header-name', 'auth-header-value', 'stop-after', 'http-port', 'parent-endpoint',
  'module-name', 'module-revision', 'registry', 'timeout', 'max-memory', 'env', 'dir', 'allowed-hosts', 'kind', 'digest', 'faas', 'host']);
const BOOLEAN_FLAGS = new Set(['reuse', 'fresh', 'faas']);

/** Flag name → values, from child arguments (`args[0]` is the program-name slot). */
function readArgs(args: readonly string[]): Map<string, string[]> {
  const tokens = normaliseArgv(args.slice(1), 'serve').slice(1);
  const out = new Map<string, string[]>();
  const add = (k: string, v: string) => out.set(k, [...(out.get(k) ?? []), v]);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const m = /^--([a-z0-9-]+)(?:=([\s\S]*))?$/.exec(t);
    if (!m) {
      if (/\.wasm$/i.test(t)) add('wasm', t);
      else throw new CapsuleError('USAGE', `argument "${t}" is not supported for an in-process revision (give "path" to run a child process)`);
      continue;
    }
    const name = m[1]!;
    if (!VALUE_FLAGS.has(name) && !BOOLEAN_FLAGS.has(name)) {
      throw new CapsuleError('USAGE', `flag --${name} is not supported for an in-process revision (give "path" to run a child process)`);
    }
    if (m[2] !== undefined) add(name, m[2]);
    else if (BOOLEAN_FLAGS.has(name)) add(name, 'true');
    else add(name, tokens[++i] ?? '');
  }
  return out;
}

/**
 * Reads the arguments capsctl sends (`-wasm= -stopAfter= -url= -parentEndpoint= -moduleName=
 * -moduleRevision=`, plus `-httpPort=`), and `-timeout -maxMemory -env -dir -allowedHosts -kind
 * -digest -reuse -fresh`, into what an in-process revision runs. `env` (`K=V`) is added to the
 * guest environment over the inherited one, as the child would have seen it; a WASI command
 * gets `env` and `-env` only.
 * @throws CapsuleError USAGE for a flag a child would understand but an in-process revision does not, or a bad value
 */
export function inProcessSpec(args: readonly string[], env: readonly string[]): InProcessSpec {
  const a = readArgs(args);
  const last = (k: string) => {
    const v = a.get(k);
    return v && v[v.length - 1] !== '' ? v[v.length - 1] : undefined;
  };
  const wasm = last('wasm');
  const url = last('url');
  if (!wasm && !url) throw new CapsuleError('USAGE', 'no module: the arguments need -wasm=<path> or -url=<url>');
  const kind = last('kind') as ModuleKind | undefined;
  if (kind !== undefined && !(KINDS as string[]).includes(kind)) throw new CapsuleError('USAGE', `-kind=${kind}: expected one of ${KINDS.join(', ')}`);
  const headerName = last('auth-header-name');
  const headerValue = last('auth-header-value');
  const source = url ? { url, saveTo: wasm, authHeader: headerName ? { name: headerName, value: headerValue ?? '' } : undefined } : { path: wasm! };
  const processEnv = { ...process.env, ...Object.fromEntries(env.map((e) => splitPair(e))) };
  const flags = {
    kind, env: [...env, ...(a.get('env') ?? [])], envFile: [], dir: a.get('dir') ?? [],
    allowedHosts: (a.get('allowed-hosts') ?? []).flatMap((h) => h.split(',').map((s) => s.trim()).filter(Boolean)),
    // absent limits stay undefined: the engine's defaults apply
    timeout: last('timeout') as string, maxMemory: last('max-memory') as string,
  };
  const spec = functionSpecFromFlags(flags, true, processEnv);
  const stopAfter = last('stop-after');
  return {
    source, kind, digest: last('digest'),
    stopAfterMs: stopAfter ? parseDuration(stopAfter, '-stopAfter') : undefined,
    options: { ...functionOptionsOf(spec), reuse: last('reuse') === 'true', fresh: last('fresh') === 'true' },
    ownEnv: functionSpecFromFlags(flags, false, processEnv).env,
  };
}

function splitPair(e: string): [string, string] {
  const i = e.indexOf('=');
  return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
}

/** Above Linux's largest pid (2^22): a synthesized pid never names a real process. */
let nextSyntheticPid = 4_194_304;

/** Options of {@link InProcessRunner}. */
export interface InProcessRunnerOptions {
  pool: WorkerPool;
  logger: Logger;
  /** Interface its listener binds (default 127.0.0.1). */
  host?: string;
  /** Called when it scaled to zero. */
  onExit(exit: RunnerExit): void;
  /** Called when a restart had to take another port than before (the old one was taken). */
  onPort?(port: number): void;
  /** Told how long each phase of a (re)start took, seconds: `compile` (read or download, validate, compile), `init` (OnLoad, listen). */
  onPhase?(phase: 'compile' | 'init', seconds: number): void;
}

/**
 * A revision served inside this process: the module compiled once per start, run on the shared
 * worker pool, served by the HTTP trigger on its own port. With `--stopAfter`, once no call went
 * through the call route for that long (counted from each call's start) and none is in flight,
 * the listener closes and the module is unregistered; the next call loads it again.
 */
export class InProcessRunner implements Runner {
  readonly inProcess = true;
  readonly pid = nextSyntheticPid++;
  #port: number;
  #trigger: RunningHttpTrigger | undefined;
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #inflight = 0;
  #lastCall = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  readonly #spec: InProcessSpec;
  readonly #o: InProcessRunnerOptions;

  constructor(spec: InProcessSpec, port: number, o: InProcessRunnerOptions) {
    this.#spec = spec;
    this.#port = port;
    this.#o = o;
  }

  get port(): number {
    return this.#port;
  }

  get running(): boolean {
    return this.#trigger !== undefined;
  }

  async ensureRunning(): Promise<void> {
    if (this.#trigger) return;
    this.#starting ??= this.#start().finally(() => (this.#starting = undefined));
    await this.#starting;
  }

  async #start(): Promise<void> {
    await this.#closing;
    const s = this.#spec;
    const t0 = performance.now();
    const module = await loadModule(s.source, { kind: s.kind, digest: s.digest });
    const t1 = performance.now();
    const env = module.detection.kind === 'wasi' ? s.ownEnv : s.options.env;
    const fn = CapsuleFunction.fromModule(module, { ...s.options, env, pool: this.#o.pool, stdio: 'capture', onWarning: (m) => this.#o.logger.warn(m) });
    const http = { host: this.#o.host ?? '127.0.0.1', logger: this.#o.logger };
    let trigger: RunningHttpTrigger;
    try {
      trigger = await serveHttp(fn, { ...http, port: this.#port }).catch((e: unknown) => {
        if (this.#port === 0) throw e;
        this.#o.logger.warn({ port: this.#port, err: (e as Error).message }, 'revision port taken: listening on another one');
        return serveHttp(fn, { ...http, port: 0 });
      });
    } catch (e) {
      await fn.close();
      throw e;
    }
    this.#o.onPhase?.('compile', (t1 - t0) / 1000);
    this.#o.onPhase?.('init', (performance.now() - t1) / 1000);
    if (this.#port !== 0 && trigger.port !== this.#port) this.#o.onPort?.(trigger.port);
    this.#port = trigger.port;
    this.#trigger = trigger;
    this.#lastCall = Date.now();
    this.#armIdle();
  }

  callStarted(): void {
    this.#inflight++;
    this.#lastCall = Date.now();
  }

  callEnded(): void {
    this.#inflight--;
  }

  /** One timer per runner checks the idle time (not one per call). */
  #armIdle(): void {
    const after = this.#spec.stopAfterMs;
    if (after === undefined || this.#idleTimer) return;
    const check = () => {
      this.#idleTimer = undefined;
      if (!this.#trigger) return;
      const idle = Date.now() - this.#lastCall;
      if (idle >= after && this.#inflight === 0) {
        // Stopped from this moment: the next call starts a new listener (once this one has closed)
        void this.#close('no call for the --stopAfter delay (scale to zero)');
        this.#o.onExit({ code: 0, signal: null, reason: 'idle' });
        return;
      }
      this.#idleTimer = setTimeout(check, Math.max(after - idle, 50));
      this.#idleTimer.unref();
    };
    this.#idleTimer = setTimeout(check, after);
    this.#idleTimer.unref();
  }

  /** Forgets the listener at once (new calls start a new one), then closes it. */
  #close(reason: string): Promise<void> {
    const t = this.#trigger;
    this.#trigger = undefined;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (!t) return this.#closing ?? Promise.resolve();
    const closing = t.shutdown(reason).then(() => t.closed);
    this.#closing = closing.finally(() => {
      if (this.#closing === closing) this.#closing = undefined;
    });
    return this.#closing;
  }

  async stop(): Promise<void> {
    await this.#starting?.catch(() => {});
    await this.#close('dropped');
  }
}

/** Options of {@link ChildRunner}. */
export interface ChildRunnerOptions {
  logger: Logger;
  /** Host the child listens on, to wait for its port (default 127.0.0.1). */
  probeHost?: string;
  /** How long a start waits for the port to accept connections, ms (default 10 000). */
  readyTimeoutMs?: number;
  /** Called when the child ended on its own (not by {@link ChildRunner.stop}). */
  onExit(exit: RunnerExit): void;
  /** Called with the new pid after each (re)start. */
  onStart?(pid: number): void;
}

/** What a child process runs: Go's `exec.Cmd{Path, Args}` plus the added environment. */
export interface ChildSpec {
  /** The program. */
  command: string;
  /** Its arguments after the program-name slot. */
  args: string[];
  /** `argv[0]` the child sees (Go's `Args[0]`), default the command. */
  argv0?: string;
  /** `K=V` added to this process's environment. */
  env: readonly string[];
  port: number;
}

/** A revision replica in a child process; its exit is seen at once (§9.7), a call restarts it. */
export class ChildRunner implements Runner {
  readonly inProcess = false;
  #child: ChildProcess | undefined;
  #pid = 0;
  #starting: Promise<void> | undefined;
  #stopping = false;
  readonly #spec: ChildSpec;
  readonly #o: ChildRunnerOptions;

  constructor(spec: ChildSpec, o: ChildRunnerOptions) {
    this.#spec = spec;
    this.#o = o;
  }

  get port(): number {
    return this.#spec.port;
  }

  get pid(): number {
    return this.#pid;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  async ensureRunning(): Promise<void> {
    if (this.#child && !this.#starting) return;
    this.#starting ??= this.#start().finally(() => (this.#starting = undefined));
    await this.#starting;
  }

  async #start(): Promise<void> {
    if (!this.#child) await this.#spawn();
    await this.#waitForPort();
  }

  #spawn(): Promise<void> {
    const s = this.#spec;
    const child = spawn(s.command, s.args, {
      argv0: s.argv0 || s.command,
      env: { ...process.env, ...Object.fromEntries(s.env.map(splitPair)) },
      stdio: ['ignore', 2, 2], // the children's output goes to our log stream, never to stdout
    });
    this.#stopping = false;
    return new Promise((resolve, reject) => {
      child.once('error', (e) => {
        if (this.#child === child) this.#child = undefined;
        reject(e);
      });
      child.once('spawn', () => {
        this.#child = child;
        this.#pid = child.pid ?? 0;
        this.#o.onStart?.(this.#pid);
        resolve();
      });
      child.once('exit', (code, signal) => {
        if (this.#child === child) this.#child = undefined;
        this.#o.logger.info({ pid: child.pid, code, signal }, 'FaaS child process ended');
        if (!this.#stopping) this.#o.onExit({ code, signal, reason: 'exit' });
      });
    });
  }

  /** Polls the port every 100 ms until it accepts, the child ends, or the ready timeout passes. */
  async #waitForPort(): Promise<void> {
    const end = Date.now() + (this.#o.readyTimeoutMs ?? 10_000);
    while (this.#child) {
      if (await canConnect(this.#o.probeHost ?? '127.0.0.1', this.#spec.port)) return;
      if (Date.now() > end) throw new Error(`the child process (pid ${this.#pid}) does not accept connections on port ${this.#spec.port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the child process (pid ${this.#pid}) ended before it listened on port ${this.#spec.port}`);
  }

  callStarted(): void {}
  callEnded(): void {}

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#stopping = true;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGINT'); // Capsule shuts down gracefully on an interrupt (OnStop), as Go's drop did
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Whether something accepts TCP connections on host:port. */
export function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, host);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}
