/** Settings of the memory cache: its limits per function. Declared once for every source. */
import { CapsuleError } from '../../base/errors.ts';
import { parseSize } from '../../base/units.ts';
import type { CapabilitySettingDeclarations } from '../../base/settings.ts';

/** @throws CapsuleError USAGE naming `name` unless `text` is a whole number ≥ 0 */
function parseCount(text: string, name: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < 0) throw new CapsuleError('USAGE', `${name}: "${text}" must be a whole number`);
  return n;
}

export const cacheSettings: CapabilitySettingDeclarations = {
  settings: [
    {
      key: 'cacheMaxEntries', flag: '--cache-max-entries <n>', default: '10000',
      description: 'memory cache: entries per function',
      apply: (s, v, name) => { s.cache = { ...s.cache, maxEntries: parseCount(v, name) }; },
    },
    {
      key: 'cacheMaxBytes', flag: '--cache-max-bytes <size>', default: '64MiB',
      description: 'memory cache: bytes of keys and values per function',
      apply: (s, v, name) => { s.cache = { ...s.cache, maxBytes: parseSize(v, name) }; },
    },
  ],
};
