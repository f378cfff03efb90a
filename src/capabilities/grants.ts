/**
 * What each grant of `HostFunction.grant` means and how a user gives it, for `capsule inspect`
 * and messages. A host function whose grant is missing returns a failure naming it (files: the
 * `--dir` to add; http: the host for `--allowed-hosts`; redis/couchbase: the server settings).
 */

/** A grant: what it lends, and the flag / config key / environment that gives it. */
export interface GrantInfo {
  readonly lends: string;
  readonly how: string;
}

export const GRANTS: Readonly<Record<string, GrantInfo>> = {
  files: { lends: 'files inside granted directories', how: '--dir HOST[:GUEST][:ro] (config dir)' },
  http: { lends: 'outbound HTTP to allowed hosts', how: '--allowed-hosts HOST,… (config allowedHosts)' },
  redis: { lends: 'a Redis server', how: '--redis-uri URL (config redisUri), or REDIS_URI / REDIS_ADDR; default localhost:6379' },
  couchbase: { lends: 'a CouchBase cluster', how: '--couchbase-cluster URL (config couchbaseCluster) or COUCHBASE_CLUSTER; password in COUCHBASE_PWD' },
};
