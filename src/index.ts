/**
 * Capsule host SDK: embed the runner in your own Node.js program. The `capsule` CLI and its
 * servers are thin layers over these exports.
 *
 * ```ts
 * import { CapsuleFunction } from 'capsule-runner';
 * const fn = await CapsuleFunction.load({ path: 'hello.wasm' }, { timeoutMs: 5000 });
 * const { output } = await fn.invoke({ type: 'cli', params: new TextEncoder().encode('Bob'), args: [] });
 * await fn.close();
 * ```
 */

// Engine: load, validate, run
export { CapsuleFunction, DEFAULTS, type FunctionOptions } from './engine/function.ts';
export { WorkerPool, type PoolOptions, type CallResult } from './engine/pool.ts';
export { type ServiceHandler } from './base/services.ts';
export { loadModule, compileModule, fetchModule, digestOf, type LoadedModule, type LoadOptions, type UrlSource } from './engine/load.ts';
export { detectKind } from './engine/detect.ts';
export type { ModuleKind, Detection } from './base/kinds.ts';
export { KINDS as MODULE_KINDS } from './abi/index.ts';
export { CapsuleError, STATUS_BY_CODE, type ErrorCode } from './base/errors.ts';
export type {
  InvocationInput, InvocationOutput, InvocationMeta, HttpRequestInput, HttpResponseOutput, CliInput, CliOutput,
  LifecycleInput, LifecycleOutput, MessageInput, MessageOutput,
} from './base/invocation.ts';
export type { CallLogs } from './engine/instance.ts';
export type { FunctionSettings } from './base/settings.ts';

// Triggers
export { serveHttp, type HttpTriggerOptions, type RunningHttpTrigger, type RunningFunctionServer } from './triggers/http/server.ts';
export type { HotReloadOptions } from './triggers/http/reload.ts';
export { serveHttpThreads, lifecyclePool, type HttpThreadsOptions, type RunningHttpThreads } from './triggers/http/threads.ts';
export { SwappableFunction } from './functions/swap.ts';
export { serveFunctions, type MultiServerOptions } from './triggers/http/multi.ts';
export { serveNats, type NatsTriggerOptions } from './triggers/nats/index.ts';
export { serveMqtt, type MqttTriggerOptions } from './triggers/mqtt/index.ts';
export { runCli, type CliRunOptions } from './triggers/cli/run.ts';

// Capabilities (to see what the host lends guests)
export { CAPABILITIES, findHostFunction } from './capabilities/index.ts';
export type { Capability, HostFunction, HostCallContext, HostResult } from './capabilities/types.ts';

// Host functions an embedder defines (`FunctionOptions.hostFunctions`): Extism extism:host/user, Capsule env
export type { UserHostFunctions, PlainHostFunction, CapsuleHostFunctionDef, HostFunctionContext, HostBlock } from './abi/user-functions.ts';

// Settings helpers
export { parseDuration, parseSize } from './base/units.ts';
export { buildGuestEnv, parseEnvFile, type GuestEnvOptions } from './functions/guest-env.ts';
export { parseDirGrant } from './wasi/mounts.ts';
export { type Mount } from './base/settings.ts';
export { createLogger, type Logger, type LogLevel } from './observability/logger.ts';
export { CAPSULE_VERSION } from './base/version.ts';
