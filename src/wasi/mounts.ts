/**
 * File grants as mounts (conventions.md §2): `--dir HOST[:GUEST][:ro]`. The same table serves
 * WASI preopens and the file host functions. Nothing resolves outside a mount.
 */
import {
  closeSync, existsSync, fstatSync, lstatSync, openSync, readlinkSync, realpathSync, statSync, constants as fsc, type BigIntStats,
} from 'node:fs';
import { isAbsolute, posix, resolve } from 'node:path';
import { CapsuleError } from '../base/errors.ts';
import type { Mount } from '../base/settings.ts';
import { Errno, errnoFromSystemError } from './errno.ts';

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
 * @throws CapsuleError USAGE when HOST is not an existing directory, or the system has no
 *   `/proc/self/fd` (Linux) for the sandbox's walks
 */
export function parseDirGrant(spec: string, cwd = process.cwd()): Mount {
  const { host, guest, mode } = splitDirGrant(spec);
  const readOnly = mode === 'ro';
  if (!host) throw new CapsuleError('USAGE', `--dir "${spec}": expected HOST[:GUEST][:ro]`);
  if (!existsSync('/proc/self/fd')) {
    throw new CapsuleError('USAGE', `--dir "${spec}": file grants need Linux's /proc/self/fd (the sandbox resolves paths through it), which this system lacks`);
  }
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
/** Longest path (bytes, with its NUL: Linux PATH_MAX) and longest component (NAME_MAX). */
const PATH_MAX = 4096;
const NAME_MAX = 255;
/** How a walk holds a directory: read-only, a directory, never reached through a symlink. */
const DIR_OPEN = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;
/** Longest guest path a message repeats whole (characters); longer ones are cut. */
const SHOWN_MAX = 200;

/**
 * The procfs path that names host descriptor `fd`, or `name` inside the directory `fd` is open
 * on. Linux resolves it from the descriptor itself: `/proc/self/fd/7/x` is `x` in the directory
 * fd 7 is open on, wherever that directory has been renamed to, and no symlink in the host path
 * of that directory is followed. This is how the sandbox does `openat`-style calls from Node.js,
 * which has no `*at` file functions. `name` must be one component (no `/`, not `.`/`..`).
 */
export function fdPath(fd: number, name = ''): string {
  return name === '' ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

/**
 * Opens the host directory of a mount (a descriptor walks start from).
 * @throws system errors (the directory was removed or replaced by a symlink since startup)
 */
export function openMountRoot(mount: Mount): number {
  return openSync(mount.hostPath, DIR_OPEN);
}

/** A guest path as messages show it: whole when short, else its start and its length. */
export function shownGuestPath(p: string): string {
  return p.length <= SHOWN_MAX ? p : `${p.slice(0, 60)}… (${Buffer.byteLength(p)} bytes)`;
}

/**
 * Whether a walk follows a symlink in the last component: `true`; `false` (not unless the path
 * ends with `/`, as `lstat`); `'never'` (as `mkdir`, `unlink`, `rename`, `symlink`, which act on
 * the last component itself: a trailing `/` neither follows it nor requires a directory, the
 * caller decides what the `/` means).
 */
export type Follow = boolean | 'never';

/** Where a walk starts: a host descriptor on a directory of `mount`. */
export interface WalkFrom {
  mount: Mount;
  /** Host directory descriptor; the walk never closes it. */
  fd: number;
  /** The descriptor is the mount root (messages say "mount root"). */
  root?: boolean;
}

/**
 * A path resolved below a directory descriptor. The result is named by a descriptor on its
 * parent directory and a single component, so using it looks nothing up by host path.
 */
export interface Resolved {
  ok: true;
  /** Host descriptor of the directory holding `name` (or of the directory itself when `name` is ''). */
  dir: number;
  /**
   * The last component: never `.`, `..` or empty, without `/`; '' when the path names a
   * directory the walk went through (`.`, `sub/..`, `sub/.`, or a symlink to one of those).
   */
  name: string;
  /** `lstat` of the result (`fstat` of `dir` when `name` is ''); null when it does not exist. */
  stat: BigIntStats | null;
  /** `fdPath(dir, name)`. With `name` '' this is a procfs link to `dir`: follow it, never act on it. */
  at: string;
  /** Closes the descriptors the walk opened (never the one it started from). */
  release(): void;
}

/** A path that cannot be used: the WASI errno and a reason for messages. */
export interface Refusal {
  ok: false;
  /** WASI errno: `NOTCAPABLE` for escapes, `NOENT`, `NOTDIR`, `LOOP`, `INVAL`, `NAMETOOLONG`, … */
  errno: number;
  /** Names guest-side components only, never a host path. */
  reason: string;
}

/** Thrown inside a walk; becomes a `Refusal`. */
class Refused {
  readonly errno: number;
  readonly reason: string;
  constructor(errno: number, reason: string) {
    this.errno = errno;
    this.reason = reason;
  }
}

/**
 * Whether only empty components (trailing slashes) are left: the component before them is the
 * last one. One before a `.` is not (`dir/.` names `dir` as a directory walked into).
 */
function onlySlashesLeft(todo: readonly string[]): boolean {
  for (let i = todo.length - 1; i >= 0; i--) if (todo[i] !== '') return false;
  return true;
}

/**
 * One resolution: a stack of directory descriptors from the start (not owned) down to the
 * current directory (owned), and the guest-side names walked (for messages).
 */
class Walk {
  readonly #fds: number[];
  readonly #names: string[] = [];
  readonly #from: WalkFrom;
  readonly #judge: boolean;
  /** Components walked below a missing or non-directory one (judging link targets only). */
  #virtual = 0;
  #links = 0;
  #mustBeDir = false;

  constructor(from: WalkFrom, judge: boolean) {
    this.#from = from;
    this.#fds = [from.fd];
    this.#judge = judge;
  }

  get top(): number {
    return this.#fds[this.#fds.length - 1]!;
  }

  /** Walks `path`; @returns the last component ('' = the current directory) and its stat */
  run(path: string, follow: Follow): { name: string; stat: BigIntStats | null } {
    const todo = path.split('/').reverse();
    const never = follow === 'never';
    this.#mustBeDir = !never && path.endsWith('/');
    while (todo.length > 0) {
      const c = todo.pop()!;
      if (c === '' || c === '.') continue;
      if (this.#virtual > 0) {
        this.#virtual += c === '..' ? -1 : 1;
        continue;
      }
      if (c === '..') {
        this.#up();
        continue;
      }
      if (Buffer.byteLength(c) > NAME_MAX) throw new Refused(Errno.NAMETOOLONG, 'a path component is longer than 255 bytes');
      const last = onlySlashesLeft(todo);
      const at = fdPath(this.top, c);
      const st = lstatSync(at, { bigint: true, throwIfNoEntry: false }) ?? null;
      if (st?.isSymbolicLink() && (!last || (!never && (follow || this.#mustBeDir)))) {
        this.#expand(at, c, todo, last);
        continue;
      }
      if (last) return this.#last(c, st);
      if (!st || !st.isDirectory()) {
        if (this.#judge) this.#virtual = 1;
        else throw new Refused(st ? Errno.NOTDIR : Errno.NOENT, `"${this.#shown(c)}" ${st ? 'is not a directory' : 'does not exist'}`);
        continue;
      }
      if (!this.#down(c)) todo.push(c); // replaced since the lstat: look at it again
    }
    return this.#last('', fstatSync(this.top, { bigint: true }));
  }

  #last(name: string, stat: BigIntStats | null): { name: string; stat: BigIntStats | null } {
    if (this.#mustBeDir && stat && !stat.isDirectory()) {
      throw new Refused(Errno.NOTDIR, `"${this.#shown(name)}" is not a directory`);
    }
    return { name, stat };
  }

  /** `..`: back to the directory the walk came from; never above the start. */
  #up(): void {
    if (this.#fds.length === 1) {
      const where = this.#from.root ? `the mount root ${this.#from.mount.guestPath}` : 'the directory it is resolved from';
      throw new Refused(Errno.NOTCAPABLE, `climbs above ${where}`);
    }
    closeSync(this.#fds.pop()!);
    this.#names.pop();
  }

  /** Opens directory `c` of the current one. @returns false when `c` stopped being a directory */
  #down(c: string): boolean {
    let fd: number;
    try {
      fd = openSync(fdPath(this.top, c), DIR_OPEN);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTDIR' && code !== 'ELOOP') throw e;
      if (++this.#links > MAX_SYMLINKS) throw new Refused(Errno.LOOP, 'too many symbolic links');
      return false;
    }
    this.#fds.push(fd);
    this.#names.push(c);
    return true;
  }

  /** Splices the target of symlink `c` (at `at`) into the components still to walk. */
  #expand(at: string, c: string, todo: string[], last: boolean): void {
    if (++this.#links > MAX_SYMLINKS) throw new Refused(Errno.LOOP, 'too many symbolic links');
    const target = readlinkSync(at, 'utf8');
    if (target.startsWith('/')) throw new Refused(Errno.NOTCAPABLE, `symlink "${this.#shown(c)}" points to an absolute path`);
    if (target.length === 0) throw new Refused(Errno.NOENT, `symlink "${this.#shown(c)}" is empty`);
    if (last && target.endsWith('/')) this.#mustBeDir = true;
    const parts = target.split('/');
    for (let i = parts.length - 1; i >= 0; i--) todo.push(parts[i]!);
  }

  #shown(c: string): string {
    return shownGuestPath([...this.#names, c].filter((n) => n !== '').join('/') || '.');
  }

  /** Closes every descriptor the walk opened except `keep`. */
  close(keep = -1): void {
    for (let i = 1; i < this.#fds.length; i++) if (this.#fds[i] !== keep) closeSync(this.#fds[i]!);
    this.#fds.length = 1;
  }
}

/** Rejects paths no walk accepts: empty, with NUL, absolute, longer than PATH_MAX. */
function checkPath(path: string): Refusal | undefined {
  if (path.length === 0) return { ok: false, errno: Errno.NOENT, reason: 'empty path' };
  if (path.includes('\0')) return { ok: false, errno: Errno.INVAL, reason: 'the path contains a NUL byte' };
  if (path.startsWith('/')) return { ok: false, errno: Errno.NOTCAPABLE, reason: 'an absolute path where a relative one is expected' };
  if (Buffer.byteLength(path) >= PATH_MAX) return { ok: false, errno: Errno.NAMETOOLONG, reason: 'the path is longer than 4095 bytes' };
  return undefined;
}

/** A refusal for what a walk threw (its own refusals and host system errors); rethrows the rest. */
function refusalOf(e: unknown): Refusal {
  if (e instanceof Refused) return { ok: false, errno: e.errno, reason: e.reason };
  const errno = errnoFromSystemError(e);
  if (errno === undefined) throw e;
  return { ok: false, errno, reason: systemReason(e) };
}

const REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory', EISDIR: 'is a directory', ENOTDIR: 'not a directory',
  EACCES: 'permission denied', EPERM: 'operation not permitted', ELOOP: 'is a symbolic link',
  EROFS: 'read-only file system', ENOSPC: 'no space left on device', ENAMETOOLONG: 'name too long',
  EEXIST: 'already exists', ENOTEMPTY: 'directory not empty', EMFILE: 'too many open files',
};

/** A short reason for a host system error: never its message, which names host paths. */
export function systemReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | null)?.code ?? 'EIO';
  return REASONS[code] ?? `error ${code}`;
}

/**
 * Resolves a relative guest `path` below directory descriptor `from.fd`, one component at a
 * time, the way Linux resolves it except that nothing is ever looked up by host path: each
 * component is `lstat`ed in the directory the walk holds a descriptor on (`fdPath`), each
 * directory walked into is opened with `O_NOFOLLOW | O_DIRECTORY`, a symlink's target is
 * spliced in and walked the same way from the link's directory, and `..` goes back to the
 * directory the walk came from. `..` above `from.fd` is `NOTCAPABLE` (the WASI rule: a
 * descriptor grants what is below it), and so is a symlink to an absolute path. More than 40
 * symlinks is `LOOP`. A symlink as the last component is followed as `follow` says (`Follow`);
 * a trailing `/` otherwise requires a directory (`NOTDIR`).
 *
 * A missing last component is not an error (`stat: null`: the caller may create it); a missing
 * or non-directory component before it is `NOENT` / `NOTDIR`. An empty path is `NOENT`, one
 * with a NUL byte `INVAL`, an absolute one `NOTCAPABLE`; `NAMETOOLONG` past 255-byte components
 * or 4095-byte paths. Host system errors become their errno; the reasons name no host path.
 *
 * What the result names cannot be moved out of the mount by renames or links made after the
 * walk: `dir` is a descriptor. Only its last component is looked up again when used, inside
 * `dir`, and callers must not follow it (`O_NOFOLLOW`, `lstat`, `lutimes`).
 */
export function resolveAt(from: WalkFrom, path: string, follow: Follow): Resolved | Refusal {
  const bad = checkPath(path);
  if (bad) return bad;
  const w = new Walk(from, false);
  try {
    const { name, stat } = w.run(path, follow);
    const dir = w.top;
    w.close(dir);
    const owned = dir !== from.fd;
    return { ok: true, dir, name, stat, at: fdPath(dir, name), release: () => { if (owned) closeSync(dir); } };
  } catch (e) {
    w.close();
    return refusalOf(e);
  }
}

/**
 * Whether a symlink to `target` made in directory `linkDir` (a descriptor) of `mount` stays
 * inside the mount, judged by the walk of `resolveAt` from the mount root through the
 * directory's current place: components that do not exist (yet) are walked in name only, so a
 * dangling link is accepted unless its `..` would climb above the root.
 * @returns undefined when the link may be made, else the refusal (`NOTCAPABLE`, `NOENT` for an
 *   empty target, `INVAL` for a NUL byte)
 */
export function judgeLinkTarget(mount: Mount, linkDir: number, target: string): Refusal | undefined {
  if (target.length === 0) return { ok: false, errno: Errno.NOENT, reason: 'empty symlink target' };
  if (target.includes('\0')) return { ok: false, errno: Errno.INVAL, reason: 'the target contains a NUL byte' };
  if (target.startsWith('/')) return { ok: false, errno: Errno.NOTCAPABLE, reason: 'a symlink to an absolute path' };
  let root: number;
  let place: string;
  try {
    place = readlinkSync(fdPath(linkDir), 'utf8');
    root = openMountRoot(mount);
  } catch (e) {
    return refusalOf(e);
  }
  const prefix = mount.hostPath === '/' ? '/' : mount.hostPath + '/';
  if (place !== mount.hostPath && !place.startsWith(prefix)) {
    closeSync(root);
    return { ok: false, errno: Errno.NOTCAPABLE, reason: 'the directory is no longer inside its mount' };
  }
  const rel = place === mount.hostPath ? '' : place.slice(prefix.length);
  const w = new Walk({ mount, fd: root, root: true }, true);
  try {
    w.run(`${rel}/${target}`, true);
    return undefined;
  } catch (e) {
    const r = refusalOf(e);
    return r.errno === Errno.NOTCAPABLE ? r : undefined;
  } finally {
    w.close();
    closeSync(root);
  }
}

/** The result of `resolveInMounts`. */
export type MountResolution =
  | (Resolved & { mount: Mount })
  | { ok: false; errno: number; message: string };

/** The mount whose guest path is the longest prefix of `parts` (before any `..`), if any. */
function coveringMount(mounts: readonly Mount[], parts: readonly string[]): { mount: Mount; depth: number } | undefined {
  let best: { mount: Mount; depth: number } | undefined;
  for (const m of mounts) {
    const mp = m.guestPath.split('/').filter((c) => c !== '');
    if (mp.length > parts.length || (best && mp.length <= best.depth)) continue;
    if (mp.every((c, i) => parts[i] === c)) best = { mount: m, depth: mp.length };
  }
  return best;
}

/** What follows the first `n` components of `path` (`.`, `..` and trailing slashes kept as written). */
function afterComponents(path: string, n: number): string {
  const raw = path.split('/');
  let i = 0;
  for (let seen = 0; i < raw.length && seen < n; i++) if (raw[i] !== '' && raw[i] !== '.') seen++;
  return raw.slice(i).join('/').replace(/^\/+/, '');
}

/**
 * Resolves a guest path (relative ones against `/`) through the mount table, for the file host
 * functions: the mount whose guest path is the longest prefix of the path's leading components
 * is chosen (a `..` is never used to choose it), then the rest is resolved with `resolveAt` from
 * a descriptor on the mount's host directory, `..` above it being refused.
 * @param options.write the caller will modify the path (refused on `:ro` mounts with `ROFS`)
 * @param options.follow follow a symlink in the last component (default true)
 * @returns the resolution (release it), or a failure with the WASI errno and a message that
 *   names the guest path and the grant's guest side, never a host path (conventions.md §2);
 *   when no mount covers the path, the message says which `--dir` to add
 */
export function resolveInMounts(mounts: readonly Mount[], guestPath: string, options: { write?: boolean; follow?: boolean } = {}): MountResolution {
  const shown = shownGuestPath(guestPath);
  const parts = guestPath.split('/').filter((c) => c !== '' && c !== '.');
  const dots = parts.indexOf('..');
  const found = coveringMount(mounts, dots < 0 ? parts : parts.slice(0, dots));
  if (!found) {
    const dir = posix.dirname(normaliseGuestPath(guestPath));
    const hint = mounts.length === 0 ? 'no directory is granted' : `granted: ${mounts.map((m) => m.guestPath).join(', ')}`;
    return { ok: false, errno: Errno.NOTCAPABLE, message: `${shown}: no --dir grant covers this path (${hint}); add --dir HOST:${shownGuestPath(dir)}` };
  }
  const { mount, depth } = found;
  if (options.write && mount.readOnly) return { ok: false, errno: Errno.ROFS, message: `${shown}: the mount ${mount.guestPath} is read-only` };
  const rest = afterComponents(guestPath, depth);
  let root: number;
  try {
    root = openMountRoot(mount);
  } catch (e) {
    return { ok: false, errno: errnoFromSystemError(e) ?? Errno.IO, message: `${shown}: the mount ${mount.guestPath} is not available (${systemReason(e)})` };
  }
  const r = resolveAt({ mount, fd: root, root: true }, rest === '' ? '.' : rest, options.follow ?? true);
  if (!r.ok) {
    closeSync(root);
    return { ok: false, errno: r.errno, message: `${shown}: ${r.reason}` };
  }
  const release = r.release;
  return { ...r, mount, release: () => { release(); closeSync(root); } };
}
