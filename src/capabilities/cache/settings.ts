/** Settings of the memory cache: its limits per function. Declared once for every source. */
import { CapsuleError } from '../../base/errors.ts';
import { parseSize } from '../../base/units.ts';
import { setNumber, type CapabilitySettingDeclarations } from '../../base/settings.ts';

/** @throws CapsuleError USAGE naming `name` unless `text` is a whole number ≥ 0 */
function parseCount(text: string, name: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < 0) throw new CapsuleError('USAGE', `${name}: "${text}" must be a whole number`);
  return n;
}

/** `cacheMaxEntries`, `cacheMaxBytes`. */
export const cacheSettings: CapabilitySettingDeclarations = {
  settings: [
    { key: 'cacheMaxEntries', flag: '--cache-max-entries <n>', default: '10000', apply: setNumber('cache', 'maxEntries', parseCount), description: 'memory cache: entries per function' },
    { key: 'cacheMaxBytes', flag: '--cache-max-bytes <size>', default: '64MiB', apply: setNumber('cache', 'maxBytes', parseSize), description: 'memory cache: bytes of keys and values per function' },
  ],
};
