/**
 * WASI preview1 (`wasi_snapshot_preview1`) for guests, written for Capsule instead of node:wasi:
 * node:wasi is not a sandbox and costs ~80 µs per WASI import per instance on these machines.
 *
 * One `Wasi` object is made per (worker, module) and its `imports` are built once; each guest
 * call binds it to that call's memory and configuration with `bind()` and releases it with
 * `unbind()`. Calls on one `Wasi` never overlap (a worker runs one guest call at a time).
 */
import { randomFillSync } from 'node:crypto';
import { readSync } from 'node:fs';
import { Errno } from './errno.ts';

/** Per-call configuration of the WASI context. */
export interface WasiConfig {
  /** argv, `args[0]` included (empty for Capsule ABI modules: capsule-abi.md §2.2). */
  args: readonly string[];
  /** Guest-visible environment, in order. */
  env: ReadonlyMap<string, string>;
  /** Standard input: bytes (EOF after them), or `inherit` = the process's fd 0 (CLI). */
  stdin: Uint8Array | 'inherit';
  /** Receives what the guest writes to fd 1 / fd 2. */
  stdout: (bytes: Uint8Array) => void;
  stderr: (bytes: Uint8Array) => void;
  /** Preopened directories (conventions.md §2); empty = no file access. */
  mounts: readonly import('./mounts.ts').Mount[];
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

type Fn = (...args: number[]) => number | bigint | void;

/** WASI preview1 host for one worker and module; see the module comment. */
export class Wasi {
  /** The `wasi_snapshot_preview1` import object; stable for the life of this `Wasi`. */
  readonly imports: Record<string, Fn>;
  #memory: WebAssembly.Memory | undefined;
  #config: WasiConfig | undefined;
  #stdinPos = 0;
  #argsBuf: Uint8Array[] = [];
  #envBuf: Uint8Array[] = [];

  constructor() {
    this.imports = this.#build();
  }

  /** Binds the context to one guest call. `memory` may be set later with `setMemory`. */
  bind(memory: WebAssembly.Memory | undefined, config: WasiConfig): void {
    this.#memory = memory;
    this.#config = config;
    this.#stdinPos = 0;
    const enc = new TextEncoder();
    this.#argsBuf = config.args.map((a) => enc.encode(a + '\0'));
    this.#envBuf = [...config.env].map(([k, v]) => enc.encode(`${k}=${v}\0`));
  }

  /** Sets the memory when it is only known after instantiation (module-owned memory). */
  setMemory(memory: WebAssembly.Memory): void {
    this.#memory = memory;
  }

  /** Releases the call's resources (open files). */
  unbind(): void {
    this.#memory = undefined;
    this.#config = undefined;
  }

  #view(): DataView {
    if (!this.#memory) throw new Error('WASI call before the guest memory is known');
    return new DataView(this.#memory.buffer);
  }
  #bytes(): Uint8Array {
    if (!this.#memory) throw new Error('WASI call before the guest memory is known');
    return new Uint8Array(this.#memory.buffer);
  }

  #writeStrings(list: Uint8Array[], ptrs: number, buf: number): number {
    const view = this.#view();
    const mem = this.#bytes();
    let o = buf;
    list.forEach((s, i) => {
      view.setUint32(ptrs + i * 4, o, true);
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

  #build(): Record<string, Fn> {
    const nosys: Fn = () => Errno.NOSYS;
    const imports: Record<string, Fn> = {};
    for (const name of PREVIEW1_NAMES) imports[name] = nosys;
    Object.assign(imports, {
      args_get: (argv: number, buf: number) => this.#writeStrings(this.#argsBuf, argv, buf),
      args_sizes_get: (c: number, s: number) => this.#sizes(this.#argsBuf, c, s),
      environ_get: (env: number, buf: number) => this.#writeStrings(this.#envBuf, env, buf),
      environ_sizes_get: (c: number, s: number) => this.#sizes(this.#envBuf, c, s),
      clock_res_get: (id: number, res: number) => {
        if (id > 3) return Errno.INVAL;
        this.#view().setBigUint64(res, id === 0 ? 1_000_000n : 1000n, true);
        return Errno.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, time: number) => {
        let ns: bigint;
        if (id === 0) ns = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
        else if (id <= 3) ns = process.hrtime.bigint();
        else return Errno.INVAL;
        this.#view().setBigUint64(time, ns, true);
        return Errno.SUCCESS;
      },
      random_get: (buf: number, len: number) => {
        randomFillSync(this.#bytes(), buf, len);
        return Errno.SUCCESS;
      },
      fd_write: (fd: number, iovs: number, iovsLen: number, nwritten: number) => {
        if (fd !== 1 && fd !== 2) return Errno.BADF;
        const view = this.#view();
        const mem = this.#bytes();
        let total = 0;
        const parts: Uint8Array[] = [];
        for (let i = 0; i < iovsLen; i++) {
          const p = view.getUint32(iovs + i * 8, true);
          const l = view.getUint32(iovs + i * 8 + 4, true);
          if (l === 0) continue;
          parts.push(mem.slice(p, p + l));
          total += l;
        }
        const out = parts.length === 1 ? parts[0]! : concat(parts, total);
        if (total > 0) (fd === 1 ? this.#config!.stdout : this.#config!.stderr)(out);
        view.setUint32(nwritten, total, true);
        return Errno.SUCCESS;
      },
      fd_read: (fd: number, iovs: number, iovsLen: number, nread: number) => {
        if (fd !== 0) return Errno.BADF;
        const view = this.#view();
        const mem = this.#bytes();
        const stdin = this.#config!.stdin;
        let total = 0;
        for (let i = 0; i < iovsLen; i++) {
          const p = view.getUint32(iovs + i * 8, true);
          const l = view.getUint32(iovs + i * 8 + 4, true);
          let n: number;
          if (stdin === 'inherit') {
            try {
              n = readSync(0, mem, p, l, null);
            } catch (e) {
              if ((e as NodeJS.ErrnoException).code === 'EAGAIN') n = 0;
              else if ((e as NodeJS.ErrnoException).code === 'EOF') n = 0;
              else throw e;
            }
          } else {
            n = Math.min(l, stdin.length - this.#stdinPos);
            mem.set(stdin.subarray(this.#stdinPos, this.#stdinPos + n), p);
            this.#stdinPos += n;
          }
          total += n;
          if (n < l) break;
        }
        view.setUint32(nread, total, true);
        return Errno.SUCCESS;
      },
      fd_fdstat_get: (fd: number, stat: number) => {
        if (fd > 2) return Errno.BADF;
        const view = this.#view();
        view.setUint8(stat, 2); // filetype: character device
        view.setUint16(stat + 2, fd === 0 ? 0 : 1, true); // fdflags: append for outputs
        view.setBigUint64(stat + 8, fd === 0 ? 0x2n : 0x40n, true); // rights: fd_read / fd_write
        view.setBigUint64(stat + 16, 0n, true);
        return Errno.SUCCESS;
      },
      fd_fdstat_set_flags: (fd: number) => (fd <= 2 ? Errno.SUCCESS : Errno.BADF),
      fd_prestat_get: () => Errno.BADF,
      fd_prestat_dir_name: () => Errno.BADF,
      fd_close: (fd: number) => (fd <= 2 ? Errno.SUCCESS : Errno.BADF),
      fd_seek: (fd: number) => (fd <= 2 ? Errno.SPIPE : Errno.BADF),
      fd_sync: (fd: number) => (fd <= 2 ? Errno.SUCCESS : Errno.BADF),
      sched_yield: () => Errno.SUCCESS,
      proc_exit: (code: number) => {
        throw new WasiExit(code);
      },
      proc_raise: (sig: number) => {
        throw new WasiExit(128 + sig);
      },
    });
    return imports;
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Every function of `wasi_snapshot_preview1`, so any preview1 module links. */
export const PREVIEW1_NAMES = [
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'clock_res_get', 'clock_time_get',
  'fd_advise', 'fd_allocate', 'fd_close', 'fd_datasync', 'fd_fdstat_get', 'fd_fdstat_set_flags',
  'fd_fdstat_set_rights', 'fd_filestat_get', 'fd_filestat_set_size', 'fd_filestat_set_times', 'fd_pread',
  'fd_prestat_get', 'fd_prestat_dir_name', 'fd_pwrite', 'fd_read', 'fd_readdir', 'fd_renumber', 'fd_seek',
  'fd_sync', 'fd_tell', 'fd_write', 'path_create_directory', 'path_filestat_get', 'path_filestat_set_times',
  'path_link', 'path_open', 'path_readlink', 'path_remove_directory', 'path_rename', 'path_symlink',
  'path_unlink_file', 'poll_oneoff', 'proc_exit', 'proc_raise', 'sched_yield', 'random_get', 'sock_accept',
  'sock_recv', 'sock_send', 'sock_shutdown',
] as const;
