/**
 * Extism plugins (extism-abi.md): a core module importing from `extism:host/env` (§1), run on
 * Capsule's engine (worker pool, deadlines, memory cap, WASI sandbox, allow-lists). The kernel
 * (block memory, vars) is kernel.ts, the host functions imports.ts.
 *
 * Invocations (§11): CLI (`capsule call`: the input bytes, the function in `entrypoint`), HTTP
 * (export `handle` unless the route names one) in `raw` mode (request body in, response body
 * out) or `capsule` mode (`extismMode`: the gen-2 request JSON in, the response JSON out) and
 * messages (`handle` gets the `callHandleMessage` JSON of capsule-abi.md §8; its output is the
 * reply). One kernel per plugin per worker thread: vars survive the
 * calls that worker runs.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { InvocationInput, InvocationOutput, MessageInput } from '../../base/invocation.ts';
import { WasiExit } from '../../wasi/preview1.ts';
import type { Guest, JspiApi } from '../guest.ts';
import type { Abi, GuestInstances } from '../types.ts';
import type { ParsedModule } from '../../wasm/binary.ts';
import { EXTISM_ENV, EXTISM_LOG_LEVELS, KERNEL_KEY, kernelStateOf, type ExtismLogLevel, type KernelState } from './imports.ts';
import { ExtismFailure, type Kernel } from './kernel.ts';
import { decodeHttpResponse, encodeHttpRequest } from '../capsule2/http.ts';
import type { ExtismMode } from '../../base/settings.ts';
import type { HostCallContext } from '../../capabilities/types.ts';
import { UserFunctionFailure } from '../user-functions.ts';

export { EXTISM_LOG_LEVELS, type ExtismLogLevel } from './imports.ts';
export { DEFAULT_MAX_VAR_BYTES } from './kernel.ts';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** What one call asks: the export, the input bytes and the per-call kernel settings. */
interface ExtismCall {
  fn: string;
  data: Uint8Array;
  maxVarBytes?: number;
  logLevel?: ExtismLogLevel;
}

/**
 * Reads the call out of an invocation. CLI: `entrypoint` = the function, `params` = the input,
 * `args` = `max_var_bytes=<n>` / `log_level=<level>` settings (written by `capsule call`).
 * @throws CapsuleError BAD_RESULT for a lifecycle invocation (plugins have none)
 */
function callOf(input: InvocationInput): ExtismCall {
  switch (input.type) {
    case 'cli': {
      const call: ExtismCall = { fn: input.entrypoint ?? 'handle', data: input.params ?? new Uint8Array(0) };
      for (const a of input.args) {
        const [k, v] = a.split('=', 2) as [string, string];
        if (k === 'max_var_bytes') call.maxVarBytes = Number(v);
        if (k === 'log_level' && v in EXTISM_LOG_LEVELS) call.logLevel = v as ExtismLogLevel;
      }
      return call;
    }
    case 'http': return { fn: input.cgi?.entrypoint ?? 'handle', data: input.body }; // capsule mode: see httpCall
    case 'message': return { fn: 'handle', data: messageEnvelope(input) };
    default: throw new CapsuleError('BAD_RESULT', `Extism plugins have no ${input.type} entry point`);
  }
}

/** §11: a message reaches `handle` as the `callHandleMessage` JSON of capsule-abi.md §8. */
function messageEnvelope(msg: MessageInput): Uint8Array {
  const where = msg.source === 'mqtt' ? 'Topic' : 'Subject';
  const envelope = { [where]: msg.subject, Data: Buffer.from(msg.data).toString('base64'), Headers: Object.fromEntries(msg.headers), ReplyTo: msg.replyTo ?? '' };
  return encoder.encode(JSON.stringify(envelope));
}

/** The outcome of one call (§5 step 5): output bytes, or the failure message. */
type Outcome = { ok: true; output: Uint8Array } | { ok: false; message: string; code?: number };

/** Calls the export (through JSPI, so that `http_request` may suspend it) and reads the outcome. */
async function runExport(guest: Guest, kernel: Kernel, name: string): Promise<Outcome> {
  const jspi = WebAssembly as unknown as JspiApi;
  if (!guest.jspi || typeof jspi.promising !== 'function') return runExportSync(guest, kernel, name);
  const f = exportOf(guest, name);
  if (typeof f !== 'function') return f;
  let rc: unknown;
  try {
    rc = await guest.call(name); // promising, with the yield gate of a metered module (Guest.call)
  } catch (e) {
    return failureOf(kernel, e);
  }
  return outcomeOf(kernel, rc);
}

/** `runExport` of a module that does not suspend. */
function runExportSync(guest: Guest, kernel: Kernel, name: string): Outcome {
  const f = exportOf(guest, name);
  if (typeof f !== 'function') return f;
  let rc: unknown;
  try {
    rc = f();
  } catch (e) {
    return failureOf(kernel, e);
  }
  return outcomeOf(kernel, rc);
}

/** The plugin function `name`, or the failure of calling it (§5 step 3). */
function exportOf(guest: Guest, name: string): (() => unknown) | Outcome {
  const f = guest.exports[name];
  if (typeof f !== 'function') return { ok: false, message: `Function not found: ${name}` };
  if (f.length !== 0) return { ok: false, message: `Function ${name} takes ${f.length} parameters; Extism plugin functions take none` };
  return f as () => unknown;
}

/** The outcome of a call that threw: a plugin error, or a trap (rethrown). */
function failureOf(kernel: Kernel, e: unknown): Outcome {
  const message = kernel.errorText();
  if (message !== undefined) return { ok: false, message };
  if (e instanceof ExtismFailure || e instanceof UserFunctionFailure) return { ok: false, message: e.message };
  if (e instanceof WasiExit) return e.code === 0 ? { ok: true, output: kernel.outputCopy() } : { ok: false, message: `exit code ${e.code}`, code: e.code };
  throw e; // a trap: the engine classifies it and discards the instance
}

/** The outcome of a call that returned `rc` (§5 step 5). */
function outcomeOf(kernel: Kernel, rc: unknown): Outcome {
  const message = kernel.errorText();
  if (message !== undefined) return { ok: false, message };
  const code = typeof rc === 'number' ? rc : 0;
  if (code !== 0) return { ok: false, message: `Returned non-zero exit code: ${code}`, code };
  return { ok: true, output: kernel.outputCopy() };
}

/**
 * The invocation's output for an outcome (CLI: exit 0/1; HTTP: 200 with the output in raw mode,
 * the response the output describes in capsule mode, 500 with the error text on failure;
 * message: reply). `notes` receives the capsule-mode response headers left out, for the log.
 */
function outputOf(input: InvocationInput, outcome: Outcome, mode: ExtismMode, notes: string[]): InvocationOutput {
  const bytes = outcome.ok ? outcome.output : encoder.encode(outcome.message);
  if (input.type === 'http') {
    if (!outcome.ok) return { type: 'http', status: 500, headers: [['Content-Type', 'text/plain; charset=utf-8']], body: bytes, failure: { code: 'TRAP', message: outcome.message } };
    if (mode === 'capsule') return decodeHttpResponse({ ok: true, payload: bytes }, notes);
    return { type: 'http', status: 200, headers: [['Content-Type', 'application/octet-stream']], body: bytes };
  }
  if (input.type === 'message') return { type: 'message', ok: outcome.ok, payload: bytes };
  return { type: 'cli', text: bytes, exitCode: outcome.ok ? 0 : 1 };
}

/** What a plugin's imports need granted (`capsule inspect`): outbound HTTP, WASI files. */
function pluginGrants(parsed: ParsedModule): { grant: string; lends: string; how: string; functions: string[] }[] {
  const imports = (module: string, name: string) => parsed.imports.some((i) => i.module === module && i.name === name);
  const out = [];
  if (imports('extism:host/env', 'http_request')) {
    out.push({ grant: 'http', lends: 'outbound HTTP to allowed hosts', how: '--allowed-hosts HOST,… (manifest allowed_hosts)', functions: ['http_request'] });
  }
  if (imports('wasi_snapshot_preview1', 'path_open')) {
    out.push({ grant: 'files', lends: 'files inside granted directories', how: '--dir HOST[:GUEST][:ro] (manifest allowed_paths)', functions: ['path_open'] });
  }
  return out;
}

/** The kernel of the running call. @throws ExtismFailure outside a plugin call */
function kernelOf(ctx: HostCallContext): KernelState {
  const ks = ctx.callData.get(KERNEL_KEY) as KernelState | undefined;
  if (!ks) throw new ExtismFailure('a host function was called outside a plugin call (during initialisation)');
  return ks;
}

/** `hs_init` / `__wasm_call_ctors` / `_initialize` once per instance (§5 step 1). */
async function initialise(guest: Guest): Promise<void> {
  if (guest.has('hs_init')) {
    if (guest.has('_initialize')) guest.callSync('_initialize');
    guest.callSync('hs_init', 0, 0);
  } else if (guest.has('__wasm_call_ctors')) {
    guest.callSync('__wasm_call_ctors');
  } else if (guest.has('_initialize')) {
    guest.callSync('_initialize');
  }
}

/** A call made ready before it runs on an instance (`invoke`, `invokeSync`). */
interface Prepared {
  call: ExtismCall;
  mode: ExtismMode;
  ks: KernelState;
  wasi: PluginWasi;
}

/**
 * The WASI options of a plugin's calls (§9: an empty environment, no argv, stdout to the function
 * log), made once per plugin (kept in its kernel state): `log` is the running call's.
 */
type PluginWasi = NonNullable<KernelState['wasi']>;

/** The call, the plugin's kernel settings for it, and its WASI options (§9, §11). */
function prepare(rt: GuestInstances, input: InvocationInput): Prepared {
  const call = callOf(input);
  // §11 capsule mode: the gen-2 request JSON of capsule-abi.md §5.3 in, §5.4 response JSON out
  const mode = rt.spec.settings.extismMode ?? 'raw';
  if (input.type === 'http' && mode === 'capsule') call.data = encoder.encode(encodeHttpRequest(input));
  const ks = kernelStateOf(rt.callState);
  if (call.maxVarBytes !== undefined) ks.kernel.maxVarBytes = call.maxVarBytes;
  if (call.logLevel !== undefined) ks.logLevel = EXTISM_LOG_LEVELS[call.logLevel];
  // §9: WASI gets an empty environment (plugins read `config`), no argv, and its stdout goes
  // to the function log (the call's output is only what output_set names)
  let wasi = ks.wasi;
  if (!wasi) {
    const w: PluginWasi = { options: {} };
    const stdout = (bytes: Uint8Array) => w.log?.(`[${rt.spec.name}] stdout: ${decoder.decode(bytes).replace(/\n$/, '')}`);
    w.options = { wasi: { env: new Map(), args: [], stdout } };
    ks.wasi = wasi = w;
  }
  return { call, mode, ks, wasi };
}

/** The kernel set for the call on its instance: limits, input block (§5 steps 1–2). */
function begin(p: Prepared, ctx: HostCallContext): Kernel {
  p.wasi.log = ctx.log;
  const kernel = p.ks.kernel;
  kernel.maxBlockBytes = ctx.settings.maxMemoryBytes;
  kernel.reset();
  kernel.httpStatus = 0;
  kernel.httpHeaders = undefined;
  kernel.input = kernel.allocBytes(p.call.data);
  // a synchronous call's context keeps it from the instance's last call (it is per instance)
  if (ctx.callData.get(KERNEL_KEY) !== p.ks) ctx.callData.set(KERNEL_KEY, p.ks);
  return kernel;
}

const NO_NOTES: string[] = Object.freeze([]) as unknown as string[];

/** The invocation's output for the outcome; the capsule-mode notes go to the function log. */
function finish(p: Prepared, input: InvocationInput, ctx: HostCallContext, outcome: Outcome): InvocationOutput {
  // only capsule mode writes notes: a raw call makes no array for them
  const notes: string[] = p.mode === 'capsule' ? [] : NO_NOTES;
  const out = outputOf(input, outcome, p.mode, notes);
  for (const note of notes) ctx.log(note);
  return out;
}

export const extism: Abi = {
  kinds: ['extism'],
  imports: { 'extism:host/env': EXTISM_ENV, wasi_snapshot_preview1: 'wasi-preview1' },
  titles: { extism: 'Extism plugin' },
  reuse: 'by-default',
  expects: 'an Extism plugin (imports from extism:host/env)',
  detect(parsed, name) {
    if (parsed.imports.some((i) => i.module === 'extism:host/env')) return { kind: 'extism', reason: 'imports from extism:host/env' };
    if (parsed.imports.some((i) => i.module === 'env' && i.name.startsWith('extism_'))) {
      throw new CapsuleError('BAD_MODULE', `${name}: a pre-1.0 Extism plugin (imports env.extism_*): rebuild it with an Extism PDK ≥ 1.0`);
    }
    return undefined;
  },
  // §1: with kind extism, any core module is a plugin (test plugins may import only WASI)
  checkKind: (_parsed, kind) => ({ kind, reason: 'set by --kind' }),
  grants: pluginGrants,
  generation: () => undefined,
  check(parsed, _detection, name, options) {
    // a route's function is checked at load; `capsule call` gets `Function not found` (§5 step 3)
    const entry = options?.entrypoint;
    if (entry !== undefined && !parsed.exports.some((e) => e.kind === 'function' && e.name === entry)) {
      throw new CapsuleError('BAD_MODULE', `${name}: Function not found: ${entry}`);
    }
  },
  initialise,
  userCallHooks: {
    // a defined host function reads the blocks passed as arguments, and its stores become blocks
    before(ctx, req) {
      const { kernel } = kernelOf(ctx);
      const blocks: [number, Uint8Array][] = [];
      for (const a of req.args) {
        const h = typeof a === 'bigint' ? Number(BigInt.asUintN(64, a)) : 0;
        if (h !== 0 && h % 2 ** 32 === 0 && kernel.length(h) > 0) blocks.push([h, kernel.block(h).slice()]);
      }
      req.blocks = blocks;
      req.next = kernel.nextIndex;
    },
    after(ctx, req, reply) {
      const { kernel } = kernelOf(ctx);
      const made = (reply.stores ?? []).map((bytes) => kernel.allocBytes(bytes));
      const r = reply.result;
      if (typeof r !== 'bigint' && typeof r !== 'number') return r;
      const k = Number(r) / 2 ** 32 - req.next!;
      return Number.isInteger(k) && k >= 0 && k < made.length ? BigInt(made[k]!) : r;
    },
  },
  invoke(rt, input, meta) {
    const p = prepare(rt, input);
    return rt.withGuest(meta, async (guest, ctx) => finish(p, input, ctx, await runExport(guest, begin(p, ctx), p.call.fn)), p.wasi.options);
  },
  invokeSync(rt, input, meta) {
    if (!rt.withReadyGuestSync) return undefined;
    const p = prepare(rt, input);
    return rt.withReadyGuestSync(meta, (guest, ctx) => finish(p, input, ctx, runExportSync(guest, begin(p, ctx), p.call.fn)), p.wasi.options)?.value;
  },
};
