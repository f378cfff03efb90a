/**
 * The module registry of the FaaS kit (`capsule registry`, bin `capsule-registry`; faas-api.md §2
 * and §9.5, faas-cluster.md §1.7): modules uploaded as multipart forms under
 * `<files>/<org>/<module>/<tag>/`, downloaded by URL with their SHA-256 in `Digest` and
 * `X-Capsule-Sha256`. Uploads need CAPSULE_REGISTRY_ADMIN_TOKEN when it is set (§9.1);
 * downloads, info and the list are open.
 */
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../../observability/logger.ts';
import { createServiceApp, listenService, type RunningService, type TlsFiles } from '../shared/service.ts';
import { registryRoutes } from './api.ts';
import { FileModuleStore } from './fs-store.ts';
import type { ModuleStore } from './store.ts';

export type { ModuleStore, StagedModule, StoredFile } from './store.ts';
export type { ModuleRef } from './names.ts';
export { FileModuleStore } from './fs-store.ts';

/** Default upload cap: 64 MiB. */
export const DEFAULT_MAX_MODULE_SIZE = 64 * 1024 * 1024;

/** Options of {@link startRegistry}. */
export interface RegistryOptions {
  /** Root directory of the modules (`--files`, created when missing); unused with `store`. */
  files: string;
  /** Another store than the files under `files` (the NATS Object Store: nats-store.ts). */
  store?: ModuleStore;
  host: string;
  /** 0 = a free port. */
  port: number;
  tls?: TlsFiles;
  logger: Logger;
  /** Upload token (CAPSULE_REGISTRY_ADMIN_TOKEN); undefined or empty = loopback-only uploads. */
  adminToken?: string;
  /** Accept uploads from any address when no token is set (`--insecure-admin`). */
  insecureAdmin?: boolean;
  /** Largest module accepted, bytes (default {@link DEFAULT_MAX_MODULE_SIZE}); larger → 413. */
  maxModuleSize?: number;
}

/**
 * Creates the root directory and starts serving.
 * @throws Error when the root cannot be created or the port cannot be listened on
 */
export async function startRegistry(o: RegistryOptions): Promise<RunningService> {
  let store = o.store;
  if (!store) {
    const files = new FileModuleStore(o.files);
    await files.init();
    store = files;
  }
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'capsule_' });
  const counters = {
    uploads: new Counter({ name: 'capsule_registry_uploads_total', help: 'Module uploads, by outcome (ok, refused, error)', labelNames: ['outcome'], registers: [registry] }),
    downloads: new Counter({ name: 'capsule_registry_downloads_total', help: 'Files served by the registry', registers: [registry] }),
  };
  const app = createServiceApp({ service: 'registry', logger: o.logger, tls: o.tls, metrics: registry });
  await registryRoutes(app, {
    store, counters, logger: o.logger,
    maxModuleSize: o.maxModuleSize ?? DEFAULT_MAX_MODULE_SIZE,
    admin: { service: 'registry', header: 'CAPSULE_REGISTRY_ADMIN_TOKEN', token: o.adminToken, insecureAdmin: o.insecureAdmin },
  });
  const running = await listenService(app, { host: o.host, port: o.port, tls: o.tls });
  o.logger.info({ store: store instanceof FileModuleStore ? store.root : 'nats', url: running.url }, 'registry ready');
  return running;
}
