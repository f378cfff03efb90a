/** Messages between the pool (main thread) and its workers. */
import type { InvocationInput, InvocationMeta, InvocationOutput } from './invocation.ts';
import type { CallError, CallLogs, WorkerModule } from './runtime.ts';

export type ToWorker =
  | { t: 'load'; moduleId: number; module: WorkerModule }
  | { t: 'unload'; moduleId: number }
  | { t: 'calls'; calls: WorkerCall[] }
  | { t: 'service-reply'; id: number; value?: unknown; error?: string };

/** One call in a batch (calls made in the same event-loop turn travel in one message). */
export interface WorkerCall {
  id: number;
  moduleId: number;
  input: InvocationInput;
  meta: InvocationMeta;
}

/** Results travel in batches too (flushed when the worker's queue is empty or every few calls). */
export type FromWorker =
  | { t: 'done'; results: CallDone[] }
  | { t: 'service'; id: number; moduleId: number; name: string; request: unknown };

export interface CallDone {
  id: number;
  output?: InvocationOutput;
  error?: CallError;
  logs?: CallLogs;
}
