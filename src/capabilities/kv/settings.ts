/** Settings of `hostKvIncrement` (capsule-abi.md §8): its backend. Declared once for every source. */
import { CapsuleError } from '../../base/errors.ts';
import type { CapabilitySettingDeclarations } from '../../base/settings.ts';

const BACKENDS = ['memory', 'redis'] as const;

/** `kv`: memory or redis. */
export const kvSettings: CapabilitySettingDeclarations = {
  settings: [
    {
      key: 'kv', flag: '--kv <backend>', choices: BACKENDS,
      description: 'backend of hostKvIncrement (default: redis when a Redis server is configured, else memory)',
      apply: (s, v, name) => {
        if (!(BACKENDS as readonly string[]).includes(v)) throw new CapsuleError('USAGE', `${name} must be one of ${BACKENDS.join(', ')}, not ${JSON.stringify(v)}`);
        s.kv = v as typeof BACKENDS[number];
      },
    },
  ],
};
