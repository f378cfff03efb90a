/**
 * File grants as mounts (conventions.md §2): `--dir HOST[:GUEST][:ro]`. The same table serves
 * WASI preopens and the file host functions. Nothing resolves outside a mount.
 */
import { lstatSync, readlinkSync, realpathSync, statSync, type BigIntStats } from 'node:fs';
import { isAbsolute, posix, resolve } from 'node:path';
import { CapsuleError } from '../engine/errors.ts';
import { Errno } from './errno.ts';

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

/** The parts of `HOST[:GUEST][:ro|:rw]`; GUEST defaults to HOST as written. */
export function splitDirGrant(spec: string): { host: string; guest: string; mode?: 'ro' | 'rw' } {
  const parts = spec.split(':');
  let mode: 'ro' | 'rw' | undefined;
  if (parts.length > 1 && (parts.at(-1) === 'ro' || parts.at(-1) === 'rw')) mode = parts.pop() as 'ro' | 'rw';
  const host = parts[0] ?? '';
  return { host, guest: parts.length > 1 ? parts.slice(1).join(':') : host, mode };
}

/**
 * A grant written in a config file: a relative HOST is made absolute against the file's folder
 * `base`; GUEST stays as written (it defaulted to HOST as written).
 */
export function rebaseDirGrant(spec: string, base: string): string {
  const { host, guest, mode } = splitDirGrant(spec);
  if (!host || isAbsolute(host)) return spec;
  return `${resolve(base, host)}:${guest}${mode ? `:${mode}` : ''}`;
}

/**
 * Parses `HOST[:GUEST][:ro]` (or `:rw`). GUEST defaults to HOST as written.
 * @param cwd directory relative host paths resolve against
 * @throws CapsuleError USAGE when HOST is not an existing directory
 */
export function parseDirGrant(spec: string, cwd = process.cwd()): Mount {
  const { host, guest, mode } = splitDirGrant(spec);
  const readOnly = mode === 'ro';
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

/** Symlinks followed while resolving one path before `LOOP` (Linux MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/** A path resolved inside a mount: symlink-free, below the mount's host directory. */
export interface Beneath {
  ok: true;
  /** Components below the mount root (`[]` = the root itself). */
  rel: string[];
  /** Absolute host path (`mount.hostPath` joined with `rel`). */
  host: string;
  /**
   * What the last component is: its `lstat` when it was looked up (after following it when
   * asked), `null` when it does not exist, `undefined` when it was not looked up (not followed).
   */
  stat: BigIntStats | null | undefined;
}

/** A path that cannot be used: the WASI errno and a reason for messages. */
export interface Refusal {
  ok: false;
  /** WASI errno: `NOTCAPABLE` for escapes, `NOENT`, `NOTDIR`, `LOOP`, `INVAL`, `ROFS`, … */
  errno: number;
  reason: string;
}

/** The host path of `rel` under `mount`. */
export function hostPathOf(mount: Mount, rel: readonly string[]): string {
  if (rel.length === 0) return mount.hostPath;
  return (mount.hostPath === '/' ? '' : mount.hostPath) + '/' + rel.join('/');
}

/**
 * Resolves a relative `path` against directory `base` (components below the mount root) of
 * `mount`, one component at a time against the host (lstat/readlink): `.` and empty components
 * are skipped, `..` pops (refused with `NOTCAPABLE` above the mount root), symlinks are expanded
 * (every one in the middle of the path; the last one only when `follow`), and a symlink whose
 * target is absolute is refused with `NOTCAPABLE` (conventions.md §2: nothing resolves outside
 * a mount). The result never contains a symlink except as its last, unfollowed component.
 *
 * A missing last component is not an error (`stat: null`; the caller may create it); a missing
 * or non-directory component before it is `NOENT` / `NOTDIR`. A trailing `/` requires a
 * directory (and follows a last symlink). An absolute `path` is `NOTCAPABLE`, an empty one
 * `NOENT`, one with a NUL byte `INVAL`; more than 40 symlinks is `LOOP`.
 *
 * Checking and using the result are two steps: a concurrent host-side rename can still race
 * with them; the callers that open files re-check the opened file (see `fs.ts`).
 */
export function resolveBeneath(mount: Mount, base: readonly string[], path: string, follow: boolean): Beneath | Refusal {
  if (path.length === 0) return { ok: false, errno: Errno.NOENT, reason: 'empty path' };
  if (path.includes('\0')) return { ok: false, errno: Errno.INVAL, reason: 'path contains a NUL byte' };
  if (path.startsWith('/')) return { ok: false, errno: Errno.NOTCAPABLE, reason: `absolute path "${path}" given relative to a directory` };
  const stack = base.slice();
  const todo = path.split('/').reverse(); // pop() takes the next component
  let mustBeDir = path.endsWith('/');
  let links = 0;
  let stat: BigIntStats | null | undefined;
  let unfollowed = false;
  const isLast = (): boolean => {
    for (let i = todo.length - 1; i >= 0; i--) if (todo[i] !== '' && todo[i] !== '.') return false;
    return true;
  };
  while (todo.length > 0) {
    const c = todo.pop()!;
    if (c === '' || c === '.') continue;
    stat = undefined;
    if (c === '..') {
      if (stack.length === 0) {
        return { ok: false, errno: Errno.NOTCAPABLE, reason: `"${path}" climbs above the mount root (--dir ${mount.spec})` };
      }
      stack.pop();
      continue;
    }
    const last = isLast();
    const host = hostPathOf(mount, stack) + (stack.length === 0 && mount.hostPath === '/' ? '' : '/') + c;
    if (last && !follow && !mustBeDir) {
      stack.push(c);
      unfollowed = true;
      break;
    }
    const st = lstatSync(host, { bigint: true, throwIfNoEntry: false });
    if (!st) {
      if (!last) return { ok: false, errno: Errno.NOENT, reason: `"${[...stack, c].join('/')}" does not exist` };
      stack.push(c);
      stat = null;
      break;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return { ok: false, errno: Errno.LOOP, reason: `too many symbolic links in "${path}"` };
      const target = readlinkSync(host, 'utf8');
      if (target.startsWith('/')) {
        return { ok: false, errno: Errno.NOTCAPABLE, reason: `symlink "${[...stack, c].join('/')}" points to an absolute path` };
      }
      if (target.length === 0) return { ok: false, errno: Errno.NOENT, reason: `symlink "${[...stack, c].join('/')}" is empty` };
      if (last && target.endsWith('/')) mustBeDir = true;
      for (const t of target.split('/').reverse()) todo.push(t);
      continue;
    }
    if (!last && !st.isDirectory()) return { ok: false, errno: Errno.NOTDIR, reason: `"${[...stack, c].join('/')}" is not a directory` };
    stack.push(c);
    stat = st;
  }
  if (stat === undefined && !unfollowed) {
    // The path ended in `..` or `.`: it names a directory already walked through.
    stat = lstatSync(hostPathOf(mount, stack), { bigint: true, throwIfNoEntry: false }) ?? null;
  }
  if (mustBeDir && stat && !stat.isDirectory()) return { ok: false, errno: Errno.NOTDIR, reason: `"${path}" is not a directory` };
  return { ok: true, rel: stack, host: hostPathOf(mount, stack), stat };
}

/** The result of `resolveInMounts`. */
export type MountResolution =
  | { ok: true; hostPath: string; mount: Mount; rel: string[]; exists: boolean }
  | { ok: false; errno: number; message: string };

/**
 * Resolves a guest path (relative ones against `/`) through the mount table, for the file host
 * functions and anything else outside WASI: the mount with the longest matching guest path is
 * chosen, then the rest of the path is resolved with `resolveBeneath` (symlinks followed; none
 * may lead outside the mount).
 * @param options.write the caller will modify the path (refused on `:ro` mounts with `ROFS`)
 * @param options.follow follow a symlink in the last component (default true)
 * @returns the host path, or a failure with the WASI errno and a message that names the guest
 *   path and, when no mount covers it, the `--dir` grant that is missing (conventions.md §2)
 */
export function resolveInMounts(mounts: readonly Mount[], guestPath: string, options: { write?: boolean; follow?: boolean } = {}): MountResolution {
  const p = normaliseGuestPath(guestPath);
  let best: Mount | undefined;
  for (const m of mounts) {
    const covers = m.guestPath === '/' || p === m.guestPath || p.startsWith(m.guestPath + '/');
    if (covers && (!best || m.guestPath.length > best.guestPath.length)) best = m;
  }
  if (!best) {
    const dir = posix.dirname(p);
    const hint = mounts.length === 0 ? 'no directory is granted' : `granted: ${mounts.map((m) => m.guestPath).join(', ')}`;
    return { ok: false, errno: Errno.NOTCAPABLE, message: `${p}: no --dir grant covers this path (${hint}); add --dir HOST:${dir}` };
  }
  if (options.write && best.readOnly) {
    return { ok: false, errno: Errno.ROFS, message: `${p}: the mount --dir ${best.spec} is read-only` };
  }
  const rest = best.guestPath === '/' ? p.slice(1) : p.slice(best.guestPath.length + 1);
  const r = resolveBeneath(best, [], rest === '' ? '.' : rest, options.follow ?? true);
  if (!r.ok) return { ok: false, errno: r.errno, message: `${p}: ${r.reason}` };
  const exists = r.stat === undefined ? lstatSync(r.host, { throwIfNoEntry: false }) !== undefined : r.stat !== null;
  return { ok: true, hostPath: r.host, mount: best, rel: r.rel, exists };
}
