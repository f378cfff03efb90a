/**
 * File grants as mounts (conventions.md §2): `--dir HOST[:GUEST][:ro]`. The same table serves
 * WASI preopens and the file host functions. Nothing resolves outside a mount.
 */
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, posix, resolve } from 'node:path';
import { CapsuleError } from '../engine/errors.ts';

/** One granted directory. */
export interface Mount {
  /** Absolute, symlink-free host directory. */
  readonly hostPath: string;
  /** Absolute, normalised guest path (`/` for `--dir .`, `/data` for `--dir ./data`). */
  readonly guestPath: string;
  readonly readOnly: boolean;
  /** The grant as the user wrote it, for messages. */
  readonly spec: string;
}

/**
 * Parses `HOST[:GUEST][:ro]` (or `:rw`). GUEST defaults to HOST as written.
 * @param cwd directory relative host paths resolve against
 * @throws CapsuleError USAGE when HOST is not an existing directory
 */
export function parseDirGrant(spec: string, cwd = process.cwd()): Mount {
  const parts = spec.split(':');
  let readOnly = false;
  if (parts.length > 1 && (parts.at(-1) === 'ro' || parts.at(-1) === 'rw')) readOnly = parts.pop() === 'ro';
  const host = parts[0] ?? '';
  const guest = parts.length > 1 ? parts.slice(1).join(':') : host;
  if (!host) throw new CapsuleError('USAGE', `--dir "${spec}": expected HOST[:GUEST][:ro]`);
  const abs = resolve(cwd, host);
  let real: string;
  try {
    real = realpathSync(abs);
    if (!statSync(real).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new CapsuleError('USAGE', `--dir "${spec}": ${abs} is not an existing directory`);
  }
  return { hostPath: real, guestPath: normaliseGuestPath(guest), readOnly, spec };
}

/** Guest paths: relative ones resolve against `/`; the result has no `.`/`..` and no trailing `/`. */
export function normaliseGuestPath(p: string): string {
  const abs = isAbsolute(p) || p.startsWith('/') ? p : '/' + p;
  const n = posix.normalize(abs);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}
