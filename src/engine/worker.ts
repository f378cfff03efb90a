/**
 * Worker thread entry: holds the modules it was sent and runs calls one at a time, in the order
 * they arrive (the pool may send several ahead: pipelining). Before it starts a call it claims
 * it in shared memory (the pool may have taken it back to run it elsewhere), and a call whose
 * deadline has passed is answered as expired without running. The main thread kills the worker
 * when a call overruns its deadline.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import { IdleTrim, MemoryPool } from './memory-pool.ts';
import { loadFailure, ModuleInstances } from './instance.ts';
import { packDone, PendingReplies, unpackCall, type ToWorker, type FromWorker, type WorkerCall, type CallDone } from './protocol.ts';

const port = parentPort!;
/**
 * Shared with the pool: int32 at byte 0 = id of the running call (0 = idle); int32 at byte 4 =
 * seq of the last call started (see `claim`); float64 at byte 8 = start of the running call (ms,
 * Date.now clock); int32 at byte 16 = this thread's kernel id on Linux (0 elsewhere), for the
 * pool to lower the priority of a thread stuck in a long call.
 */
const slot = workerData.slot as SharedArrayBuffer;
const running32 = new Int32Array(slot, 0, 1);
const claimed32 = new Int32Array(slot, 4, 1);
const started64 = new Float64Array(slot, 8, 1);
Atomics.store(new Int32Array(slot, 16, 1), 0, threadId());
const pool = new MemoryPool();
const services = new PendingReplies();

/** Asks a main-thread service (see WorkerPool.provide); the guest is suspended meanwhile (JSPI). */
function callService(moduleId: number, name: string, request: unknown): Promise<unknown> {
  return services.send((id) => port.postMessage({ t: 'service', id, moduleId, name, request } satisfies FromWorker));
}
const modules = new Map<number, ModuleInstances | { error: { code: 'BAD_MODULE' | 'MEMORY' | 'INTERNAL'; message: string } }>();
const queue: WorkerCall[] = [];
/** Modules to warm up (`ModuleInstances.warm`), before the calls queued (drain runs them first). */
const warmups: number[] = [];
/** Results not posted yet: they leave before the next guest runs (it may never return) or when the queue is empty. */
const outbox: CallDone[] = [];
let running = false;
/** Idle after calls, the worker gives back what a burst left (its pooled memories, its grown heap). */
const trim = new IdleTrim(pool);

/** This thread's kernel id (Linux: /proc/thread-self → "<pid>/task/<tid>"), or 0. */
function threadId(): number {
  try {
    return Number(readlinkSync('/proc/thread-self').split('/').pop()) || 0;
  } catch {
    return 0;
  }
}

/**
 * Whether this worker may start `call`: the last call started must be the one sent just before
 * it. The pool sets that counter ahead when it takes unstarted calls back (they are then run
 * elsewhere), so the compare-and-swap fails for them, and for nothing else.
 */
function claim(call: WorkerCall): boolean {
  const before = (call.seq - 1) | 0;
  return Atomics.compareExchange(claimed32, 0, before, call.seq) === before;
}

function flush(): void {
  if (outbox.length === 0) return;
  port.postMessage({ t: 'done', results: outbox.splice(0).map(packDone) } satisfies FromWorker);
}

/**
 * Warms a module up as a call runs: the pool sees it running (the negated module id in the
 * running slot, with its start time), and its watchdog stops a warm-up that never ends (a looping
 * initialisation) as it stops a call.
 */
async function warm(moduleId: number): Promise<void> {
  const rt = modules.get(moduleId);
  if (rt && !('error' in rt)) {
    flush();
    started64[0] = Date.now();
    Atomics.store(running32, 0, -moduleId);
    await rt.warm();
    Atomics.store(running32, 0, 0);
  }
  port.postMessage({ t: 'warm', moduleId } satisfies FromWorker);
}

async function drain(): Promise<void> {
  if (running) return;
  running = true;
  trim.busy();
  while (queue.length > 0 || warmups.length > 0) {
    if (warmups.length > 0) {
      await warm(warmups.shift()!);
      continue;
    }
    const msg = queue.shift()!;
    if (!claim(msg)) continue;
    if (Date.now() >= msg.deadline) {
      outbox.push({ id: msg.id, expired: true });
      continue;
    }
    const rt = modules.get(msg.moduleId);
    if (!rt) {
      outbox.push({ id: msg.id, error: { code: 'INTERNAL', message: `module ${msg.moduleId} is not loaded in this worker` } });
      continue;
    }
    if ('error' in rt) {
      outbox.push({ id: msg.id, error: rt.error });
      continue;
    }
    flush();
    started64[0] = Date.now();
    Atomics.store(running32, 0, msg.id);
    const r = rt.runSync(msg.input, msg.meta) ?? await rt.run(msg.input, msg.meta);
    Atomics.store(running32, 0, 0);
    outbox.push({ id: msg.id, ...r });
  }
  running = false;
  flush();
  trim.idle();
}

port.postMessage({ t: 'ready' } satisfies FromWorker);
port.on('message', (msg: ToWorker) => {
  switch (msg.t) {
    case 'load':
      try {
        modules.set(msg.moduleId, new ModuleInstances(msg.module, pool, (name, request) => callService(msg.moduleId, name, request)));
      } catch (e) {
        modules.set(msg.moduleId, { error: loadFailure(e) });
      }
      if (msg.warm) {
        warmups.push(msg.moduleId);
        void drain();
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
    case 'service-reply':
      services.settle(msg);
      break;
  }
});
