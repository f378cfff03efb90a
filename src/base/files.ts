/** File helpers every layer shares. */
import { dirname } from 'node:path';

/**
 * Writes `bytes` to a temporary file beside `path` (creating the directory), then renames it
 * into place: a reader sees the old file or the new one, never a half-written one.
 * @throws the file system's error (the temporary file removed)
 */
export async function writeFileAtomically(path: string, bytes: Uint8Array | string): Promise<void> {
  // node:fs/promises and node:crypto are loaded at first use: at start they would cost
  // `capsule run`, which loads this module, ~5 ms (docs/performance.md "Start-up")
  const { mkdir, rename, rm, writeFile } = process.getBuiltinModule('node:fs/promises');
  const tmp = `${path}.${process.pid}-${process.getBuiltinModule('node:crypto').randomUUID().slice(0, 8)}.part`;
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}
