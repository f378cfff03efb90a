/**
 * Writing to the process's stdout/stderr from a worker or the CLI without losing bytes: when fd
 * 1 or 2 is a non-blocking pipe that is full, `writeSync` throws EAGAIN; wait and write the rest.
 */
import { writeSync } from 'node:fs';
import { CapsuleError } from './errors.ts';

/**
 * Message of the error a write to a closed standard output or error becomes (`capsule run … |
 * head -1`): a `CapsuleError` crosses from a worker to the main thread intact, so `capsule run`
 * can end quietly, as Unix tools do when their reader goes away.
 */
export const OUTPUT_CLOSED = 'the standard output is closed (its reader went away: EPIPE)';

/** Whether `e` is the error of a write to a closed standard output or error (see `OUTPUT_CLOSED`). */
export function isOutputClosed(e: unknown): boolean {
  return e instanceof Error && (e.message === OUTPUT_CLOSED || (e as NodeJS.ErrnoException).code === 'EPIPE');
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `data` to `fd`, waiting (1 ms steps) while the pipe is full.
 * @throws CapsuleError INTERNAL `OUTPUT_CLOSED` when the reader went away (EPIPE); the system
 *   error for anything else but EAGAIN
 */
export function writeAllSync(fd: number, data: string | Uint8Array): void {
  let bytes = typeof data === 'string' ? Buffer.from(data) : data;
  while (bytes.length > 0) {
    try {
      const n = writeSync(fd, bytes);
      bytes = bytes.subarray(n);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') throw new CapsuleError('INTERNAL', OUTPUT_CLOSED);
      if (code !== 'EAGAIN') throw e;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
