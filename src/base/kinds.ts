/**
 * The kinds of module Capsule tells apart (spec README §1) and what detection says of one.
 */

/**
 * Module kinds of spec README §1. The kinds served, and so the values of `--kind` and config
 * `kind:`, are those of the ABI list (`KINDS` of src/abi/index.ts); a new ABI adds its name here.
 */
export type ModuleKind = 'capsule-1a' | 'capsule-1b' | 'capsule-1c' | 'capsule-2' | 'extism' | 'wasi';

/**
 * Kinds called over HTTP with the CGI view of a request (route, entrypoint, argv; wasi-cgi.md
 * §9): WASI commands, and Extism plugins, whose route names the export to call (extism-abi.md §11).
 */
export const CGI_KINDS: ReadonlySet<string> = new Set<ModuleKind>(['wasi', 'extism']);

/** The result of detection. */
export interface Detection {
  kind: ModuleKind;
  /** Gen 1 only: whether `env` imports return i32 (Go Capsule v0.3.0+) or nothing (≤ v0.2.9). */
  importsReturnI32?: boolean;
  /** Human-readable explanation, shown by `capsule inspect`. */
  reason: string;
}
