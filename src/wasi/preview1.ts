/**
 * WASI preview1 (`wasi_snapshot_preview1`) for guests, written for Capsule instead of node:wasi:
 * node:wasi is not a sandbox and costs ~80 µs per WASI import per instance on these machines.
 *
 * One `Wasi` object is made per (worker, module) and its `imports` are built once; each guest
 * call binds it to that call's memory and configuration with `bind()` (which only sets fields)
 * and releases it with `unbind()` (which closes every file the call opened, or keeps them for the
 * next call of a long-lived instance). Calls on one `Wasi` never overlap (a worker runs one guest
 * call at a time).
 *
 * Files: the mounts of `WasiConfig.mounts` are preopened as fds 3, 4, … (conventions.md §2).
 * Directory descriptors hold host directory descriptors, and every path is walked from one,
 * component by component (`resolveAt`): `..` above the descriptor's directory, absolute paths
 * and symlinks leading outside give `NOTCAPABLE`; the operation then acts on the last component
 * inside the walked directory, without following it. `:ro` mounts refuse every change with
 * `ROFS`. Sockets are not provided (`NOTSUP`).
 */
import {
  closeSync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, linkSync, mkdirSync,
  openSync, readFileSync, readSync, readlinkSync, renameSync, rmdirSync, statSync, symlinkSync, unlinkSync, writeSync,
  constants as fsc,
} from 'node:fs';
import { Errno, errnoFromSystemError } from './errno.ts';
import { PREVIEW1_NAMES } from './signatures.ts';
import { fdPath, judgeLinkTarget, resolveAt, type Follow, type Resolved } from './mounts.ts';
import { type Mount } from '../base/settings.ts';
import {
  DEFAULT_MAX_OPEN_FILES, DIR_RIGHTS, FdFlags, FdTable, FILE_RIGHTS, FileType, FstFlags, LOOKUP_SYMLINK_FOLLOW,
  OFlags, READ_RIGHTS, Rights, WRITE_RIGHTS, fileTypeOf, inodeOf, listDirectory, setTimes, writeFilestat,
  type DirFd, type FdEntry, type FileFd, type TimeSpec,
} from './fs.ts';

/** Per-call configuration of the WASI context. */
export interface WasiConfig {
  /** argv, `args[0]` included (`[""]` for Capsule ABI modules: capsule-abi.md §2.2). */
  args: readonly string[];
  /**
   * Guest-visible environment, in order. Its encoding is reused while later calls pass the same
   * map object, so do not mutate a map once it has been bound.
   */
  env: ReadonlyMap<string, string>;
  /** Standard input: bytes (EOF after them), or `inherit` = the process's fd 0 (CLI). */
  stdin: Uint8Array | 'inherit';
  /** Receives what the guest writes to fd 1 / fd 2. */
  stdout: (bytes: Uint8Array) => void;
  stderr: (bytes: Uint8Array) => void;
  /** Preopened directories (conventions.md §2), fds 3, 4, … in this order; empty = no file access. */
  mounts: readonly Mount[];
  /** Cap on descriptors the guest holds open at once (default 1024); beyond it `path_open` fails with `MFILE`. */
  maxOpenFiles?: number;
}

/** Thrown by `proc_exit`; the engine catches it. `code` 0 inside `_start` is success. */
export class WasiExit extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`guest exited with code ${code}`);
    this.name = 'WasiExit';
    this.code = code;
  }
}

type Fn = (...args: never[]) => number | bigint | void;

const encoder = new TextEncoder();
const EMPTY_BYTES = new Uint8Array(0);
const EMPTY_VIEW = new DataView(new ArrayBuffer(0));
const pathDecoder = new TextDecoder('utf-8', { fatal: true });
/** Host open(2) flags that exist on every platform Node supports; O_NOFOLLOW/O_DIRECTORY may be 0. */
const O_NOFOLLOW = fsc.O_NOFOLLOW ?? 0;
/** Longest single sleep slice of `poll_oneoff`, ms (the worker stays killable between slices). */
const SLEEP_SLICE_MS = 100;

/** A path failure inside an import: carries the errno out of helpers. */
class WasiFail {
  readonly errno: number;
  constructor(errno: number) {
    this.errno = errno;
  }
}

function fail(errno: number): never {
  throw new WasiFail(errno);
}

/** The last component of a guest path as written (`a/b/` → `b`), for `.`/`..` checks. */
function lastComponent(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/** WASI preview1 host for one worker and module; see the module comment. */
export class Wasi {
  /** The `wasi_snapshot_preview1` import object; stable for the life of this `Wasi`. */
  readonly imports: Record<string, Fn>;
  #memory: WebAssembly.Memory | undefined;
  #buffer: ArrayBufferLike | undefined;
  #u8 = EMPTY_BYTES;
  #dv = EMPTY_VIEW;
  #config: WasiConfig | undefined;
  #table: FdTable | undefined;
  /** Files a long-lived instance keeps open between calls (`unbind(true)`). */
  #kept: FdTable | undefined;
  #stdinPos = 0;
  /** argv / environ as NUL-terminated UTF-8, encoded on first use in a call. */
  #argsBuf: Uint8Array[] | undefined;
  #envBuf: Uint8Array[] | undefined;
  /** The environment `#envBuf` was last encoded from: reused while the engine passes the same map. */
  #envOf: ReadonlyMap<string, string> | undefined;
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));
  /**
   * Called before each sleep slice of `poll_oneoff`; what it throws ends the sleep and reaches
   * the guest's caller. The engine sets it for a metered module (src/wasm/meter.ts
   * `checkDeadline`: the meter counts guest work, not a host sleep).
   */
  beforeSleep?: () => void;

  constructor() {
    this.imports = this.#build();
  }

  /** Binds the context to one guest call. `memory` may be set later with `setMemory`. */
  bind(memory: WebAssembly.Memory | undefined, config: WasiConfig): void {
    this.#memory = memory;
    this.#buffer = undefined;
    this.#config = config;
    this.#stdinPos = 0;
    this.#table = this.#kept; // otherwise built on first use
    this.#kept = undefined;
    this.#argsBuf = undefined;
    if (config.env !== this.#envOf) this.#envBuf = undefined;
  }

  /** Closes the files kept by `unbind(true)`: the instance that opened them is gone. */
  closeKept(): void {
    this.#kept?.closeAll();
    this.#kept = undefined;
  }

  /** Sets the memory when it is only known after instantiation (module-owned memory). */
  setMemory(memory: WebAssembly.Memory): void {
    this.#memory = memory;
    this.#buffer = undefined;
  }

  /**
   * Releases the call's resources: closes every file and directory the guest opened, or, with
   * `keepFiles` (a `--reuse` instance that lives on), keeps them for its next call.
   */
  unbind(keepFiles = false): void {
    if (keepFiles) this.#kept = this.#table;
    else this.#table?.closeAll();
    this.#table = undefined;
    this.#memory = undefined;
    this.#buffer = undefined;
    this.#u8 = EMPTY_BYTES;
    this.#dv = EMPTY_VIEW;
    this.#config = undefined;
  }

  /** Descriptors the guest currently holds (for tests and diagnostics). */
  get openFiles(): number {
    return this.#table?.opened ?? 0;
  }

  // --- memory ------------------------------------------------------------------------------

  #view(): DataView {
    const m = this.#memory;
    if (!m) throw new Error('WASI call before the guest memory is known');
    if (m.buffer !== this.#buffer) {
      this.#buffer = m.buffer;
      this.#u8 = new Uint8Array(m.buffer);
      this.#dv = new DataView(m.buffer);
    }
    return this.#dv;
  }
  /** Linear memory as bytes; call after `#view()` in the same import. */
  #bytes(): Uint8Array {
    this.#view();
    return this.#u8;
  }

  #range(ptr: number, len: number): Uint8Array {
    const mem = this.#bytes();
    ptr >>>= 0;
    len >>>= 0;
    if (ptr + len > mem.length) throw new RangeError('out of bounds');
    return mem.subarray(ptr, ptr + len);
  }

  #string(ptr: number, len: number): string {
    try {
      return pathDecoder.decode(this.#range(ptr, len));
    } catch (e) {
      if (e instanceof RangeError) throw e;
      return fail(Errno.ILSEQ);
    }
  }

  /** (ptr, len) pairs of an iovec array, bounds-checked. */
  #iovecs(iovs: number, count: number): number[] {
    const view = this.#view();
    const mem = this.#u8;
    const out: number[] = [];
    for (let i = 0; i < count >>> 0; i++) {
      const p = view.getUint32(iovs + i * 8, true);
      const l = view.getUint32(iovs + i * 8 + 4, true);
      if (p + l > mem.length) throw new RangeError('iovec out of bounds');
      out.push(p, l);
    }
    return out;
  }

  #fds(): FdTable {
    if (!this.#table) {
      const c = this.#config;
      if (!c) throw new Error('WASI call outside a guest call');
      this.#table = new FdTable(c.mounts, c.maxOpenFiles ?? DEFAULT_MAX_OPEN_FILES);
    }
    return this.#table;
  }

  #entry(fd: number): FdEntry {
    return this.#fds().get(fd) ?? fail(Errno.BADF);
  }

  #file(fd: number): FileFd {
    const e = this.#entry(fd);
    if (e.kind === 'dir') fail(Errno.ISDIR);
    if (e.kind === 'stdio') fail(Errno.SPIPE);
    return e;
  }

  #dir(fd: number): DirFd {
    const e = this.#entry(fd);
    if (e.kind !== 'dir') fail(Errno.NOTDIR);
    if (e.hostFd < 0) fail(Errno.NOENT);
    return e;
  }

  /**
   * Resolves a path argument below directory `fd` (`resolveAt`) and runs `op` on it; the walk's
   * descriptors are released after `op`. Missing rights give `NOTCAPABLE`, `write` on a `:ro`
   * mount `ROFS`, a refused path its errno — all before anything happens on the host.
   */
  #onPath(fd: number, ptr: number, len: number, follow: Follow, needs: bigint, write: boolean, op: (r: Resolved, path: string, dir: DirFd) => number): number {
    const dir = this.#dir(fd);
    if ((dir.rightsBase & needs) !== needs) return Errno.NOTCAPABLE;
    if (write && dir.mount.readOnly) return Errno.ROFS;
    const path = this.#string(ptr, len);
    const r = resolveAt({ mount: dir.mount, fd: dir.hostFd, root: dir.preopen !== undefined }, path, follow);
    if (!r.ok) return r.errno;
    try {
      return op(r, path, dir);
    } finally {
      r.release();
    }
  }

  // --- stdio -------------------------------------------------------------------------------

  #readStdin(p: number, l: number): number {
    const stdin = this.#config!.stdin;
    const mem = this.#u8;
    if (stdin !== 'inherit') {
      const n = Math.min(l, stdin.length - this.#stdinPos);
      mem.set(stdin.subarray(this.#stdinPos, this.#stdinPos + n), p);
      this.#stdinPos += n;
      return n;
    }
    for (;;) {
      try {
        return readSync(0, mem, p, l, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EOF') return 0;
        if (code !== 'EAGAIN') throw e;
        // fd 0 is non-blocking (a pipe the main thread touched): wait a little and retry.
        Atomics.wait(this.#sleeper, 0, 0, 5);
      }
    }
  }

  // --- imports -----------------------------------------------------------------------------

  #build(): Record<string, Fn> {
    const table: Record<string, (...a: never[]) => number | void> = {
      args_get: (argv: number, buf: number) => this.#writeStrings(this.#args(), argv, buf),
      args_sizes_get: (c: number, s: number) => this.#sizes(this.#args(), c, s),
      environ_get: (env: number, buf: number) => this.#writeStrings(this.#env(), env, buf),
      environ_sizes_get: (c: number, s: number) => this.#sizes(this.#env(), c, s),

      clock_res_get: (id: number, res: number) => {
        if (id > 3) return Errno.INVAL;
        this.#view().setBigUint64(res, id === 0 ? 1_000n : 1n, true);
        return Errno.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, time: number) => {
        const ns = clockNow(id);
        if (ns === undefined) return Errno.INVAL;
        this.#view().setBigUint64(time, ns, true);
        return Errno.SUCCESS;
      },
      random_get: (buf: number, len: number) => {
        // node:crypto loaded at first use (~4 ms of start-up a guest that asks no randomness does not pay)
        process.getBuiltinModule('node:crypto').randomFillSync(this.#range(buf, len));
        return Errno.SUCCESS;
      },
      sched_yield: () => Errno.SUCCESS,
      poll_oneoff: (inPtr: number, outPtr: number, n: number, neventsPtr: number) => this.#poll(inPtr, outPtr, n, neventsPtr),

      fd_write: (fd: number, iovs: number, iovsLen: number, nwritten: number) => {
        const e = this.#entry(fd);
        if (e.kind === 'dir') return Errno.BADF;
        if ((e.rightsBase & Rights.FD_WRITE) === 0n) return Errno.BADF;
        const vec = this.#iovecs(iovs, iovsLen);
        const mem = this.#u8;
        let total = 0;
        if (e.kind === 'stdio') {
          if (e.stream === 0) return Errno.BADF;
          for (let i = 0; i < vec.length; i += 2) total += vec[i + 1]!;
          if (total > 0) {
            let out: Uint8Array;
            if (vec.length === 2) out = mem.slice(vec[0]!, vec[0]! + vec[1]!);
            else {
              out = new Uint8Array(total);
              let o = 0;
              for (let i = 0; i < vec.length; i += 2) {
                out.set(mem.subarray(vec[i]!, vec[i]! + vec[i + 1]!), o);
                o += vec[i + 1]!;
              }
            }
            (e.stream === 1 ? this.#config!.stdout : this.#config!.stderr)(out);
          }
        } else {
          const append = (e.fdflags & FdFlags.APPEND) !== 0;
          total = eachIovec(vec, (p, l, done) => writeSync(e.hostFd, mem, p, l, append ? null : e.pos + done));
          if (append) e.pos = Number(fstatSync(e.hostFd).size);
          else e.pos += total;
          this.#syncAfterWrite(e);
        }
        this.#view().setUint32(nwritten, total, true);
        return Errno.SUCCESS;
      },
      fd_read: (fd: number, iovs: number, iovsLen: number, nread: number) => {
        const e = this.#entry(fd);
        if (e.kind === 'dir') return Errno.ISDIR;
        if ((e.rightsBase & Rights.FD_READ) === 0n) return Errno.BADF;
        const vec = this.#iovecs(iovs, iovsLen);
        const total = eachIovec(vec, (p, l, done) => (e.kind === 'stdio' ? this.#readStdin(p, l) : readSync(e.hostFd, this.#bytes(), p, l, e.pos + done)));
        if (e.kind === 'file') e.pos += total;
        this.#view().setUint32(nread, total, true);
        return Errno.SUCCESS;
      },
      fd_pread: (fd: number, iovs: number, iovsLen: number, offset: bigint, nread: number) => this.#positioned(fd, iovs, iovsLen, offset, nread, false),
      fd_pwrite: (fd: number, iovs: number, iovsLen: number, offset: bigint, nwritten: number) => this.#positioned(fd, iovs, iovsLen, offset, nwritten, true),
      fd_seek: (fd: number, offset: bigint, whence: number, newOffset: number) => {
        const e = this.#entry(fd);
        if (e.kind === 'stdio') return Errno.SPIPE;
        if (e.kind === 'dir') return Errno.BADF;
        let base: bigint;
        if (whence === 0) base = 0n;
        else if (whence === 1) base = BigInt(e.pos);
        else if (whence === 2) base = fstatSync(e.hostFd, { bigint: true }).size;
        else return Errno.INVAL;
        const next = base + offset;
        if (next < 0n || next > BigInt(Number.MAX_SAFE_INTEGER)) return Errno.INVAL;
        e.pos = Number(next);
        this.#view().setBigUint64(newOffset, next, true);
        return Errno.SUCCESS;
      },
      fd_tell: (fd: number, offsetPtr: number) => {
        const e = this.#file(fd);
        this.#view().setBigUint64(offsetPtr, BigInt(e.pos), true);
        return Errno.SUCCESS;
      },
      fd_close: (fd: number) => (this.#fds().close(fd) ? Errno.SUCCESS : Errno.BADF),
      fd_renumber: (from: number, to: number) => (this.#fds().renumber(from, to) ? Errno.SUCCESS : Errno.BADF),
      fd_sync: (fd: number) => {
        const e = this.#entry(fd);
        if (e.kind === 'file') fsyncSync(e.hostFd);
        return Errno.SUCCESS;
      },
      fd_datasync: (fd: number) => {
        const e = this.#entry(fd);
        if (e.kind === 'file') fdatasyncSync(e.hostFd);
        return Errno.SUCCESS;
      },
      fd_advise: (fd: number, _offset: bigint, _len: bigint, advice: number) => {
        this.#file(fd);
        return advice > 5 ? Errno.INVAL : Errno.SUCCESS;
      },
      fd_allocate: (fd: number, offset: bigint, len: bigint) => {
        const e = this.#file(fd);
        this.#checkWritable(e);
        const want = BigInt.asUintN(64, offset) + BigInt.asUintN(64, len);
        if (fstatSync(e.hostFd, { bigint: true }).size < want) ftruncateSync(e.hostFd, Number(want));
        return Errno.SUCCESS;
      },

      fd_fdstat_get: (fd: number, stat: number) => {
        const e = this.#entry(fd);
        const view = this.#view();
        const type = e.kind === 'stdio' ? FileType.CHARACTER_DEVICE : e.kind === 'dir' ? FileType.DIRECTORY : e.filetype;
        view.setUint8(stat, type);
        view.setUint8(stat + 1, 0);
        view.setUint16(stat + 2, e.fdflags, true);
        view.setUint32(stat + 4, 0, true);
        view.setBigUint64(stat + 8, e.rightsBase, true);
        view.setBigUint64(stat + 16, e.rightsInheriting, true);
        return Errno.SUCCESS;
      },
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const e = this.#entry(fd);
        if ((e.rightsBase & Rights.FD_FDSTAT_SET_FLAGS) === 0n) return Errno.NOTCAPABLE;
        // As Linux fcntl(F_SETFL): APPEND and NONBLOCK change, the SYNC flags stay as opened.
        const next = (flags & (FdFlags.APPEND | FdFlags.NONBLOCK)) | (e.fdflags & (FdFlags.DSYNC | FdFlags.RSYNC | FdFlags.SYNC));
        if (e.kind === 'file' && ((next ^ e.fdflags) & FdFlags.APPEND) !== 0) reopenAppend(e, (next & FdFlags.APPEND) !== 0);
        e.fdflags = next;
        return Errno.SUCCESS;
      },
      fd_fdstat_set_rights: (fd: number, base: bigint, inheriting: bigint) => {
        const e = this.#entry(fd);
        if ((base & ~e.rightsBase) !== 0n || (inheriting & ~e.rightsInheriting) !== 0n) return Errno.NOTCAPABLE;
        e.rightsBase = base;
        e.rightsInheriting = inheriting;
        return Errno.SUCCESS;
      },
      fd_filestat_get: (fd: number, buf: number) => {
        const e = this.#entry(fd);
        if (e.kind === 'stdio') writeFilestat(this.#view(), buf, undefined, FileType.CHARACTER_DEVICE);
        else if (e.kind === 'file') writeFilestat(this.#view(), buf, fstatSync(e.hostFd, { bigint: true }));
        else writeFilestat(this.#view(), buf, statSync(e.host, { bigint: true }));
        return Errno.SUCCESS;
      },
      fd_filestat_set_size: (fd: number, size: bigint) => {
        const e = this.#entry(fd);
        // As Linux ftruncate(2): EINVAL for anything but a file open for writing (wasi-libc asks
        // FD_FILESTAT_SET_SIZE only for those), NOTCAPABLE when the guest dropped the right.
        if (e.kind !== 'file' || !e.writable) return Errno.INVAL;
        if ((e.rightsBase & Rights.FD_FILESTAT_SET_SIZE) === 0n) return Errno.NOTCAPABLE;
        if (e.mount.readOnly) return Errno.ROFS;
        const n = BigInt.asUintN(64, size);
        if (n > BigInt(Number.MAX_SAFE_INTEGER)) return n >= 1n << 63n ? Errno.INVAL : Errno.FBIG;
        ftruncateSync(e.hostFd, Number(n));
        return Errno.SUCCESS;
      },
      fd_filestat_set_times: (fd: number, atim: bigint, mtim: bigint, fst: number) => {
        const e = this.#entry(fd);
        if (e.kind === 'stdio') return Errno.BADF;
        if ((e.rightsBase & Rights.FD_FILESTAT_SET_TIMES) === 0n) return Errno.NOTCAPABLE;
        if (e.mount.readOnly) return Errno.ROFS;
        const [a, m] = timeSpecs(atim, mtim, fst);
        setTimes(e.hostFd, '', a, m);
        return Errno.SUCCESS;
      },

      fd_prestat_get: (fd: number, buf: number) => {
        const e = this.#fds().get(fd);
        if (!e || e.kind !== 'dir' || !e.preopen) return Errno.BADF;
        const view = this.#view();
        view.setUint32(buf, 0, true); // tag 0 = dir, padding
        view.setUint32(buf + 4, e.preopen.length, true);
        return Errno.SUCCESS;
      },
      fd_prestat_dir_name: (fd: number, path: number, len: number) => {
        const e = this.#fds().get(fd);
        if (!e || e.kind !== 'dir' || !e.preopen) return Errno.BADF;
        if (len < e.preopen.length) return Errno.NAMETOOLONG;
        this.#range(path, e.preopen.length).set(e.preopen);
        return Errno.SUCCESS;
      },
      fd_readdir: (fd: number, buf: number, bufLen: number, cookie: bigint, bufused: number) => {
        const e = this.#entry(fd);
        if (e.kind !== 'dir') return Errno.NOTDIR;
        if ((e.rightsBase & Rights.FD_READDIR) === 0n) return Errno.NOTCAPABLE;
        const out = this.#range(buf, bufLen);
        const start = BigInt.asUintN(64, cookie);
        if (start === 0n || !e.listing) e.listing = listDirectory(e);
        const list = e.listing;
        let used = 0;
        for (let i = start < BigInt(list.length) ? Number(start) : list.length; i < list.length && used < out.length; i++) {
          const ent = list[i]!;
          const rec = new Uint8Array(24 + ent.name.length);
          const dv = new DataView(rec.buffer);
          dv.setBigUint64(0, BigInt(i + 1), true); // d_next: the cookie of the entry after this one
          dv.setBigUint64(8, inodeOf(ent), true);
          dv.setUint32(16, ent.name.length, true);
          dv.setUint8(20, ent.type);
          rec.set(ent.name, 24);
          const n = Math.min(rec.length, out.length - used);
          out.set(n === rec.length ? rec : rec.subarray(0, n), used);
          used += n;
        }
        this.#view().setUint32(bufused, used, true);
        return Errno.SUCCESS;
      },

      path_open: (fd: number, dirflags: number, pathPtr: number, pathLen: number, oflags: number, base: bigint, inheriting: bigint, fdflags: number, fdOut: number) =>
        this.#pathOpen(fd, dirflags, pathPtr, pathLen, oflags, base, inheriting, fdflags, fdOut),
      path_filestat_get: (fd: number, flags: number, p: number, l: number, buf: number) =>
        this.#onPath(fd, p, l, (flags & LOOKUP_SYMLINK_FOLLOW) !== 0, Rights.PATH_FILESTAT_GET, false, (r) => {
          if (!r.stat) return Errno.NOENT;
          writeFilestat(this.#view(), buf, r.stat);
          return Errno.SUCCESS;
        }),
      path_filestat_set_times: (fd: number, flags: number, p: number, l: number, atim: bigint, mtim: bigint, fst: number) => {
        const [a, m] = timeSpecs(atim, mtim, fst);
        return this.#onPath(fd, p, l, (flags & LOOKUP_SYMLINK_FOLLOW) !== 0, Rights.PATH_FILESTAT_SET_TIMES, true, (r) => {
          if (!r.stat) return Errno.NOENT;
          setTimes(r.dir, r.name, a, m);
          return Errno.SUCCESS;
        });
      },
      path_create_directory: (fd: number, p: number, l: number) =>
        this.#onPath(fd, p, l, 'never', Rights.PATH_CREATE_DIRECTORY, true, (r) => {
          if (r.name === '' || r.stat) return Errno.EXIST;
          mkdirSync(r.at, 0o777);
          return Errno.SUCCESS;
        }),
      path_remove_directory: (fd: number, p: number, l: number) =>
        this.#onPath(fd, p, l, 'never', Rights.PATH_REMOVE_DIRECTORY, true, (r, path) => {
          const last = lastComponent(path);
          if (last === '.') return Errno.INVAL;
          if (last === '..') return Errno.NOTEMPTY;
          if (r.name === '') return Errno.BUSY;
          if (!r.stat) return Errno.NOENT;
          if (!r.stat.isDirectory()) return Errno.NOTDIR;
          rmdirSync(r.at);
          return Errno.SUCCESS;
        }),
      path_unlink_file: (fd: number, p: number, l: number) =>
        this.#onPath(fd, p, l, 'never', Rights.PATH_UNLINK_FILE, true, (r, path) => {
          if (r.name === '' || r.stat?.isDirectory()) return Errno.ISDIR;
          if (!r.stat) return Errno.NOENT;
          if (path.endsWith('/')) return Errno.NOTDIR;
          unlinkSync(r.at);
          return Errno.SUCCESS;
        }),
      path_rename: (fd: number, op: number, ol: number, newFd: number, np: number, nl: number) =>
        this.#onPath(fd, op, ol, 'never', Rights.PATH_RENAME_SOURCE, true, (from, fromPath) =>
          this.#onPath(newFd, np, nl, 'never', Rights.PATH_RENAME_TARGET, true, (to, toPath) => {
            if (from.name === '' || to.name === '') return Errno.BUSY; // `.`, `..`, a mount root

            if (!from.stat) return Errno.NOENT;
            if (!from.stat.isDirectory() && (toPath.endsWith('/') || fromPath.endsWith('/'))) return Errno.NOTDIR;
            renameSync(from.at, to.at);
            return Errno.SUCCESS;
          })),
      path_link: (oldFd: number, oldFlags: number, op: number, ol: number, newFd: number, np: number, nl: number) =>
        this.#onPath(oldFd, op, ol, (oldFlags & LOOKUP_SYMLINK_FOLLOW) !== 0, Rights.PATH_LINK_SOURCE, true, (from) =>
          this.#onPath(newFd, np, nl, 'never', Rights.PATH_LINK_TARGET, true, (to, toPath) => {
            if (!from.stat) return Errno.NOENT;
            if (to.name === '' || to.stat) return Errno.EXIST;
            if (toPath.endsWith('/')) return Errno.NOENT;
            if (from.name === '' || from.stat.isDirectory()) return Errno.PERM;
            linkSync(from.at, to.at);
            return Errno.SUCCESS;
          })),
      path_symlink: (tp: number, tl: number, fd: number, np: number, nl: number) => {
        const target = this.#string(tp, tl);
        return this.#onPath(fd, np, nl, 'never', Rights.PATH_SYMLINK, true, (r, path, dir) => {
          if (r.name === '' || r.stat) return Errno.EXIST;
          if (path.endsWith('/')) return Errno.NOENT;
          // The link must resolve inside its mount, judged by the same walk as every path.
          const refused = judgeLinkTarget(dir.mount, r.dir, target);
          if (refused) return refused.errno;
          symlinkSync(target, r.at);
          return Errno.SUCCESS;
        });
      },
      path_readlink: (fd: number, p: number, l: number, buf: number, bufLen: number, bufused: number) =>
        this.#onPath(fd, p, l, false, Rights.PATH_READLINK, false, (r) => {
          if (!r.stat) return Errno.NOENT;
          if (r.name === '' || !r.stat.isSymbolicLink()) return Errno.INVAL;
          const target = readlinkSync(r.at, { encoding: 'buffer' });
          const n = Math.min(target.length, bufLen >>> 0);
          this.#range(buf, n).set(target.subarray(0, n));
          this.#view().setUint32(bufused, n, true);
          return Errno.SUCCESS;
        }),

      sock_accept: (fd: number) => (this.#entry(fd) ? Errno.NOTSUP : Errno.BADF),
      sock_recv: (fd: number) => (this.#entry(fd) ? Errno.NOTSUP : Errno.BADF),
      sock_send: (fd: number) => (this.#entry(fd) ? Errno.NOTSUP : Errno.BADF),
      // No descriptor of a guest is a socket: Linux answers ENOTSOCK for files, directories, pipes.
      sock_shutdown: (fd: number) => (this.#entry(fd) ? Errno.NOTSOCK : Errno.BADF),
    };

    const imports: Record<string, Fn> = {};
    for (const name of PREVIEW1_NAMES) {
      const f = table[name] as ((...a: unknown[]) => number | void) | undefined;
      imports[name] = f ? guard(f) : () => Errno.NOSYS;
    }
    imports['proc_exit'] = ((code: number) => {
      throw new WasiExit(code >>> 0);
    }) as Fn;
    imports['proc_raise'] = ((sig: number) => {
      throw new WasiExit(128 + sig);
    }) as Fn;
    return imports;
  }

  #args(): Uint8Array[] {
    this.#argsBuf ??= this.#config!.args.map((a) => encoder.encode(a + '\0'));
    return this.#argsBuf;
  }

  #env(): Uint8Array[] {
    if (!this.#envBuf) {
      const env = this.#config!.env;
      this.#envBuf = [...env].map(([k, v]) => encoder.encode(`${k}=${v}\0`));
      this.#envOf = env;
    }
    return this.#envBuf;
  }

  #writeStrings(list: Uint8Array[], ptrs: number, buf: number): number {
    const view = this.#view();
    const mem = this.#u8;
    let o = buf;
    list.forEach((s, i) => {
      view.setUint32(ptrs + i * 4, o, true);
      if (o + s.length > mem.length) throw new RangeError('out of bounds');
      mem.set(s, o);
      o += s.length;
    });
    return Errno.SUCCESS;
  }

  #sizes(list: Uint8Array[], countPtr: number, sizePtr: number): number {
    const view = this.#view();
    view.setUint32(countPtr, list.length, true);
    view.setUint32(sizePtr, list.reduce((n, s) => n + s.length, 0), true);
    return Errno.SUCCESS;
  }

  #checkWritable(e: FileFd): void {
    if (e.mount.readOnly) fail(Errno.ROFS);
    if (!e.writable) fail(Errno.BADF);
  }

  #syncAfterWrite(e: FileFd): void {
    if (e.fdflags & FdFlags.SYNC) fsyncSync(e.hostFd);
    else if (e.fdflags & (FdFlags.DSYNC | FdFlags.RSYNC)) fdatasyncSync(e.hostFd);
  }

  /**
   * `fd_pread` / `fd_pwrite`: reads into (writes from) the iovecs at file offset `offset`, the
   * descriptor's position left as it is, and stores the byte count at `countPtr`. A descriptor
   * without the `FD_READ` (`FD_WRITE`) right gives `BADF`; a write honours `SYNC`/`DSYNC` flags.
   */
  #positioned(fd: number, iovs: number, iovsLen: number, offset: bigint, countPtr: number, write: boolean): number {
    const e = this.#file(fd);
    if ((e.rightsBase & (write ? Rights.FD_WRITE : Rights.FD_READ)) === 0n) return Errno.BADF;
    const vec = this.#iovecs(iovs, iovsLen);
    const at = Number(BigInt.asUintN(64, offset));
    const total = eachIovec(vec, (p, l, done) => (write ? writeSync(e.hostFd, this.#bytes(), p, l, at + done) : readSync(e.hostFd, this.#bytes(), p, l, at + done)));
    if (write) this.#syncAfterWrite(e);
    this.#view().setUint32(countPtr, total, true);
    return Errno.SUCCESS;
  }

  /**
   * `path_open` (see the module comment for the sandbox rules). Every check is made on the
   * resolved path before the host open; the open itself looks up only the last component, in
   * the directory the walk holds, without following it, so `O_CREAT`/`O_TRUNC` cannot act
   * outside the mount.
   */
  #pathOpen(fd: number, dirflags: number, pathPtr: number, pathLen: number, oflags: number, base: bigint, inheriting: bigint, fdflags: number, fdOut: number): number {
    const dir = this.#dir(fd);
    const needs = Rights.PATH_OPEN | (oflags & OFlags.CREAT ? Rights.PATH_CREATE_FILE : 0n) | (oflags & OFlags.TRUNC ? Rights.PATH_FILESTAT_SET_SIZE : 0n);
    if ((dir.rightsBase & needs) !== needs) return Errno.NOTCAPABLE;
    const table = this.#fds();
    if (table.full) return Errno.MFILE;
    const creat = (oflags & OFlags.CREAT) !== 0;
    const excl = (oflags & OFlags.EXCL) !== 0;
    const trunc = (oflags & OFlags.TRUNC) !== 0;
    const wantDir = (oflags & OFlags.DIRECTORY) !== 0;
    const append = (fdflags & FdFlags.APPEND) !== 0;
    base = BigInt.asUintN(64, base) & dir.rightsInheriting;
    inheriting = BigInt.asUintN(64, inheriting) & dir.rightsInheriting;
    const write = (base & WRITE_RIGHTS) !== 0n || trunc || append;
    const read = (base & READ_RIGHTS) !== 0n;
    if (write && dir.mount.readOnly) return Errno.ROFS;
    const follow = (dirflags & LOOKUP_SYMLINK_FOLLOW) !== 0 && !(creat && excl);
    // As Linux open(2): O_CREAT never makes or opens a directory (`x/` included, whatever x is).
    if (creat && wantDir) return Errno.INVAL;
    const slash = creat && pathLen > 0 && this.#range(pathPtr, pathLen).at(-1) === 0x2f;
    return this.#onPath(fd, pathPtr, pathLen, slash ? 'never' : follow, 0n, false, (r) => {
      const st = r.stat;
      if (slash) return Errno.ISDIR;
      if (st === null) {
        if (!creat) return Errno.NOENT;
        if (dir.mount.readOnly) return Errno.ROFS;
      } else {
        if (creat && excl) return Errno.EXIST;
        if (st.isSymbolicLink()) return Errno.LOOP; // not followed (O_NOFOLLOW)
        if (st.isDirectory()) {
          if (write || creat) return Errno.ISDIR;
          const hostFd = openSync(r.at, fsc.O_RDONLY | fsc.O_DIRECTORY | (r.name === '' ? 0 : O_NOFOLLOW));
          const entry: DirFd = {
            kind: 'dir', mount: dir.mount, hostFd, host: fdPath(hostFd), rightsBase: base & DIR_RIGHTS,
            rightsInheriting: inheriting, fdflags: fdflags & 0x1f,
          };
          this.#view().setUint32(fdOut, table.add(entry), true);
          return Errno.SUCCESS;
        }
        if (wantDir) return Errno.NOTDIR;
      }
      let flags = (write ? (read ? fsc.O_RDWR : fsc.O_WRONLY) : fsc.O_RDONLY) | O_NOFOLLOW;
      if (creat) flags |= fsc.O_CREAT;
      if (excl) flags |= fsc.O_EXCL;
      if (trunc) flags |= fsc.O_TRUNC;
      if (append) flags |= fsc.O_APPEND;
      const hostFd = openSync(r.at, flags, 0o666);
      const entry: FileFd = {
        kind: 'file', hostFd, mount: dir.mount, host: fdPath(hostFd),
        filetype: st ? fileTypeOf(st) : FileType.REGULAR_FILE,
        rightsBase: base & FILE_RIGHTS, rightsInheriting: inheriting & FILE_RIGHTS,
        fdflags: fdflags & 0x1f, writable: write, pos: 0,
      };
      this.#view().setUint32(fdOut, table.add(entry), true);
      return Errno.SUCCESS;
    });
  }

  /**
   * `poll_oneoff`: fd subscriptions are reported ready at once (files and stdio never block
   * here); with only clock subscriptions the thread sleeps (Atomics.wait, in slices so that a
   * deadline kill still lands) until the earliest one expires.
   */
  #poll(inPtr: number, outPtr: number, n: number, neventsPtr: number): number {
    n >>>= 0;
    if (n === 0) return Errno.INVAL;
    const view = this.#view();
    if (inPtr + n * 48 > this.#u8.length || outPtr + n * 32 > this.#u8.length) return Errno.FAULT;
    const now = process.hrtime.bigint();
    const clocks: { userdata: bigint; deadline: bigint }[] = [];
    const events: { userdata: bigint; error: number; type: number; nbytes: bigint }[] = [];
    for (let i = 0; i < n; i++) {
      const s = inPtr + i * 48;
      const userdata = view.getBigUint64(s, true);
      const tag = view.getUint8(s + 8);
      if (tag === 0) {
        const id = view.getUint32(s + 16, true);
        const timeout = view.getBigUint64(s + 24, true);
        const abs = (view.getUint16(s + 40, true) & 1) !== 0;
        const clockNs = clockNow(id);
        if (clockNs === undefined) {
          events.push({ userdata, error: Errno.INVAL, type: 0, nbytes: 0n });
          continue;
        }
        const deadline = abs ? now + (timeout - clockNs) : now + timeout;
        clocks.push({ userdata, deadline });
      } else if (tag === 1 || tag === 2) {
        const fd = view.getUint32(s + 16, true);
        const e = this.#fds().get(fd);
        let error: number = Errno.SUCCESS;
        let nbytes = 0n;
        if (!e) error = Errno.BADF;
        else if (tag === 1) {
          if (e.kind === 'file') nbytes = BigInt(Math.max(0, Number(fstatSync(e.hostFd).size) - e.pos));
          else if (e.kind === 'stdio' && e.stream === 0 && this.#config!.stdin !== 'inherit') {
            nbytes = BigInt(this.#config!.stdin.length - this.#stdinPos);
          }
        }
        events.push({ userdata, error, type: tag, nbytes });
      } else {
        events.push({ userdata, error: Errno.INVAL, type: tag, nbytes: 0n });
      }
    }
    if (events.length === 0 && clocks.length > 0) {
      const earliest = clocks.reduce((m, c) => (c.deadline < m ? c.deadline : m), clocks[0]!.deadline);
      for (;;) {
        const left = earliest - process.hrtime.bigint();
        if (left <= 0n) break;
        this.beforeSleep?.();
        const ms = Math.min(SLEEP_SLICE_MS, Number(left) / 1e6);
        Atomics.wait(this.#sleeper, 0, 0, ms);
      }
    }
    const after = process.hrtime.bigint();
    for (const c of clocks) if (c.deadline <= after) events.push({ userdata: c.userdata, error: 0, type: 0, nbytes: 0n });
    const v = this.#view();
    events.forEach((ev, i) => {
      const o = outPtr + i * 32;
      v.setBigUint64(o, ev.userdata, true);
      v.setUint16(o + 8, ev.error, true);
      v.setUint8(o + 10, ev.type);
      for (let k = 11; k < 16; k++) v.setUint8(o + k, 0);
      v.setBigUint64(o + 16, ev.nbytes, true);
      v.setUint16(o + 24, 0, true);
      for (let k = 26; k < 32; k++) v.setUint8(o + k, 0);
    });
    v.setUint32(neventsPtr, events.length, true);
    return Errno.SUCCESS;
  }
}

/** Current time of a WASI clock, ns; undefined for an unknown clock id. */
function clockNow(id: number): bigint | undefined {
  switch (id) {
    case 0: return BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
    case 1: return process.hrtime.bigint();
    case 2: {
      const u = process.cpuUsage();
      return BigInt(u.user + u.system) * 1000n;
    }
    case 3: {
      const u = process.threadCpuUsage();
      return BigInt(u.user + u.system) * 1000n;
    }
    default: return undefined;
  }
}

/**
 * Reopens the host descriptor of file `e` with `O_APPEND` set or cleared, keeping its access mode
 * (Node has no fcntl(F_SETFL); Linux pwrite(2) on an `O_APPEND` descriptor appends). The path
 * through the descriptor reopens the very file it holds, even renamed or unlinked since. Only
 * regular files are reopened: for others the flag is only recorded.
 * @throws system errors of open(2) (EACCES when the file's mode changed since it was opened)
 */
function reopenAppend(e: FileFd, append: boolean): void {
  if (e.filetype !== FileType.REGULAR_FILE) return;
  let info: string;
  try {
    info = readFileSync(`/proc/self/fdinfo/${e.hostFd}`, 'latin1');
  } catch {
    return fail(Errno.NOTSUP); // no /proc (not Linux): the host descriptor cannot be reopened
  }
  const mode = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? '0', 8) & 3;
  const hostFd = openSync(fdPath(e.hostFd), mode | (append ? fsc.O_APPEND : 0));
  closeSync(e.hostFd);
  e.hostFd = hostFd;
}

/**
 * The (atime, mtime) of `*_set_times` for `setTimes`: a time, "now", or unchanged.
 * @throws WasiFail INVAL when both a time and "now" are asked for the same field
 */
function timeSpecs(atim: bigint, mtim: bigint, fst: number): [TimeSpec, TimeSpec] {
  if ((fst & FstFlags.ATIM && fst & FstFlags.ATIM_NOW) || (fst & FstFlags.MTIM && fst & FstFlags.MTIM_NOW)) fail(Errno.INVAL);
  const pick = (set: number, now: number, value: bigint): TimeSpec => (fst & now ? 'now' : fst & set ? BigInt.asUintN(64, value) : undefined);
  return [pick(FstFlags.ATIM, FstFlags.ATIM_NOW, atim), pick(FstFlags.MTIM, FstFlags.MTIM_NOW, mtim)];
}

/**
 * Wraps an import: host failures become errno values instead of traps. Node system errors map
 * through `errnoFromSystemError`; out-of-bounds guest pointers give `FAULT`; `WasiExit` and
 * anything unexpected propagate (the engine classifies them).
 */
function guard(f: (...a: unknown[]) => number | void): Fn {
  return ((...args: unknown[]) => {
    try {
      return f(...args);
    } catch (e) {
      if (e instanceof WasiFail) return e.errno;
      if (e instanceof RangeError && !/call stack/i.test(e.message)) return Errno.FAULT;
      const errno = errnoFromSystemError(e);
      if (errno !== undefined) return errno;
      throw e;
    }
  }) as Fn;
}

/**
 * Scatter/gather over iovecs (ptr, len pairs): `op(ptr, len, done)` moves up to `len` bytes,
 * `done` being the bytes moved so far; stops after a short transfer. @returns bytes moved
 */
function eachIovec(vec: ArrayLike<number>, op: (ptr: number, len: number, done: number) => number): number {
  let total = 0;
  for (let i = 0; i < vec.length; i += 2) {
    const len = vec[i + 1]!;
    if (len === 0) continue;
    const n = op(vec[i]!, len, total);
    total += n;
    if (n < len) break;
  }
  return total;
}

