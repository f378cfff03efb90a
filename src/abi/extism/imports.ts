/**
 * The functions of `extism:host/env` (extism-abi.md §3), on the kernel of the calling plugin:
 * block memory, input/output, errors, config, vars, logs and outbound HTTP (§7, through
 * Capsule's allow-list and HTTP limits).
 */
import type { ValType } from '../../wasm/binary.ts';
import type { EnvImport, GuestOptions } from '../types.ts';
import type { CallState } from '../host-imports.ts';
import type { JspiApi } from '../guest.ts';
import { ExtismFailure, Kernel } from './kernel.ts';
import { policyOf } from '../../capabilities/http/index.ts';
import { OutboundError, outboundFetch, refusal } from '../../capabilities/http/client.ts';

/** `get_log_level` values (§3) by level name. */
export const EXTISM_LOG_LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, off: 0x7fffffff } as const;
export type ExtismLogLevel = keyof typeof EXTISM_LOG_LEVELS;

/** Per-plugin, per-call settings the ABI hands the kernel functions. */
export interface KernelState {
  kernel: Kernel;
  logLevel: number;
  /** The WASI options of the plugin's calls, made at its first call (index.ts `prepare`). */
  wasi?: { options: GuestOptions; log?: (text: string) => void };
}

/** Key of the running call's `KernelState` in `HostCallContext.callData` (set by the ABI's invoke). */
export const KERNEL_KEY = 'extism.kernel';

const kernels = new WeakMap<CallState, KernelState>();

/**
 * The kernel of a plugin in this worker thread, made at its first use: the state of its calls
 * (`CallState`, one per module per worker) is what both its imports and its invocations know.
 */
export function kernelStateOf(state: CallState): KernelState {
  let k = kernels.get(state);
  if (!k) kernels.set(state, (k = { kernel: new Kernel(), logLevel: EXTISM_LOG_LEVELS.info, wasi: undefined }));
  return k;
}

/** The plugin's kernel state, looked up at the first host call (one per `CallState`, never replaced). */
const currentKernel = (state: CallState): (() => KernelState) => {
  let ks: KernelState | undefined;
  return () => (ks ??= kernelStateOf(state));
};

const I64: ValType = 'i64';
const I32: ValType = 'i32';
type Fn = (...args: never[]) => unknown;

/** An import that is the export of the same name of the plugin's wasm kernel (kernel-wasm.ts). */
function wasmImport(name: string, params: ValType[], results: ValType[]): EnvImport {
  return { params, results, make: (state) => kernelStateOf(state).kernel.wasm[name] as (...args: number[]) => unknown };
}

/** An import built on the plugin's kernel; `i64` arguments arrive as BigInt. */
function kernelImport(params: ValType[], results: ValType[], body: (k: () => KernelState, state: CallState, name: string) => Fn): EnvImport {
  return { params, results, make: (state, name) => body(currentKernel(state), state, name) as (...args: number[]) => unknown };
}

/** An i64 argument as the unsigned number it stands for (a non-negative one makes no new BigInt). */
const n = (v: bigint): number => Number(v >= 0n ? v : BigInt.asUintN(64, v));
const big = (v: number): bigint => BigInt(v);

function logImport(level: ExtismLogLevel): EnvImport {
  const value = EXTISM_LOG_LEVELS[level];
  const label = level.toUpperCase();
  return kernelImport([I64], [], (k, state, name) => (h: bigint) => {
    const text = k().kernel.take(n(h));
    if (value >= k().logLevel) state.ctx?.log(`[${name}] ${label} ${text}`);
  });
}

/** Reads a JSON request block (§7): url, method, headers (or `header`, as the JS SDK accepts). */
function parseRequest(text: string): { url: string; method: string; headers: [string, string][] } {
  let req: { url?: unknown; method?: unknown; headers?: unknown; header?: unknown };
  try {
    req = JSON.parse(text) as typeof req;
  } catch {
    throw new ExtismFailure(`http_request: the request is not JSON: ${text.slice(0, 200)}`);
  }
  if (typeof req?.url !== 'string') throw new ExtismFailure('http_request: the request has no "url" string');
  const method = typeof req.method === 'string' && req.method ? req.method.toUpperCase() : 'GET';
  const raw = (req.headers ?? req.header ?? {}) as Record<string, unknown>;
  const headers = Object.entries(raw).filter(([, v]) => typeof v === 'string') as [string, string][];
  return { url: req.url, method, headers };
}

/** `http_request` (§7): an async import, so the guest is suspended with JSPI while it runs. */
const httpRequest: EnvImport = { async: true, ...kernelImport([I64, I64], [I64], (k, state) => {
  const run = async (reqH: bigint, bodyH: bigint): Promise<bigint> => {
    const kernel = k().kernel;
    const req = parseRequest(kernel.take(n(reqH)));
    const body = n(bodyH) === 0 ? undefined : kernel.block(n(bodyH)).slice();
    kernel.free(n(bodyH));
    const ctx = state.ctx!;
    const policy = policyOf(ctx);
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      throw new ExtismFailure(`http_request: "${req.url}" is not an absolute URL`);
    }
    const refused = refusal(policy, url);
    if (refused) throw new ExtismFailure(`HTTP request to ${req.url} is not allowed (${refused})`);
    try {
      const res = await outboundFetch({ ...req, body }, policy);
      kernel.httpStatus = res.status;
      kernel.httpHeaders = Object.fromEntries(res.headers);
      return big(kernel.allocBytes(res.body));
    } catch (e) {
      if (e instanceof OutboundError) throw new ExtismFailure(e.message);
      throw e;
    }
  };
  const jspi = WebAssembly as unknown as JspiApi;
  return (typeof jspi.Suspending === 'function' ? new jspi.Suspending(run) : run) as Fn;
}) };

/** Every function of `extism:host/env` (§3), for `Abi.imports`. */
export const EXTISM_ENV: Readonly<Record<string, EnvImport>> = {
  alloc: wasmImport('alloc', [I64], [I64]),
  free: wasmImport('free', [I64], []),
  length: wasmImport('length', [I64], [I64]),
  length_unsafe: wasmImport('length', [I64], [I64]),
  load_u8: wasmImport('load_u8', [I64], [I32]),
  load_u64: wasmImport('load_u64', [I64], [I64]),
  store_u8: wasmImport('store_u8', [I64, I32], []),
  store_u64: wasmImport('store_u64', [I64, I64], []),
  input_length: wasmImport('input_length', [], [I64]),
  input_load_u8: wasmImport('input_load_u8', [I64], [I32]),
  input_load_u64: wasmImport('input_load_u64', [I64], [I64]),
  input_offset: wasmImport('input_offset', [], [I64]),
  input_set: kernelImport([I64, I64], [], (k) => (h: bigint) => { k().kernel.input = n(h); }),
  output_set: kernelImport([I64, I64], [], (k) => (h: bigint, len: bigint) => {
    const out = k().kernel.output;
    out.handle = n(h);
    out.length = n(len);
  }),
  output_length: kernelImport([], [I64], (k) => () => big(k().kernel.output.length)),
  output_offset: kernelImport([], [I64], (k) => () => big(k().kernel.output.handle)),
  error_set: kernelImport([I64], [], (k) => (h: bigint) => { k().kernel.error = n(h); }),
  error_get: kernelImport([], [I64], (k) => () => big(k().kernel.error)),
  reset: kernelImport([], [], (k) => () => k().kernel.reset()),
  memory_bytes: kernelImport([], [I64], (k) => () => big(k().kernel.heldBytes)),
  config_get: kernelImport([I64], [I64], (k, state) => (keyH: bigint) => {
    const value = state.ctx?.env.get(k().kernel.take(n(keyH)));
    return big(value === undefined ? 0 : k().kernel.allocBytes(value));
  }),
  var_get: kernelImport([I64], [I64], (k) => (keyH: bigint) => {
    const value = k().kernel.vars.get(k().kernel.take(n(keyH)));
    return big(value === undefined ? 0 : k().kernel.allocBytes(value));
  }),
  var_set: kernelImport([I64, I64], [], (k) => (keyH: bigint, valH: bigint) => {
    const key = k().kernel.take(n(keyH));
    const value = n(valH) === 0 ? undefined : k().kernel.block(n(valH));
    k().kernel.setVar(key, value);
    k().kernel.free(n(valH));
  }),
  http_request: httpRequest,
  http_status_code: kernelImport([], [I32], (k) => () => k().kernel.httpStatus),
  http_headers: kernelImport([], [I64], (k) => () => {
    const h = k().kernel.httpHeaders;
    return big(h ? k().kernel.allocBytes(JSON.stringify(h)) : 0);
  }),
  log_trace: logImport('trace'),
  log_debug: logImport('debug'),
  log_info: logImport('info'),
  log_warn: logImport('warn'),
  log_error: logImport('error'),
  get_log_level: kernelImport([], [I32], (k) => () => k().logLevel),
};
