/**
 * Errors made by the runner (not by a guest). Each carries a stable `code` that the HTTP trigger
 * maps to a status (conventions.md §4) and the CLI to an exit code.
 */
export type ErrorCode =
  | 'BAD_MODULE'   // not wasm, truncated, unsupported kind, missing import/export (load time)
  | 'TRAP'         // the guest trapped or exited non-zero
  | 'TIMEOUT'      // the per-call deadline was exceeded; the worker was replaced
  | 'MEMORY'       // the linear-memory cap was reached
  | 'TOO_LARGE'    // a request body above --max-body
  | 'OVERLOADED'   // --max-concurrency exceeded, or the pool queue is full
  | 'BAD_RESULT'   // the guest returned a result its ABI does not allow
  | 'USAGE'        // a bad flag or config value
  | 'LOAD'         // the module could not be read or downloaded
  | 'INTERNAL';

/** HTTP status per error code (conventions.md §4). */
export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  BAD_MODULE: 500, TRAP: 500, TIMEOUT: 504, MEMORY: 500, TOO_LARGE: 413, OVERLOADED: 503,
  BAD_RESULT: 500, USAGE: 400, LOAD: 500, INTERNAL: 500,
};

/** A runner-made error with a stable code. Safe to send to a client: `message` names no secret. */
export class CapsuleError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CapsuleError';
    this.code = code;
  }
  /** Plain-object form that crosses `postMessage` (class identity does not). */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
  static from(value: { code: ErrorCode; message: string }): CapsuleError {
    return new CapsuleError(value.code, value.message);
  }
}
