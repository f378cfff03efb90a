/**
 * Main-thread services of the capabilities (state shared by every worker: broker connections,
 * …). `CapsuleFunction` registers them on its pool, so async host functions find them in every
 * mode (`run`, `serve`, `nats`, `mqtt`). Adding a service = one line here.
 */
import type { ServiceHost } from '../base/services.ts';
import { natsHub } from './nats/service.ts';
import { mqttHub } from './mqtt/service.ts';
import { cacheService } from './cache/index.ts';
import { kvService } from './kv/index.ts';
import { redisService } from './redis/index.ts';
import { couchbaseService } from './couchbase/index.ts';

/** Registers every capability service on `pool` (idempotent). */
export function provideCapabilityServices(pool: ServiceHost): void {
  natsHub(pool);
  mqttHub(pool);
  pool.provide('cache', cacheService); // memory cache, one namespace per function
  pool.provide('kv', kvService); // hostKvIncrement: memory cache or Redis INCRBY
  pool.provide('redis', redisService); // one lazily created client per server
  pool.provide('couchbase', couchbaseService); // one cluster connection per cluster/user/bucket
}
