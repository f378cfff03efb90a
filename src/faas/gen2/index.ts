/**
 * The gen-2 FaaS main process (`capsule faas-mode`, bin `capsule-http --faas`; faas-api.md §5–§6,
 * §9.7): the admin routes and call routes of ./api.ts over a {@link FaasState}, plus `ALL /*` for
 * the main module (`--wasm`) or, without one, the `index.page` function or the version text.
 * Per-revision metrics (the node's metric set) at `/capsule/metrics`. Library entry:
 * {@link startFaas}; the node mounts {@link faasRoutes} on its own app instead.
 */
import { CAPSULE_VERSION } from '../../base/version.ts';
import type { Logger } from '../../observability/logger.ts';
import { createServiceApp, listenService, type RunningService, type TlsFiles } from '../shared/service.ts';
import { faasRoutes } from './api.ts';
import { FaasState } from './state.ts';
import { InProcessRunner, inProcessSpec } from './runners.ts';
import { WorkerPool } from '../../engine/pool.ts';
import { NodeMetrics } from '../node/metrics.ts';

export { FaasState, type StartTask, type FaasStateOptions } from './state.ts';
export { faasRoutes, type FaasRoutesOptions } from './api.ts';
export { ProcessTable, Status, statusLabel, recordKey, type ProcessRecord } from './records.ts';

/** Options of {@link startFaas}. */
export interface FaasOptions {
  host: string;
  /** 0 = a free port. */
  port: number;
  tls?: TlsFiles;
  logger: Logger;
  /** `CAPSULE_FAAS_TOKEN`; undefined or empty = admin routes from loopback only (§9.1). */
  token?: string;
  /** Accept admin calls from any address when no token is set (`--insecure-admin`). */
  insecureAdmin?: boolean;
  /** `CAPSULE_DOMAIN`: base URL replicas are reached at (default `http://127.0.0.1`). */
  domain?: string;
  /** `CAPSULE_PROCESSES_STORAGE`: records saved there and read back at start. */
  storage?: string;
  /** Run every revision as a child process (`--process`). */
  processes?: boolean;
  /** Worker threads of in-process revisions (default: CPU cores). */
  workers?: number;
  /** The main module, Go's `--faas --wasm=…` (`-wasm= -url= -authHeaderName= …` as child arguments, `args[0]` empty). */
  mainArgs?: string[];
  /**
   * Go's child side: when set, `GET <parentEndpoint>/notify/<moduleName>/<moduleRevision>` is sent
   * on shutdown (a FaaS main process started by another one).
   */
  notify?: { parentEndpoint: string; moduleName: string; moduleRevision: string };
}

/** A running FaaS main process. */
export interface RunningFaas extends RunningService {
  readonly state: FaasState;
}

/**
 * Starts the FaaS main process: reads saved records, starts the main module if any, listens.
 * Closing it stops every revision (children get SIGINT) and notifies the parent if asked.
 * @throws Error when the records file is unreadable, the main module cannot load or the port cannot be listened on
 */
export async function startFaas(o: FaasOptions): Promise<RunningFaas> {
  const domain = (o.domain || 'http://127.0.0.1').replace(/\/+$/, '');
  const metrics = new NodeMetrics();
  const state = new FaasState({
    logger: o.logger, storage: o.storage, processes: o.processes, workers: o.workers,
    onColdStart: (fn, rev, phase, seconds) => metrics.coldStart.observe({ fn, rev, phase }, seconds),
  });
  let main: InProcessRunner | undefined;
  let pool: WorkerPool | undefined;
  try {
    if (o.mainArgs) {
      pool = new WorkerPool({ workers: o.workers, warm: false }); // idle functions stay cheap (engine/pool.ts `warm`)
      main = new InProcessRunner(inProcessSpec(o.mainArgs, []), 0, { pool, logger: o.logger, onExit: () => {} });
      await main.ensureRunning();
    }
    const app = createServiceApp({ service: 'faas', logger: o.logger, tls: o.tls, metrics: metrics.registry });
    await faasRoutes(app, {
      state, logger: o.logger, domain, metrics,
      policy: { service: 'faas', header: 'CAPSULE_FAAS_TOKEN', token: o.token, insecureAdmin: o.insecureAdmin },
      root: main ? { type: 'module', url: `http://127.0.0.1:${main.port}` } : { type: 'index', text: `Capsule ${CAPSULE_VERSION}[faas]` },
    });
    const running = await listenService(app, { host: o.host, port: o.port, tls: o.tls });
    o.logger.info({ url: running.url, storage: o.storage, processes: o.processes === true }, 'faas mode activated');
    let closing: Promise<void> | undefined;
    const close = async () => {
      await running.close();
      await state.close();
      await main?.stop();
      await pool?.close();
      if (o.notify) await notifyParent(o.notify, o.logger);
    };
    return { url: running.url, port: running.port, app, state, close: () => (closing ??= close()) };
  } catch (e) {
    await state.close();
    await main?.stop();
    await pool?.close();
    throw e;
  }
}

/** Tells the parent FaaS process this one is leaving (Go's shutdown notification; errors are logged). */
async function notifyParent(n: NonNullable<FaasOptions['notify']>, logger: Logger): Promise<void> {
  const url = `${n.parentEndpoint.replace(/\/+$/, '')}/notify/${encodeURIComponent(n.moduleName)}/${encodeURIComponent(n.moduleRevision || 'default')}`;
  try {
    await fetch(url, { signal: AbortSignal.timeout(2000) });
  } catch (e) {
    logger.warn({ url, err: (e as Error).message }, 'cannot notify the parent FaaS process');
  }
}
