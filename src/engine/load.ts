/**
 * Loading a module: read it (file or URL), check its digest, parse and classify it (spec README
 * §1), check its imports against the host, turn its memory into an import for pooling, add the
 * exports a snapshot reset needs (snapshot.ts), and compile it once. Kind detection, checks and
 * `parsed` always describe the original bytes.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomically } from '../base/files.ts';
import { basename } from 'node:path';
import { CapsuleError } from '../base/errors.ts';
import { sha256Hex } from '../base/digest.ts';
import { formatBytes } from '../base/units.ts';
import { parseModule, rewriteMemoryAsImport, MEMORY_IMPORT, type ImportEntry, type MemoryLimits, type ParsedModule } from '../wasm/binary.ts';
import type { HostFunction } from '../capabilities/types.ts';
import { prepareSnapshot, type SnapshotPlan } from './snapshot.ts';
import { meterModule, type MeterStats } from '../wasm/meter.ts';
import { detectKind } from './detect.ts';
import { type Detection, type ModuleKind } from '../base/kinds.ts';
import { abiFor } from '../abi/index.ts';
import type { Abi } from '../abi/types.ts';
import { checkHostImports, hostFunctionTypes } from '../abi/host-imports.ts';
import { capsuleUserFunctions, checkUserImports, declareUserFunctions, type UserHostFunctions } from '../abi/user-functions.ts';
import { badImportType, sameType, sig } from '../abi/signatures.ts';
import { PREVIEW1_NAMES, PREVIEW1_TYPES } from '../wasi/signatures.ts';

/** A module ready to run: shared by every worker (a compiled `WebAssembly.Module` is cloneable). */
export interface LoadedModule {
  /** Display name (file name or URL path). */
  name: string;
  /** Where it came from (path or URL). */
  source: string;
  /** `sha256:<hex>` of the original bytes. */
  digest: string;
  size: number;
  detection: Detection;
  parsed: ParsedModule;
  compiled: WebAssembly.Module;
  /**
   * Memory the engine supplies as import `capsule.memory` (the module's own memory, rewritten),
   * or undefined when the module keeps its own or imports `env.memory`-style memory itself.
   */
  pooledMemory?: MemoryLimits;
  /** The module's own memory import (module, name, limits), when it declares one. */
  importedMemory?: { module: string; name: string; limits: MemoryLimits };
  /** Modules whose exports fill import namespaces of the same name (`LoadOptions.linked`). */
  linked?: LinkedModule[];
  /** Names of the host functions it imports (from its ABI's `'host-functions'` namespace, `env` for the Capsule ABI). */
  hostImports: string[];
  /**
   * Whether fresh-instance calls may use a reset instance instead of a new one (snapshot.ts,
   * capsule-abi.md §3): the plan, or why not. A worker still falls back when initialisation
   * calls an import.
   */
  snapshot?: { ok: true; plan: SnapshotPlan } | { ok: false; reason: string };
}

/** Where to fetch a module from (`--url`, a FaaS node's `downloadUrl`, `POST /load-wasm-module`). */
export interface UrlSource {
  url: string;
  /** Optional auth header (`--auth-header-name` / `--auth-header-value`). */
  authHeader?: { name: string; value: string };
  /** Called with (received, total bytes or 0) while downloading. */
  onProgress?: (received: number, total: number) => void;
  /**
   * Also save the download here (Go Capsule's `-url` with `-wasm`): written to a temporary file
   * beside it and renamed into place once the digest (if one is expected) has matched, so a
   * mismatch leaves no file behind and an existing one unchanged.
   */
  saveTo?: string;
  /** Largest module accepted, bytes: a larger download is stopped (undefined = no cap). */
  maxBytes?: number;
  /** Download deadline, ms, headers and body (undefined = none). */
  timeoutMs?: number;
  /** Check the bytes against the server's `X-Capsule-Sha256` reply header too (a Capsule registry sends it). */
  headerDigest?: boolean;
}

/** Largest module a node or a server's reload downloads unless told otherwise, bytes (64 MiB; the registry's `--max-module-size` default too). */
export const DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024;
/** How long a node's or a server's reload download of a module may take unless told otherwise, ms (30 s: headers and body). */
export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 30_000;

/** The bytes do not have an expected digest (code LOAD; the FaaS node answers 422 ERROR_DIGEST_MISMATCH). */
export class DigestMismatchError extends CapsuleError {
  constructor(message: string) {
    super('LOAD', message);
  }
}

export interface LoadOptions {
  /** Explicit kind (`--kind`). */
  kind?: ModuleKind;
  /** Expected `sha256:<hex>` (`--digest`). */
  digest?: string;
  /** WASI commands: the export a route calls instead of `_start` (checked at load; wasi-cgi.md §1). */
  entrypoint?: string;
  /** Display name override. */
  name?: string;
  /**
   * Modules linked by name (an Extism manifest's other modules, extism-abi.md §1): the module may
   * import from a namespace named like one of them, filled with that module's exports.
   */
  linked?: LinkedModule[];
  /**
   * Host functions defined by the embedder (abi/user-functions.ts): imports from their
   * namespaces are accepted when defined there.
   */
  hostFunctions?: UserHostFunctions;
  /**
   * false: do not prepare the snapshot that serves fresh calls by resetting one instance
   * (snapshot.ts). It pays from the second call on; a module called once (`capsule run`,
   * `capsule call`) skips its preparation and the first call's probe. Default true.
   */
  snapshot?: boolean;
}

/** A compiled module whose exports fill the import namespace `name` of the main module. */
export interface LinkedModule {
  name: string;
  compiled: WebAssembly.Module;
}

/**
 * Reads module bytes from a file.
 * @throws CapsuleError LOAD naming the path and the system error
 */
export async function readModuleFile(path: string): Promise<Uint8Array> {
  try {
    // synchronous: one read of a local file (~0.1 ms for a small module); the asynchronous
    // read starts libuv's thread pool, ~2 ms that a one-shot `capsule run` waits for
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new CapsuleError('LOAD', `cannot read module ${path}: ${why}`);
  }
}

/**
 * Downloads module bytes, checks them against `digest`, against a `#sha256=<hex>` pin at the end
 * of the URL ({@link splitDigestPin}) and, with `src.headerDigest`, against the reply's
 * `X-Capsule-Sha256`, and saves them to `src.saveTo` when given (only once they match). The one
 * download path for modules: `capsule --url`, the FaaS node, `POST /load-wasm-module`.
 * @param digest expected `sha256:<hex>` (or bare hex)
 * @throws CapsuleError USAGE for a bad `#sha256=` pin or `digest`; LOAD with the URL and the HTTP
 *   status, network error, timeout or size limit, or the path that could not be written;
 *   DigestMismatchError (code LOAD) naming both digests (nothing saved)
 */
export async function fetchModule(src: UrlSource, digest?: string): Promise<Uint8Array> {
  const pinned = splitDigestPin(src.url);
  const wanted = [pinned.digest, digest === undefined ? undefined : expectedDigest(digest, src.url)];
  const res = await startDownload(src, pinned.url);
  const header = src.headerDigest ? res.headers.get('x-capsule-sha256') : null;
  if (header !== null) wanted.push(expectedDigest(header, `${src.url}: X-Capsule-Sha256`));
  const bytes = await readDownload(src, res);
  const got = digestOf(bytes);
  for (const expected of wanted) if (expected && expected !== got) throw new DigestMismatchError(`${pinned.url}: digest mismatch: expected ${expected}, got ${got}`);
  if (src.saveTo) await saveAtomically(src.saveTo, bytes);
  return bytes;
}

/** `sha256:<hex>` of a digest a user gave. @throws CapsuleError USAGE naming `what` */
function expectedDigest(text: string, what: string): string {
  const hex = sha256Hex(text);
  if (hex === undefined) throw new CapsuleError('USAGE', `${what}: "${text}" is not a SHA-256 digest (64 hexadecimal digits, optionally after "sha256:")`);
  return `sha256:${hex}`;
}

/** Sends the request of {@link fetchModule}. @throws CapsuleError LOAD (network, HTTP status, a declared size above the cap) */
async function startDownload(src: UrlSource, url: string): Promise<Response> {
  let res: Response;
  try {
    const headers: Record<string, string> = {};
    if (src.authHeader) headers[src.authHeader.name] = src.authHeader.value;
    res = await fetch(url, { headers, redirect: 'follow', signal: src.timeoutMs === undefined ? undefined : AbortSignal.timeout(src.timeoutMs) });
  } catch (e) {
    throw new CapsuleError('LOAD', `cannot download ${src.url}: ${downloadFailure(e, src)}`);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new CapsuleError('LOAD', `cannot download ${src.url}: HTTP ${res.status} ${res.statusText}${res.status === 401 || res.status === 403 ? ' (check --auth-header-name / --auth-header-value)' : ''}`);
  }
  const total = Number(res.headers.get('content-length') ?? 0);
  if (src.maxBytes !== undefined && total > src.maxBytes) {
    await res.body.cancel().catch(() => undefined);
    throw tooLarge(src, `${total} bytes`);
  }
  return res;
}

/** Reads the body of {@link fetchModule}, stopping past the cap. @throws CapsuleError LOAD */
async function readDownload(src: UrlSource, res: Response): Promise<Uint8Array> {
  const total = Number(res.headers.get('content-length') ?? 0);
  const chunks: Uint8Array[] = [];
  let received = 0;
  try {
    for await (const chunk of res.body!) {
      received += chunk.length;
      if (src.maxBytes !== undefined && received > src.maxBytes) throw tooLarge(src, `more than ${formatBytes(src.maxBytes)}`);
      chunks.push(chunk);
      src.onProgress?.(received, total);
    }
  } catch (e) {
    if (e instanceof CapsuleError) throw e;
    throw new CapsuleError('LOAD', `cannot download ${src.url}: ${downloadFailure(e, src)}`);
  }
  const bytes = Buffer.concat(chunks);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

function tooLarge(src: UrlSource, size: string): CapsuleError {
  return new CapsuleError('LOAD', `cannot download ${src.url}: the module is ${size}, above the limit of ${formatBytes(src.maxBytes!)}`);
}

/** Why a download failed, for messages (a timeout names the deadline). */
function downloadFailure(e: unknown, src: UrlSource): string {
  const err = e as Error & { cause?: Error };
  if (err.name === 'TimeoutError') return `no complete answer within ${src.timeoutMs} ms`;
  return err.cause?.message ?? err.message;
}

/**
 * Splits a digest pin off a module URL: `https://…/hello.wasm#sha256=<hex>` (faas-cluster.md
 * §1.7; also `#sha256:<hex>`) → the URL without its fragment and `sha256:<hex>`. Other
 * fragments are left alone (a fragment is never sent to the server).
 * @throws CapsuleError USAGE when the pin is not 64 hexadecimal digits
 */
export function splitDigestPin(url: string): { url: string; digest?: string } {
  const at = url.indexOf('#');
  const m = at < 0 ? null : /^#sha256[=:](.*)$/i.exec(url.slice(at));
  if (!m) return { url };
  const hex = m[1]!.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new CapsuleError('USAGE', `${url}: the #sha256= pin must be 64 hexadecimal digits`);
  return { url: url.slice(0, at), digest: `sha256:${hex}` };
}

/** Writes a temporary file beside `path`, then renames it into place (no half-written module). */
async function saveAtomically(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await writeFileAtomically(path, bytes);
  } catch (e) {
    throw new CapsuleError('LOAD', `cannot save the downloaded module to ${path}: ${(e as Error).message}`);
  }
}

/**
 * Compares a module's digest (`digestOf`) with the expected one (`--digest`).
 * @throws CapsuleError USAGE when `expected` is not a digest (as `fetchModule` says it);
 *   DigestMismatchError (code LOAD) on a mismatch, naming both
 */
function checkDigest(got: string, name: string, expected: string): void {
  const want = expectedDigest(expected, `${name}: --digest`);
  if (want !== got) throw new DigestMismatchError(`${name}: digest mismatch: expected ${want}, got ${got}`);
}

/** `sha256:<hex>` of bytes. */
export function digestOf(bytes: Uint8Array): string {
  // node:crypto is loaded at first use: loading it costs ~4 ms that `capsule run` does not need
  return 'sha256:' + process.getBuiltinModule('node:crypto').createHash('sha256').update(bytes).digest('hex');
}

/**
 * Validates, classifies and compiles module bytes.
 * @param source path or URL, for messages
 * @throws CapsuleError BAD_MODULE (not wasm, truncated, unsupported kind, unknown import, bad
 *   signature), LOAD (digest mismatch)
 */
export async function compileModule(bytes: Uint8Array, source: string, options: LoadOptions = {}): Promise<LoadedModule> {
  const name = options.name ?? basename(source.replace(/[?#].*$/, ''));
  // computed when first read (logs, the FaaS registry), unless checked now: `capsule run` never reads it
  let digest = options.digest ? digestOf(bytes) : undefined;
  if (options.digest) checkDigest(digest!, name, options.digest);
  let parsed: ParsedModule;
  try {
    parsed = parseModule(bytes);
  } catch (e) {
    if (e instanceof CapsuleError) throw new CapsuleError(e.code, `${name}: ${e.message}`);
    throw e;
  }
  const detection = detectKind(parsed, name, options.kind);
  const abi = abiFor(detection.kind, name);
  abi.check(parsed, detection, name, { entrypoint: options.entrypoint });
  const hostImports = checkImports(parsed, abi, detection, name, new Set(options.linked?.map((l) => l.name)), options.hostFunctions);

  const memImport = parsed.imports.find((i) => i.kind === 'memory');
  const prepare = () => runnableBytes(bytes, parsed, detection.kind, options.snapshot !== false);
  const { runnable, snapshot, rewritten } = prepare();
  let compiled: WebAssembly.Module;
  try {
    compiled = await WebAssembly.compile(runnable as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new CapsuleError('BAD_MODULE', `${name}: invalid WebAssembly module: ${(e as Error).message.replace(/^WebAssembly\.compile\(\): /, '')}`);
  }
  const loaded: LoadedModule = {
    name, source,
    get digest() {
      return (digest ??= digestOf(bytes));
    },
    size: bytes.length, detection, parsed, compiled, hostImports, snapshot, linked: options.linked,
    pooledMemory: rewritten ? parsed.memories[0] : undefined,
    importedMemory: memImport?.memory ? { module: memImport.module, name: memImport.name, limits: memImport.memory } : undefined,
  };
  // the bytes `compiled` was made of, made again when first metered (not kept: the memory of an idle module)
  meterSources.set(loaded, () => prepare().runnable);
  return loaded;
}

/**
 * The bytes to compile: the memory made an import (pooling), the snapshot exports added
 * (`snapshot`: whether to try), and the snapshot plan or why there is none.
 */
function runnableBytes(bytes: Uint8Array, parsed: ParsedModule, kind: ModuleKind, snapshot: boolean): { runnable: Uint8Array; snapshot: LoadedModule['snapshot']; rewritten: boolean } {
  const rewritten = rewriteMemoryAsImport(bytes, parsed);
  let runnable = rewritten ?? bytes;
  if (!snapshot) return { runnable, snapshot: { ok: false, reason: 'not prepared (a module called once)' }, rewritten: rewritten !== undefined };
  let plan: LoadedModule['snapshot'];
  try {
    const prepared = prepareSnapshot(runnable, rewritten ? parseModule(rewritten) : parsed, kind);
    runnable = prepared.bytes;
    plan = prepared.plan ? { ok: true, plan: prepared.plan } : { ok: false, reason: prepared.refused ?? 'not checked' };
  } catch (e) {
    // A section the snapshot checks read is malformed: compiling will say what is wrong.
    plan = { ok: false, reason: (e as Error).message };
  }
  return { runnable, snapshot: plan, rewritten: rewritten !== undefined };
}

/** A module instrumented to check its own deadline, compiled; or why the meter left it alone. */
export type MeteredModule = { compiled: WebAssembly.Module; stats: MeterStats } | { skipped: string };

/** How to remake the bytes of each module `compileModule` made (see `meteredModule`). */
const meterSources = new WeakMap<LoadedModule, () => Uint8Array>();
const metered = new WeakMap<LoadedModule, MeteredModule>();

/**
 * `m` instrumented by `meterModule` (src/wasm/meter.ts: the guest checks its own deadline; give
 * its instances `meterImports`) from the bytes `m.compiled` was made of, so that it has the same
 * memory import, snapshot exports and snapshot plan; made and compiled (synchronously) on first
 * use, then kept with the module. The HTTP threads and the inline executor run these
 * (docs/performance.md "Deadlines without a thread"); the worker pool does not.
 * @returns `{ skipped }` with the reason when the meter leaves the module alone, or when `m`
 *   was not made by `compileModule`. Never throws.
 */
export function meteredModule(m: LoadedModule): MeteredModule {
  let done = metered.get(m);
  if (done) return done;
  const source = meterSources.get(m);
  if (!source) done = { skipped: 'its bytes are not known (not loaded by compileModule)' };
  else {
    const r = meterModule(source());
    try {
      done = 'skipped' in r ? r : { compiled: new WebAssembly.Module(r.bytes), stats: r.stats };
    } catch (e) {
      done = { skipped: `the metered module does not compile: ${(e as Error).message}` };
    }
  }
  metered.set(m, done);
  return done;
}

/**
 * Checks a module's function imports against the namespaces its ABI declares (`Abi.imports`).
 * @returns the names of the host functions it imports (the `'host-functions'` namespace)
 * @throws CapsuleError BAD_MODULE for an import from another namespace, a function the ABI does
 *   not provide, or a declared type other than the provided one
 */
function checkImports(parsed: ParsedModule, abi: Abi, detection: Detection, name: string, linked: ReadonlySet<string>, defined?: UserHostFunctions): string[] {
  const generation = abi.generation(detection);
  const user = checkUserImports(parsed, defined, name, abi.imports);
  const exportNames = new Set(parsed.exports.map((e) => e.name));
  const accepted = () => Object.entries(abi.imports).flatMap(([ns, p]) => (typeof p === 'string' ? [ns] : Object.keys(p).map((n) => `${ns}.${n}`))).join(', ');
  for (const imp of parsed.imports) {
    const provider = abi.imports[imp.module];
    if (provider === 'wasi-preview1' && imp.kind === 'function' && !user.has(imp.module)) checkWasiImport(imp, name);
    if (imp.kind === 'memory' || provider === 'wasi-preview1' || provider === 'host-functions' || linked.has(imp.module) || user.has(imp.module)) continue;
    const fn = provider && imp.kind === 'function' && Object.hasOwn(provider, imp.name) ? provider[imp.name] : undefined;
    if (!fn) throw new CapsuleError('BAD_MODULE', `${name}: imports ${imp.module}.${imp.name}; ${detection.kind} modules may import only from ${accepted()}`);
    const provided = sig(fn.params, fn.results);
    if (imp.type && !sameType(imp.type, provided)) throw badImportType(name, imp.module, imp.name, imp.type, { types: [provided], who: `Capsule (${detection.kind} modules)` });
  }
  const hostImports: string[] = [];
  for (const [ns, provider] of Object.entries(abi.imports)) {
    if (provider !== 'host-functions') continue;
    // Capsule host functions the embedder defines in `env` are checked like the host's own
    const own = capsuleUserFunctions(declareUserFunctions(defined?.[ns] ? { [ns]: defined[ns] } : {}, parsed, ''));
    const inNs = parsed.imports.filter((i) => i.module === ns && !own.some((f) => f.name === i.name));
    if (generation) {
      hostImports.push(...checkHostImports(inNs, generation, name, exportNames, ns).map((f) => f.name));
      checkUserHostImports(parsed.imports.filter((i) => i.module === ns), own, generation, name, ns, exportNames);
    }
  }
  return hostImports;
}

/**
 * Checks one `wasi_snapshot_preview1` function import against WASI preview1 (wasi/signatures.ts).
 * @throws CapsuleError BAD_MODULE for a function preview1 does not define (e.g. a runtime's own
 *   extension such as `sock_open`) or a declared type other than preview1's
 */
function checkWasiImport(imp: ImportEntry, name: string): void {
  const want = Object.hasOwn(PREVIEW1_TYPES, imp.name) ? PREVIEW1_TYPES[imp.name]! : undefined;
  if (!want) throw new CapsuleError('BAD_MODULE', `${name}: imports ${imp.module}.${imp.name}, which WASI preview1 does not define (Capsule provides the ${PREVIEW1_NAMES.length} functions of wasi_snapshot_preview1 only)`);
  if (imp.type && !sameType(imp.type, want)) throw badImportType(name, imp.module, imp.name, imp.type, { types: [want], who: 'WASI preview1' });
}

/**
 * Checks the imports of Capsule host functions the embedder defined (`own`) against their types.
 * @throws CapsuleError BAD_MODULE naming the import and the accepted types, or the missing
 *   `allocateBuffer` export a return buffer needs
 */
function checkUserHostImports(imports: readonly ImportEntry[], own: readonly HostFunction[], generation: 1 | 2, name: string, ns: string, exportNames: ReadonlySet<string>): void {
  for (const f of own) {
    const imp = imports.find((i) => i.name === f.name);
    if (!imp) continue;
    if (f.returns && !exportNames.has('allocateBuffer')) throw new CapsuleError('BAD_MODULE', `${name}: imports ${ns}.${imp.name}, which returns bytes, but does not export allocateBuffer(size) -> ptr`);
    if (!imp.type) continue;
    const accepted = hostFunctionTypes(f, generation);
    if (!accepted.types.some((t) => sameType(t, imp.type!))) throw badImportType(name, ns, imp.name, imp.type, accepted);
  }
}

/** Reads (file or URL) and compiles. See `compileModule` for errors. */
export async function loadModule(from: { path: string } | UrlSource, options: LoadOptions = {}): Promise<LoadedModule> {
  if ('url' in from) {
    const bytes = await fetchModule(from, options.digest);
    return compileModule(bytes, from.url, options);
  }
  return compileModule(await readModuleFile(from.path), from.path, options);
}

export { MEMORY_IMPORT };
