/**
 * Byte helpers shared by the engine, capabilities and triggers.
 */
import type { Readable } from 'node:stream';

/**
 * Joins chunks into one new `Uint8Array` whose buffer is its own, exactly `size` bytes long.
 * Unlike `Buffer.concat`, the result is never a slice of Node's shared 8 KiB pool, which a
 * `postMessage` to a worker would clone whole.
 * @param size total length in bytes (the sum of the chunks' lengths when omitted)
 */
export function concatBytes(chunks: readonly Uint8Array[], size = chunks.reduce((n, c) => n + c.length, 0)): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Body bytes read and dropped past the limit of {@link readBodyUpTo}: 64 MiB. */
const DISCARD_BYTES = 64 * 1024 * 1024;

/**
 * Reads a request body of at most `limit` bytes (-1: keep nothing). Resolves undefined when it is
 * longer: the rest is then read and dropped, up to 64 MiB more, so the client gets the refusal
 * rather than a broken pipe; past that it resolves at once (the refusal closes the connection).
 * @throws the stream's error
 */
export function readBodyUpTo(req: Readable, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (size > limit + DISCARD_BYTES) resolve(undefined);
    });
    req.once('end', () => resolve(size > limit ? undefined : Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}
