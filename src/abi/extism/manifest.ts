/**
 * The Extism manifest (extism-abi.md §10): read, checked (unknown fields rejected, camelCase
 * accepted as the JS SDK does), and its main module's bytes obtained (path, URL or base64 data,
 * checked against `hash`).
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { CapsuleError } from '../../base/errors.ts';

/** One `wasm` entry of a manifest. */
export interface ManifestWasm {
  path?: string;
  url?: string;
  headers?: Record<string, string>;
  method?: string;
  data?: string;
  name?: string;
  hash?: string;
}

/** A manifest as Capsule uses it (snake_case names of §10). */
export interface ExtismManifest {
  wasm: ManifestWasm[];
  memory?: { max_pages?: number; max_http_response_bytes?: number; max_var_bytes?: number };
  config?: Record<string, string>;
  allowed_hosts?: string[];
  /** Host path (`ro:` prefix = read-only) → guest path. */
  allowed_paths?: Record<string, string>;
  timeout_ms?: number;
}

const TOP = ['wasm', 'memory', 'config', 'allowed_hosts', 'allowed_paths', 'timeout_ms'];
const MEMORY = ['max_pages', 'max_http_response_bytes', 'max_var_bytes'];
const WASM = ['path', 'url', 'headers', 'method', 'data', 'name', 'hash'];

const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Renames camelCase keys to snake_case and rejects keys outside `allowed`. */
function fields(obj: unknown, allowed: string[], where: string): Record<string, unknown> {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new CapsuleError('USAGE', `manifest: ${where} must be an object`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const key = snake(k);
    if (!allowed.includes(key)) throw new CapsuleError('USAGE', `manifest: unknown field ${where === 'the manifest' ? '' : `${where}.`}${k} (expected ${allowed.join(', ')})`);
    out[key] = v;
  }
  return out;
}

/**
 * Parses manifest JSON text.
 * @throws CapsuleError USAGE for invalid JSON, an unknown field, no `wasm` entry, a bad type
 */
export function parseManifest(text: string): ExtismManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CapsuleError('USAGE', `manifest: not JSON: ${(e as Error).message}`);
  }
  const m = fields(raw, TOP, 'the manifest') as ExtismManifest & Record<string, unknown>;
  if (!Array.isArray(m.wasm) || m.wasm.length === 0) throw new CapsuleError('USAGE', 'manifest: "wasm" must list at least one module');
  m.wasm = m.wasm.map((w, i) => fields(w, WASM, `wasm[${i}]`) as ManifestWasm);
  if (m.memory !== undefined) m.memory = fields(m.memory, MEMORY, 'memory') as ExtismManifest['memory'];
  for (const [k, v] of Object.entries(m.config ?? {})) {
    if (typeof v !== 'string') throw new CapsuleError('USAGE', `manifest: config.${k} must be a string`);
  }
  if (m.allowed_hosts !== undefined && !Array.isArray(m.allowed_hosts)) throw new CapsuleError('USAGE', 'manifest: allowed_hosts must be an array of host globs');
  if (m.timeout_ms !== undefined && !(Number.isInteger(m.timeout_ms) && m.timeout_ms > 0)) throw new CapsuleError('USAGE', 'manifest: timeout_ms must be a positive whole number');
  return m;
}

/**
 * The main module (§1: named `main`, else the last entry) and the others, which are linked by
 * their `name` as import namespace.
 * @throws CapsuleError USAGE when another module has no name, or two share one
 */
export function splitWasm(m: ExtismManifest): { main: ManifestWasm; others: ManifestWasm[] } {
  const main = m.wasm.find((w) => w.name === 'main') ?? m.wasm.at(-1)!;
  const others = m.wasm.filter((w) => w !== main);
  const names = new Set<string>();
  for (const w of others) {
    if (!w.name) throw new CapsuleError('USAGE', 'manifest: with several wasm modules, every module but the main one needs a "name" (its import namespace)');
    if (names.has(w.name)) throw new CapsuleError('USAGE', `manifest: two wasm modules are named "${w.name}"`);
    names.add(w.name);
  }
  return { main, others };
}

/**
 * The bytes of a wasm entry, checked against its `hash`.
 * @param base directory relative paths resolve against (the manifest's)
 * @throws CapsuleError LOAD (unreadable, download failed, `Hash mismatch, found <x> but expected <y>`)
 */
export async function wasmBytes(w: ManifestWasm, base: string): Promise<{ bytes: Uint8Array; source: string }> {
  let bytes: Uint8Array;
  let source: string;
  if (w.path !== undefined) {
    source = isAbsolute(w.path) ? w.path : resolve(base, w.path);
    try {
      bytes = new Uint8Array(await readFile(source));
    } catch (e) {
      throw new CapsuleError('LOAD', `cannot read module ${source}: ${(e as Error).message}`);
    }
  } else if (w.url !== undefined) {
    source = w.url;
    bytes = await download(w);
  } else if (w.data !== undefined) {
    source = w.name ?? 'data.wasm';
    bytes = new Uint8Array(Buffer.from(w.data, 'base64'));
  } else {
    throw new CapsuleError('USAGE', 'manifest: a wasm entry needs path, url or data');
  }
  if (w.hash !== undefined) {
    const found = process.getBuiltinModule('node:crypto').createHash('sha256').update(bytes).digest('hex');
    if (found !== w.hash.toLowerCase()) throw new CapsuleError('LOAD', `Hash mismatch, found ${found} but expected ${w.hash}`);
  }
  return { bytes, source };
}

async function download(w: ManifestWasm): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(w.url!, { method: w.method ?? 'GET', headers: w.headers ?? {}, redirect: 'follow' });
  } catch (e) {
    throw new CapsuleError('LOAD', `cannot download ${w.url}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
  }
  if (!res.ok) throw new CapsuleError('LOAD', `cannot download ${w.url}: HTTP ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** Reads a manifest file; relative module paths then resolve against its folder. */
export async function readManifest(path: string): Promise<{ manifest: ExtismManifest; base: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CapsuleError('LOAD', `cannot read manifest ${path}: ${(e as Error).message}`);
  }
  return { manifest: parseManifest(text), base: dirname(resolve(path)) };
}
