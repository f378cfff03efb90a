/**
 * ABI registry: one entry per module kind. Adding a kind = one folder and one line here.
 */
import type { ModuleKind } from '../base/kinds.ts';
import { CapsuleError } from '../base/errors.ts';
import type { Abi } from './types.ts';
import { capsule1 } from './capsule1/index.ts';
import { capsule2 } from './capsule2/index.ts';
import { wasiCommand } from './wasi-command/index.ts';

const ABIS: readonly Abi[] = [
  capsule1,
  capsule2,
  wasiCommand,
];

/**
 * @throws CapsuleError BAD_MODULE when the kind is recognised but not served yet
 */
export function abiFor(kind: ModuleKind, name: string): Abi {
  const abi = ABIS.find((a) => a.kinds.includes(kind));
  if (!abi) {
    throw new CapsuleError('BAD_MODULE', `${name}: ${kind} modules are recognised but not supported yet by this version of Capsule`);
  }
  return abi;
}
