/**
 * HTTP headers as the Capsule ABI generations hand them over: request header names and values
 * (capsule-abi.md §4.3), response headers as they go on the wire (§4.3 step 2).
 */

/** Canonical header name as Go handed it to guests: `content-type` → `Content-Type` (§4.3). */
export function canonicalHeaderName(name: string): string {
  let c = CANONICAL.get(name);
  if (c === undefined) {
    c = name.toLowerCase().replace(/(^|-)([a-z])/g, (_m, sep: string, ch: string) => sep + ch.toUpperCase());
    if (CANONICAL.size < 1000) CANONICAL.set(name, c); // header names repeat: remember a bounded set
  }
  return c;
}
const CANONICAL = new Map<string, string>();

/**
 * Request headers with canonical names, repeated ones joined with `, ` (§4.3). Node hands header
 * values over as the latin1 string of the bytes received; a value with bytes above 0x7F is read
 * as the UTF-8 it is (invalid sequences become U+FFFD, as Go's JSON encoder did for gen 2), so a
 * guest receives `👋` as the four bytes the client sent, not as mojibake re-encoded.
 */
export function canonicalHeaders(headers: readonly [string, string][]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [n, raw] of headers) {
    const k = canonicalHeaderName(n);
    const v = NON_ASCII.test(raw) ? Buffer.from(raw, 'latin1').toString('utf8') : raw;
    const prev = out.get(k);
    out.set(k, prev === undefined ? v : `${prev}, ${v}`);
  }
  return out;
}

const NON_ASCII = /[^\x00-\x7f]/;
/** An HTTP token (RFC 9110 §5.6.2): what a header name must be. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Characters no header value may carry on the wire (CR, LF, NUL and the other controls but tab). */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * A guest's response header as the host sends it (§4.3 step 2, also for gen-2 `Headers`): the
 * value is text (UTF-8) sent as its bytes, so it is returned as the latin1 string of its UTF-8
 * encoding, the form Node writes byte for byte (its `writeHead` refuses characters above U+00FF).
 * A name that is not an HTTP token, or a value with CR, LF, NUL or another control character
 * (Node cannot send those), leaves the header out with a line in `notes`.
 * @returns [name, wire value], or undefined when left out
 */
export function responseHeader(name: string, value: string, notes?: string[]): [string, string] | undefined {
  if (!TOKENS.has(name) && !isToken(name)) {
    notes?.push(`response header ${JSON.stringify(name)} left out: not a valid HTTP header name`);
    return undefined;
  }
  if (PRINTABLE_ASCII.test(value)) return [name, value]; // the usual value: one test instead of two
  if (CONTROL.test(value)) {
    notes?.push(`response header ${name} left out: its value has control characters (CR, LF, NUL…)`);
    return undefined;
  }
  return [name, NON_ASCII.test(value) ? Buffer.from(value, 'utf8').toString('latin1') : value];
}
/** Whether `name` is an HTTP token, remembered for the names that repeat (bounded). */
function isToken(name: string): boolean {
  if (!TOKEN.test(name)) return false;
  if (TOKENS.size < 1000) TOKENS.add(name);
  return true;
}
const TOKENS = new Set<string>();
/** Tab and printable ASCII: a value that goes on the wire as it is. */
const PRINTABLE_ASCII = /^[\t\x20-\x7e]*$/;
