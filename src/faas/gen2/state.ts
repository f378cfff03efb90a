/**
 * The state of the gen-2 FaaS mode (faas-api.md §6, §9.7): the process records and what runs
 * them. `start` creates a replica (index = highest + 1), `duplicate` aliases a revision to the
 * runner of another, `drop` stops and forgets one, `notify` marks one Stopped, and `target` finds
 * the replica a call goes to (round-robin over a revision's replicas when no index is given),
 * starting it again when it had stopped (scale to zero, crash). The routes are ./api.ts.
 */
import { realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkerPool } from '../../engine/pool.ts';
import type { Logger } from '../../observability/logger.ts';
import { FaasError } from '../shared/service.ts';
import { emptyRecord, ProcessTable, recordKey, Status, type ProcessRecord } from './records.ts';
import { ChildRunner, InProcessRunner, inProcessSpec, type Runner, type RunnerExit } from './runners.ts';

/** The body of `POST /functions/start` (Go's CapsuleTask). */
export interface StartTask {
  name: string;
  revision?: string;
  description?: string;
  /** Program to run; empty or this Capsule = in-process (unless `processes`). */
  path?: string;
  /** `args[0]` is the program-name slot. */
  args?: string[];
  /** `K=V` added to the environment. */
  env?: string[];
}

/** Options of {@link FaasState}. */
export interface FaasStateOptions {
  logger: Logger;
  /** `CAPSULE_PROCESSES_STORAGE`: where records are saved and read back at start; undefined = memory only. */
  storage?: string;
  /** Run every revision as a child process, this Capsule's included (`--process`). */
  processes?: boolean;
  /** Interface in-process revisions listen on, and where children are reached (default 127.0.0.1). */
  host?: string;
  /** Worker threads of the shared pool of in-process revisions (default: CPU cores). */
  workers?: number;
  /** Use this pool (e.g. the node's, shared with its deployments) instead of making one; not closed by `close`. */
  pool?: WorkerPool;
  /** Told the phases of every in-process (re)start (`compile`, `init`, seconds), e.g. for `capsule_cold_start_seconds`. */
  onColdStart?(name: string, revision: string, phase: 'compile' | 'init', seconds: number): void;
}

const NAME = /^[^/\s]{1,128}$/;
const BIN = dirname(fileURLToPath(new URL('../../../bin/capsule.js', import.meta.url)));

/**
 * Checks the name and revision of a start (revision `default` when empty).
 * @throws FaasError 400 ERROR_JSON_BINDING for a name with `/` or spaces, or longer than 128
 */
export function checkTaskNames(name: string, revision: string | undefined): { name: string; revision: string } {
  const rev = revision || 'default';
  if (!NAME.test(name) || !NAME.test(rev)) throw new FaasError(400, 'ERROR_JSON_BINDING', 'name and revision must be 1 to 128 characters without "/" or spaces');
  return { name, revision: rev };
}

let self: Set<string> | undefined;

/** Whether a start's `path` names this Capsule (or is empty): then the revision runs in-process. */
export function isCapsulePath(path: string | undefined): boolean {
  if (!path) return true;
  self ??= selfPaths();
  if (self.has(resolve(path))) return true;
  try {
    return self.has(realpathSync(path));
  } catch {
    return false;
  }
}

/** This Capsule's executables: a `path` naming one of them starts an in-process revision. */
function selfPaths(): Set<string> {
  const out = new Set<string>();
  for (const p of [process.execPath, process.argv[1], join(BIN, 'capsule.js'), join(BIN, 'capsule-http.js')]) {
    if (!p) continue;
    out.add(resolve(p));
    try {
      out.add(realpathSync(p));
    } catch { /* not there */ }
  }
  return out;
}

/** The records and runners of one FaaS main process. */
export class FaasState {
  readonly table: ProcessTable;
  readonly #runners = new Map<string, Runner>();
  readonly #rr = new Map<string, number>();
  readonly #o: FaasStateOptions;
  #pool: WorkerPool | undefined;

  /** @throws Error when the storage file exists but cannot be read as records */
  constructor(o: FaasStateOptions) {
    this.#o = o;
    this.table = new ProcessTable(o.storage, (e) => o.logger.error({ storage: o.storage, err: e.message }, 'cannot save the process records'));
    const byPort = new Map<string, Runner>();
    for (const r of this.table.load()) {
      // nothing of an earlier run is running now: each comes back at its next call
      const key = recordKey(r.functionName, r.functionRevision, r.index);
      try {
        const runner = byPort.get(r.httpPort) ?? this.#runnerFor(r);
        byPort.set(r.httpPort, runner);
        this.#runners.set(key, runner);
        this.table.setStatus(r, Status.Stopped);
      } catch (e) {
        o.logger.error({ key, err: (e as Error).message }, 'a saved process record cannot run: forgotten');
        this.table.delete(key);
      }
    }
  }

  /** The executable recorded for in-process revisions (Go recorded its own path). */
  get selfPath(): string {
    return resolve(process.argv[1] ?? process.execPath);
  }

  /**
   * Starts a replica of a revision (`POST /functions/start`): picks a port, appends
   * `-httpPort=<port>` to the arguments, runs it in-process or as a child.
   * @returns the key `name/revision/index`
   * @throws FaasError 400 for a bad name; Error (text of the 500) when it cannot start
   */
  async start(task: StartTask): Promise<string> {
    const { name, revision } = checkTaskNames(task.name, task.revision);
    const args = [...(task.args ?? [''])];
    if (args.length === 0) args.push('');
    const env = [...(task.env ?? [])];
    const inProcess = this.#isSelf(task.path) && !this.#o.processes;
    const record: ProcessRecord = {
      ...emptyRecord(), functionName: name, functionRevision: revision, description: task.description ?? '',
      path: task.path || this.selfPath, env,
    };
    let runner: Runner;
    if (inProcess) {
      runner = this.#inProcess(inProcessSpec(args, env), 0, record);
      await runner.ensureRunning();
      record.args = [...args, `-httpPort=${runner.port}`];
    } else {
      record.args = [...args, `-httpPort=${await freePort(this.#o.host ?? '127.0.0.1')}`];
      record.httpPort = String(portOf(record.args));
      runner = this.#runnerFor(record);
      await runner.ensureRunning();
    }
    record.httpPort = String(runner.port);
    record.pid = runner.pid;
    record.index = this.table.nextIndex(name, revision);
    this.table.setStatus(record, Status.Started);
    const key = this.table.set(record);
    this.#runners.set(key, runner);
    this.#o.logger.info({ key, port: runner.port, pid: runner.pid, inProcess: runner.inProcess }, 'FaaS revision started');
    return key;
  }

  /**
   * `PUT /functions/duplicate/:name/:revision/:new`: a record for `new` served by the runner of
   * `name/revision/0` (blue/green by aliasing, as Go did).
   * @returns the function name (Go's reply body), or undefined when `name/revision/0` is unknown
   */
  duplicate(name: string, revision: string, newRevision: string): string | undefined {
    const key = recordKey(name, revision, 0);
    const from = this.table.get(key);
    const runner = this.#runners.get(key);
    if (!from || !runner) return undefined;
    if (!NAME.test(newRevision)) throw new FaasError(400, 'ERROR_JSON_BINDING', 'the new revision must be 1 to 128 characters without "/" or spaces');
    const copy: ProcessRecord = { ...from, args: [...from.args], env: [...from.env], functionRevision: newRevision, formerFunctionRevision: from.functionRevision };
    copy.index = this.table.nextIndex(name, newRevision);
    this.#runners.set(this.table.set(copy), runner);
    return name;
  }

  /**
   * `DELETE /functions/drop/…`: forgets the record and stops its runner unless another record
   * (a duplicate) still uses it.
   * @returns the key, or undefined when unknown
   */
  async drop(key: string): Promise<string | undefined> {
    const record = this.table.delete(key);
    if (!record) return undefined;
    const runner = this.#runners.get(key);
    this.#runners.delete(key);
    if (runner && ![...this.#runners.values()].includes(runner)) await runner.stop();
    this.#o.logger.info({ key }, 'FaaS revision dropped');
    return key;
  }

  /** `/notify/…`: a child says it is shutting down. @returns the key, or undefined when unknown */
  notify(key: string): string | undefined {
    const record = this.table.get(key);
    if (!record) return undefined;
    this.table.setStatus(record, Status.Stopped);
    return key;
  }

  /**
   * The replica a call goes to, started again if it had stopped: `index` given → that one;
   * otherwise the revision's replicas in turn (each revision its own counter). The call counts
   * as in flight until the caller's `runner.callEnded()`.
   * @returns the record and its runner, or undefined when nothing of that name/revision[/index] exists
   * @throws Error when the replica cannot be started again
   */
  async target(name: string, revision: string, index?: string): Promise<{ record: ProcessRecord; runner: Runner } | undefined> {
    let record: ProcessRecord | undefined;
    if (index !== undefined) {
      record = this.table.get(recordKey(name, revision, index));
    } else {
      const all = this.table.ofRevision(name, revision);
      if (all.length === 0) return undefined;
      const turn = this.#rr.get(`${name}/${revision}`) ?? 0;
      this.#rr.set(`${name}/${revision}`, turn + 1);
      record = all[turn % all.length];
    }
    if (!record) return undefined;
    const runner = this.#runners.get(recordKey(record.functionName, record.functionRevision, record.index))!;
    await this.wake(runner);
    runner.callStarted(); // same tick as the check above: an idle close cannot come in between
    return { record, runner };
  }

  /**
   * Makes sure a runner serves: a stopped one is started again (same arguments and port) and its
   * records marked Started; a child still starting is waited for.
   * @throws Error when it cannot start
   */
  async wake(runner: Runner): Promise<void> {
    if (runner.running) return runner.ensureRunning();
    this.#o.logger.info({ port: runner.port }, 'starting a stopped FaaS revision');
    await runner.ensureRunning();
    for (const r of this.#recordsOf(runner)) {
      r.pid = runner.pid;
      this.table.setStatus(r, Status.Started);
    }
  }

  /** Stops every runner (SIGINT to children, listeners closed) and the shared pool. */
  async close(): Promise<void> {
    await Promise.allSettled([...new Set(this.#runners.values())].map((r) => r.stop()));
    if (this.#pool !== this.#o.pool) await this.#pool?.close();
  }

  #recordsOf(runner: Runner): ProcessRecord[] {
    return [...this.#runners].filter(([, r]) => r === runner).map(([k]) => this.table.get(k)).filter((r): r is ProcessRecord => r !== undefined);
  }

  #isSelf(path: string | undefined): boolean {
    return isCapsulePath(path);
  }

  /** A runner for a record of the table (at start or read back from storage). */
  #runnerFor(record: ProcessRecord): Runner {
    const port = Number(record.httpPort) || portOf(record.args);
    if (this.#isSelf(record.path) && !this.#o.processes) {
      return this.#inProcess(inProcessSpec(record.args, record.env), port, record);
    }
    const self = this.#isSelf(record.path);
    const child: ChildRunner = new ChildRunner({
      // this Capsule as a child: run its bin with this Node (the bin would relaunch itself)
      command: self ? process.execPath : record.path,
      args: self ? [join(BIN, 'capsule-http.js'), ...record.args.slice(1)] : record.args.slice(1),
      argv0: self ? undefined : record.args[0],
      env: record.env, port,
    }, {
      logger: this.#o.logger, probeHost: this.#o.host,
      onExit: (exit) => this.#ended(child, exit),
      onStart: (pid) => this.#recordsOf(child).forEach((r) => (r.pid = pid)),
    });
    return child;
  }

  /** An in-process runner; `owner` names it in the cold-start hook (the record it was started for). */
  #inProcess(spec: ReturnType<typeof inProcessSpec>, port: number, owner: ProcessRecord): InProcessRunner {
    this.#pool ??= this.#o.pool ?? new WorkerPool({ workers: this.#o.workers, warm: false }); // idle functions stay cheap
    const runner: InProcessRunner = new InProcessRunner(spec, port, {
      pool: this.#pool, logger: this.#o.logger, host: this.#o.host,
      onExit: (exit) => this.#ended(runner, exit),
      onPhase: (phase, seconds) => this.#o.onColdStart?.(owner.functionName, owner.functionRevision, phase, seconds),
      onPort: (p) => this.#recordsOf(runner).forEach((r) => {
        r.httpPort = String(p);
        this.table.set(r);
      }),
    });
    return runner;
  }

  /** A runner ended on its own: Stopped (idle, exit 0, interrupt) or Failed (other exits), with the code. */
  #ended(runner: Runner, exit: RunnerExit): void {
    const clean = exit.reason === 'idle' || exit.code === 0 || exit.signal === 'SIGINT' || exit.signal === 'SIGTERM';
    for (const r of this.#recordsOf(runner)) {
      this.table.setStatus(r, clean ? Status.Stopped : Status.Failed, exit.code ?? undefined);
    }
    this.#o.logger.info({ port: runner.port, ...exit }, clean ? 'FaaS revision stopped' : 'FaaS revision failed');
  }
}

/** The `-httpPort=` value in child arguments, 0 when absent. */
function portOf(args: readonly string[]): number {
  for (let i = args.length - 1; i >= 0; i--) {
    const m = /^--?http-?port=(\d+)$/i.exec(args[i]!);
    if (m) return Number(m[1]);
  }
  return 0;
}

/** A free TCP port on `host` (Go's GetNewHTTPPort). */
function freePort(host: string): Promise<number> {
  return import('node:net').then(({ createServer }) => new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolvePort(port));
    });
  }));
}
