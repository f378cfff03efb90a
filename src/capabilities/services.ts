/**
 * Main-thread services of the capabilities (state shared by every worker: broker connections,
 * …). `CapsuleFunction` registers them on its pool, so async host functions find them in every
 * mode (`run`, `serve`, `nats`, `mqtt`). Adding a service = one line here.
 */
import type { WorkerPool } from '../engine/pool.ts';
import { natsHub } from './nats/service.ts';
import { mqttHub } from './mqtt/service.ts';

/** Registers every capability service on `pool` (idempotent). */
export function provideCapabilityServices(pool: WorkerPool): void {
  natsHub(pool);
  mqttHub(pool);
}
