/**
 * The unmanaged block holding an export's result (capsule-abi.md §2.3: the host copies it
 * before it calls the guest again). The block is reused for the next result while it is
 * small, so a reused instance does not allocate and free one per call; a large one is freed
 * as soon as the host calls again.
 */

let block: usize = 0;
let capacity: usize = 0;
/** Blocks up to this size are kept for the next result. */
const KEEP: usize = 65536;

/**
 * A block of at least `size` bytes for a new result: the previous result's block when it is
 * large enough (its content has been read), else a new one.
 */
export function resultBlock(size: usize): usize {
  if (block != 0) {
    if (size <= capacity) return block;
    heap.free(block);
  }
  let cap = size < 256 ? <usize>256 : size;
  block = heap.alloc(cap);
  capacity = cap;
  return block;
}

/** The host has read the last result (it called us again): frees its block if it is large. */
export function releaseResult(): void {
  if (block != 0 && capacity > KEEP) {
    heap.free(block);
    block = 0;
    capacity = 0;
  }
}
