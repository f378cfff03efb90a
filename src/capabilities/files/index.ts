/**
 * Capability `files`: `hostReadFile(path)` and `hostWriteFile(path, content)`, sandboxed
 * (capsule-abi.md §4.7, §5.7, §7.5; conventions.md §2).
 *
 * Paths resolve through the function's mounts (`--dir HOST[:GUEST][:ro]`, the same table as the
 * WASI preopens) with `resolveInMounts`: relative paths against `/`, the longest covering mount
 * wins, nothing resolves outside it (`..` above the mount, absolute symlinks, symlinks that
 * climb out). A path no mount covers — every path when nothing is granted — fails with a message
 * naming the `--dir` to add; writes to a `:ro` mount fail.
 *
 * Gen 2: read → `S<content>`, write → `S<path>` (mode 0644); failures `F<path>: <reason>`.
 * Gen 1: read → content, write → `file created`; failures `[ERR][0]:<path>: <reason>`.
 */
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { formatBytes } from '../../config/units.ts';
import { resolveInMounts } from '../../wasi/mounts.ts';
import { fail, ok, text, type Capability, type HostCallContext, type HostResult } from '../types.ts';

const REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ELOOP: 'is a symbolic link that changed while it was opened',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
};

function reason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (code && REASONS[code]) ?? (e as Error)?.message ?? String(e);
}

/**
 * Reads a guest path. The file is opened without following a last symlink (the resolver has
 * already expanded every symlink inside the mount), so a symlink swapped in after resolution is
 * refused rather than followed. Files larger than the function's memory cap are refused.
 */
export function readGuestFile(ctx: Pick<HostCallContext, 'settings'>, path: string): HostResult {
  const r = resolveInMounts(ctx.settings.mounts, path);
  if (!r.ok) return fail(r.message);
  const shown = path;
  if (!r.exists) return fail(`${shown}: no such file or directory`);
  let fd: number | undefined;
  try {
    fd = openSync(r.hostPath, constants.O_RDONLY | constants.O_NOFOLLOW);
    const st = fstatSync(fd);
    if (st.isDirectory()) return fail(`${shown}: is a directory`);
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
    return fail(`${shown}: ${reason(e)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes (creates or truncates, mode 0644) a guest path; refused on read-only mounts. */
export function writeGuestFile(ctx: Pick<HostCallContext, 'settings'>, path: string, content: Uint8Array): HostResult {
  const r = resolveInMounts(ctx.settings.mounts, path, { write: true });
  if (!r.ok) return fail(r.message);
  let fd: number | undefined;
  try {
    fd = openSync(r.hostPath, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
    let off = 0;
    while (off < content.length) off += writeSync(fd, content, off, content.length - off);
    return ok(path);
  } catch (e) {
    return fail(`${path}: ${reason(e)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export const files: Capability = {
  name: 'files',
  functions: [
    {
      name: 'hostReadFile', generations: [1, 2], params: ['s'], returns: true, grant: 'files',
      run(ctx, [path]) {
        return readGuestFile(ctx, text(path));
      },
    },
    {
      name: 'hostWriteFile', generations: [1, 2], params: ['s', 's'], returns: true, grant: 'files',
      run(ctx, [path, content]) {
        const r = writeGuestFile(ctx, text(path), content as Uint8Array);
        return r.ok && ctx.generation === 1 ? ok('file created') : r;
      },
    },
  ],
};
