/**
 * Builds every guest module from source (run by scripts/setup.sh; rebuilds only what changed).
 *
 * Conventions:
 * - `examples/<name>/` → `examples/<name>/<name>.wasm`, by what the folder holds:
 *   `assembly/index.ts` (AssemblyScript, `asconfig.json` beside it), `*.c` (clang + wasi-libc),
 *   `main.rs` (Debian rustc, wasm32-wasi), or `<name>.wat` (wat2wasm).
 * - `test/fixtures/<file>.wat|.c|.rs` and `test/fixtures/<dir>/assembly/index.ts` →
 *   `build/fixtures/<file or dir>.wasm`.
 * - A C or Rust source may carry extra compiler flags on a first line `// build: <flags>`.
 * A missing toolchain skips its guests with a warning; the tests that need them then skip too.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const warned = new Set<string>();
let built = 0;
let failed = 0;

function warn(tool: string, msg: string): void {
  if (warned.has(tool)) return;
  warned.add(tool);
  process.stderr.write(`build-guests: ${msg}\n`);
}

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function newest(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;
  for (const e of readdirSync(path)) {
    if (e.endsWith('.wasm') || e === 'node_modules' || e === 'build') continue;
    m = Math.max(m, newest(join(path, e)));
  }
  return m;
}

function upToDate(out: string, inputs: string[]): boolean {
  if (!existsSync(out)) return false;
  const t = statSync(out).mtimeMs;
  return inputs.every((i) => newest(i) <= t);
}

function extraFlags(src: string): string[] {
  const first = readFileSync(src, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^\/\/\s*build:\s*(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}

function run(cmd: string, args: string[], what: string): void {
  try {
    execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'pipe'] });
    built++;
  } catch (e) {
    failed++;
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
    process.stderr.write(`build-guests: FAILED ${what}\n${stderr}\n`);
  }
}

const CLANG = ['clang', '--target=wasm32-wasi', '--sysroot=/usr', '-O2', '-Wall', '-I', join(root, 'mdk/c')];
const sdkHeader = join(root, 'mdk/c');
const asMdk = join(root, 'mdk/assemblyscript');

function buildC(srcs: string[], out: string): void {
  if (!has('clang') || !existsSync('/usr/lib/wasm32-wasi')) {
    warn('clang', 'clang or wasi-libc is missing (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32); C guests are not built');
    return;
  }
  // headers and .inc files beside a source are inputs too
  const local = readdirSync(dirname(srcs[0]!)).filter((f) => f.endsWith('.h') || f.endsWith('.inc')).map((f) => join(dirname(srcs[0]!), f));
  if (upToDate(out, [...srcs, ...local, sdkHeader])) return;
  run(CLANG[0]!, [...CLANG.slice(1), ...extraFlags(srcs[0]!), '-o', out, ...srcs], relative(root, out));
}

function buildRust(src: string, out: string): void {
  const rustc = '/usr/bin/rustc';
  if (!existsSync(rustc) || !existsSync('/usr/lib/rustlib/wasm32-wasi')) {
    warn('rustc', 'Debian rustc or libstd-rust-dev-wasm32 is missing; Rust guests are not built');
    return;
  }
  if (upToDate(out, [src])) return;
  run(rustc, ['--target', 'wasm32-wasi', '-C', 'opt-level=2', '--edition', '2021', ...extraFlags(src), '-o', out, src], relative(root, out));
}

function buildWat(src: string, out: string): void {
  if (upToDate(out, [src])) return;
  const local = join(root, 'node_modules/.bin/wat2wasm');
  const tool = existsSync(local) ? local : has('wat2wasm') ? 'wat2wasm' : undefined;
  if (!tool) {
    warn('wat2wasm', 'wat2wasm is missing (npm package wabt, or Debian wabt); WAT guests are not built');
    return;
  }
  run(tool, [src, '-o', out], relative(root, out));
}

function buildAs(dir: string, out: string): void {
  const asc = join(root, 'node_modules/.bin/asc');
  if (!existsSync(asc)) {
    warn('asc', 'assemblyscript is not installed (npm install); AssemblyScript guests are not built');
    return;
  }
  if (upToDate(out, [dir, asMdk])) return;
  const config = join(dir, 'asconfig.json');
  run(asc, [join(dir, 'assembly/index.ts'), ...(existsSync(config) ? ['--config', relative(root, config)] : []), '--target', 'release', '-o', out], relative(root, out));
}

function buildDir(dir: string, out: string): boolean {
  if (existsSync(join(dir, 'assembly/index.ts'))) {
    buildAs(dir, out);
    return true;
  }
  const cs = readdirSync(dir).filter((f) => f.endsWith('.c')).map((f) => join(dir, f));
  if (cs.length > 0) {
    buildC(cs, out);
    return true;
  }
  if (existsSync(join(dir, 'main.rs'))) {
    buildRust(join(dir, 'main.rs'), out);
    return true;
  }
  const wat = join(dir, `${basename(dir)}.wat`);
  if (existsSync(wat)) {
    buildWat(wat, out);
    return true;
  }
  return false;
}

// examples/<name>/
const examples = join(root, 'examples');
if (existsSync(examples)) {
  for (const name of readdirSync(examples)) {
    const dir = join(examples, name);
    if (statSync(dir).isDirectory()) buildDir(dir, join(dir, `${name}.wasm`));
  }
}

// test/fixtures/
const fixtures = join(root, 'test/fixtures');
const outDir = join(root, 'build/fixtures');
mkdirSync(outDir, { recursive: true });
if (existsSync(fixtures)) {
  for (const entry of readdirSync(fixtures)) {
    if (entry === 'conformance') continue; // one module per source file, below
    const p = join(fixtures, entry);
    const name = basename(entry, extname(entry));
    const out = join(outDir, `${name}.wasm`);
    if (statSync(p).isDirectory()) buildDir(p, out);
    else if (entry.endsWith('.wat')) buildWat(p, out);
    else if (entry.endsWith('.c')) buildC([p], out);
    else if (entry.endsWith('.rs')) buildRust(p, out);
  }
}

// test/fixtures/conformance/<probe>.c|.rs → build/fixtures/conformance/<probe>.wasm (wasi-conformance.test.ts)
const conformance = join(fixtures, 'conformance');
if (existsSync(conformance)) {
  mkdirSync(join(outDir, 'conformance'), { recursive: true });
  for (const entry of readdirSync(conformance)) {
    const out = join(outDir, 'conformance', `${basename(entry, extname(entry))}.wasm`);
    if (entry.endsWith('.c')) buildC([join(conformance, entry)], out);
    else if (entry.endsWith('.rs')) buildRust(join(conformance, entry), out);
  }
}

process.stderr.write(`build-guests: ${built} built${failed ? `, ${failed} FAILED` : ''}\n`);
process.exit(failed ? 1 : 0);
