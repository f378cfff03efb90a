/**
 * Replacements for the three `env` imports AssemblyScript emits by default (`abort`, `trace`,
 * `seed`). Capsule hosts refuse unknown `env` imports (capsule-abi.md §8), so the MDK's
 * `asconfig.json` points them here with `--use abort=…`, `--use trace=…`, `--use seed=…`; they
 * use WASI preview1 (stderr, random_get), which every Capsule host provides (§2.1).
 */

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
declare function wasi_fd_write(fd: u32, iovs: usize, iovsLen: usize, nwritten: usize): u16;

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
declare function wasi_random_get(buf: usize, len: usize): u16;

const IOV = memory.data(16);
let aborting = false;

/** Writes the UTF-8 of `s` to WASI stderr (fd 2). */
export function writeStderr(s: string): void {
  let buf = String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE);
  store<u32>(IOV, <u32>changetype<usize>(buf));
  store<u32>(IOV, <u32>buf.byteLength, 4);
  wasi_fd_write(2, IOV, 1, IOV + 8);
}

/**
 * `abort` (failed assertion, out-of-bounds access, out of memory, `throw`): writes
 * `abort: <message> at <file>:<line>:<column>` to stderr, then traps. The host reports the trap
 * as a failed invocation.
 */
export function capsuleAbort(message: string | null, fileName: string | null, lineNumber: u32, columnNumber: u32): void {
  if (!aborting) {
    aborting = true; // an allocation failure while reporting must not recurse
    let text = "abort: " + (message !== null ? message : "(no message)");
    if (fileName !== null) text += " at " + fileName + ":" + lineNumber.toString() + ":" + columnNumber.toString();
    writeStderr(text + "\n");
  }
  unreachable();
}

/** `trace(message, n, a0…a4)`: writes `trace: <message> <a0> …` to stderr. */
export function capsuleTrace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0, a4: f64 = 0): void {
  let text = "trace: " + message;
  if (n > 0) text += " " + a0.toString();
  if (n > 1) text += " " + a1.toString();
  if (n > 2) text += " " + a2.toString();
  if (n > 3) text += " " + a3.toString();
  if (n > 4) text += " " + a4.toString();
  writeStderr(text + "\n");
}

/** `seed()` for `Math.random`: 53 random bits from WASI `random_get`, as an f64. */
export function capsuleSeed(): f64 {
  let slot = IOV + 8;
  wasi_random_get(slot, 8);
  let bits = load<u64>(slot) >> 11;
  return <f64>bits + 1.0; // never 0 (the PRNG needs a non-zero seed)
}
