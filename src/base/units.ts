/**
 * One parser for durations and sizes, shared by flags, config files and environment variables
 * (conventions.md §1).
 */
import { CapsuleError } from './errors.ts';

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses `250ms`, `30s`, `2m`, `1h`; a bare number is milliseconds.
 * @returns milliseconds (integer, ≥ 0)
 * @throws CapsuleError USAGE naming `what` when the text is not a duration
 */
export function parseDuration(text: string | number, what = 'duration'): number {
  if (typeof text === 'number') return checkFinite(text, what, text);
  const m = DURATION.exec(text);
  if (!m) throw new CapsuleError('USAGE', `${what}: "${text}" is not a duration (examples: 250ms, 30s, 2m; a bare number is milliseconds)`);
  return Math.round(Number(m[1]) * DURATION_MS[(m[2] ?? 'ms').toLowerCase()]!);
}

const SIZE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|k|m|g)?\s*$/i;
const SIZE_BYTES: Record<string, number> = {
  b: 1, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3,
  k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3,
};

/**
 * Parses `512KiB`, `64MiB`, `10MB` (SI), `1GiB`; a bare number is bytes.
 * @returns bytes (integer, ≥ 0)
 * @throws CapsuleError USAGE naming `what` when the text is not a size
 */
export function parseSize(text: string | number, what = 'size'): number {
  if (typeof text === 'number') return checkFinite(text, what, text);
  const m = SIZE.exec(text);
  if (!m) throw new CapsuleError('USAGE', `${what}: "${text}" is not a size (examples: 512KiB, 64MiB, 10MB; a bare number is bytes)`);
  return Math.floor(Number(m[1]) * SIZE_BYTES[(m[2] ?? 'b').toLowerCase()]!);
}

function checkFinite(n: number, what: string, shown: unknown): number {
  if (!Number.isFinite(n) || n < 0) throw new CapsuleError('USAGE', `${what}: ${String(shown)} must be a non-negative number`);
  return Math.round(n);
}

/** Formats bytes for messages: `256 MiB`, `1.5 KiB`, `12 bytes`. */
export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${+(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${+(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}
