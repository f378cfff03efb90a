/**
 * Host functions an embedder defines through the host SDK (`FunctionOptions.hostFunctions`):
 * functions of the main thread that a guest imports like any host function.
 *
 * Guests run on worker threads and JavaScript functions cannot cross threads, so a defined
 * function stays in the main thread as a service of the function's worker pool; the import the
 * guest calls in its worker sends the arguments there and suspends the guest (JSPI) until the
 * reply, as the async capabilities do. What the function may touch is therefore what travels
 * with the call:
 *
 * - Extism plugins (any namespace but `extism:host/env`, usually `extism:host/user`): a plain
 *   function `(ctx, ...args)` with the wasm values (i64 as BigInt). Every argument that is the
 *   handle of a live block brings that block's bytes, read with `ctx.read(handle)`;
 *   `ctx.store(bytes)` makes a new block whose handle the plugin may use once the function has
 *   returned (extism-abi.md §3, §4). Blocks reached otherwise (a handle inside a block) cannot be
 *   read.
 * - Capsule modules: a definition `{ params, run }` in namespace `env` is a Capsule host function
 *   (capsule-abi.md §2.4, §2.5): `s` parameters arrive as bytes, `n` as numbers, and what `run`
 *   returns goes back through the return buffer, framed for the generation (gen 2: `S…`, a throw
 *   gives `F<message>`). A plain function in another namespace gets and returns numbers only.
 */
import { CapsuleError } from '../base/errors.ts';
import type { ServiceCallerModule, ServiceHost } from '../base/services.ts';
import type { ParsedModule, ValType } from '../wasm/binary.ts';
import type { HostFunction, ParamKind } from '../capabilities/types.ts';
import type { JspiApi } from './guest.ts';
import type { CallState } from './host-imports.ts';
import type { ImportProvider, UserCallHooks, UserCallReply, UserCallRequest } from './types.ts';
import type { UserFunctionDecl, UserFunctionsDecl } from '../base/settings.ts';

export type { UserCallHooks, UserCallReply, UserCallRequest, UserFunctionDecl, UserFunctionsDecl };

/** A block of an Extism plugin as a host function sees it (`HostFunctionContext.read`). */
export interface HostBlock {
  /** The block's bytes (a copy). */
  bytes(): Uint8Array;
  /** The bytes as UTF-8 text. */
  text(): string;
  /** The bytes parsed as JSON. @throws SyntaxError when they are not JSON */
  json(): unknown;
}

/** What a host function defined by an embedder gets besides its arguments. */
export interface HostFunctionContext {
  /** The calling module's name (its file name). */
  readonly module: string;
  /** The function's configured environment (an Extism plugin's config). */
  readonly config: ReadonlyMap<string, string>;
  /**
   * Extism plugins: the block whose handle the plugin passed as one of this call's arguments;
   * null for handle 0 (an empty or absent value, extism-abi.md §2).
   * @throws Error for a handle that is not an argument of this call, or in a Capsule module
   */
  read(handle: bigint | number): HostBlock | null;
  /**
   * Extism plugins: a new block holding `data` (strings as UTF-8); return its handle to the
   * plugin. Empty data gives handle 0, as the Extism runtimes do.
   * @throws Error in a Capsule module (return the bytes from `run` instead)
   */
  store(data: string | Uint8Array): bigint;
}

/**
 * An Extism (or plain wasm-value) host function: the wasm arguments in (i32/f32/f64 as numbers,
 * i64 as BigInt), the result out (a number or BigInt, converted to the import's result type;
 * nothing for an import without result). May be async. A throw fails the plugin call with the
 * error's message.
 */
export type PlainHostFunction = (ctx: HostFunctionContext, ...args: (number | bigint)[]) => number | bigint | void | Promise<number | bigint | void>;

/** A Capsule host function defined by an embedder (namespace `env` of a Capsule module). */
export interface CapsuleHostFunctionDef {
  /** Arguments before the return pair: `s` = (ptr, len) read as bytes, `n` = one i32. */
  params: ParamKind[];
  /** Whether the last two parameters are (retPtrAddr, retLenAddr) (capsule-abi.md §2.4); default true. */
  returns?: boolean;
  /** The value returned to the guest; a throw is a failure with its message. May be async. */
  run(ctx: HostFunctionContext, ...args: (Uint8Array | number)[]): string | Uint8Array | void | Promise<string | Uint8Array | void>;
}

/** Host functions by import namespace and name (`{ 'extism:host/user': { hello_world(ctx, h) {…} } }`). */
export type UserHostFunctions = Record<string, Record<string, PlainHostFunction | CapsuleHostFunctionDef>>;



const SLOT = 2 ** 32;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const isCapsuleDef = (f: PlainHostFunction | CapsuleHostFunctionDef): f is CapsuleHostFunctionDef => typeof f === 'object' && f !== null && typeof f.run === 'function';

/**
 * Checks a module's imports from the namespaces of `defs` (at load): each must be a function
 * defined there, with at most one result. A namespace of the ABI's Capsule host functions
 * (`env`) is checked with those (`capsuleUserFunctions`).
 * @param provided the ABI's namespaces (`Abi.imports`)
 * @returns the other namespaces `defs` fills (imports from them are then accepted)
 * @throws CapsuleError BAD_MODULE naming an import that is not defined; USAGE for functions
 *   defined in a namespace the ABI fills itself (WASI, `extism:host/env`)
 */
export function checkUserImports(parsed: ParsedModule, defs: UserHostFunctions | undefined, name: string, provided: Readonly<Record<string, ImportProvider>>): Set<string> {
  const namespaces = new Set<string>();
  for (const ns of Object.keys(defs ?? {})) {
    const p = provided[ns];
    if (p === 'host-functions') continue;
    if (p !== undefined) throw new CapsuleError('USAGE', `hostFunctions: ${ns} is a namespace the host fills itself for ${name}; define functions in another one (extism:host/user)`);
    namespaces.add(ns);
  }
  for (const imp of parsed.imports) {
    if (!namespaces.has(imp.module)) continue;
    const def = defs![imp.module]![imp.name];
    if (imp.kind !== 'function' || def === undefined) {
      throw new CapsuleError('BAD_MODULE', `${name}: imports ${imp.module}.${imp.name}, which the host does not define (defined there: ${Object.keys(defs![imp.module]!).join(', ') || 'none'})`);
    }
    if ((imp.type?.results.length ?? 0) > 1) throw new CapsuleError('BAD_MODULE', `${name}: ${imp.module}.${imp.name} returns ${imp.type!.results.length} values; host functions return at most one`);
  }
  return namespaces;
}

/** The declarations a worker gets for `defs` (result types read from the module's imports). */
export function declareUserFunctions(defs: UserHostFunctions, parsed: ParsedModule, service: string): UserFunctionsDecl {
  const namespaces: UserFunctionsDecl['namespaces'] = {};
  for (const [ns, fns] of Object.entries(defs)) {
    namespaces[ns] = {};
    for (const [fn, def] of Object.entries(fns)) {
      const imp = parsed.imports.find((i) => i.module === ns && i.name === fn);
      namespaces[ns][fn] = isCapsuleDef(def)
        ? { shape: 'capsule', params: def.params, returns: def.returns ?? true }
        : { shape: 'plain', results: imp?.type?.results ?? [] };
    }
  }
  return { service, namespaces };
}

let nextService = 1;

/**
 * Registers the main-thread service that runs `defs` on `host` (a worker pool).
 * @returns the service's name (unique per call)
 */
export function provideUserFunctions(host: ServiceHost, defs: UserHostFunctions): string {
  const service = `user-functions:${nextService++}`;
  host.provide(service, async (request, caller) => runUserFunction(defs, request as UserCallRequest, caller));
  return service;
}

/** Runs one defined function in the main thread. @throws Error what the function throws */
async function runUserFunction(defs: UserHostFunctions, req: UserCallRequest, caller: ServiceCallerModule): Promise<UserCallReply> {
  const def = defs[req.ns]?.[req.name];
  if (def === undefined) throw new Error(`host function ${req.ns}.${req.name} is not defined`);
  const blocks = new Map(req.blocks ?? []);
  const stores: Uint8Array[] = [];
  const extism = req.next !== undefined;
  const ctx: HostFunctionContext = {
    module: caller.module.name,
    config: new Map(caller.settings.env),
    read(handle) {
      if (!extism) throw new Error('read(handle) is for Extism plugins; a Capsule module\'s `s` arguments arrive as bytes');
      const h = Number(handle);
      if (h === 0) return null;
      const b = blocks.get(h);
      if (!b) throw new Error(`block ${h} was not passed to ${req.ns}.${req.name} as an argument: a host function reads only the blocks it is given`);
      return { bytes: () => b.slice(), text: () => decoder.decode(b), json: () => JSON.parse(decoder.decode(b)) as unknown };
    },
    store(data) {
      if (!extism) throw new Error('store(data) is for Extism plugins; a Capsule host function returns its bytes');
      const bytes = typeof data === 'string' ? encoder.encode(data) : data;
      if (bytes.length === 0) return 0n;
      stores.push(bytes);
      return BigInt((req.next! + stores.length - 1) * SLOT);
    },
  };
  const result = isCapsuleDef(def) ? await def.run(ctx, ...(req.args as (Uint8Array | number)[])) : await def(ctx, ...(req.args as (number | bigint)[]));
  return { result: result ?? undefined, stores };
}

/** Converts a plain function's result to the import's declared result type. */
function toWasm(value: UserCallReply['result'], results: readonly ValType[] | undefined): unknown {
  const type = results?.[0];
  if (type === undefined) return undefined;
  if (typeof value !== 'number' && typeof value !== 'bigint') throw new Error(`the host function returned ${typeof value}, not a ${type}`);
  return type === 'i64' ? BigInt.asIntN(64, BigInt(value)) : Number(value);
}


/**
 * The worker-side imports of the plain functions of one namespace: each sends its arguments to
 * the main thread and suspends the guest until the reply (JSPI).
 */
export function plainUserImports(decl: UserFunctionsDecl, ns: string, state: CallState, hooks?: UserCallHooks): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const jspi = WebAssembly as unknown as JspiApi;
  for (const [name, d] of Object.entries(decl.namespaces[ns] ?? {})) {
    if (d.shape !== 'plain') continue;
    const run = async (...args: (number | bigint)[]): Promise<unknown> => {
      const ctx = state.ctx;
      if (!ctx) throw new CapsuleError('BAD_RESULT', `${ns}.${name} was called outside a call (during initialisation)`);
      const req: UserCallRequest = { ns, name, args };
      hooks?.before(ctx, req);
      let reply: UserCallReply;
      try {
        reply = (await ctx.service(decl.service, req)) as UserCallReply;
      } catch (e) {
        throw new UserFunctionFailure(`${ns}.${name}: ${(e as Error).message}`);
      }
      return toWasm(hooks ? hooks.after(ctx, req, reply) : reply.result, d.results as ValType[] | undefined);
    };
    out[name] = typeof jspi.Suspending === 'function' ? new jspi.Suspending(run) : run;
  }
  return out;
}

/** A failure of a defined host function: it fails the guest's call with its message. */
export class UserFunctionFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserFunctionFailure';
  }
}

/**
 * The `capsule`-shaped definitions of namespace `env` as host functions of the module's
 * generation (async: run in the main thread), for the engine's Capsule import builder.
 */
export function capsuleUserFunctions(decl: UserFunctionsDecl | undefined): HostFunction[] {
  const out: HostFunction[] = [];
  for (const [name, d] of Object.entries(decl?.namespaces['env'] ?? {})) {
    if (d.shape !== 'capsule') continue;
    out.push({
      name, generations: [1, 2], params: d.params ?? [], returns: d.returns ?? true, async: true,
      async run(ctx, args) {
        try {
          const reply = (await ctx.service(decl!.service, { ns: 'env', name, args } satisfies UserCallRequest)) as UserCallReply;
          const v = reply.result;
          return { ok: true, value: v instanceof Uint8Array || typeof v === 'string' ? v : v === undefined ? '' : String(v) };
        } catch (e) {
          return { ok: false, error: (e as Error).message };
        }
      },
    });
  }
  return out;
}
