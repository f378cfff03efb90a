/**
 * Host functions (module `env`, capsule-abi.md §5.7 and the §8 extensions), declared
 * `(i32…) -> i32` as gen 2 requires, and typed wrappers around them.
 *
 * Strings go to the host as (ptr, len) of their UTF-8 bytes. Results come back through the
 * return-buffer protocol (§2.4): the SDK passes the addresses of two u32 slots; the host calls
 * the module's `allocateBuffer(n)` (only for n > 0), writes the bytes and stores ptr/len in the
 * slots. The SDK copies the bytes into a string and frees the buffer at once.
 *
 * AssemblyScript only imports the host functions a module actually calls, so an unused wrapper
 * costs nothing and does not make a host refuse the module.
 */
import { decodeUTF8, encodeUTF8 } from "./utf8";
import { JSON, JSONValue } from "./json";

// --- imports ------------------------------------------------------------------------------

// @ts-ignore: decorator
@external("env", "hostPrintString") declare function hostPrintString(ptr: usize, len: usize): i32;
// @ts-ignore: decorator
@external("env", "hostLogString") declare function hostLogString(ptr: usize, len: usize): i32;
// @ts-ignore: decorator
@external("env", "hostGetEnv") declare function hostGetEnv(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostTalk") declare function hostTalk(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostReadFile") declare function hostReadFile(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostWriteFile") declare function hostWriteFile(p1: usize, l1: usize, p2: usize, l2: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostHTTP") declare function hostHTTP(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostCacheSet") declare function hostCacheSet(p1: usize, l1: usize, p2: usize, l2: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostCacheGet") declare function hostCacheGet(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostCacheDel") declare function hostCacheDel(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostCacheKeys") declare function hostCacheKeys(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostRedisSet") declare function hostRedisSet(p1: usize, l1: usize, p2: usize, l2: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostRedisGet") declare function hostRedisGet(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostRedisDel") declare function hostRedisDel(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostRedisKeys") declare function hostRedisKeys(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostCouchBaseQuery") declare function hostCouchBaseQuery(ptr: usize, len: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostNatsPublish") declare function hostNatsPublish(p1: usize, l1: usize, p2: usize, l2: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostNatsRequest") declare function hostNatsRequest(p1: usize, l1: usize, p2: usize, l2: usize, timeoutMs: i32, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostMqttPublish") declare function hostMqttPublish(p1: usize, l1: usize, p2: usize, l2: usize, retPtr: usize, retLen: usize): i32;
// @ts-ignore: decorator
@external("env", "hostKvIncrement") declare function hostKvIncrement(p1: usize, l1: usize, p2: usize, l2: usize, retPtr: usize, retLen: usize): i32;

// --- return buffer (§2.4) -----------------------------------------------------------------

/** The two u32 slots (retPtrAddr, retLenAddr) handed to host functions. */
const RET = memory.data(8);

/** Zeroes the slots before a call, so a host that writes nothing reads as empty. */
// @ts-ignore: decorator
@inline function resetRet(): void {
  store<u32>(RET, 0);
  store<u32>(RET, 0, 4);
}

/** Reads the bytes the host stored through the slots as text, then frees its buffer. */
function takeRet(): string {
  let ptr = <usize>load<u32>(RET);
  let len = <usize>load<u32>(RET, 4);
  let s = decodeUTF8(ptr, len);
  if (ptr != 0) heap.free(ptr);
  return s;
}

/** Reads an `S<value>` / `F<error>` frame from the slots (§5.1), then frees the buffer. */
function takeFrame(): Result {
  let ptr = <usize>load<u32>(RET);
  let len = <usize>load<u32>(RET, 4);
  let r: Result;
  if (len == 0) {
    r = new Result(false, "", "the host returned an empty result (expected an S or F frame)");
  } else {
    let tag = load<u8>(ptr);
    let text = decodeUTF8(ptr + 1, len - 1);
    if (tag == 0x53) r = new Result(true, text, "");
    else if (tag == 0x46) r = new Result(false, "", text);
    else r = new Result(false, "", "the host returned an unframed result: " + decodeUTF8(ptr, len));
  }
  if (ptr != 0) heap.free(ptr);
  return r;
}

/**
 * The outcome of a host function that answers `S<value>` or `F<error>` (§5.1).
 */
export class Result {
  constructor(
    /** True for `S`. */
    public ok: bool,
    /** The payload of `S` (empty on failure). */
    public value: string,
    /** The payload of `F` (empty on success). */
    public error: string,
  ) {}

  /** `value` parsed as JSON, or null (failure, or not JSON). */
  json(): JSONValue | null {
    return this.ok ? JSON.parse(this.value) : null;
  }

  /**
   * For `cacheKeys` / `redisKeys`: the keys of `{"keys":[…]}` (`{"keys":null}` → empty).
   * Empty on failure.
   */
  keys(): string[] {
    let out = new Array<string>();
    let v = this.json();
    if (v === null) return out;
    let k = v.get("keys");
    if (k === null || !k.isArray) return out;
    for (let i = 0; i < k.items.length; i++) out.push(unchecked(k.items[i]).asString());
    return out;
  }
}

// Helpers that pass one or two strings and read a frame. Each buffer stays referenced by a local
// until the host has returned (the host reads it synchronously).

type Fn1 = (p: usize, l: usize, rp: usize, rl: usize) => i32;
type Fn2 = (p1: usize, l1: usize, p2: usize, l2: usize, rp: usize, rl: usize) => i32;

function call1(a: string, f: Fn1): Result {
  let ba = encodeUTF8(a);
  resetRet();
  f(changetype<usize>(ba), <usize>ba.byteLength, RET, RET + 4);
  return takeFrame();
}

function call2(a: string, b: string, f: Fn2): Result {
  let ba = encodeUTF8(a);
  let bb = encodeUTF8(b);
  resetRet();
  f(changetype<usize>(ba), <usize>ba.byteLength, changetype<usize>(bb), <usize>bb.byteLength, RET, RET + 4);
  return takeFrame();
}

// --- wrappers -----------------------------------------------------------------------------

/**
 * Prints `text` and a newline on the function's standard output (`hostPrintString`, §5.7).
 * The CLI shows it on the terminal; servers log it.
 */
export function print(text: string): void {
  let b = encodeUTF8(text);
  hostPrintString(changetype<usize>(b), <usize>b.byteLength);
}

/** Writes `text` as one line to the function log (`hostLogString`, §5.7). */
export function log(text: string): void {
  let b = encodeUTF8(text);
  hostLogString(changetype<usize>(b), <usize>b.byteLength);
}

/**
 * The value of environment variable `name` (`hostGetEnv`, §5.7): the raw value, no frame.
 * Empty when the variable is unset or empty (the host then stores ptr 0 / len 0 and never calls
 * `allocateBuffer`).
 */
export function getEnv(name: string): string {
  let b = encodeUTF8(name);
  resetRet();
  hostGetEnv(changetype<usize>(b), <usize>b.byteLength, RET, RET + 4);
  return takeRet();
}

/** Demo function `hostTalk` (§5.7): the host logs `message` and answers a fixed greeting. */
export function talk(message: string): string {
  let b = encodeUTF8(message);
  resetRet();
  hostTalk(changetype<usize>(b), <usize>b.byteLength, RET, RET + 4);
  return takeRet();
}

/** Reads a file through the function's mounts (`hostReadFile`): `S<content>` / `F<error>`. */
export function readFile(path: string): Result {
  return call1(path, (p, l, rp, rl) => hostReadFile(p, l, rp, rl));
}

/** Writes (creates or truncates, mode 0644) a file (`hostWriteFile`): `S<path>` / `F<error>`. */
export function writeFile(path: string, content: string): Result {
  return call2(path, content, (p1, l1, p2, l2, rp, rl) => hostWriteFile(p1, l1, p2, l2, rp, rl));
}

/** Memory cache: stores `value` under `key` (`hostCacheSet`): `S<key>`. */
export function cacheSet(key: string, value: string): Result {
  return call2(key, value, (p1, l1, p2, l2, rp, rl) => hostCacheSet(p1, l1, p2, l2, rp, rl));
}

/** Memory cache: the value of `key` (`hostCacheGet`): `S<value>` / `Fkey not found`. */
export function cacheGet(key: string): Result {
  return call1(key, (p, l, rp, rl) => hostCacheGet(p, l, rp, rl));
}

/** Memory cache: deletes `key` (`hostCacheDel`): `S<key>`. */
export function cacheDel(key: string): Result {
  return call1(key, (p, l, rp, rl) => hostCacheDel(p, l, rp, rl));
}

/** Memory cache: keys matching a glob (`hostCacheKeys`): `S{"keys":[…]}`; see `Result.keys()`. */
export function cacheKeys(pattern: string = "*"): Result {
  return call1(pattern, (p, l, rp, rl) => hostCacheKeys(p, l, rp, rl));
}

/** Redis SET (`hostRedisSet`): `S<key>` / `F<error>`. */
export function redisSet(key: string, value: string): Result {
  return call2(key, value, (p1, l1, p2, l2, rp, rl) => hostRedisSet(p1, l1, p2, l2, rp, rl));
}

/** Redis GET (`hostRedisGet`): `S<value>` / `F<error>` (`Fredis: nil` when missing). */
export function redisGet(key: string): Result {
  return call1(key, (p, l, rp, rl) => hostRedisGet(p, l, rp, rl));
}

/** Redis DEL (`hostRedisDel`): `S<key>` / `F<error>`. */
export function redisDel(key: string): Result {
  return call1(key, (p, l, rp, rl) => hostRedisDel(p, l, rp, rl));
}

/** Redis KEYS (`hostRedisKeys`): `S{"keys":[…]}` / `F<error>`; see `Result.keys()`. */
export function redisKeys(pattern: string = "*"): Result {
  return call1(pattern, (p, l, rp, rl) => hostRedisKeys(p, l, rp, rl));
}

/** CouchBase N1QL query (`hostCouchBaseQuery`, conventions.md §5): `S<JSON array of rows>`. */
export function couchBaseQuery(query: string): Result {
  return call1(query, (p, l, rp, rl) => hostCouchBaseQuery(p, l, rp, rl));
}

/** Extension (§8): publishes `data` on a NATS subject (`hostNatsPublish`): `S<subject>`. */
export function natsPublish(subject: string, data: string): Result {
  return call2(subject, data, (p1, l1, p2, l2, rp, rl) => hostNatsPublish(p1, l1, p2, l2, rp, rl));
}

/**
 * Extension (§8): NATS request/reply (`hostNatsRequest`): `S<reply>` / `F<error>` (`Ftimeout`).
 * @param timeoutMs how long to wait for the reply, milliseconds
 */
export function natsRequest(subject: string, data: string, timeoutMs: i32): Result {
  let ba = encodeUTF8(subject);
  let bb = encodeUTF8(data);
  resetRet();
  hostNatsRequest(changetype<usize>(ba), <usize>ba.byteLength, changetype<usize>(bb), <usize>bb.byteLength, timeoutMs, RET, RET + 4);
  return takeFrame();
}

/** Extension (§8): publishes `data` on an MQTT topic (`hostMqttPublish`): `S<topic>`. */
export function mqttPublish(topic: string, data: string): Result {
  return call2(topic, data, (p1, l1, p2, l2, rp, rl) => hostMqttPublish(p1, l1, p2, l2, rp, rl));
}

/**
 * Extension (§8): atomically adds `delta` to the integer at `key` in the function's KV store
 * (`hostKvIncrement`; absent = 0): `S<new value>` (decimal) / `F<error>`.
 */
export function kvIncrement(key: string, delta: i64 = 1): Result {
  return call2(key, delta.toString(), (p1, l1, p2, l2, rp, rl) => hostKvIncrement(p1, l1, p2, l2, rp, rl));
}

// --- outbound HTTP (hostHTTP) -------------------------------------------------------------

/** An outbound HTTP request for `httpRequest` (§5.7 "hostHTTP request"). */
export class ClientRequest {
  /** HTTP method (GET, POST, PUT, DELETE, …). */
  method: string = "GET";
  /** Absolute URL. The host only reaches hosts in the function's allow-list. */
  uri: string = "";
  /** Request headers. */
  headers: Map<string, string> = new Map<string, string>();
  /** Text body (sent when `jsonBody` is empty). */
  textBody: string = "";
  /** Raw JSON text of the body (sent when not empty). */
  jsonBody: string = "";

  constructor(method: string = "GET", uri: string = "") {
    this.method = method;
    this.uri = uri;
  }

  /** Sets a header. Returns this, for chaining. */
  setHeader(name: string, value: string): ClientRequest {
    this.headers.set(name, value);
    return this;
  }

  /** The request JSON handed to `hostHTTP`, every string escaped. */
  toJSON(): string {
    let parts = new Array<string>();
    parts.push("{\"JSONBody\":");
    parts.push(this.jsonBody.length > 0 ? this.jsonBody : "{}");
    parts.push(",\"TextBody\":");
    parts.push(JSON.quote(this.textBody));
    parts.push(",\"URI\":");
    parts.push(JSON.quote(this.uri));
    parts.push(",\"Method\":");
    parts.push(JSON.quote(this.method));
    parts.push(",\"Headers\":{");
    let keys = this.headers.keys();
    for (let i = 0; i < keys.length; i++) {
      if (i > 0) parts.push(",");
      parts.push(JSON.quote(unchecked(keys[i])));
      parts.push(":");
      parts.push(JSON.quote(this.headers.get(unchecked(keys[i]))));
    }
    parts.push("}}");
    return parts.join("");
  }
}

/** The answer to `httpRequest`. */
export class ClientResponse {
  /** False when the host could not make the request (`error` says why). */
  ok: bool = false;
  error: string = "";
  statusCode: i32 = 0;
  /** Response headers; repeated values joined with `, `. */
  headers: Map<string, string> = new Map<string, string>();
  /** The body as text (a JSON body is re-serialised compactly). */
  body: string = "";
  /** The body as JSON when the response was JSON, else null. */
  json: JSONValue | null = null;
}

/**
 * Makes an outbound HTTP request through the host (`hostHTTP`, §5.7). The host answers
 * `S{"JSONBody":…|"TextBody":"…","Headers":{"Name":["v",…]},"StatusCode":n}` or `F<error>`.
 */
export function httpRequest(req: ClientRequest): ClientResponse {
  let res = new ClientResponse();
  let r = call1(req.toJSON(), (p, l, rp, rl) => hostHTTP(p, l, rp, rl));
  if (!r.ok) {
    res.error = r.error;
    return res;
  }
  let parsed = JSON.tryParse(r.value);
  if (!parsed.ok || !parsed.value!.isObject) {
    res.error = "the host returned a response that is not a JSON object: " + parsed.error;
    return res;
  }
  let v = parsed.value!;
  res.ok = true;
  res.statusCode = <i32>v.getInteger("StatusCode", 0);
  let h = v.get("Headers");
  if (h !== null && h.isObject) {
    for (let i = 0; i < h.keys.length; i++) {
      let value = unchecked(h.values[i]);
      let text = "";
      if (value.isArray) {
        for (let k = 0; k < value.items.length; k++) {
          if (k > 0) text += ", ";
          text += unchecked(value.items[k]).asString();
        }
      } else {
        text = value.isString ? value.str : value.toString();
      }
      res.headers.set(unchecked(h.keys[i]), text);
    }
  }
  let t = v.get("TextBody");
  let j = v.get("JSONBody");
  if (t !== null && t.isString) {
    res.body = t.str;
  } else if (j !== null) {
    res.json = j;
    res.body = j.toString();
  }
  return res;
}
