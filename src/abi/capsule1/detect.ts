/**
 * Detection rule of Capsule ABI generation 1 (spec README §1, capsule-abi.md §4): the arity of
 * `callHandleHttp` tells 1a (4 parameters), 1b (8) and 1c (1) apart; a module exporting only a
 * gen-1 message handler is 1c when it imports `hostRequestParamsGet`, else 1b.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { ParsedModule } from '../../wasm/binary.ts';
import type { Detection, ModuleKind } from '../../base/kinds.ts';
import { exportType, functionExports, needExport } from '../signatures.ts';

const GEN1_ARITY: Record<number, ModuleKind> = { 4: 'capsule-1a', 8: 'capsule-1b', 1: 'capsule-1c' };

/** Whether the module's `env` imports return i32 (Go Capsule v0.3.0+) rather than nothing (≤ v0.2.9). */
function importsReturnI32(parsed: ParsedModule): boolean {
  return parsed.imports.some((i) => i.module === 'env' && i.kind === 'function' && i.type?.results.length === 1 && i.type.results[0] === 'i32');
}

/**
 * The gen-1 sub-generation, or undefined when the module exports no gen-1 entry point.
 * @throws CapsuleError BAD_MODULE for a `callHandleHttp` of another arity
 */
export function detectCapsule1(parsed: ParsedModule, name: string): Detection | undefined {
  const exports = functionExports(parsed);
  if (exports.has('callHandleHttp')) {
    const arity = exportType(parsed, 'callHandleHttp')?.params.length;
    const kind = arity === undefined ? undefined : GEN1_ARITY[arity];
    if (!kind) {
      throw new CapsuleError('BAD_MODULE', `${name}: callHandleHttp takes ${arity ?? 'an unknown number of'} parameters; Capsule gen 1 expects 4 (1a), 8 (1b) or 1 (1c)`);
    }
    const i32 = importsReturnI32(parsed);
    return { kind, importsReturnI32: i32, reason: `callHandleHttp with ${arity} parameters; env imports ${i32 ? 'return i32 (Go Capsule v0.3.0+)' : 'return nothing (Go Capsule ≤ v0.2.9)'}` };
  }
  if (exports.has('callNatsMessageHandle') || exports.has('callMqttMessageHandle')) {
    const kind: ModuleKind = parsed.imports.some((i) => i.module === 'env' && i.name === 'hostRequestParamsGet') ? 'capsule-1c' : 'capsule-1b';
    return { kind, importsReturnI32: importsReturnI32(parsed), reason: 'exports a gen-1 message handler' };
  }
  return undefined;
}

/**
 * `--kind capsule-1a|1b|1c`: the module must export a gen-1 entry point, and `callHandleHttp`,
 * when exported, must have the sub-generation's arity.
 * @throws CapsuleError BAD_MODULE naming the missing export or the arity found
 */
export function checkCapsule1Kind(parsed: ParsedModule, kind: ModuleKind, name: string): Detection {
  needExport(parsed, kind, ['callHandleHttp', 'callHandle', 'callNatsMessageHandle', 'callMqttMessageHandle'], 'callHandleHttp or callHandle', name);
  const want = Number(Object.entries(GEN1_ARITY).find(([, k]) => k === kind)![0]);
  const arity = exportType(parsed, 'callHandleHttp')?.params.length;
  if (arity !== undefined && arity !== want) {
    throw new CapsuleError('BAD_MODULE', `${name}: --kind ${kind} expects callHandleHttp with ${want} parameters, found ${arity}`);
  }
  return { kind, importsReturnI32: importsReturnI32(parsed), reason: 'set by --kind' };
}
