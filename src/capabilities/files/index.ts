/**
 * Capability `files`: `hostReadFile(path)` and `hostWriteFile(path, content)`, sandboxed
 * (capsule-abi.md §4.7, §5.7, §7.5; conventions.md §2).
 *
 * Paths resolve through the function's mounts (`--dir HOST[:GUEST][:ro]`, the same table as the
 * WASI preopens) with `resolveInMounts`, the walk WASI uses: relative paths against `/`, the
 * longest covering mount wins, nothing resolves outside it (`..` above the mount, absolute
 * symlinks, symlinks that climb out). A path no mount covers — every path when nothing is
 * granted — fails with a message naming the `--dir` to add; writes to a `:ro` mount fail.
 *
 * Gen 2: read → `S<content>`, write → `S<path>` (mode 0644); failures `F<path>: <reason>`.
 * Gen 1: read → content, write → `file created`; failures `[ERR][0]:<path>: <reason>`.
 */
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { formatBytes } from '../../base/units.ts';
import { resolveInMounts, shownGuestPath, systemReason } from '../../wasi/mounts.ts';
import { fail, ok, text, type Capability, type HostCallContext, type HostResult } from '../types.ts';

/** Opened without following the last component, and without blocking on a FIFO. */
const OPEN_FLAGS = constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * Reads a guest path. The path is resolved by the sandbox walk (`resolveInMounts`); the file is
 * then opened in the directory the walk holds, without following its name, so a symlink or
 * rename made after the check cannot redirect it. Files larger than the function's memory cap
 * are refused. Failures name the guest path (cut when long), never a host path.
 */
export function readGuestFile(ctx: Pick<HostCallContext, 'settings'>, path: string): HostResult {
  const r = resolveInMounts(ctx.settings.mounts, path);
  if (!r.ok) return fail(r.message);
  const shown = shownGuestPath(path);
  let fd: number | undefined;
  try {
    if (!r.stat) return fail(`${shown}: no such file or directory`);
    if (r.stat.isDirectory()) return fail(`${shown}: is a directory`);
    fd = openSync(r.at, constants.O_RDONLY | OPEN_FLAGS);
    const st = fstatSync(fd);
    if (!st.isFile()) return fail(`${shown}: not a regular file`);
    const cap = ctx.settings.maxMemoryBytes;
    if (st.size > cap) return fail(`${shown}: the file is ${formatBytes(st.size)}, larger than the function's memory (--max-memory ${formatBytes(cap)})`);
    const buf = new Uint8Array(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return ok(off === buf.length ? buf : buf.subarray(0, off));
  } catch (e) {
    return fail(`${shown}: ${systemReason(e)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
    r.release();
  }
}

/**
 * Writes (creates or truncates, mode 0644) a guest path; refused on read-only mounts. Like
 * `readGuestFile`, nothing is created or truncated before the walk has accepted the path.
 */
export function writeGuestFile(ctx: Pick<HostCallContext, 'settings'>, path: string, content: Uint8Array): HostResult {
  const r = resolveInMounts(ctx.settings.mounts, path, { write: true });
  if (!r.ok) return fail(r.message);
  const shown = shownGuestPath(path);
  let fd: number | undefined;
  try {
    if (r.name === '' || r.stat?.isDirectory()) return fail(`${shown}: is a directory`);
    if (r.stat && !r.stat.isFile()) return fail(`${shown}: not a regular file`);
    if (!r.stat && path.endsWith('/')) return fail(`${shown}: is a directory`);
    fd = openSync(r.at, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | OPEN_FLAGS, 0o644);
    let off = 0;
    while (off < content.length) off += writeSync(fd, content, off, content.length - off);
    return ok(path);
  } catch (e) {
    return fail(`${shown}: ${systemReason(e)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
    r.release();
  }
}
export const files: Capability = {
  name: 'files',
  grant: { lends: 'files inside granted directories', how: '--dir HOST[:GUEST][:ro] (config dir)' },
  functions: [
    {
      name: 'hostReadFile', generations: [1, 2], params: ['s'], returns: true, grant: true,
      run(ctx, [path]) {
        return readGuestFile(ctx, text(path));
      },
    },
    {
      name: 'hostWriteFile', generations: [1, 2], params: ['s', 's'], returns: true, grant: true,
      run(ctx, [path, content]) {
        const r = writeGuestFile(ctx, text(path), content as Uint8Array);
        return r.ok && ctx.generation === 1 ? ok('file created') : r;
      },
    },
  ],
};
