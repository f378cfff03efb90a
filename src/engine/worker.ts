/**
 * Worker thread entry: holds the modules it was sent and runs calls one at a time, in the order
 * they arrive (the pool may send several ahead: pipelining). The main thread kills the worker
 * when a call overruns its deadline.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MemoryPool } from './memory-pool.ts';
import { ModuleRuntime } from './runtime.ts';
import { packDone, unpackCall, type ToWorker, type FromWorker, type WorkerCall, type CallDone } from './protocol.ts';

const port = parentPort!;
/** Shared with the pool: [0] = id of the running call (0 = idle); float64 at byte 8 = its start (ms, Date.now clock). */
const slot = workerData.slot as SharedArrayBuffer;
const running32 = new Int32Array(slot, 0, 1);
const started64 = new Float64Array(slot, 8, 1);
const pool = new MemoryPool();
const services = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
let nextService = 1;

/** Asks a main-thread service (see WorkerPool.provide); the guest is suspended meanwhile (JSPI). */
function callService(moduleId: number, name: string, request: unknown): Promise<unknown> {
  const id = nextService++;
  return new Promise((resolve, reject) => {
    services.set(id, { resolve, reject });
    port.postMessage({ t: 'service', id, moduleId, name, request } satisfies FromWorker);
  });
}
const modules = new Map<number, ModuleRuntime | { error: { code: 'BAD_MODULE' | 'MEMORY' | 'INTERNAL'; message: string } }>();
const queue: WorkerCall[] = [];
const outbox: CallDone[] = [];
/** Results held back while more calls wait, to save thread wake-ups. */
const BATCH = 4;
let running = false;

function post(done: CallDone): void {
  outbox.push(done);
  if (queue.length === 0 || outbox.length >= BATCH) flush();
}

function flush(): void {
  if (outbox.length === 0) return;
  port.postMessage({ t: 'done', results: outbox.splice(0).map(packDone) } satisfies FromWorker);
}

async function drain(): Promise<void> {
  if (running) return;
  running = true;
  while (queue.length > 0) {
    const msg = queue.shift()!;
    const rt = modules.get(msg.moduleId);
    if (!rt) {
      post({ id: msg.id, error: { code: 'INTERNAL', message: `module ${msg.moduleId} is not loaded in this worker` } });
      continue;
    }
    if ('error' in rt) {
      post({ id: msg.id, error: rt.error });
      continue;
    }
    started64[0] = Date.now();
    Atomics.store(running32, 0, msg.id);
    const r = await rt.run(msg.input, msg.meta);
    Atomics.store(running32, 0, 0);
    post({ id: msg.id, ...r });
  }
  running = false;
  flush();
}

port.on('message', (msg: ToWorker) => {
  switch (msg.t) {
    case 'load':
      try {
        modules.set(msg.moduleId, new ModuleRuntime(msg.module, pool, (name, request) => callService(msg.moduleId, name, request)));
      } catch (e) {
        const err = e as { code?: string; message: string };
        modules.set(msg.moduleId, { error: { code: err.code === 'MEMORY' ? 'MEMORY' : err.code === 'BAD_MODULE' ? 'BAD_MODULE' : 'INTERNAL', message: err.message } });
      }
      break;
    case 'unload': {
      const rt = modules.get(msg.moduleId);
      if (rt && !('error' in rt)) rt.dispose();
      modules.delete(msg.moduleId);
      break;
    }
    case 'calls':
      for (const c of msg.calls) queue.push(unpackCall(c));
      void drain();
      break;
    case 'service-reply': {
      const pending = services.get(msg.id);
      services.delete(msg.id);
      if (msg.error !== undefined) pending?.reject(new Error(msg.error));
      else pending?.resolve(msg.value);
      break;
    }
  }
});
