/**
 * Classifies a module before it is instantiated (spec README §1: first match wins), by asking
 * each ABI of src/abi/index.ts in turn.
 */
import { CapsuleError } from '../base/errors.ts';
import type { ParsedModule } from '../wasm/binary.ts';
import type { Detection, ModuleKind } from '../base/kinds.ts';
import { ABIS, abiFor } from '../abi/index.ts';

/**
 * Detects the kind of a parsed module, or checks an explicit `--kind` against its exports.
 * @param name shown in error messages (usually the file name)
 * @throws CapsuleError BAD_MODULE for components, for what an ABI's rule refuses (legacy Extism
 *   plugins, unknown gen-1 arities) and for modules that match no ABI (the message lists what
 *   was found and what each ABI accepts).
 */
export function detectKind(parsed: ParsedModule, name: string, explicit?: ModuleKind): Detection {
  if (parsed.layer === 'component') {
    throw new CapsuleError('BAD_MODULE', `${name}: a WebAssembly component (layer 1, version 0x${parsed.version.toString(16)}) is not supported yet; build a core module (for example wasm32-wasip1)`);
  }
  if (explicit) return abiFor(explicit, name).checkKind(parsed, explicit, name);
  for (const abi of ABIS) {
    const detection = abi.detect(parsed, name);
    if (detection) return detection;
  }
  const exportsList = parsed.exports.map((e) => e.name).join(', ');
  const importsList = [...new Set(parsed.imports.map((i) => i.module))].join(', ');
  const expects = [...new Set(ABIS.map((a) => a.expects))].sort(); // in an order detection does not change
  const accepted = expects.length > 1 ? `${expects.slice(0, -1).join(', ')} or ${expects.at(-1)}` : expects[0];
  throw new CapsuleError('BAD_MODULE', `${name}: unsupported module: exports [${exportsList}], imports from [${importsList}]; expected ${accepted}`);
}
