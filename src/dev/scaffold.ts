/**
 * `capsule new`: writes a function project from the package's `templates/` (templates/README.md
 * describes their layout) and a copy of the language's MDK in `mdk/`, so that the project builds
 * with `capsule build` (src/dev/build.ts) outside this repository, without a published SDK.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { CapsuleError } from '../base/errors.ts';
import {
  checkFunctionName, LANGUAGE_TITLES, packageDir, PACKAGE_ROOT, type FunctionKind, type Language,
} from './project.ts';

/** What `newProject` wrote. */
export interface NewProject {
  /** Absolute path of the project's folder. */
  dir: string;
  /** The files written, relative to `dir`, sorted (the MDK copy counted as `mdk/`). */
  files: string[];
}

/** Options of `newProject`. */
export interface NewProjectOptions {
  language: Language;
  /** Handler kind; default `http`. */
  kind?: FunctionKind;
  /** Folder to create; default `./<name>`. It may exist if it is empty. */
  dir?: string;
}

const KIND_TITLES: Record<FunctionKind, string> = { http: 'An HTTP function', cli: 'A CLI function', message: 'A message function (NATS, MQTT)' };

/** Files of one MDK that a project gets in `mdk/` (no builds, no tests, no workspace files). */
const MDK_SKIP = /(^|\/)(node_modules|target|build)(\/|$)|\.wasm$|_test\.go$/;

/**
 * Writes a new function project `name` in `o.language` with a handler of kind `o.kind`: the
 * handler's source, the build description of the language (package.json, go.mod, Cargo.toml),
 * a README with the build and try-it lines, a test request (`request.http` for HTTP, a
 * `<name>.capsule.yaml` with subject and topic for messages), a `.gitignore`, and `mdk/`, a copy
 * of the language's MDK (none for WAT).
 * @throws CapsuleError USAGE for a bad name or a folder that exists and is not empty;
 *   LOAD when the package's templates are missing
 */
export function newProject(name: string, o: NewProjectOptions): NewProject {
  checkFunctionName(name);
  const kind = o.kind ?? 'http';
  const dir = resolve(o.dir ?? name);
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new CapsuleError('USAGE', `${o.dir ?? name} already exists and is not an empty folder: choose another name, or --dir`);
  }
  const templates = packageDir('templates');
  const vars = templateVars(name, o.language, kind);
  const fill = (text: string) => text.replace(/\{\{(\w+)\}\}/g, (m, key: string) => vars[key] ?? m);
  const files = new Set<string>();
  mkdirSync(dir, { recursive: true });
  const copyTree = (from: string) => {
    if (!existsSync(from)) return;
    for (const f of listFiles(from)) {
      const target = fill(f.split('/').map((s) => s.replace(/^dot-/, '.')).join('/'));
      mkdirSync(dirname(join(dir, target)), { recursive: true });
      writeFileSync(join(dir, target), fill(readFileSync(join(from, f), 'utf8')));
      files.add(target);
    }
  };
  copyTree(join(templates, o.language, 'common'));
  copyTree(join(templates, o.language, kind));
  copyTree(join(templates, 'kinds', kind, 'files'));
  if (o.language === 'go') {
    writeFileSync(join(dir, 'go.sum'), readFileSync(join(packageDir('mdk/go'), 'go.sum'), 'utf8'));
    files.add('go.sum');
  }
  if (o.language !== 'wat') {
    const mdk = packageDir(`mdk/${o.language}`);
    cpSync(mdk, join(dir, 'mdk'), { recursive: true, filter: (src) => !MDK_SKIP.test(relative(mdk, src).split(sep).join('/')) });
    files.add('mdk/');
  }
  const readOr = (path: string, fallback: string) => readFileSync(existsSync(path) ? path : fallback, 'utf8');
  const section = (text: string) => fill(text).trim();
  vars['build'] = section(readFileSync(join(templates, o.language, 'build.md'), 'utf8'));
  vars['try'] = section(readOr(join(templates, o.language, `try-${kind}.md`), join(templates, 'kinds', kind, 'try.md')));
  writeFileSync(join(dir, 'README.md'), fill(readFileSync(join(templates, 'project.md'), 'utf8')));
  files.add('README.md');
  return { dir, files: [...files].sort() };
}

/** The `{{…}}` values of templates/README.md. */
function templateVars(name: string, language: Language, kind: FunctionKind): Record<string, string> {
  return {
    name,
    crate: name.replace(/-/g, '_'),
    title: `${KIND_TITLES[kind]} in ${LANGUAGE_TITLES[language]}`,
    ascVersion: language === 'assemblyscript' ? ascVersion() : '',
    goRequire: language === 'go' ? goRequirements() : '',
  };
}

/** Files under `dir`, relative, `/`-separated. */
function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) => {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    return e.isDirectory() ? listFiles(dir, rel) : [rel];
  });
}

/** The AssemblyScript range this Capsule is built with (its package.json), for a new project's package.json. */
function ascVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { devDependencies?: Record<string, string> };
    return pkg.devDependencies?.['assemblyscript'] ?? '^0.28.0';
  } catch {
    return '^0.28.0';
  }
}

/** The Go MDK's own requirements (mdk/go/go.mod), which a project that replaces it must list too. */
function goRequirements(): string {
  const mod = readFileSync(join(packageDir('mdk/go'), 'go.mod'), 'utf8');
  const lines = [...mod.matchAll(/^require\s+([^\s(]+)\s+(\S+)/gm)].map((m) => `${m[1]} ${m[2]}`);
  for (const block of mod.matchAll(/^require\s*\(([^)]*)\)/gm)) {
    for (const line of block[1]!.split('\n')) {
      const m = /^\s*(\S+)\s+(\S+)/.exec(line.replace(/\/\/.*$/, ''));
      if (m) lines.push(`${m[1]} ${m[2]}`);
    }
  }
  return lines.length === 0 ? '' : `require (\n${lines.map((l) => `\t${l}`).join('\n')}\n)`;
}
