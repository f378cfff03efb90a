/**
 * Byte helpers shared by the engine, capabilities and triggers.
 */

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
