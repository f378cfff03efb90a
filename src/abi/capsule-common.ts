/**
 * Pieces shared by the Capsule ABI generations: start-up (capsule-abi.md §2.2) and header names.
 */
import { WasiExit } from '../wasi/preview1.ts';
import { CapsuleError } from '../engine/errors.ts';
import type { Guest } from './guest.ts';

/**
 * §2.2 step 2: `_initialize` if exported, else `_start`. A WASI exit 0 inside it is success;
 * any other exit is a load failure.
 */
export async function startCapsuleGuest(guest: Guest): Promise<void> {
  const entry = guest.has('_initialize') ? '_initialize' : guest.has('_start') ? '_start' : undefined;
  if (!entry) return;
  try {
    await guest.call(entry);
  } catch (e) {
    if (e instanceof WasiExit && e.code === 0) return;
    if (e instanceof WasiExit) throw new CapsuleError('TRAP', `${entry} exited with code ${e.code}`);
    throw e;
  }
}

/** Canonical header name as Go handed it to guests: `content-type` → `Content-Type` (§4.3). */
export function canonicalHeaderName(name: string): string {
  let c = CANONICAL.get(name);
  if (c === undefined) {
    c = name.toLowerCase().replace(/(^|-)([a-z])/g, (_m, sep: string, ch: string) => sep + ch.toUpperCase());
    if (CANONICAL.size < 1000) CANONICAL.set(name, c); // header names repeat: remember a bounded set
  }
  return c;
}
const CANONICAL = new Map<string, string>();

/** Request headers with canonical names, repeated ones joined with `, ` (§4.3). */
export function canonicalHeaders(headers: readonly [string, string][]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [n, v] of headers) {
    const k = canonicalHeaderName(n);
    const prev = out.get(k);
    out.set(k, prev === undefined ? v : `${prev}, ${v}`);
  }
  return out;
}
