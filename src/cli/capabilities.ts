/**
 * CLI flags of the host capabilities (commander wiring) and their conversion to
 * `CapabilitySettings`. Grants of files (`--dir`) and hosts (`--allowed-hosts`) and the
 * environment flags are declared with the other module flags in main.ts.
 */
import { Option, type Command } from 'commander';
import { parseDuration, parseSize } from '../base/units.ts';
import { CapsuleError } from '../base/errors.ts';
import type { CapabilitySettings } from '../base/settings.ts';
import { parseAllowedHosts } from '../capabilities/http/allow-list.ts';
import { parseRedisUri } from '../capabilities/redis/config.ts';
import { couchbaseFromEnv } from '../capabilities/couchbase/client.ts';

/** The parsed values of the capability flags (strings as commander keeps them). */
export interface CapabilityFlags {
  config?: string;
  allowedHosts: string[];
  httpTimeout: string;
  maxResponse: string;
  cacheMaxEntries: string;
  cacheMaxBytes: string;
  kv?: 'memory' | 'redis';
  redisUri?: string;
  couchbaseCluster?: string;
  couchbaseUser?: string;
  couchbaseBucket?: string;
}

/** Adds `--config` and the capability flags to a command that loads a module. */
export function capabilityOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML config file (keys: the long flag names in camelCase); default: <module>.capsule.yaml beside the module')
    .option('--http-timeout <duration>', 'outbound HTTP: deadline of one exchange, redirects and body included', '10s')
    .option('--max-response <size>', 'outbound HTTP: largest response body accepted', '10MiB')
    .option('--cache-max-entries <n>', 'memory cache: entries per function', '10000')
    .option('--cache-max-bytes <size>', 'memory cache: bytes of keys and values per function', '64MiB')
    .addOption(new Option('--kv <backend>', 'backend of hostKvIncrement (default: redis when a Redis server is configured, else memory)').choices(['memory', 'redis']))
    .option('--redis-uri <url>', 'Redis server (redis://[:password@]host:port[/db]; default: REDIS_URI, else REDIS_ADDR/REDIS_PWD/REDIS_DEFAULTDB)')
    .option('--couchbase-cluster <url>', 'CouchBase connection string (default: COUCHBASE_CLUSTER; unset = not configured); password from COUCHBASE_PWD')
    .option('--couchbase-user <name>', 'CouchBase user (default: COUCHBASE_USER, else admin)')
    .option('--couchbase-bucket <name>', 'CouchBase bucket (default: COUCHBASE_BUCKET, else wasm-data)');
}

function count(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new CapsuleError('USAGE', `${name}: "${text}" must be a whole number`);
  return n;
}

/**
 * Converts the capability flags to settings (checks them all).
 * @param env the runner's environment (CouchBase defaults)
 * @throws CapsuleError USAGE naming the flag with a bad value
 */
export function capabilitySettings(f: CapabilityFlags, env: NodeJS.ProcessEnv = process.env): CapabilitySettings {
  parseAllowedHosts(f.allowedHosts); // refuse a bad entry before anything runs
  const s: CapabilitySettings = {
    http: { timeoutMs: parseDuration(f.httpTimeout, '--http-timeout'), maxResponseBytes: parseSize(f.maxResponse, '--max-response') },
    cache: { maxEntries: count(f.cacheMaxEntries, '--cache-max-entries'), maxBytes: parseSize(f.cacheMaxBytes, '--cache-max-bytes') },
  };
  if (f.kv) s.kv = f.kv;
  if (f.redisUri) s.redis = parseRedisUri(f.redisUri);
  if (f.couchbaseCluster || f.couchbaseUser || f.couchbaseBucket) {
    const cluster = f.couchbaseCluster ?? couchbaseFromEnv(env)?.cluster;
    if (!cluster) throw new CapsuleError('USAGE', '--couchbase-user / --couchbase-bucket need a cluster: --couchbase-cluster or COUCHBASE_CLUSTER');
    s.couchbase = {
      cluster,
      user: f.couchbaseUser ?? (env['COUCHBASE_USER'] || 'admin'),
      password: env['COUCHBASE_PWD'] ?? '',
      bucket: f.couchbaseBucket ?? (env['COUCHBASE_BUCKET'] || 'wasm-data'),
    };
  }
  return s;
}
