/**
 * Hot reload of the single-module HTTP server (faas-api.md §8, §9.1, §9.8; issue 12 point 5,
 * issue 15 point 4): `POST /load-wasm-module` and `capsule serve --watch`.
 *
 * Every reload goes the same way, one at a time: the new module is read (downloaded, or the
 * watched file), checked against its expected digest, validated, detected and compiled, and a
 * function is made of it with the served function's settings on its worker pool; only then is
 * it saved (`path` of the request) and swapped in (`RunningFunctionServer.replace`: `OnLoad`, then
 * every request that starts goes to it; requests in flight finish on the old module, whose
 * `OnStop`/`OnExit` then run before it is closed). A module that fails any step leaves the old
 * one serving.
 *
 * `POST /load-wasm-module` `{"url","path","sha256"?}` (url http or https; `path`, resolved
 * against the working directory, must lie inside the modules directory, symbolic links
 * resolved): `200 🙂 <url> loaded`; a refused request → `400 😡[/load-wasm-module] <why>`; a
 * module that cannot be downloaded or loaded → `500 😡[/load-wasm-module] <error>`. With
 * `CAPSULE_RELOAD_TOKEN` set, the header of that name (any case, or `Capsule-Reload-Token`, or
 * `Authorization: Bearer`) must carry it: absent → `401 😡[/load-wasm-module] Unauthorized`,
 * wrong → `403 😡[/load-wasm-module] Forbidden`; without a token only loopback clients may
 * reload, unless `--insecure-admin` (faas-api.md §9.1).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { readBodyUpTo } from '../../base/bytes.ts';
import { writeFileAtomically } from '../../base/files.ts';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { CapsuleError } from '../../base/errors.ts';
import type { CapsuleFunction } from '../../engine/function.ts';
import { compileModule, DEFAULT_DOWNLOAD_TIMEOUT_MS, DEFAULT_MAX_MODULE_BYTES, fetchModule, readModuleFile, type LoadedModule, type LoadOptions } from '../../engine/load.ts';
import { checkAdmin } from '../../faas/shared/admin.ts';
import { DirectoryWatcher, SourceHashes } from '../../functions/watch.ts';
import type { Logger } from '../../observability/logger.ts';

/** The reload route of the single-module server (POST only; other methods reach the guest). */
export const RELOAD_ROUTE = '/load-wasm-module';
/** The variable (and header) of the reload token. */
export const RELOAD_TOKEN_VAR = 'CAPSULE_RELOAD_TOKEN';
/** Largest accepted reload request body, bytes. */
export const MAX_RELOAD_REQUEST_BYTES = 64 * 1024;

/** A reload request as the route sees it (`ModuleReloader.answerRequest`). */
export interface ReloadAsk {
  headers: IncomingMessage['headers'];
  remoteAddress: string | undefined;
  /** Reads the body as UTF-8. @throws CapsuleError USAGE when it is larger than MAX_RELOAD_REQUEST_BYTES */
  body(): Promise<string>;
}

/** How the single-module server reloads its module (see the module comment). */
export interface HotReloadOptions {
  /**
   * Makes the function of a newly loaded module: the served function's settings and its worker
   * pool (`pool: served.pool`). May throw (e.g. MEMORY): the reload then fails.
   */
  make(module: LoadedModule): CapsuleFunction;
  /** How new modules are loaded (`kind` when the served one was given `--kind`). */
  load?: Pick<LoadOptions, 'kind'>;
  /** The directory a reload's `path` must lie in (`--modules-dir`). */
  modulesDir: string;
  /** `CAPSULE_RELOAD_TOKEN`; undefined or empty = none. */
  token?: string;
  /** Without a token, accept reloads from any client, not only loopback (`--insecure-admin`). */
  insecureAdmin?: boolean;
  /** `serve --watch`: reload when the module file (or its project's sources) change. */
  watch?: WatchOptions;
}

/** What `--watch` watches. */
export interface WatchOptions {
  /** The served module file. */
  path: string;
  /**
   * A project folder (`capsule new`) to rebuild when one of its sources changes: `build` builds
   * it and returns the path of the built module (then loaded as for a changed module file); at
   * shutdown `signal` aborts a build in progress.
   */
  project?: { dir: string; build(signal: AbortSignal): Promise<string> };
  /** Quiet time after a file event before reloading, ms (default 150). */
  debounceMs?: number;
}

/** The running server a reload replaces the function of (`RunningFunctionServer`). */
export interface Reloadable {
  /** The function serving now. */
  readonly fn: CapsuleFunction;
  /** Runs `OnLoad` of `next`, then swaps it in. @throws CapsuleError OVERLOADED when shutting down */
  replace(next: CapsuleFunction): Promise<void>;
}

/** Reloads one served module: the reload route and the watcher (see the module comment). */
export class ModuleReloader {
  readonly #target: Reloadable;
  readonly #o: HotReloadOptions;
  readonly #log: Logger;
  #queue: Promise<unknown> = Promise.resolve();
  #watcher?: DirectoryWatcher;
  #sources?: SourceHashes;
  /** Watch events are handled one batch at a time (a build is not started beside another). */
  #watching: Promise<void> = Promise.resolve();
  /** Aborts a build in progress at `close`. */
  readonly #closing = new AbortController();

  constructor(target: Reloadable, o: HotReloadOptions, log: Logger) {
    this.#target = target;
    this.#o = o;
    this.#log = log;
  }

  /**
   * Swaps in a module, after the other reloads: a function is made of it, `save` runs (if any),
   * then the server replaces its function. One at a time.
   * @param ifChanged skip (resolve false) when the module is the one serving (same digest)
   * @returns whether it was swapped in
   * @throws CapsuleError when the function cannot be made, saved or swapped in (the old one keeps serving)
   */
  reload(module: LoadedModule, o: { save?: () => Promise<void>; ifChanged?: boolean; from: string }): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      if (o.ifChanged && module.digest === this.#target.fn.module.digest) return false;
      const fn = this.#o.make(module);
      try {
        await o.save?.();
        await this.#target.replace(fn);
      } catch (e) {
        await fn.close();
        throw e;
      }
      this.#log.info({ module: module.name, kind: module.detection.kind, digest: module.digest, from: o.from }, 'module reloaded');
      return true;
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Answers `POST /load-wasm-module` (token, request, download, reload). Never throws.
   * @returns the status sent
   */
  async answer(req: IncomingMessage, res: ServerResponse): Promise<number> {
    let read = false;
    const r = await this.answerRequest({
      headers: req.headers, remoteAddress: req.socket.remoteAddress,
      body: () => {
        read = true;
        return readSmallBody(req, MAX_RELOAD_REQUEST_BYTES);
      },
    });
    if (!read) req.resume();
    return sendText(res, r.status, r.text);
  }

  /**
   * The reload route without its connection (an HTTP thread forwards the request here, threads.ts):
   * `body` is read only once the client is allowed. Never throws.
   * @returns the status and plain-text body to answer with
   */
  async answerRequest(ask: ReloadAsk): Promise<{ status: number; text: string }> {
    const refusal = checkAdmin({ service: 'reload', header: RELOAD_TOKEN_VAR, token: this.#o.token, insecureAdmin: this.#o.insecureAdmin }, ask.headers, ask.remoteAddress);
    if (refusal) return { status: refusal.status, text: `😡[${RELOAD_ROUTE}] ${refusal.body.message}` };
    let want: ReloadRequest;
    try {
      want = parseReloadRequest(await ask.body(), this.#o.modulesDir);
    } catch (e) {
      return { status: 400, text: `😡[${RELOAD_ROUTE}] ${(e as Error).message}` };
    }
    try {
      const bytes = await fetchModule({ url: want.url, maxBytes: DEFAULT_MAX_MODULE_BYTES, timeoutMs: DEFAULT_DOWNLOAD_TIMEOUT_MS }, want.sha256); // capped and timed like a FaaS node's download
      const module = await compileModule(bytes, want.url, this.#o.load);
      await this.reload(module, { from: want.url, save: () => writeAtomically(want.path, bytes) });
      return { status: 200, text: `🙂 ${want.url} loaded` };
    } catch (e) {
      this.#log.error({ url: want.url, code: (e as CapsuleError).code }, `${RELOAD_ROUTE}: ${(e as Error).message} (the previous module keeps serving)`);
      return { status: 500, text: `😡[${RELOAD_ROUTE}] ${(e as Error).message}` };
    }
  }

  /** Starts `--watch` (when configured): changes of the module file or the project's sources reload. */
  watch(): void {
    const w = this.#o.watch;
    if (!w || this.#watcher) return;
    const modulePath = resolve(w.path);
    const onChange = (changed: Set<string>) => {
      this.#watching = this.#watching.then(() => this.#changed(changed, modulePath));
    };
    this.#watcher = new DirectoryWatcher(onChange, w.debounceMs ?? 150, this.#log);
    if (w.project) {
      this.#sources = new SourceHashes(w.project.dir, [modulePath]);
      this.#watcher.update([modulePath], this.#sources.directories());
    } else {
      this.#watcher.update([modulePath], []);
    }
  }

  /** Stops watching and waits for a reload in progress. */
  async close(): Promise<void> {
    this.#watcher?.close();
    this.#closing.abort();
    await this.#watching;
    await this.#queue;
  }

  /** Files changed: rebuild when a source changed, reload when the module changed. Never throws. */
  async #changed(changed: Set<string>, modulePath: string): Promise<void> {
    if (this.#closing.signal.aborted) return;
    const project = this.#o.watch?.project;
    try {
      let path = modulePath;
      const sources = this.#sources?.changed(changed) ?? [];
      if (project && sources.length > 0) {
        this.#log.info({ project: project.dir, changed: sources.map((s) => relative(project.dir, s)) }, 'sources changed: building');
        path = await project.build(this.#closing.signal);
      } else if (!changed.has(modulePath) && !changed.has(dirname(modulePath))) {
        return;
      }
      const module = await compileModule(await readModuleFile(path), path, this.#o.load);
      await this.reload(module, { ifChanged: true, from: path });
    } catch (e) {
      this.#log.error({ code: (e as CapsuleError).code }, `--watch: ${(e as Error).message} (the previous module keeps serving)`);
    }
  }
}

/** A checked reload request. */
interface ReloadRequest {
  url: string;
  /** Absolute, inside the modules directory. */
  path: string;
  sha256?: string;
}

/**
 * Reads and checks the JSON of a reload request.
 * @throws CapsuleError USAGE naming what is wrong (not JSON, a missing field, not http(s), a
 *   path outside the modules directory)
 */
function parseReloadRequest(body: string, modulesDir: string): ReloadRequest {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch (e) {
    throw new CapsuleError('USAGE', `the body is not JSON: ${(e as Error).message}`);
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  for (const k of ['url', 'path'] as const) {
    if (typeof o[k] !== 'string' || o[k] === '') throw new CapsuleError('USAGE', `expected {"url": "<download URL>", "path": "<where to save it>", "sha256"?: "<hex>"}: "${k}" is missing`);
  }
  let url: URL;
  try {
    url = new URL(o.url as string);
  } catch {
    throw new CapsuleError('USAGE', `"url" is not a URL: ${o.url as string}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CapsuleError('USAGE', `"url" must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  if (o.sha256 !== undefined && (typeof o.sha256 !== 'string' || !/^(sha256:)?[0-9a-fA-F]{64}$/.test(o.sha256))) {
    throw new CapsuleError('USAGE', '"sha256" must be 64 hexadecimal digits');
  }
  return { url: o.url as string, path: pathInside(modulesDir, o.path as string), sha256: o.sha256 as string | undefined };
}

/**
 * Resolves `path` (against the working directory) and checks that it lies inside `dir`, through
 * symbolic links of its existing part.
 * @returns the absolute path to write
 * @throws CapsuleError USAGE when it lies outside (or is the directory itself)
 */
export function pathInside(dir: string, path: string): string {
  const root = realOrResolved(dir);
  const target = resolve(path);
  let existing = dirname(target);
  const rest = [basename(target)];
  while (!existsSync(existing) && dirname(existing) !== existing) {
    rest.unshift(basename(existing));
    existing = dirname(existing);
  }
  const real = join(realOrResolved(existing), ...rest);
  const rel = relative(root, real);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new CapsuleError('USAGE', `"path" ${path} is outside the modules directory ${dir} (--modules-dir)`);
  }
  return real;
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/**
 * Reads a request body of at most `max` bytes as UTF-8.
 * @throws CapsuleError USAGE when it is larger
 */
export async function readSmallBody(req: IncomingMessage, max: number): Promise<string> {
  const body = await readBodyUpTo(req, max);
  if (body === undefined) throw new CapsuleError('USAGE', `the request body is larger than ${max} bytes`);
  return body.toString('utf8');
}

/** Writes a temporary file beside `path`, then renames it into place (no half-written module). */
async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await writeFileAtomically(path, bytes);
  } catch (e) {
    throw new CapsuleError('LOAD', `cannot save the module to ${path}: ${(e as Error).message}`);
  }
}

/** Sends a plain-text answer (the Go reload route's bodies). @returns the status */
export function sendText(res: ServerResponse, status: number, text: string): number {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
  return status;
}

/** What `capsule serve` (one module) knows for its reload options. */
export interface ReloadFlags {
  /**
   * The served module file (`--wasm` or the positional; with `--url`, where it was saved), if
   * any. With `watch`, a project folder (or none: the working directory) is built first.
   */
  served?: string;
  /** `--url` was given (the module is downloaded). */
  url?: boolean;
  /** `--modules-dir` (default: the served module's directory, else the working directory). */
  modulesDir?: string;
  /** `--watch`. */
  watch: boolean;
  /** `--insecure-admin`. */
  insecureAdmin: boolean;
  /** `--kind`, kept for new modules. */
  kind?: LoadOptions['kind'];
  make: HotReloadOptions['make'];
  /** Where the token comes from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Receives the build's command lines and warnings (`--watch` of a project). */
  log?: (text: string) => void;
}

/**
 * The reload options of `capsule serve` with one module: the modules directory, the token
 * (`CAPSULE_RELOAD_TOKEN`), `--watch`. With `--watch`, a module named `<name>.wasm` in the
 * folder of a function project (`capsule new`, src/dev/project.ts) is rebuilt when the
 * project's sources change; a project folder given instead of a module (or no module: the
 * working directory) is built first, and its module served.
 * @returns the options; `watch.path` is the module to serve when `--watch` built it
 * @throws CapsuleError USAGE when `--watch` has no module file or project to follow; a build
 *   error when the project given cannot be built
 */
export async function reloadOptionsFor(f: ReloadFlags): Promise<HotReloadOptions> {
  let served = f.served;
  let watch: WatchOptions | undefined;
  if (f.watch) {
    if (f.url && served === undefined) throw new CapsuleError('USAGE', '--watch follows a module file: give one (with --url, --wasm names the file the download is saved to)');
    const project = await projectOf(served);
    if (project) {
      const build = async (signal?: AbortSignal) => (await import('../../dev/build.ts')).buildProject(project.dir, { log: f.log, signal });
      if (served === undefined || project.dir === resolve(served)) served = (await build()).wasm;
      watch = { path: served, project: { dir: project.dir, build: async (signal) => (await build(signal)).wasm } };
    } else if (served === undefined) {
      throw new CapsuleError('USAGE', '--watch follows a module file or a function project (capsule new): give one, or run it in the project\'s folder');
    } else {
      watch = { path: served };
    }
  }
  const modulesDir = resolve(f.modulesDir ?? (served !== undefined ? dirname(resolve(served)) : '.'));
  return {
    make: f.make,
    load: { kind: f.kind },
    modulesDir,
    token: (f.env ?? process.env)[RELOAD_TOKEN_VAR] || undefined,
    insecureAdmin: f.insecureAdmin,
    watch,
  };
}

/**
 * The function project a served path belongs to: the folder itself, or the folder of its
 * `<name>.wasm` (undefined: the working directory). Undefined when there is none.
 */
async function projectOf(served: string | undefined): Promise<{ dir: string } | undefined> {
  const { readProject } = await import('../../dev/project.ts');
  const abs = resolve(served ?? '.');
  const isDir = existsSync(abs) && statSync(abs).isDirectory();
  try {
    const p = readProject(isDir ? abs : dirname(abs));
    return isDir || basename(abs) === `${p.name}.wasm` ? { dir: p.dir } : undefined;
  } catch (e) {
    if (isDir && served !== undefined) throw e; // a folder given to serve must be a project
    return undefined;
  }
}
