/**
 * Classifies a module before it is instantiated (spec README §1: first match wins).
 */
import { CapsuleError } from '../base/errors.ts';
import type { ParsedModule, FuncType } from '../wasm/binary.ts';
import type { Detection, ModuleKind } from '../base/kinds.ts';

// callHandleMessage: the gen-2 message handler of the capsule-abi.md §8 extension (NATS, MQTT).
const GEN2_EXPORTS = ['callHandleHTTP', 'callHandle', 'callHandleJSON', 'callHandleMessage'];
const GEN1_ARITY: Record<number, ModuleKind> = { 4: 'capsule-1a', 8: 'capsule-1b', 1: 'capsule-1c' };

/**
 * Detects the kind of a parsed module, or checks an explicit `--kind` against its exports.
 * @param name shown in error messages (usually the file name)
 * @throws CapsuleError BAD_MODULE for components, legacy Extism plugins, unknown gen-1 arities
 *   and modules that match no kind (the message lists what was found and what is accepted).
 */
export function detectKind(parsed: ParsedModule, name: string, explicit?: ModuleKind): Detection {
  if (parsed.layer === 'component') {
    throw new CapsuleError('BAD_MODULE', `${name}: a WebAssembly component (layer 1, version 0x${parsed.version.toString(16)}) is not supported yet; build a core module (for example wasm32-wasip1)`);
  }
  const exportNames = new Set(parsed.exports.filter((e) => e.kind === 'function').map((e) => e.name));
  const fn = (n: string): FuncType | undefined => parsed.exports.find((e) => e.name === n && e.kind === 'function')?.type;
  const importModules = new Set(parsed.imports.map((i) => i.module));
  const gen1Import = () => {
    const envFns = parsed.imports.filter((i) => i.module === 'env' && i.kind === 'function' && i.type);
    return envFns.some((i) => i.type!.results.length === 1 && i.type!.results[0] === 'i32');
  };

  if (explicit) return checkExplicit(explicit, exportNames, fn, name, gen1Import);

  if (importModules.has('extism:host/env')) {
    return { kind: 'extism', reason: 'imports from extism:host/env' };
  }
  if (parsed.imports.some((i) => i.module === 'env' && i.name.startsWith('extism_'))) {
    throw new CapsuleError('BAD_MODULE', `${name}: a pre-1.0 Extism plugin (imports env.extism_*): rebuild it with an Extism PDK ≥ 1.0`);
  }
  if (!exportNames.has('callHandleHttp') && GEN2_EXPORTS.some((e) => exportNames.has(e))) {
    return { kind: 'capsule-2', reason: `exports ${GEN2_EXPORTS.filter((e) => exportNames.has(e)).join(', ')}` };
  }
  if (exportNames.has('callHandleHttp')) {
    const t = fn('callHandleHttp');
    const arity = t?.params.length;
    const kind = arity === undefined ? undefined : GEN1_ARITY[arity];
    if (!kind) {
      throw new CapsuleError('BAD_MODULE', `${name}: callHandleHttp takes ${arity ?? 'an unknown number of'} parameters; Capsule gen 1 expects 4 (1a), 8 (1b) or 1 (1c)`);
    }
    const i32 = gen1Import();
    return { kind, importsReturnI32: i32, reason: `callHandleHttp with ${arity} parameters; env imports ${i32 ? 'return i32 (Go Capsule v0.3.0+)' : 'return nothing (Go Capsule ≤ v0.2.9)'}` };
  }
  if (exportNames.has('callNatsMessageHandle') || exportNames.has('callMqttMessageHandle')) {
    const i32 = gen1Import();
    const kind: ModuleKind = parsed.imports.some((i) => i.module === 'env' && i.name === 'hostRequestParamsGet') ? 'capsule-1c' : 'capsule-1b';
    return { kind, importsReturnI32: i32, reason: 'exports a gen-1 message handler' };
  }
  if (exportNames.has('_start')) {
    return { kind: 'wasi', reason: 'exports _start and no Capsule entry point' };
  }
  const exportsList = parsed.exports.map((e) => e.name).join(', ');
  const importsList = [...importModules].join(', ');
  throw new CapsuleError('BAD_MODULE', `${name}: unsupported module: exports [${exportsList}], imports from [${importsList}]; expected a Capsule module (callHandleHttp, callHandle, callHandleHTTP or callHandleJSON), an Extism plugin (imports from extism:host/env) or a WASI command (_start)`);
}

function checkExplicit(kind: ModuleKind, exports: Set<string>, fn: (n: string) => FuncType | undefined, name: string, gen1Import: () => boolean): Detection {
  const need = (names: string[], what: string) => {
    if (!names.some((n) => exports.has(n))) {
      throw new CapsuleError('BAD_MODULE', `${name}: --kind ${kind} needs an export ${what}; the module exports [${[...exports].join(', ')}]`);
    }
  };
  switch (kind) {
    case 'capsule-2':
      need(GEN2_EXPORTS, 'callHandle, callHandleJSON, callHandleHTTP or callHandleMessage');
      break;
    case 'capsule-1a': case 'capsule-1b': case 'capsule-1c': {
      need(['callHandleHttp', 'callHandle', 'callNatsMessageHandle', 'callMqttMessageHandle'], 'callHandleHttp or callHandle');
      const want = Number(Object.entries(GEN1_ARITY).find(([, k]) => k === kind)![0]);
      const arity = fn('callHandleHttp')?.params.length;
      if (arity !== undefined && arity !== want) {
        throw new CapsuleError('BAD_MODULE', `${name}: --kind ${kind} expects callHandleHttp with ${want} parameters, found ${arity}`);
      }
      return { kind, importsReturnI32: gen1Import(), reason: 'set by --kind' };
    }
    case 'wasi':
      break; // the entrypoint is checked when the route names it
    case 'extism':
      break;
  }
  return { kind, reason: 'set by --kind' };
}
