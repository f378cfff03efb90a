/**
 * Watching the files of a function table: one `fs.watch` per directory (module directories, the
 * functions directory, the routes file's directory), debounced: after `debounceMs` without an
 * event the changed paths are handed over at once.
 */
import { watch, type FSWatcher, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

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
