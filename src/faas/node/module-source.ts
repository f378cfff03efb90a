/**
 * Where a node's modules come from: a deployment's `downloadUrl` (faas-api.md §3), pinned by a
 * digest, validated and detected BEFORE anything is stored or routed, then kept in a
 * content-addressed cache (`<dir>/sha256/<hex>.wasm`, faas-cluster.md §1.6) that the function
 * table and `--process` children load from. A digest comes from `#sha256=<hex>` at the end of the
 * URL (faas-cluster.md §1.7), an explicit `sha256` field, or the registry's `X-Capsule-Sha256`
 * reply header; every one given must match the bytes.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../../base/files.ts';
import { compileModule, DEFAULT_DOWNLOAD_TIMEOUT_MS, DEFAULT_MAX_MODULE_BYTES, DigestMismatchError, digestOf, fetchModule, splitDigestPin, type LoadedModule } from '../../engine/load.ts';
import { sha256Hex } from '../../base/digest.ts';
import { CapsuleError } from '../../base/errors.ts';
import { FaasError } from '../shared/service.ts';

/** A module that passed every check, saved in the cache. */
export interface DeployableModule {
  /** `sha256:<hex>`. */
  digest: string;
  /** The cached file (absolute). */
  path: string;
  module: LoadedModule;
  /** Time spent downloading and compiling, seconds (cold-start phases `fetch`, `compile`). */
  fetchSeconds: number;
  compileSeconds: number;
}

/** What a node downloads with. */
export interface ModuleSourceOptions {
  /** The cache directory (created when missing). */
  dir: string;
  /** Largest module accepted, bytes (default 64 MiB). */
  maxBytes?: number;
  /** Download deadline, ms (default `DEFAULT_DOWNLOAD_TIMEOUT_MS`, 30 s). */
  timeoutMs?: number;
}

/** `sha256:<hex>` from a bare hex, `sha256:<hex>` or `sha256=<hex>` ({@link sha256Hex}). @throws FaasError 400 ERROR_BAD_DIGEST when it is not one */
export function normaliseDigest(text: string, what: string): string {
  const hex = sha256Hex(text);
  if (hex === undefined) throw new FaasError(400, 'ERROR_BAD_DIGEST', `${what}: "${text}" is not a SHA-256 digest (64 hex digits)`);
  return `sha256:${hex}`;
}

/**
 * Splits `http://…/m.wasm#sha256=<hex>` into the URL to fetch and the pinned digest
 * ({@link splitDigestPin}, as `capsule --url` reads it).
 * @throws FaasError 400 ERROR_BAD_URL (not an http(s) URL), ERROR_BAD_DIGEST (a pin that is not 64 hex digits)
 */
function parseDownloadUrl(text: string): { url: string; digest?: string } {
  let split: { url: string; digest?: string };
  try {
    split = splitDigestPin(text);
  } catch (e) {
    throw new FaasError(400, 'ERROR_BAD_DIGEST', `downloadUrl: ${(e as Error).message}`);
  }
  let u: URL;
  try {
    u = new URL(split.url);
  } catch {
    throw new FaasError(400, 'ERROR_BAD_URL', `downloadUrl "${text}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new FaasError(400, 'ERROR_BAD_URL', `downloadUrl must be http or https, not ${u.protocol}`);
  return split;
}

/** The content-addressed module cache of a node. */
export class ModuleSource {
  readonly #o: ModuleSourceOptions;

  constructor(o: ModuleSourceOptions) {
    this.#o = o;
  }

  /** The cache path of a digest. */
  pathOf(digest: string): string {
    return join(this.#o.dir, 'sha256', `${digest.slice('sha256:'.length)}.wasm`);
  }

  /**
   * Downloads, checks and caches a module (see the module comment).
   * @param sha256 an expected digest besides the URL's own pin
   * @throws FaasError 400 ERROR_BAD_URL / ERROR_DOWNLOAD (unreachable, HTTP error, too large),
   *   422 ERROR_DIGEST_MISMATCH / ERROR_BAD_MODULE (not valid wasm, unsupported kind or import)
   */
  async download(downloadUrl: string, sha256?: string): Promise<DeployableModule> {
    const { url } = parseDownloadUrl(downloadUrl);
    const expected = sha256 === undefined ? undefined : normaliseDigest(sha256, 'sha256');
    const t0 = performance.now();
    let bytes: Uint8Array;
    try {
      bytes = await fetchModule({ url: downloadUrl, maxBytes: this.#o.maxBytes ?? DEFAULT_MAX_MODULE_BYTES, timeoutMs: this.#o.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS, headerDigest: true }, expected);
    } catch (e) {
      if (e instanceof DigestMismatchError) throw new FaasError(422, 'ERROR_DIGEST_MISMATCH', e.message);
      if (e instanceof CapsuleError && e.code === 'USAGE') throw new FaasError(400, 'ERROR_BAD_DIGEST', e.message);
      throw new FaasError(400, 'ERROR_DOWNLOAD', (e as Error).message);
    }
    const fetchSeconds = (performance.now() - t0) / 1000;
    return this.accept(bytes, url, digestOf(bytes), fetchSeconds);
  }

  /**
   * A module already in the cache, by digest (a reload to a generation the node has seen).
   * @throws FaasError 404 MODULE_NOT_FOUND when it is not cached, 422 as `download`
   */
  async cached(sha256: string): Promise<DeployableModule> {
    const digest = normaliseDigest(sha256, 'sha256');
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(this.pathOf(digest)));
    } catch {
      throw new FaasError(404, 'MODULE_NOT_FOUND', `no module with digest ${digest} on this node (give a downloadUrl)`);
    }
    if (digestOf(bytes) !== digest) throw new FaasError(422, 'ERROR_DIGEST_MISMATCH', `the cached module ${digest} is damaged`);
    return this.accept(bytes, this.pathOf(digest), digest, 0);
  }

  /**
   * Validates and compiles bytes whose digest the caller has checked, then writes the cache file
   * (temp + rename) unless it is already there.
   * @param source path or URL, for messages
   * @param fetchSeconds time the caller spent getting the bytes
   * @throws FaasError 422 ERROR_BAD_MODULE, 500 ERROR_MODULE_STORE when the cache cannot be written
   */
  async accept(bytes: Uint8Array, source: string, digest: string, fetchSeconds: number): Promise<DeployableModule> {
    const t1 = performance.now();
    let module: LoadedModule;
    try {
      module = await compileModule(bytes, source, {});
    } catch (e) {
      if (e instanceof CapsuleError) throw new FaasError(422, 'ERROR_BAD_MODULE', e.message);
      throw e;
    }
    const compileSeconds = (performance.now() - t1) / 1000;
    const path = this.pathOf(digest);
    if (source !== path) {
      try {
        await writeFileAtomically(path, bytes);
      } catch (e) {
        throw new FaasError(500, 'ERROR_MODULE_STORE', `cannot store the module in ${this.#o.dir}: ${(e as Error).message}`);
      }
    }
    return { digest, path, module, fetchSeconds, compileSeconds };
  }
}
