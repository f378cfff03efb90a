/**
 * Go's per-deployment listeners on a cluster node (faas-cluster.md §1.3, §3 risk 5): a deploy
 * received by this node opens one listener on the next counter port, as on one machine, so the
 * reply's `localUrl` is a URL that answers. The listener calls the revision on THIS node through
 * the runtime (materialized on its first call like a NATS request); traffic through the gateway
 * goes over NATS, not through these listeners. Downscale closes the newest, undeploy (here or
 * seen in DEPLOY) all of them.
 */
import type { WorkerPool } from '../../../engine/pool.ts';
import { PortCounter } from '../ports.ts';
import { startInProcessReplica, type Replica, type ReplicaListen } from '../replicas.ts';
import { FaasError } from '../../shared/service.ts';
import type { RevisionRuntime } from './runtime.ts';

/** The listeners of the revisions deployed through this node. */
export class LocalListeners {
  readonly #byRevision = new Map<string, Replica[]>();
  readonly #runtime: RevisionRuntime;
  readonly #pool: WorkerPool;
  readonly #ports: PortCounter;
  readonly #listen: ReplicaListen;

  constructor(runtime: RevisionRuntime, pool: WorkerPool, ports: PortCounter, listen: ReplicaListen) {
    this.#runtime = runtime;
    this.#pool = pool;
    this.#ports = ports;
    this.#listen = listen;
  }

  /**
   * Opens one more listener for a revision.
   * @returns its `localUrl`
   * @throws FaasError 500 ERROR_REPLICA_START when no port can be bound
   */
  async open(fn: string, rev: string): Promise<string> {
    const runtime = this.#runtime;
    const target = { name: `${fn}@${rev}`, cgi: () => false, invoke: runtime.call.bind(runtime, fn, rev) };
    for (let attempt = 0; ; attempt++) {
      const port = await this.#ports.next();
      try {
        const replica = await startInProcessReplica(target, this.#pool, port, this.#listen);
        const key = `${fn}\0${rev}`;
        this.#byRevision.set(key, [...this.#byRevision.get(key) ?? [], replica]);
        return replica.localUrl;
      } catch (e) {
        if (attempt >= 4 || port === 0) throw new FaasError(500, 'ERROR_REPLICA_START', `${fn}/${rev}: ${(e as Error).message}`);
      }
    }
  }

  /** The `localUrl`s of a revision's listeners, oldest first. */
  urls(fn: string, rev: string): string[] {
    return (this.#byRevision.get(`${fn}\0${rev}`) ?? []).map((r) => r.localUrl);
  }

  /** Closes the newest listener of a revision (calls in flight finish). */
  async closeOne(fn: string, rev: string): Promise<void> {
    const list = this.#byRevision.get(`${fn}\0${rev}`);
    const last = list?.pop();
    if (list?.length === 0) this.#byRevision.delete(`${fn}\0${rev}`);
    await last?.stop();
  }

  /** Closes every listener of a revision. */
  async closeAll(fn: string, rev: string): Promise<void> {
    const list = this.#byRevision.get(`${fn}\0${rev}`) ?? [];
    this.#byRevision.delete(`${fn}\0${rev}`);
    await Promise.all(list.map((r) => r.stop()));
  }

  /** Closes every listener. */
  async close(): Promise<void> {
    const all = [...this.#byRevision.values()].flat();
    this.#byRevision.clear();
    await Promise.all(all.map((r) => r.stop()));
  }
}
