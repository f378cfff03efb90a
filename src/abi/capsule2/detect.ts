/**
 * Detection rule of Capsule ABI generation 2 (spec README §1): a module exporting a gen-2 handler
 * and no gen-1 `callHandleHttp`.
 */
import type { ParsedModule } from '../../wasm/binary.ts';
import type { Detection, ModuleKind } from '../../base/kinds.ts';
import { functionExports, needExport } from '../signatures.ts';

// callHandleMessage: the gen-2 message handler of the capsule-abi.md §8 extension (NATS, MQTT).
const GEN2_HANDLERS = ['callHandleHTTP', 'callHandle', 'callHandleJSON', 'callHandleMessage'];

/** `capsule-2` when the module exports a gen-2 handler and no `callHandleHttp`. */
export function detectCapsule2(parsed: ParsedModule): Detection | undefined {
  const exports = functionExports(parsed);
  if (exports.has('callHandleHttp') || !GEN2_HANDLERS.some((e) => exports.has(e))) return undefined;
  return { kind: 'capsule-2', reason: `exports ${GEN2_HANDLERS.filter((e) => exports.has(e)).join(', ')}` };
}

/**
 * `--kind capsule-2`: the module must export a gen-2 handler.
 * @throws CapsuleError BAD_MODULE when it exports none
 */
export function checkCapsule2Kind(parsed: ParsedModule, kind: ModuleKind, name: string): Detection {
  needExport(parsed, kind, GEN2_HANDLERS, 'callHandle, callHandleJSON, callHandleHTTP or callHandleMessage', name);
  return { kind, reason: 'set by --kind' };
}
