/**
 * The guest side of Capsule ABI generation 2 (capsule-abi.md §2, §5, §6): the exports a host
 * calls, handler registration, and result framing.
 *
 * Memory rules kept here:
 * - `malloc`/`free` and `allocateBuffer` hand out unmanaged blocks (`heap.alloc`), which the
 *   garbage collector never touches: the host's input stays valid until it calls `free`, and
 *   return buffers until the SDK has copied them (it frees them at once).
 * - A handler result is written, framed (`S`/`F`), into one unmanaged block that stays alive
 *   until the next handler export is called (`callHandle*`, or a user export using
 *   `httpResult`); then it is freed, or reused for the next result when it is small
 *   (result.ts). Long-lived instances (`--reuse`) therefore hold at most one result at a time.
 * - Strings passed to host functions are encoded into managed buffers held by locals for the
 *   whole (synchronous) import call; the only re-entry during such a call is `allocateBuffer`,
 *   which allocates with `heap.alloc` and never runs the collector, so nothing the host is
 *   reading can be freed under it.
 */
import { decodeUTF8, encodeUTF8Into, utf8Length } from "./utf8";
import { JSON, JSONValue } from "./json";
import { Request, Response, frameResponse } from "./http";
import { resultBlock, releaseResult } from "./result";

/** A `callHandle` handler: the CLI parameters in, the text to print out (§5.2). */
export type Handler = (params: string) => string;
/** A `callHandleJSON` handler: the parsed JSON input in, the result text out. */
export type JSONHandler = (input: JSONValue) => string;
/** A `callHandleHTTP` handler: a request in, a response out (§5.3, §5.4). */
export type HTTPHandler = (request: Request) => Response;

let handler: Handler | null = null;
let jsonHandler: JSONHandler | null = null;
let httpHandler: HTTPHandler | null = null;
let pendingFailure: string | null = null;

const S: u8 = 0x53;
const F: u8 = 0x46;

/**
 * Registers the handler `callHandle` runs (CLI: `capsule run --wasm=m.wasm --params=…`).
 * Call it from the module's top-level code, which runs when the host calls `_initialize`.
 * The handler's return value is the success payload (`S<text>`); to fail, return `fail(msg)`.
 */
export function setHandle(fn: Handler): void {
  handler = fn;
}

/**
 * Registers the handler `callHandleJSON` runs. The input is parsed by the SDK; invalid JSON
 * input fails the call (`F` with the parse error) without calling the handler.
 */
export function setHandleJSON(fn: JSONHandler): void {
  jsonHandler = fn;
}

/**
 * Registers the handler `callHandleHTTP` runs (HTTP trigger, `capsule-http`).
 * Return a `Response`; `Response.failure(msg)` (or `fail(msg)` before returning) sends `F<msg>`,
 * which hosts answer with a 500 `text/plain` response.
 */
export function setHandleHTTP(fn: HTTPHandler): void {
  httpHandler = fn;
}

/**
 * Marks the current call as failed: the SDK returns `F<message>` instead of `S<result>`
 * (§5.1). Returns `message`, so a handler can write `return fail("bad input")`.
 */
export function fail(message: string): string {
  pendingFailure = message;
  return message;
}

/** Packs a block address and length into the i64 result of an export: ptr << 32 | len. */
// @ts-ignore: decorator
@inline function pack(ptr: usize, len: usize): u64 {
  return (<u64>ptr << 32) | <u64>(<u32>len);
}

/** Writes `tag` + UTF-8 of `text` into the result block, kept until the next handler call. */
function frame(tag: u8, text: string): u64 {
  releaseResult();
  let n = utf8Length(text);
  let p = resultBlock(n + 1);
  store<u8>(p, tag);
  let written = encodeUTF8Into(text, p + 1);
  return pack(p, written + 1);
}

/** Starts a handler call: forgets an earlier `fail()`. */
function begin(): void {
  releaseResult();
  pendingFailure = null;
}

/** Ends a handler call: `F<failure>` if `fail()` was called, else `S<out>`. */
function finish(out: string): u64 {
  let failure = pendingFailure;
  pendingFailure = null;
  if (failure !== null) return frame(F, failure);
  return frame(S, out);
}

/**
 * Frames a `Response` as a handler result: `S<response JSON>` (§5.4), or `F<…>` for
 * `Response.failure`, after `fail()`, or when `jsonBody` is not valid JSON.
 * Use it to implement the optional exports `OnHealthCheck(): u64` and `OnMetrics(): u64`.
 */
export function httpResult(res: Response): u64 {
  let failure = pendingFailure;
  pendingFailure = null;
  if (failure !== null) return frame(F, failure);
  let rf = res.failure;
  if (rf !== null) return frame(F, rf);
  releaseResult();
  let framed = frameResponse(S, res);
  if (framed == 0) return frame(F, res.validationError());
  return framed;
}

// --- exports (re-exported by the module's entry file through `exports.ts`) ----------------

/** For other entry points of the MDK (message.ts): starts a handler call. */
export function abiBegin(): void {
  begin();
}

/** For other entry points of the MDK: ends a handler call with its result (see `fail`). */
export function abiFinish(out: string): u64 {
  return finish(out);
}

/** For other entry points of the MDK: an `F<message>` result. */
export function abiFail(message: string): u64 {
  return frame(F, message);
}

/** Export `malloc(size) -> ptr` (§2.3): a block the host fills with an argument. */
export function malloc(size: usize): usize {
  return heap.alloc(size);
}

/** Export `free(ptr)` (§2.3): releases a block from `malloc` (0 is ignored). */
export function free(ptr: usize): void {
  if (ptr != 0) heap.free(ptr);
}

/**
 * Export `allocateBuffer(size) -> ptr` (§2.4, §6): a block for a host function's result.
 * Accepts 0 (Go hosts call it so for an empty result). The SDK frees it after copying.
 */
export function allocateBuffer(size: usize): usize {
  return heap.alloc(size);
}

/** Export `callHandle(ptr, len) -> i64` (§5.2): raw parameters in, `S`/`F` frame out. */
export function callHandle(ptr: usize, len: usize): u64 {
  begin();
  let h = handler;
  if (h === null) return frame(F, "this module registered no handler: call setHandle(...) in its top-level code");
  let params = decodeUTF8(ptr, len);
  return finish(h(params));
}

/** Export `callHandleJSON(ptr, len) -> i64` (§5.2): JSON in (parsed by the SDK), frame out. */
export function callHandleJSON(ptr: usize, len: usize): u64 {
  begin();
  let h = jsonHandler;
  if (h === null) return frame(F, "this module registered no JSON handler: call setHandleJSON(...) in its top-level code");
  let parsed = JSON.tryParse(decodeUTF8(ptr, len));
  let value = parsed.value;
  if (value === null) return frame(F, "the input is not valid JSON: " + parsed.error);
  return finish(h(value));
}

/** Export `callHandleHTTP(ptr, len) -> i64` (§5.2–§5.4): request JSON in, response frame out. */
export function callHandleHTTP(ptr: usize, len: usize): u64 {
  begin();
  let h = httpHandler;
  if (h === null) return frame(F, "this module registered no HTTP handler: call setHandleHTTP(...) in its top-level code");
  let parsed = Request.parse(decodeUTF8(ptr, len));
  let req = parsed.request;
  if (req === null) return frame(F, parsed.error);
  return httpResult(h(req));
}
