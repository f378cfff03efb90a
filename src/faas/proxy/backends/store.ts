/**
 * Where the proxy's routes live (faas-cluster.md §1.1 "every FaaS service is a facade over a
 * Backend"; faas-api.md §9.6): a {@link RouteStore} owns the live {@link RouteTable} the gateway
 * reads on every request (no I/O on the request path) and applies the registration API's changes.
 *
 * - `memory` (this file): the change runs on the table itself, synchronously.
 * - `nats` (./nats.ts): the change runs on the function's record in the ROUTES KV bucket with
 *   compare-and-swap; every gateway's table follows the bucket through a watch.
 * - `redis` (./redis.ts): the change runs on the function's Redis hash in a transaction and is
 *   announced on `capsule:proxy:changed`; every proxy's table follows the announcements.
 *
 * Shared backends run a change on a scratch table holding only that function, so the checks and
 * Go error replies (`ERROR_FUNCTION_ALREADY_EXISTS`, …) are exactly those of the memory table.
 */
import { applyRoutes, type StaticRoutes } from '../config.ts';
import { RouteTable, type RouteRecord } from '../table.ts';

/** The target of a revision served by cluster nodes over NATS (faas-cluster.md §1.2). */
export const LATTICE_TARGET = 'nats:';

/** A change of one function's routes: calls {@link RouteTable} methods, which throw FaasError refusals. */
export type RouteChangeFn = (table: RouteTable) => void;

/** The routes of a proxy and where they are kept. */
export interface RouteStore {
  /** `memory`, `redis` or `nats`. */
  readonly backend: 'memory' | 'redis' | 'nats';
  /** The live table the gateway and the read routes answer from. */
  readonly table: RouteTable;
  /**
   * Applies a change to function `fn` and resolves once {@link table} shows it (read-your-writes).
   * @throws the FaasError the change throws (Go codes, nothing written); FaasError 503
   *   STATE_UNAVAILABLE when a shared store cannot take the write
   */
  change(fn: string, change: RouteChangeFn): Promise<void>;
  /**
   * Loads static routes (`--config`): into the memory table as before (merged); into a shared
   * store only for functions it does not hold yet (another proxy may have changed them since).
   */
  seed(routes: StaticRoutes): Promise<void>;
  /** Stops following the shared store and closes its connections. */
  close(): Promise<void>;
}

/** The default backend: the table in this process. */
export class MemoryRouteStore implements RouteStore {
  readonly backend = 'memory';
  readonly table: RouteTable;
  constructor(table = new RouteTable()) {
    this.table = table;
  }
  async change(_fn: string, change: RouteChangeFn): Promise<void> {
    change(this.table);
  }
  async seed(routes: StaticRoutes): Promise<void> {
    applyRoutes(this.table, routes);
  }
  async close(): Promise<void> {}
}

/**
 * Runs a change on one function's stored record (undefined: not registered) through a scratch
 * table, for shared stores.
 * @returns the new record (undefined: the function is removed) and whether anything changed
 * @throws the change's FaasError
 */
export function changeRecord(fn: string, current: RouteRecord | undefined, change: RouteChangeFn): { record: RouteRecord | undefined; changed: boolean } {
  const scratch = new RouteTable();
  if (current) scratch.load(fn, current);
  const before = JSON.stringify(scratch.snapshot(fn));
  change(scratch);
  const record = scratch.snapshot(fn);
  return { record, changed: JSON.stringify(record) !== before };
}

/** The change that seeds one function from static routes when it is absent (see {@link RouteStore.seed}). */
export function seedChange(fn: string, revisions: Record<string, string[]>): RouteChangeFn {
  return (t) => {
    if (!t.has(fn)) applyRoutes(t, { [fn]: revisions });
  };
}
