/**
 * The function types of every `wasi_snapshot_preview1` import (witx `wasi_snapshot_preview1.witx`,
 * lowered to core wasm: handles, sizes, pointers and enums are i32; `filesize`, `timestamp`,
 * `device`, `dircookie`, `rights` and `filedelta` are i64; every function returns its `errno` as
 * an i32, except `proc_exit`, which returns nothing).
 *
 * The host's WASI functions are JavaScript functions, which link to any declared type: a module
 * that declares `fd_write` with an i64 parameter would link and fail on its first call with a
 * conversion error. The engine checks imports against this table at load instead (engine/load.ts).
 */
import type { FuncType, ValType } from '../wasm/binary.ts';

/** `i32` parameters and i64 ones written as a string: `'iIi'` = (i32, i64, i32). */
function errnoFn(params: string): FuncType {
  return { params: [...params].map((c): ValType => (c === 'I' ? 'i64' : 'i32')), results: ['i32'] };
}

/** Every function of WASI preview1 and its core-wasm type. */
export const PREVIEW1_TYPES: Readonly<Record<string, FuncType>> = {
  args_get: errnoFn('ii'),
  args_sizes_get: errnoFn('ii'),
  environ_get: errnoFn('ii'),
  environ_sizes_get: errnoFn('ii'),
  clock_res_get: errnoFn('ii'),
  clock_time_get: errnoFn('iIi'),
  fd_advise: errnoFn('iIIi'),
  fd_allocate: errnoFn('iII'),
  fd_close: errnoFn('i'),
  fd_datasync: errnoFn('i'),
  fd_fdstat_get: errnoFn('ii'),
  fd_fdstat_set_flags: errnoFn('ii'),
  fd_fdstat_set_rights: errnoFn('iII'),
  fd_filestat_get: errnoFn('ii'),
  fd_filestat_set_size: errnoFn('iI'),
  fd_filestat_set_times: errnoFn('iIIi'),
  fd_pread: errnoFn('iiiIi'),
  fd_prestat_get: errnoFn('ii'),
  fd_prestat_dir_name: errnoFn('iii'),
  fd_pwrite: errnoFn('iiiIi'),
  fd_read: errnoFn('iiii'),
  fd_readdir: errnoFn('iiiIi'),
  fd_renumber: errnoFn('ii'),
  fd_seek: errnoFn('iIii'),
  fd_sync: errnoFn('i'),
  fd_tell: errnoFn('ii'),
  fd_write: errnoFn('iiii'),
  path_create_directory: errnoFn('iii'),
  path_filestat_get: errnoFn('iiiii'),
  path_filestat_set_times: errnoFn('iiiiIIi'),
  path_link: errnoFn('iiiiiii'),
  path_open: errnoFn('iiiiiIIii'),
  path_readlink: errnoFn('iiiiii'),
  path_remove_directory: errnoFn('iii'),
  path_rename: errnoFn('iiiiii'),
  path_symlink: errnoFn('iiiii'),
  path_unlink_file: errnoFn('iii'),
  poll_oneoff: errnoFn('iiii'),
  proc_exit: { params: ['i32'], results: [] },
  proc_raise: errnoFn('i'),
  sched_yield: errnoFn(''),
  random_get: errnoFn('ii'),
  sock_accept: errnoFn('iii'),
  sock_recv: errnoFn('iiiiii'),
  sock_send: errnoFn('iiiii'),
  sock_shutdown: errnoFn('ii'),
};

/** Every function of `wasi_snapshot_preview1`, so any preview1 module links. */
export const PREVIEW1_NAMES: readonly string[] = Object.keys(PREVIEW1_TYPES);
