/**
 * Watching files: one `fs.watch` per directory (a function table's module directories, its
 * functions directory and routes file's directory; the module and project folders of
 * `serve --watch`), debounced: after `debounceMs` without an event the changed paths are handed
 * over at once. `SourceHashes` tells which reported paths of a project really changed.
 */
import { watch, type Dirent, type FSWatcher, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/** Where a watcher reports problems (a directory that cannot be watched). */
export interface WatchLog {
  warn(message: string): void;
}

/** Debounced watcher of a changing set of directories. */
export class DirectoryWatcher {
  readonly #watchers = new Map<string, FSWatcher>();
  readonly #pending = new Set<string>();
  readonly #debounceMs: number;
  readonly #onChange: (changed: Set<string>) => void;
  readonly #log: WatchLog;
  #timer?: NodeJS.Timeout;

  /**
   * @param onChange receives the absolute paths changed (files, or a directory when the event
   *   names no file), once per quiet period
   * @param debounceMs quiet time after an event, ms
   */
  constructor(onChange: (changed: Set<string>) => void, debounceMs: number, log: WatchLog) {
    this.#onChange = onChange;
    this.#debounceMs = debounceMs;
    this.#log = log;
  }

  /**
   * Watches exactly the directories holding `modules` and `paths` (a path that is a directory is
   * watched itself): new ones are added, the others closed.
   */
  update(modules: Iterable<string>, paths: Iterable<string>): void {
    const dirs = new Set<string>();
    for (const m of modules) dirs.add(dirname(m));
    for (const p of paths) {
      const abs = resolve(p);
      dirs.add(existsSync(abs) && statSync(abs).isDirectory() ? abs : dirname(abs));
    }
    for (const [d, w] of this.#watchers) {
      if (dirs.has(d)) continue;
      w.close();
      this.#watchers.delete(d);
    }
    for (const d of dirs) if (!this.#watchers.has(d) && existsSync(d)) this.#watch(d);
  }

  #watch(d: string): void {
    try {
      const w = watch(d, { persistent: false }, (_event, file) => this.#event(d, file));
      w.on('error', (e) => this.#log.warn(`watching ${d}: ${e.message}`));
      this.#watchers.set(d, w);
    } catch (e) {
      this.#log.warn(`cannot watch ${d}: ${(e as Error).message}`);
    }
  }

  #event(dir: string, file: string | null): void {
    this.#pending.add(file ? join(dir, file) : dir);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#flush(), this.#debounceMs);
  }

  #flush(): void {
    this.#timer = undefined;
    const changed = new Set(this.#pending);
    this.#pending.clear();
    this.#onChange(changed);
  }

  /** Stops watching (pending events are dropped). */
  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }
}

/** Folders of a project that hold no sources of its own: dependencies, build outputs, VCS. */
const NOT_SOURCES = new Set(['node_modules', 'target', 'build', 'dist', '.git', '.cache', 'zig-cache']);
/** File names that are sources of a function project (`capsule new`): code and build settings. */
const SOURCE_FILE = /\.(ts|c|h|rs|go|wat|wast|toml|mod|json)$/;
/** How deep below a project folder sources are looked for. */
const MAX_DEPTH = 4;

/**
 * The sources of a project folder (`capsule new`) and the digest of their content: which of the
 * paths a watcher reports really changed (an edit, a new or a removed file; not a touch, nor a
 * build that rewrites a file with the same bytes, so a build does not trigger the next one).
 * Sources are files matching SOURCE_FILE, below the folder (depth ≤ 4) outside
 * node_modules, target, build, dist and dot-folders, except the `outputs` (the built module).
 */
export class SourceHashes {
  readonly #dir: string;
  readonly #outputs: Set<string>;
  readonly #hashes = new Map<string, string>();

  /** @param outputs absolute paths of built files that are never sources */
  constructor(dir: string, outputs: Iterable<string>) {
    this.#dir = resolve(dir);
    this.#outputs = new Set([...outputs].map((p) => resolve(p)));
    for (const f of this.#walk(this.#dir, 0).files) this.#hashes.set(f, hashFile(f) ?? '');
  }

  /** The folders to watch: the project folder and those of its sources (see the class comment). */
  directories(): string[] {
    return this.#walk(this.#dir, 0).dirs;
  }

  /**
   * Of the paths a watcher reported (files, or folders when an event named no file), the source
   * files whose content changed since the last call; remembers the new content.
   */
  changed(paths: Iterable<string>): string[] {
    const candidates = new Set<string>();
    for (const p of paths) {
      const abs = resolve(p);
      if (existsSync(abs) && statSync(abs).isDirectory()) {
        for (const f of this.#walk(abs, MAX_DEPTH).files) candidates.add(f);
        for (const f of this.#hashes.keys()) if (dirname(f) === abs) candidates.add(f);
      } else if (this.#isSource(abs)) {
        candidates.add(abs);
      }
    }
    const out: string[] = [];
    for (const f of candidates) {
      const h = hashFile(f);
      if (h === (this.#hashes.get(f) ?? null)) continue;
      if (h === null) this.#hashes.delete(f);
      else this.#hashes.set(f, h);
      out.push(f);
    }
    return out;
  }

  #isSource(abs: string): boolean {
    if (this.#outputs.has(abs) || !SOURCE_FILE.test(abs)) return false;
    const rel = relative(this.#dir, abs);
    if (rel.startsWith('..') || isAbsolute(rel)) return false;
    return !rel.split(sep).slice(0, -1).some((d) => NOT_SOURCES.has(d) || d.startsWith('.'));
  }

  /** Source files and source folders below `dir` (`depth`: how deep `dir` already is). */
  #walk(dir: string, depth: number): { files: string[]; dirs: string[] } {
    const files: string[] = [];
    const dirs: string[] = [dir];
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return { files, dirs: [] };
    }
    for (const e of entries) {
      const abs = join(dir, e.name);
      if (e.isDirectory()) {
        if (depth >= MAX_DEPTH || NOT_SOURCES.has(e.name) || e.name.startsWith('.')) continue;
        const sub = this.#walk(abs, depth + 1);
        files.push(...sub.files);
        dirs.push(...sub.dirs);
      } else if (e.isFile() && this.#isSource(abs)) {
        files.push(abs);
      }
    }
    return { files, dirs };
  }
}

/** sha256 of a file's content, or null when it cannot be read (removed). */
function hashFile(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}
