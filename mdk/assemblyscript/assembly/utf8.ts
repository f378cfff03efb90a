/**
 * UTF-8 <-> AssemblyScript strings (UTF-16), with the error handling of the WHATWG Encoding
 * standard, so a guest sees exactly what a JavaScript `TextDecoder` or Go would: every invalid
 * byte sequence becomes U+FFFD (one per maximal invalid subpart), and a lone surrogate in a
 * string becomes U+FFFD when it is encoded. `String.UTF8.decode` of the standard library does
 * not validate (a stray 0xFF byte swallows the three bytes after it), hence this file.
 */

const REPLACEMENT: u32 = 0xFFFD;

/**
 * Decodes `len` bytes at `ptr` (UTF-8) into a string. Never fails: invalid sequences become
 * U+FFFD (WHATWG "replacement" mode, the behaviour of `new TextDecoder()`).
 * @param ptr address in linear memory (may be 0 when `len` is 0)
 * @param len number of bytes
 */
export function decodeUTF8(ptr: usize, len: usize): string {
  if (len == 0) return "";
  // one UTF-16 unit per input byte at most (a 4-byte sequence gives 2 units): the exact size
  // when the text is ASCII, which is then widened 4 bytes at a time
  let out = __new(len << 1, idof<String>());
  let o = out;
  let i = ptr;
  let end = ptr + len;
  while (i + 4 <= end) {
    let w = load<u32>(i);
    if (w & 0x80808080) break;
    let x = <u64>w;
    x = (x | (x << 16)) & 0x0000FFFF0000FFFF;
    x = (x | (x << 8)) & 0x00FF00FF00FF00FF;
    store<u64>(o, x);
    o += 8;
    i += 4;
  }
  while (i < end) {
    let b0 = <u32>load<u8>(i);
    if (b0 < 0x80) {
      store<u16>(o, <u16>b0);
      o += 2;
      i += 1;
      continue;
    }
    let need = 0;
    let cp: u32 = 0;
    let lower: u32 = 0x80;
    let upper: u32 = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      need = 1; cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      if (b0 == 0xE0) lower = 0xA0;
      if (b0 == 0xED) upper = 0x9F;
      need = 2; cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      if (b0 == 0xF0) lower = 0x90;
      if (b0 == 0xF4) upper = 0x8F;
      need = 3; cp = b0 & 0x07;
    } else {
      store<u16>(o, <u16>REPLACEMENT);
      o += 2;
      i += 1;
      continue;
    }
    i += 1;
    let ok = true;
    for (let k = 0; k < need; k++) {
      if (i >= end) { ok = false; break; }
      let b = <u32>load<u8>(i);
      if (b < lower || b > upper) { ok = false; break; } // b is reprocessed as a lead byte
      lower = 0x80;
      upper = 0xBF;
      cp = (cp << 6) | (b & 0x3F);
      i += 1;
    }
    if (!ok) {
      store<u16>(o, <u16>REPLACEMENT);
      o += 2;
      continue;
    }
    if (cp < 0x10000) {
      store<u16>(o, <u16>cp);
      o += 2;
    } else {
      cp -= 0x10000;
      store<u16>(o, <u16>(0xD800 | (cp >> 10)));
      store<u16>(o, <u16>(0xDC00 | (cp & 0x3FF)), 2);
      o += 4;
    }
  }
  if (o - out == len << 1) return changetype<string>(out);
  return changetype<string>(__renew(out, o - out));
}

/**
 * Number of bytes `encodeUTF8Into` writes for `s` (a lone surrogate counts 3 bytes: U+FFFD).
 */
export function utf8Length(s: string): usize {
  return <usize>String.UTF8.byteLength(s, false);
}

/**
 * Writes `s` as UTF-8 at `dst` (which must have `utf8Length(s)` bytes); lone surrogates become
 * U+FFFD. Returns the number of bytes written.
 */
export function encodeUTF8Into(s: string, dst: usize): usize {
  return String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, dst, false, String.UTF8.ErrorMode.REPLACE);
}

/** Encodes `s` as UTF-8 into a new buffer (lone surrogates become U+FFFD). */
export function encodeUTF8(s: string): ArrayBuffer {
  return String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE);
}

/** Decodes a whole `Uint8Array` (see `decodeUTF8`). */
export function bytesToString(bytes: Uint8Array): string {
  return decodeUTF8(bytes.dataStart, <usize>bytes.length);
}

/** Encodes a string into a new `Uint8Array` (see `encodeUTF8`). */
export function stringToBytes(s: string): Uint8Array {
  return Uint8Array.wrap(encodeUTF8(s));
}
