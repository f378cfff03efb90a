/**
 * SHA-256 digest strings as users write them (faas-api.md §2 `sha256` fields, §3 `sha256`, the
 * `X-Capsule-Sha256` header, faas-cluster.md §1.7 `#sha256=` pins): one reading for the engine,
 * the registry and the node.
 */

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The lower-case hex of a SHA-256 digest written as bare hex, `sha256:<hex>` or `sha256=<hex>`
 * (any case, surrounding spaces ignored).
 * @returns 64 lower-case hex digits, or undefined when `text` is not such a digest (callers throw
 *   their own error, naming the field)
 */
export function sha256Hex(text: string): string | undefined {
  const hex = text.trim().toLowerCase().replace(/^sha256[:=]/, '');
  return HEX64.test(hex) ? hex : undefined;
}
