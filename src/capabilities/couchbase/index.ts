/**
 * Capability `couchbase`: N1QL queries (capsule-abi.md §4.7; gen 2 per conventions.md §5).
 *
 * `hostCouchBaseQuery(query)`: gen 2 → `S<JSON array of rows>` / `F<err>`; gen 1 → the rows as a
 * JSON array text, `empty` when there are none / `[ERR][0]:<err>`. Without a configured cluster:
 * `Fcouchbase is not configured` / `[ERR][0]:couchbase is not configured`. Connection and query
 * failures are failure results, never a crash (§7.3). The connection lives in the main thread
 * (service `couchbase`, client.ts).
 */
import { ok, text, type Capability } from '../types.ts';
import type { ServiceCallerModule } from '../../base/services.ts';
import { callService } from '../service-calls.ts';
import { couchbaseFromEnv, couchbaseQuery } from './client.ts';

/** Service `couchbase` (main thread): `{ query }` → rows. */
export function couchbaseService(request: unknown, caller: ServiceCallerModule): Promise<unknown[]> {
  return couchbaseQuery(caller.settings.couchbase ?? couchbaseFromEnv(), (request as { query: string }).query);
}

export const couchbase: Capability = {
  name: 'couchbase',
  grant: { lends: 'a CouchBase cluster', how: '--couchbase-cluster URL (config couchbaseCluster) or COUCHBASE_CLUSTER; password in COUCHBASE_PWD' },
  provide: (host) => host.provide('couchbase', couchbaseService), // one cluster connection per cluster/user/bucket
  functions: [
    {
      name: 'hostCouchBaseQuery', generations: [1, 2], params: ['s'], returns: true, async: true, grant: true,
      run(ctx, [query]) {
        return callService<unknown[]>(ctx, 'couchbase', { query: text(query) }, (rows) => {
          if (ctx.generation === 1 && rows.length === 0) return ok('empty');
          return ok(JSON.stringify(rows));
        });
      },
    },
  ],
};
