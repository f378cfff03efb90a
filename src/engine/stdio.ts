/**
 * Writing to the process's stdout/stderr from a worker or the CLI without losing bytes: when fd
 * 1 or 2 is a non-blocking pipe that is full, `writeSync` throws EAGAIN; wait and write the rest.
 */
import { writeSync } from 'node:fs';

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `data` to `fd`, waiting (1 ms steps) while the pipe is full.
 * @throws the system error for anything but EAGAIN (e.g. EPIPE when the reader went away)
 */
export function writeAllSync(fd: number, data: string | Uint8Array): void {
  let bytes = typeof data === 'string' ? Buffer.from(data) : data;
  while (bytes.length > 0) {
    try {
      const n = writeSync(fd, bytes);
      bytes = bytes.subarray(n);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
