/**
 * Main-thread services: state shared by every worker thread (the memory cache, broker
 * connections, Redis clients). Capabilities declare them; the worker pool hosts them and routes an
 * async host function's request to the named service with the calling module.
 */
import type { Detection } from './kinds.ts';
import type { FunctionSettings } from './settings.ts';

/** What a service learns of the module whose host function called it. */
export interface ServiceCallerModule {
  readonly settings: FunctionSettings;
  readonly module: { readonly name: string; readonly detection: Detection };
}

/**
 * Answers one request of a guest's async host function. May return a Promise; a rejection or a
 * throw reaches the host function as a failure with the error's message.
 */
export type ServiceHandler = (request: unknown, caller: ServiceCallerModule) => unknown;

/** Where services are registered (the engine's worker pool implements it). */
export interface ServiceHost {
  /** Registers (or replaces) the handler of service `name`. */
  provide(name: string, handler: ServiceHandler): void;
}
