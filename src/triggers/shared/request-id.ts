/**
 * Request ids: random (version 4) UUIDs, the text of `crypto.randomUUID()`, made 128 at a time
 * (conventions.md §5: a request without a usable `X-Request-Id` gets one). Node's `randomUUID`
 * joins 16 two-digit strings per id, ~1 µs of a served request under load; here a batch's
 * random bytes are written as ASCII into one buffer, read as one string, and each id is a slice
 * of it (docs/performance.md, "HTTP pipeline").
 */
import { randomFillSync } from 'node:crypto';

const BATCH = 128;
/** ASCII codes of the hex digits. */
const HEX = Buffer.from('0123456789abcdef', 'latin1');
const random = Buffer.allocUnsafe(16 * BATCH);
const ascii = Buffer.allocUnsafe(36 * BATCH);
let batch = '';
let next = BATCH;

/** A new random UUID (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, lowercase), as `crypto.randomUUID()`. */
export function newRequestId(): string {
  if (next === BATCH) refill();
  const at = next++ * 36;
  return batch.slice(at, at + 36);
}

function refill(): void {
  randomFillSync(random);
  let o = 0;
  for (let i = 0; i < random.length; i++) {
    const j = i & 15;
    let b = random[i]!;
    if (j === 6) b = (b & 0x0f) | 0x40; // version 4
    else if (j === 8) b = (b & 0x3f) | 0x80; // variant 10
    ascii[o++] = HEX[b >> 4]!;
    ascii[o++] = HEX[b & 15]!;
    if (j === 3 || j === 5 || j === 7 || j === 9) ascii[o++] = 0x2d; // '-'
  }
  batch = ascii.toString('latin1', 0, o);
  next = 0;
}
