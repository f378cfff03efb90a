/** Messages between the pool (main thread) and its workers. */
import type { InvocationInput, InvocationMeta, InvocationOutput } from './invocation.ts';
import type { CallError, CallLogs, WorkerModule } from './runtime.ts';

export type ToWorker =
  | { t: 'load'; moduleId: number; module: WorkerModule }
  | { t: 'unload'; moduleId: number }
  | { t: 'call'; id: number; moduleId: number; input: InvocationInput; meta: InvocationMeta };

export type FromWorker =
  | { t: 'done'; id: number; output?: InvocationOutput; error?: CallError; logs?: CallLogs };
