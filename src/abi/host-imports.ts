/**
 * Maps a Capsule module's `env` imports to capabilities (capsule-abi.md §2.5, §4.7, §5.7):
 * checks each declared signature at load, and builds the import functions that decode
 * arguments, call the capability and frame its result for the module's generation.
 */
import { CapsuleError } from '../base/errors.ts';
import type { ImportEntry, ValType } from '../wasm/binary.ts';
import { badImportType, sameType, sig, type Expected } from './signatures.ts';
import { findHostFunction, hostFunctionNames } from '../capabilities/index.ts';
import type { HostCallContext, HostFunction, HostResult } from '../capabilities/types.ts';
import type { Guest, JspiApi } from './guest.ts';

/** What the import functions act on during a call; set by the engine before each call. */
export interface CallState {
  guest?: Guest;
  ctx?: HostCallContext;
}

/** Wasm parameter count of a host function (§2.5 notation: s = 2, n = 1, r = 2). */
export function wasmArity(f: HostFunction): number {
  return f.params.reduce((n, p) => n + (p === 's' ? 2 : 1), 0) + (f.returns ? 2 : 0);
}

/**
 * The types a module may declare for a host function (§2.5): its i32 parameters, and an i32
 * result (Go Capsule v0.3.0+, gen 2) or none (gen 1 up to v0.2.9; a JavaScript host accepts both).
 */
export function hostFunctionTypes(f: HostFunction, generation: 1 | 2): Expected {
  const params = new Array<ValType>(wasmArity(f)).fill('i32');
  const i32 = sig(params, ['i32']);
  const none = sig(params, []);
  return { types: generation === 1 ? [none, i32] : [i32, none], who: `Capsule gen ${generation}` };
}

/**
 * Checks every import from `namespace` (`env` for the Capsule ABI) against the host functions
 * of the module's generation.
 * @returns the host functions, in import order
 * @throws CapsuleError BAD_MODULE naming the import and what is accepted (unknown name, a type
 *   other than `hostFunctionTypes`, a return buffer without `allocateBuffer`)
 */
export function checkHostImports(imports: readonly ImportEntry[], generation: 1 | 2, name: string, exportNames: ReadonlySet<string>, namespace = 'env'): HostFunction[] {
  const out: HostFunction[] = [];
  for (const imp of imports) {
    if (imp.module !== namespace) continue;
    if (imp.kind !== 'function') {
      throw new CapsuleError('BAD_MODULE', `${name}: import ${namespace}.${imp.name} is a ${imp.kind}; Capsule modules import only functions from ${namespace}`);
    }
    const f = findHostFunction(imp.name, generation);
    if (!f) {
      throw new CapsuleError('BAD_MODULE', `${name}: imports ${namespace}.${imp.name}, which Capsule does not provide to gen-${generation} modules; available: ${hostFunctionNames(generation).join(', ')}`);
    }
    if (imp.type) {
      const accepted = hostFunctionTypes(f, generation);
      if (!accepted.types.some((t) => sameType(t, imp.type!))) throw badImportType(name, namespace, imp.name, imp.type, accepted);
    }
    if (f.returns && !exportNames.has('allocateBuffer')) {
      throw new CapsuleError('BAD_MODULE', `${name}: imports ${namespace}.${imp.name}, which returns bytes, but does not export allocateBuffer(size) -> ptr`);
    }
    out.push(f);
  }
  return out;
}

const encoder = new TextEncoder();
const S = 0x53;
const F = 0x46;

/** Frames a host result for a generation (§5.1 S/F, §4.1 `[ERR][0]:`). */
export function frameResult(f: HostFunction, generation: 1 | 2, r: HostResult): Uint8Array {
  if (generation === 1) {
    if (r.ok) return typeof r.value === 'string' ? encoder.encode(r.value) : r.value;
    return encoder.encode(`[ERR][0]:${r.error}`);
  }
  if (f.frame === 'raw') {
    if (!r.ok) return new Uint8Array(0);
    return typeof r.value === 'string' ? encoder.encode(r.value) : r.value;
  }
  const body = r.ok ? (typeof r.value === 'string' ? encoder.encode(r.value) : r.value) : encoder.encode(r.error);
  const out = new Uint8Array(body.length + 1);
  out[0] = r.ok ? S : F;
  out.set(body, 1);
  return out;
}

/**
 * Builds `env` import functions for these host functions. They read `state` at call time, so
 * the object is built once per (worker, module) and reused by every instance.
 * @returns the import object and whether any import is async (the module then needs JSPI)
 */
export function buildHostImports(functions: readonly HostFunction[], generation: 1 | 2, state: CallState): { imports: Record<string, unknown>; async: boolean } {
  const imports: Record<string, unknown> = {};
  let anyAsync = false;
  for (const f of functions) {
    const decode = (raw: number[]): (Uint8Array | number)[] => {
      const guest = state.guest!;
      const args: (Uint8Array | number)[] = [];
      let i = 0;
      for (const p of f.params) {
        if (p === 's') {
          args.push(guest.read(raw[i]!, raw[i + 1]!));
          i += 2;
        } else {
          args.push(raw[i++]! | 0);
        }
      }
      return args;
    };
    const finish = (raw: number[], r: HostResult | void): number => {
      if (f.returns) {
        const result: HostResult = r ?? { ok: true, value: '' };
        const n = raw.length;
        state.guest!.writeReturn(raw[n - 2]!, raw[n - 1]!, frameResult(f, generation, result));
      }
      return 0;
    };
    if (f.async) {
      anyAsync = true;
      const fn = async (...raw: number[]) => {
        const r = await f.run(state.ctx!, decode(raw));
        return finish(raw, r);
      };
      const jspi = WebAssembly as unknown as JspiApi;
      imports[f.name] = typeof jspi.Suspending === 'function' ? new jspi.Suspending(fn) : fn;
    } else {
      imports[f.name] = (...raw: number[]) => {
        const r = f.run(state.ctx!, decode(raw));
        if (r instanceof Promise) throw new Error(`host function ${f.name} returned a Promise but is not marked async`);
        return finish(raw, r);
      };
    }
  }
  return { imports, async: anyAsync };
}
