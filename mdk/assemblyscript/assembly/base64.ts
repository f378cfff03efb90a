/**
 * Base64 (RFC 4648 §4, standard alphabet, `=` padding). The gen-2 response carries its text body
 * base64-encoded in `TextBody` (capsule-abi.md §5.4 step 3; hosts decode strictly).
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * Encodes `len` bytes at `ptr` as base64 text (with padding).
 * @param ptr address in linear memory (may be 0 when `len` is 0)
 */
export function base64EncodePtr(ptr: usize, len: usize): string {
  if (len == 0) return "";
  let outLen = ((len + 2) / 3) * 4;
  let out = __new(outLen << 1, idof<String>());
  let table = changetype<usize>(ALPHABET);
  let o = out;
  let i: usize = 0;
  while (i + 3 <= len) {
    let n = (<u32>load<u8>(ptr + i) << 16) | (<u32>load<u8>(ptr + i + 1) << 8) | <u32>load<u8>(ptr + i + 2);
    store<u16>(o, load<u16>(table + (((n >> 18) & 63) << 1)));
    store<u16>(o, load<u16>(table + (((n >> 12) & 63) << 1)), 2);
    store<u16>(o, load<u16>(table + (((n >> 6) & 63) << 1)), 4);
    store<u16>(o, load<u16>(table + ((n & 63) << 1)), 6);
    o += 8;
    i += 3;
  }
  let rest = len - i;
  if (rest > 0) {
    let n = <u32>load<u8>(ptr + i) << 16;
    if (rest == 2) n |= <u32>load<u8>(ptr + i + 1) << 8;
    store<u16>(o, load<u16>(table + (((n >> 18) & 63) << 1)));
    store<u16>(o, load<u16>(table + (((n >> 12) & 63) << 1)), 2);
    store<u16>(o, rest == 2 ? load<u16>(table + (((n >> 6) & 63) << 1)) : <u16>0x3D, 4);
    store<u16>(o, <u16>0x3D, 6);
  }
  return changetype<string>(out);
}

/**
 * Writes the base64 (ASCII bytes, with padding) of `len` bytes at `src` to `dst`; returns the
 * address after it. `src` may lie inside the output, at or after `dst + outLen - len` (the SDK
 * encodes text in place that way): each group of 3 is read before its 4 bytes are written.
 */
export function base64EncodeInto(src: usize, len: usize, dst: usize): usize {
  let table = changetype<usize>(ALPHABET);
  let o = dst;
  let i: usize = 0;
  while (i + 3 <= len) {
    let n = (<u32>load<u8>(src + i) << 16) | (<u32>load<u8>(src + i + 1) << 8) | <u32>load<u8>(src + i + 2);
    store<u8>(o, <u8>load<u16>(table + (((n >> 18) & 63) << 1)));
    store<u8>(o, <u8>load<u16>(table + (((n >> 12) & 63) << 1)), 1);
    store<u8>(o, <u8>load<u16>(table + (((n >> 6) & 63) << 1)), 2);
    store<u8>(o, <u8>load<u16>(table + ((n & 63) << 1)), 3);
    o += 4;
    i += 3;
  }
  let rest = len - i;
  if (rest > 0) {
    let n = <u32>load<u8>(src + i) << 16;
    if (rest == 2) n |= <u32>load<u8>(src + i + 1) << 8;
    store<u8>(o, <u8>load<u16>(table + (((n >> 18) & 63) << 1)));
    store<u8>(o, <u8>load<u16>(table + (((n >> 12) & 63) << 1)), 1);
    store<u8>(o, rest == 2 ? <u8>load<u16>(table + (((n >> 6) & 63) << 1)) : <u8>0x3D, 2);
    store<u8>(o, <u8>0x3D, 3);
    o += 4;
  }
  return o;
}

/** Encodes bytes as base64 text. */
export function base64Encode(bytes: Uint8Array): string {
  return base64EncodePtr(bytes.dataStart, <usize>bytes.length);
}

/** Encodes the UTF-8 bytes of a string as base64 text (lone surrogates become U+FFFD). */
export function base64EncodeString(s: string): string {
  let buf = String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE);
  return base64EncodePtr(changetype<usize>(buf), <usize>buf.byteLength);
}

function sextet(c: u32): i32 {
  if (c >= 0x41 && c <= 0x5A) return <i32>(c - 0x41);
  if (c >= 0x61 && c <= 0x7A) return <i32>(c - 0x61 + 26);
  if (c >= 0x30 && c <= 0x39) return <i32>(c - 0x30 + 52);
  if (c == 0x2B) return 62;
  if (c == 0x2F) return 63;
  return -1;
}

/**
 * Decodes strict base64 (standard alphabet, length a multiple of 4, `=` only as final padding).
 * @returns the bytes, or null when `text` is not valid base64
 */
export function base64Decode(text: string): Uint8Array | null {
  let n = text.length;
  if (n % 4 != 0) return null;
  if (n == 0) return new Uint8Array(0);
  let pad = 0;
  if (text.charCodeAt(n - 1) == 0x3D) pad = text.charCodeAt(n - 2) == 0x3D ? 2 : 1;
  let out = new Uint8Array((n / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < n; i += 4) {
    let last = i + 4 == n;
    let a = sextet(<u32>text.charCodeAt(i));
    let b = sextet(<u32>text.charCodeAt(i + 1));
    let c = last && pad == 2 ? 0 : sextet(<u32>text.charCodeAt(i + 2));
    let d = last && pad >= 1 ? 0 : sextet(<u32>text.charCodeAt(i + 3));
    if ((a | b | c | d) < 0) return null;
    let v = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = <u8>(v >> 16);
    if (!(last && pad == 2)) out[o++] = <u8>(v >> 8);
    if (!(last && pad >= 1)) out[o++] = <u8>v;
  }
  return out;
}
