/**
 * The WASI file-descriptor table of one guest call: stdio (0–2), the preopened mounts (3, 4, …
 * in `--dir` order) and what the guest opens, with their rights, positions and host fds.
 * Layouts and constants are those of `wasi_snapshot_preview1` (witx `typenames.witx`).
 */
import { closeSync, fstatSync, lstatSync, lutimesSync, readdirSync, readlinkSync, utimesSync, type BigIntStats } from 'node:fs';
import { fdPath, openMountRoot } from './mounts.ts';
import { type Mount } from '../base/settings.ts';

/** `rights` bits (u64). */
export const Rights = {
  FD_DATASYNC: 1n << 0n, FD_READ: 1n << 1n, FD_SEEK: 1n << 2n, FD_FDSTAT_SET_FLAGS: 1n << 3n,
  FD_SYNC: 1n << 4n, FD_TELL: 1n << 5n, FD_WRITE: 1n << 6n, FD_ADVISE: 1n << 7n,
  FD_ALLOCATE: 1n << 8n, PATH_CREATE_DIRECTORY: 1n << 9n, PATH_CREATE_FILE: 1n << 10n,
  PATH_LINK_SOURCE: 1n << 11n, PATH_LINK_TARGET: 1n << 12n, PATH_OPEN: 1n << 13n,
  FD_READDIR: 1n << 14n, PATH_READLINK: 1n << 15n, PATH_RENAME_SOURCE: 1n << 16n,
  PATH_RENAME_TARGET: 1n << 17n, PATH_FILESTAT_GET: 1n << 18n, PATH_FILESTAT_SET_SIZE: 1n << 19n,
  PATH_FILESTAT_SET_TIMES: 1n << 20n, FD_FILESTAT_GET: 1n << 21n, FD_FILESTAT_SET_SIZE: 1n << 22n,
  FD_FILESTAT_SET_TIMES: 1n << 23n, PATH_SYMLINK: 1n << 24n, PATH_REMOVE_DIRECTORY: 1n << 25n,
  PATH_UNLINK_FILE: 1n << 26n, POLL_FD_READWRITE: 1n << 27n, SOCK_SHUTDOWN: 1n << 28n,
  SOCK_ACCEPT: 1n << 29n,
} as const;

const R = Rights;
/** Rights that make sense on a regular file. */
export const FILE_RIGHTS = R.FD_DATASYNC | R.FD_READ | R.FD_SEEK | R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_TELL
  | R.FD_WRITE | R.FD_ADVISE | R.FD_ALLOCATE | R.FD_FILESTAT_GET | R.FD_FILESTAT_SET_SIZE | R.FD_FILESTAT_SET_TIMES
  | R.POLL_FD_READWRITE;
/** Rights that make sense on a directory. */
export const DIR_RIGHTS = R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_ADVISE | R.PATH_CREATE_DIRECTORY | R.PATH_CREATE_FILE
  | R.PATH_LINK_SOURCE | R.PATH_LINK_TARGET | R.PATH_OPEN | R.FD_READDIR | R.PATH_READLINK | R.PATH_RENAME_SOURCE
  | R.PATH_RENAME_TARGET | R.PATH_FILESTAT_GET | R.PATH_FILESTAT_SET_SIZE | R.PATH_FILESTAT_SET_TIMES
  | R.FD_FILESTAT_GET | R.FD_FILESTAT_SET_TIMES | R.PATH_SYMLINK | R.PATH_REMOVE_DIRECTORY | R.PATH_UNLINK_FILE;
/** Rights whose presence in `path_open` means the file is opened for writing. */
export const WRITE_RIGHTS = R.FD_WRITE | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE;
/** Rights whose presence in `path_open` means the file is opened for reading. */
export const READ_RIGHTS = R.FD_READ | R.FD_READDIR;
const STDIN_RIGHTS = R.FD_READ | R.FD_FILESTAT_GET | R.POLL_FD_READWRITE | R.FD_FDSTAT_SET_FLAGS;
const STDOUT_RIGHTS = R.FD_WRITE | R.FD_FILESTAT_GET | R.POLL_FD_READWRITE | R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_DATASYNC;

/** `filetype` values. */
export const FileType = {
  UNKNOWN: 0, BLOCK_DEVICE: 1, CHARACTER_DEVICE: 2, DIRECTORY: 3, REGULAR_FILE: 4,
  SOCKET_DGRAM: 5, SOCKET_STREAM: 6, SYMBOLIC_LINK: 7,
} as const;

/** `oflags` bits (u16). */
export const OFlags = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 } as const;
/** `fdflags` bits (u16). */
export const FdFlags = { APPEND: 1, DSYNC: 2, NONBLOCK: 4, RSYNC: 8, SYNC: 16 } as const;
/** `lookupflags` bit: follow a symlink in the last path component. */
export const LOOKUP_SYMLINK_FOLLOW = 1;
/** `fstflags` bits (u16). */
export const FstFlags = { ATIM: 1, ATIM_NOW: 2, MTIM: 4, MTIM_NOW: 8 } as const;

/** Standard input, output or error. */
export interface StdioFd {
  kind: 'stdio';
  stream: 0 | 1 | 2;
  rightsBase: bigint;
  rightsInheriting: bigint;
  fdflags: number;
}

/** A file the guest opened (any non-directory: regular file, device, …). */
export interface FileFd {
  kind: 'file';
  hostFd: number;
  mount: Mount;
  /** `fdPath(hostFd)`: a path that names this file on the host through its descriptor. */
  host: string;
  filetype: number;
  rightsBase: bigint;
  rightsInheriting: bigint;
  fdflags: number;
  /** Opened for writing on the host. */
  writable: boolean;
  /** Current offset, bytes (reads and non-append writes use explicit positions). */
  pos: number;
}

/** One `fd_readdir` entry. */
export interface DirListingEntry {
  name: Uint8Array;
  type: number;
  /** Inode, looked up when first listed; undefined until then. */
  ino?: bigint;
  /** Where to lstat for the inode: `fdPath(directory descriptor, name)`. */
  at: string;
}

/**
 * A preopened mount or a directory the guest opened. It holds a host descriptor on the
 * directory: paths are resolved from it (`resolveAt`), so renaming the directory, or planting
 * a symlink where it was, never makes it name another directory.
 */
export interface DirFd {
  kind: 'dir';
  mount: Mount;
  /** Host descriptor on the directory (`O_RDONLY | O_DIRECTORY`); -1 when a preopen's directory could not be opened. */
  hostFd: number;
  /** `fdPath(hostFd)`: a path that names this directory on the host through its descriptor. */
  host: string;
  rightsBase: bigint;
  rightsInheriting: bigint;
  fdflags: number;
  /** Guest path of a preopen (`fd_prestat_dir_name`), UTF-8. */
  preopen?: Uint8Array;
  /** Snapshot taken by `fd_readdir` at cookie 0; cookies index it. */
  listing?: DirListingEntry[];
}

export type FdEntry = StdioFd | FileFd | DirFd;

const encoder = new TextEncoder();

/** Default cap on descriptors a guest may hold open at once (stdio and preopens not counted). */
export const DEFAULT_MAX_OPEN_FILES = 1024;

/**
 * Descriptor table of one call. Descriptors are allocated lowest-free-first (POSIX). The guest
 * may hold at most `max` descriptors it opened itself; `closeAll` releases every host fd.
 */
export class FdTable {
  readonly #slots: (FdEntry | undefined)[] = [];
  readonly #max: number;
  #opened = 0;
  #lowFree = 0;

  /** @param mounts preopened as fds 3, 4, … in order; @param max cap on guest-opened fds */
  constructor(mounts: readonly Mount[], max: number) {
    this.#max = max;
    this.#slots.push(
      { kind: 'stdio', stream: 0, rightsBase: STDIN_RIGHTS, rightsInheriting: 0n, fdflags: 0 },
      { kind: 'stdio', stream: 1, rightsBase: STDOUT_RIGHTS, rightsInheriting: 0n, fdflags: FdFlags.APPEND },
      { kind: 'stdio', stream: 2, rightsBase: STDOUT_RIGHTS, rightsInheriting: 0n, fdflags: FdFlags.APPEND },
    );
    for (const m of mounts) {
      let hostFd = -1;
      try {
        hostFd = openMountRoot(m);
      } catch {
        // removed or replaced since startup: every use of this preopen fails with NOENT
      }
      this.#slots.push({
        kind: 'dir', mount: m, hostFd, host: fdPath(hostFd), rightsBase: DIR_RIGHTS,
        rightsInheriting: DIR_RIGHTS | FILE_RIGHTS, fdflags: 0, preopen: encoder.encode(m.guestPath),
      });
    }
    this.#lowFree = this.#slots.length;
  }

  get(fd: number): FdEntry | undefined {
    return this.#slots[fd];
  }

  /** Whether the guest holds `max` descriptors of its own (a new open fails with MFILE). */
  get full(): boolean {
    return this.#opened >= this.#max;
  }

  /** Descriptors the guest opened and still holds. */
  get opened(): number {
    return this.#opened;
  }

  /** Installs a newly opened entry at the lowest free descriptor and returns it. */
  add(entry: FileFd | DirFd): number {
    let fd = this.#lowFree;
    while (fd < this.#slots.length && this.#slots[fd] !== undefined) fd++;
    if (fd === this.#slots.length) this.#slots.push(entry);
    else this.#slots[fd] = entry;
    this.#lowFree = fd + 1;
    this.#opened++;
    return fd;
  }

  /** Closes a descriptor (its host fd too). @returns false when `fd` is not open */
  close(fd: number): boolean {
    const e = this.#slots[fd];
    if (!e) return false;
    this.#slots[fd] = undefined;
    if (fd < this.#lowFree) this.#lowFree = fd;
    this.#release(e);
    return true;
  }

  /** `fd_renumber`: `to` is closed and replaced by `from`. @returns false when either is not open */
  renumber(from: number, to: number): boolean {
    const a = this.#slots[from];
    const b = this.#slots[to];
    if (!a || !b) return false;
    if (from === to) return true;
    this.#release(b);
    this.#slots[to] = a;
    this.#slots[from] = undefined;
    if (from < this.#lowFree) this.#lowFree = from;
    return true;
  }

  /** Closes every host fd the call opened (at `unbind`). */
  closeAll(): void {
    for (let i = 0; i < this.#slots.length; i++) {
      const e = this.#slots[i];
      if (e) this.#release(e);
      this.#slots[i] = undefined;
    }
    this.#opened = 0;
  }

  #release(e: FdEntry): void {
    if (e.kind === 'stdio') return;
    if (!(e.kind === 'dir' && e.preopen)) this.#opened--;
    if (e.hostFd < 0) return;
    try {
      closeSync(e.hostFd);
    } catch {
      // already closed by the host: nothing to release
    }
  }
}

/** The WASI `filetype` of a host stat. FIFOs have no WASI type: `UNKNOWN`. */
export function fileTypeOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): number {
  if (st.isFile()) return FileType.REGULAR_FILE;
  if (st.isDirectory()) return FileType.DIRECTORY;
  if (st.isSymbolicLink()) return FileType.SYMBOLIC_LINK;
  if (st.isCharacterDevice()) return FileType.CHARACTER_DEVICE;
  if (st.isBlockDevice()) return FileType.BLOCK_DEVICE;
  if (st.isSocket()) return FileType.SOCKET_STREAM;
  return FileType.UNKNOWN;
}

/** Writes a 64-byte `filestat` at `ptr`: dev, ino, filetype, nlink, size, atim, mtim, ctim (ns). */
export function writeFilestat(view: DataView, ptr: number, st: BigIntStats | undefined, filetype?: number): void {
  view.setBigUint64(ptr, st?.dev ?? 0n, true);
  view.setBigUint64(ptr + 8, st?.ino ?? 0n, true);
  view.setUint8(ptr + 16, filetype ?? (st ? fileTypeOf(st) : FileType.CHARACTER_DEVICE));
  for (let i = 17; i < 24; i++) view.setUint8(ptr + i, 0);
  view.setBigUint64(ptr + 24, st?.nlink ?? 1n, true);
  view.setBigUint64(ptr + 32, st?.size ?? 0n, true);
  view.setBigUint64(ptr + 40, st?.atimeNs ?? 0n, true);
  view.setBigUint64(ptr + 48, st?.mtimeNs ?? 0n, true);
  view.setBigUint64(ptr + 56, st?.ctimeNs ?? 0n, true);
}

/**
 * Lists a directory for `fd_readdir`: `.` and `..` first, then the host's entries in the host's
 * order, read through the directory's descriptor. Inodes are looked up lazily (`inodeOf`); `..`
 * of a mount root reports the root itself (nothing outside the mount is looked at).
 */
export function listDirectory(dir: DirFd): DirListingEntry[] {
  const self = fstatSync(dir.hostFd, { bigint: true }).ino;
  let up = self;
  if (readlinkSync(dir.host) !== dir.mount.hostPath) up = lstatSync(fdPath(dir.hostFd, '..'), { bigint: true }).ino;
  const out: DirListingEntry[] = [
    { name: encoder.encode('.'), type: FileType.DIRECTORY, ino: self, at: dir.host },
    { name: encoder.encode('..'), type: FileType.DIRECTORY, ino: up, at: dir.host },
  ];
  for (const d of readdirSync(dir.host, { withFileTypes: true })) {
    out.push({ name: encoder.encode(d.name), type: fileTypeOf(d), at: fdPath(dir.hostFd, d.name) });
  }
  return out;
}

/** The inode of a listing entry (0 when it vanished since the listing was taken). */
export function inodeOf(e: DirListingEntry): bigint {
  if (e.ino === undefined) e.ino = lstatSync(e.at, { bigint: true, throwIfNoEntry: false })?.ino ?? 0n;
  return e.ino;
}

/** A time for `setTimes`: nanoseconds since the epoch, `'now'`, or undefined to leave it as it is. */
export type TimeSpec = bigint | 'now' | undefined;

/** The next double above `x` (x ≥ 0). */
function nextUp(x: number): number {
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, x);
  v.setBigUint64(0, v.getBigUint64(0) + 1n);
  return v.getFloat64(0);
}

/**
 * Seconds as libuv takes them (a double it splits into `tv_sec` and `tv_nsec` by truncation),
 * when one double gives exactly `ns`; undefined when none near it does.
 */
function exactSeconds(ns: bigint): number | undefined {
  const sec = ns / 1_000_000_000n;
  if (sec >= 1n << 52n) return undefined;
  const s = Number(sec);
  const f = Number(ns % 1_000_000_000n);
  let x = s + f / 1e9;
  for (let i = 0; i < 4; i++, x = nextUp(x)) {
    if (Math.trunc(x) === s && Math.trunc((x - s) * 1e9) === f) return x;
  }
  return undefined;
}

/** `touch -d @S.N` on `target` (a path in the child, whose fd 3 is `fd`). @returns whether it worked */
function touchExactly(fd: number, target: string, flag: string[], ns: bigint, follow: boolean): boolean {
  const stamp = `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
  // node:child_process is loaded here, at first use: at start it costs ~3 ms (docs/performance.md "Start-up")
  const r = process.getBuiltinModule('node:child_process').spawnSync('touch', ['-c', ...(follow ? [] : ['-h']), ...flag, '-d', stamp, target], { stdio: ['ignore', 'ignore', 'ignore', fd] });
  return r.status === 0;
}

/**
 * Sets the access and modification times of `name` in the directory open on host descriptor
 * `dirFd`, without following a symlink `name` (`name` '': of what `dirFd` is open on, a file
 * or a directory), to the nanosecond (WASI `*_filestat_set_times`). Node's `utimes` takes seconds as a double (about
 * 240 ns apart today): a time no double gives exactly is set by coreutils `touch -d @S.N` run
 * on the same descriptor (its fd 3), or as near as a double gets if `touch` is missing.
 * @throws system errors of `utimes` (ENOENT, EPERM, …)
 */
export function setTimes(dirFd: number, name: string, atime: TimeSpec, mtime: TimeSpec): void {
  const at = fdPath(dirFd, name);
  const follow = name === '';
  const st = follow ? fstatSync(dirFd, { bigint: true }) : lstatSync(at, { bigint: true });
  const now = BigInt(Date.now()) * 1_000_000n;
  const a = atime === 'now' ? now : atime ?? st.atimeNs;
  const m = mtime === 'now' ? now : mtime ?? st.mtimeNs;
  const as = exactSeconds(a);
  const ms = exactSeconds(m);
  if (as === undefined || ms === undefined) {
    const child = follow ? '/proc/self/fd/3' : `/proc/self/fd/3/${name}`;
    const done = a === m ? touchExactly(dirFd, child, [], a, follow)
      : touchExactly(dirFd, child, ['-a'], a, follow) && touchExactly(dirFd, child, ['-m'], m, follow);
    if (done) return;
  }
  const seconds = (ns: bigint, exact: number | undefined): number => exact ?? Number(ns) / 1e9;
  (follow ? utimesSync : lutimesSync)(at, seconds(a, as), seconds(m, ms));
}
