/**
 * The CouchBase cluster connection of the process (main thread), with the official `couchbase`
 * npm SDK (its N-API binary comes prebuilt in the platform package npm installs beside it),
 * loaded on first use only.
 *
 * Configuration (capsule-abi.md §4.7): `COUCHBASE_CLUSTER` (connection string; unset = not
 * configured), `COUCHBASE_USER` (`admin`), `COUCHBASE_PWD` (empty), `COUCHBASE_BUCKET`
 * (`wasm-data`), or the `--couchbase-*` flags. A failed connection is not kept: the next query
 * tries again. Failures are Errors with a message for the guest (Go Capsule killed the process).
 */
import type { CouchbaseSettings } from '../../base/settings.ts';

/** Connect/bootstrap timeout of the SDK, ms. */
export const COUCHBASE_CONNECT_TIMEOUT_MS = 3000;
/** Query timeout, ms. */
export const COUCHBASE_QUERY_TIMEOUT_MS = 10_000;

/** The cluster of the runner's environment, or undefined when `COUCHBASE_CLUSTER` is unset. */
export function couchbaseFromEnv(env: NodeJS.ProcessEnv = process.env): CouchbaseSettings | undefined {
  if (!env['COUCHBASE_CLUSTER']) return undefined;
  return {
    cluster: env['COUCHBASE_CLUSTER'],
    user: env['COUCHBASE_USER'] || 'admin',
    password: env['COUCHBASE_PWD'] ?? '',
    bucket: env['COUCHBASE_BUCKET'] || 'wasm-data',
  };
}

interface ClusterLike {
  query(statement: string): Promise<{ rows: unknown[] }>;
  bucket(name: string): unknown;
  close(): Promise<void>;
}

const clusters = new Map<string, Promise<ClusterLike>>();

function connect(s: CouchbaseSettings): Promise<ClusterLike> {
  const id = `${s.cluster}\n${s.user}\n${s.bucket}`;
  let p = clusters.get(id);
  if (!p) {
    p = (async () => {
      const couchbase = await import('couchbase');
      const cluster = (await couchbase.connect(s.cluster, {
        username: s.user,
        password: s.password,
        timeouts: { connectTimeout: COUCHBASE_CONNECT_TIMEOUT_MS, bootstrapTimeout: COUCHBASE_CONNECT_TIMEOUT_MS, queryTimeout: COUCHBASE_QUERY_TIMEOUT_MS },
      })) as unknown as ClusterLike;
      cluster.bucket(s.bucket); // opened as Go Capsule did (N1QL names its keyspaces itself)
      return cluster;
    })();
    clusters.set(id, p);
    p.catch(() => clusters.delete(id)); // not kept: the next query reconnects
  }
  return p;
}

/**
 * Runs a N1QL query.
 * @returns the rows
 * @throws Error `couchbase is not configured` without settings; `couchbase: <SDK error>` otherwise
 */
export async function couchbaseQuery(settings: CouchbaseSettings | undefined, statement: string): Promise<unknown[]> {
  if (!settings) throw new Error('couchbase is not configured');
  let cluster: ClusterLike;
  try {
    cluster = await connect(settings);
  } catch (e) {
    throw new Error(`couchbase: cannot connect to ${settings.cluster} as ${settings.user}: ${describe(e)}`);
  }
  try {
    const r = await cluster.query(statement);
    return r.rows;
  } catch (e) {
    throw new Error(`couchbase: ${describe(e)}`);
  }
}

function describe(e: unknown): string {
  const err = e as { message?: string; cause?: { message?: string } };
  const cause = err?.cause?.message;
  return (err?.message ?? String(e)) + (cause && cause !== err?.message ? ` (${cause})` : '');
}

/** Closes every cluster connection (tests, embedders). */
export async function closeCouchbaseClusters(): Promise<void> {
  const all = [...clusters.values()];
  clusters.clear();
  await Promise.all(all.map((p) => p.then((c) => c.close(), () => undefined)));
}
