/** File helpers every layer shares. */
import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Writes `bytes` to a temporary file beside `path` (creating the directory), then renames it
 * into place: a reader sees the old file or the new one, never a half-written one.
 * @throws the file system's error (the temporary file removed)
 */
export async function writeFileAtomically(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${process.pid}-${randomUUID().slice(0, 8)}.part`;
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}
