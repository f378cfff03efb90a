/**
 * Extism plugins (extism-abi.md), recognised but not served yet: detection names them (and
 * refuses pre-1.0 plugins with a clear message), loading refuses them. The Extism ABI
 * (src/abi/extism/) replaces this entry in src/abi/index.ts.
 */
import { CapsuleError } from '../base/errors.ts';
import type { Abi } from './types.ts';

const unserved = (name: string): CapsuleError =>
  new CapsuleError('BAD_MODULE', `${name}: extism modules are recognised but not supported yet by this version of Capsule`);

export const extismUnserved: Abi = {
  kinds: ['extism'],
  imports: { 'extism:host/env': {} },
  expects: 'an Extism plugin (imports from extism:host/env)',
  detect(parsed, name) {
    if (parsed.imports.some((i) => i.module === 'extism:host/env')) return { kind: 'extism', reason: 'imports from extism:host/env' };
    if (parsed.imports.some((i) => i.module === 'env' && i.name.startsWith('extism_'))) {
      throw new CapsuleError('BAD_MODULE', `${name}: a pre-1.0 Extism plugin (imports env.extism_*): rebuild it with an Extism PDK ≥ 1.0`);
    }
    return undefined;
  },
  checkKind: (_parsed, kind) => ({ kind, reason: 'set by --kind' }),
  generation: () => undefined,
  check(_parsed, _detection, name) {
    throw unserved(name);
  },
  initialise: () => Promise.reject(unserved('extism')),
  invoke: () => Promise.reject(unserved('extism')),
};
