/**
 * ABI registry: one entry per ABI, in detection order (spec README §1: the first ABI whose
 * `detect` recognises a module gives its kind). Adding an ABI = one folder under src/abi/ and one
 * line here (see `Abi` in types.ts); the engine and the CLI (`--kind` values) loop over this list.
 */
import type { ModuleKind } from '../base/kinds.ts';
import { CapsuleError } from '../base/errors.ts';
import type { Abi } from './types.ts';
import { extism } from './extism/index.ts';
import { capsule1 } from './capsule1/index.ts';
import { capsule2 } from './capsule2/index.ts';
import { wasiCommand } from './wasi-command/index.ts';

export const ABIS: readonly Abi[] = [
  extism,
  capsule2,
  capsule1,
  wasiCommand,
];

/** Every kind the ABIs serve, sorted by name: the values of `--kind` and config `kind:`. */
export const KINDS: readonly ModuleKind[] = ABIS.flatMap((a) => a.kinds).sort();

/**
 * The ABI serving a kind.
 * @throws CapsuleError BAD_MODULE when no ABI of the list serves it
 */
export function abiFor(kind: ModuleKind, name: string): Abi {
  const abi = ABIS.find((a) => a.kinds.includes(kind));
  if (!abi) {
    throw new CapsuleError('BAD_MODULE', `${name}: ${kind} modules are recognised but not supported yet by this version of Capsule`);
  }
  return abi;
}

