/**
 * Settings of the CouchBase capability (capsule-abi.md §4.7): the cluster, user and bucket; the
 * password only ever comes from `COUCHBASE_PWD`. Declared once for every source.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { CapabilitySettingDeclarations, CapabilitySettings, CouchbaseSettings } from '../../base/settings.ts';
import { couchbaseFromEnv } from './client.ts';

type Draft = Partial<{ -readonly [K in keyof CouchbaseSettings]: CouchbaseSettings[K] }>;

/** Sets one field of the cluster being described (completed by `complete`). */
function set(s: CapabilitySettings, field: keyof Draft, value: string): void {
  s.couchbase = { ...(s.couchbase as Draft), [field]: value } as CouchbaseSettings;
}

/** `couchbaseCluster`, `couchbaseUser`, `couchbaseBucket`; completed from `COUCHBASE_*` variables. */
export const couchbaseSettings: CapabilitySettingDeclarations = {
  settings: [
    {
      key: 'couchbaseCluster', flag: '--couchbase-cluster <url>',
      description: 'CouchBase connection string (default: COUCHBASE_CLUSTER; unset = not configured); password from COUCHBASE_PWD',
      apply: (s, v) => set(s, 'cluster', v),
    },
    {
      key: 'couchbaseUser', flag: '--couchbase-user <name>',
      description: 'CouchBase user (default: COUCHBASE_USER, else admin)',
      apply: (s, v) => set(s, 'user', v),
    },
    {
      key: 'couchbaseBucket', flag: '--couchbase-bucket <name>',
      description: 'CouchBase bucket (default: COUCHBASE_BUCKET, else wasm-data)',
      apply: (s, v) => set(s, 'bucket', v),
    },
  ],
  complete(s, env, names) {
    const given = (s.couchbase ?? {}) as Draft;
    const cluster = given.cluster ?? couchbaseFromEnv(env)?.cluster;
    if (!cluster) {
      const what = ['couchbaseUser', 'couchbaseBucket'].map((k) => names.get(k)).filter(Boolean);
      throw new CapsuleError('USAGE', `${what.join(' / ')} ${what.length > 1 ? 'need' : 'needs'} a cluster (couchbaseCluster, --couchbase-cluster or COUCHBASE_CLUSTER)`);
    }
    s.couchbase = {
      cluster,
      user: given.user ?? (env['COUCHBASE_USER'] || 'admin'),
      password: env['COUCHBASE_PWD'] ?? '',
      bucket: given.bucket ?? (env['COUCHBASE_BUCKET'] || 'wasm-data'),
    };
  },
};
