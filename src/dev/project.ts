/**
 * Function projects (`capsule new`, `capsule build`): the languages and handler kinds a project
 * can have, where the package keeps its templates and MDKs, and how a project's folder says
 * what it is. Light on purpose (node:fs and node:path only): the CLI imports it at start-up.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CapsuleError } from '../base/errors.ts';

/** Languages `capsule new` writes and `capsule build` builds. */
export const LANGUAGES = ['assemblyscript', 'c', 'go', 'rust', 'wat'] as const;
export type Language = typeof LANGUAGES[number];

/** Handler kinds of a new function: a CLI handler (`capsule run`), HTTP (`capsule serve`), messages (`capsule nats|mqtt`). */
export const FUNCTION_KINDS = ['http', 'cli', 'message'] as const;
export type FunctionKind = typeof FUNCTION_KINDS[number];

/** How a language is named in prose. */
export const LANGUAGE_TITLES: Record<Language, string> = {
  assemblyscript: 'AssemblyScript', c: 'C', go: 'Go', rust: 'Rust', wat: 'WebAssembly text (WAT)',
};

/**
 * The package's root: the folder holding `templates/` and `mdk/` (this file is
 * `src/dev/project.ts` in a clone and `dist/dev/project.js` in the published package).
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * A folder of the package (`templates`, `mdk/go`, …).
 * @throws CapsuleError LOAD when it is not there (e.g. the single executable, which carries no templates)
 */
export function packageDir(relative: string): string {
  const dir = join(PACKAGE_ROOT, relative);
  if (!existsSync(dir)) {
    throw new CapsuleError('LOAD', `${relative}/ is not installed beside this capsule (looked in ${PACKAGE_ROOT}); capsule new and capsule build need the npm package capsule-runner (or a clone)`);
  }
  return dir;
}

const NAME = /^[a-z][a-z0-9_-]{0,63}$/;

/**
 * Checks a function's name: it names the folder, the module (`<name>.wasm`), the npm package,
 * the Go module and the Rust crate, so it is lower-case letters, digits, `-` and `_`, starting
 * with a letter, at most 64 characters.
 * @throws CapsuleError USAGE naming the rule
 */
export function checkFunctionName(name: string): void {
  if (!NAME.test(name)) {
    throw new CapsuleError('USAGE', `"${name}" cannot name a function: use lower-case letters, digits, - and _, starting with a letter (at most 64; it names the folder, the .wasm, the npm package, Go module or Rust crate)`);
  }
}

/** What `capsule build` found in a folder. */
export interface ProjectInfo {
  /** Absolute path of the project's folder. */
  dir: string;
  language: Language;
  /** The function's name: the module is `<name>.wasm`. */
  name: string;
}

/**
 * Reads what a project folder holds: `go.mod` → Go, `Cargo.toml` or `src/lib.rs` → Rust,
 * `assembly/index.ts` → AssemblyScript, `*.c` → C, `*.wat` → WAT (in that order). The name is
 * the package's (`package.json` `name`, the last element of the Go module path, the Cargo
 * package name), else the folder's.
 * @throws CapsuleError USAGE when the folder is missing or holds no function project
 */
export function readProject(dir: string): ProjectInfo {
  const abs = resolve(dir);
  let files: string[];
  try {
    files = readdirSync(abs);
  } catch (e) {
    throw new CapsuleError('USAGE', `cannot read the project folder ${dir}: ${(e as Error).message}`);
  }
  const text = (f: string) => readFileSync(join(abs, f), 'utf8');
  const folderName = basename(abs);
  if (files.includes('go.mod')) {
    const module = /^module\s+"?([^\s"]+)"?/m.exec(text('go.mod'))?.[1];
    return { dir: abs, language: 'go', name: module?.split('/').pop() || folderName };
  }
  if (files.includes('Cargo.toml') || existsSync(join(abs, 'src/lib.rs'))) {
    const pkg = files.includes('Cargo.toml') ? /^\[package\][^[]*?^name\s*=\s*"([^"]+)"/m.exec(text('Cargo.toml'))?.[1] : undefined;
    return { dir: abs, language: 'rust', name: pkg ?? folderName };
  }
  if (existsSync(join(abs, 'assembly/index.ts'))) {
    let name: string | undefined;
    try {
      name = (JSON.parse(text('package.json')) as { name?: unknown }).name as string | undefined;
    } catch {
      // no package.json, or not JSON: the folder's name
    }
    return { dir: abs, language: 'assemblyscript', name: typeof name === 'string' && name ? name.replace(/^@[^/]+\//, '') : folderName };
  }
  if (files.some((f) => f.endsWith('.c'))) return { dir: abs, language: 'c', name: folderName };
  if (files.some((f) => f.endsWith('.wat'))) return { dir: abs, language: 'wat', name: folderName };
  throw new CapsuleError('USAGE', `${dir} holds no function project: expected go.mod (Go), Cargo.toml or src/lib.rs (Rust), assembly/index.ts (AssemblyScript), *.c (C) or *.wat (WAT); capsule new <name> --lang <language> makes one`);
}
