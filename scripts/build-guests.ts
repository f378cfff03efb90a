/**
 * Builds every guest module from source (run by scripts/setup.sh; rebuilds only what changed).
 *
 * Conventions:
 * - `examples/<name>/` → `examples/<name>/<name>.wasm`, by what the folder holds:
 *   `assembly/index.ts` (AssemblyScript, `asconfig.json` beside it), `*.c` (clang + wasi-libc),
 *   `main.rs` (Debian rustc, wasm32-wasi), or `<name>.wat` (wat2wasm).
 * - `test/fixtures/<file>.wat|.c|.rs` and `test/fixtures/<dir>/assembly/index.ts` →
 *   `build/fixtures/<file or dir>.wasm`.
 * - `test/fixtures/meter/<file>.wat|.c|.rs` → `build/fixtures/meter/<file>.wasm` (test/meter.test.ts).
 * - A C or Rust source may carry extra compiler flags on a first line `// build: <flags>`, a WAT
 *   source extra wat2wasm flags on a first line `;; build: <flags>` (e.g. `--enable-tail-call`).
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
  const m = /^(?:\/\/|;;)\s*build:\s*(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}

function run(cmd: string, args: string[], what: string, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): boolean {
  try {
    execFileSync(cmd, args, { cwd: options.cwd ?? root, env: options.env, stdio: ['ignore', 'inherit', 'pipe'] });
    built++;
    return true;
  } catch (e) {
    failed++;
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
    process.stderr.write(`build-guests: FAILED ${what}\n${stderr}\n`);
    return false;
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
  run(tool, [...extraFlags(src), src, '-o', out], relative(root, out));
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

// --- Go (mdk/go): one Go module holds several functions, one folder with a main.go each --------

const goMdk = join(root, 'mdk/go');
const goEnv = { ...process.env, GOOS: 'wasip1', GOARCH: 'wasm', GOTOOLCHAIN: 'local' };
let goChecked: { go?: string } | undefined;

/** The `go` command when it is Go ≥ 1.24 (go:wasmexport); otherwise prints once why Go guests are skipped. */
function goCommand(): string | undefined {
  if (goChecked) return goChecked.go;
  const go = has('go') ? 'go' : existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined;
  let version = '';
  try {
    if (go) version = execFileSync(go, ['env', 'GOVERSION'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // reported below
  }
  const m = /^go(\d+)\.(\d+)/.exec(version);
  goChecked = m && (Number(m[1]) > 1 || Number(m[2]) >= 24) ? { go } : {};
  if (!goChecked.go) {
    const why = !go ? 'no go command on PATH' : `${version || 'go env GOVERSION failed'} is older than Go 1.24`;
    process.stderr.write(`build-guests: Go examples skipped: ${why} (they need Go >= 1.24 for go:wasmexport, https://go.dev/dl)\n`);
  }
  return goChecked.go;
}

/**
 * Builds the functions of a Go module `dir`: every folder with a main.go, as a WASI reactor
 * (`-buildmode=c-shared`) unless its `// build:` line says otherwise, into `outFor(folder)`.
 * Modules come from the Go module proxy (`go mod download`); the Go build cache makes rebuilds cheap.
 */
function buildGoModule(dir: string, outFor: (folder: string) => string): void {
  const folders = readdirSync(dir).filter((f) => existsSync(join(dir, f, 'main.go')));
  const stale = folders.filter((f) => !upToDate(outFor(f), [join(dir, f), join(dir, 'go.mod'), join(dir, 'go.sum'), goMdk]));
  const go = stale.length > 0 ? goCommand() : undefined;
  if (!go) return;
  try {
    execFileSync(go, ['mod', 'download'], { cwd: dir, env: goEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const why = ((e as { stderr?: Buffer }).stderr?.toString() ?? '').trim().split('\n')[0];
    process.stderr.write(`build-guests: Go guests of ${relative(root, dir)} skipped: go mod download failed (${why})\n`);
    return;
  }
  for (const f of stale) {
    const out = outFor(f);
    const flags = ['-buildmode=c-shared', '-buildvcs=false', '-trimpath', '-ldflags=-s -w', ...extraFlags(join(dir, f, 'main.go'))];
    run(go, ['build', ...flags, '-o', out, `./${f}`], relative(root, out), { cwd: dir, env: goEnv });
  }
}

// --- Rust with the Rust MDK (mdk/rust): the MDK as an rlib, each function a cdylib reactor --------

const rustc = '/usr/bin/rustc';
const rustMdkSrc = join(root, 'mdk/rust/src');
const rustMdkLib = join(root, 'build/mdk-rust/libcapsule.rlib');
let rustMdkBuilt: boolean | undefined;

function hasRust(): boolean {
  if (existsSync(rustc) && existsSync('/usr/lib/rustlib/wasm32-wasi')) return true;
  warn('rustc', 'Debian rustc or libstd-rust-dev-wasm32 is missing; Rust guests are not built');
  return false;
}

/** Builds build/mdk-rust/libcapsule.rlib from mdk/rust/src when needed; false when it is unusable. */
function buildRustMdk(): boolean {
  if (rustMdkBuilt !== undefined) return rustMdkBuilt;
  mkdirSync(dirname(rustMdkLib), { recursive: true });
  rustMdkBuilt = hasRust() && (upToDate(rustMdkLib, [rustMdkSrc]) || run(rustc, [
    '--target', 'wasm32-wasi', '--crate-type=rlib', '--crate-name=capsule', '--edition', '2021', '-C', 'opt-level=2',
    '-o', rustMdkLib, join(rustMdkSrc, 'lib.rs'),
  ], relative(root, rustMdkLib)));
  return rustMdkBuilt;
}

/** A Capsule function in Rust (`lib.rs` using the MDK): a reactor exporting libc's malloc and free. */
function buildRustFunction(src: string, out: string): void {
  if (!buildRustMdk() || upToDate(out, [src, rustMdkSrc])) return;
  run(rustc, [
    '--target', 'wasm32-wasi', '--crate-type=cdylib', '-C', 'opt-level=2', '--edition', '2021', '-C', 'strip=symbols',
    '--extern', `capsule=${rustMdkLib}`, '-C', 'link-arg=--export=malloc', '-C', 'link-arg=--export=free',
    ...extraFlags(src), '-o', out, src,
  ], relative(root, out));
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
    if (entry === 'conformance' || entry === 'meter') continue; // one module per source file, below
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

// test/fixtures/meter/<name>.wat|.c|.rs → build/fixtures/meter/<name>.wasm (meter.test.ts, bench/meter.ts)
const meterFixtures = join(fixtures, 'meter');
if (existsSync(meterFixtures)) {
  mkdirSync(join(outDir, 'meter'), { recursive: true });
  for (const entry of readdirSync(meterFixtures)) {
    const src = join(meterFixtures, entry);
    const out = join(outDir, 'meter', `${basename(entry, extname(entry))}.wasm`);
    if (entry.endsWith('.wat')) buildWat(src, out);
    else if (entry.endsWith('.c')) buildC([src], out);
    else if (entry.endsWith('.rs')) buildRust(src, out);
  }
}

// Go and Rust-MDK functions: examples/go/<name>/ (one Go module) → examples/go/<name>/<name>.wasm,
// examples/rust/<name>/lib.rs → examples/rust/<name>/<name>.wasm; test/fixtures/go/<name>/ and
// test/fixtures/rust/<name>/lib.rs → build/fixtures/go-<name>.wasm, rust-<name>.wasm.
for (const [base, out] of [[join(examples, 'go'), (f: string) => join(examples, 'go', f, `${f}.wasm`)], [join(fixtures, 'go'), (f: string) => join(outDir, `go-${f}.wasm`)]] as const) {
  if (existsSync(join(base, 'go.mod'))) buildGoModule(base, out);
}
for (const [base, out] of [[join(examples, 'rust'), (f: string) => join(examples, 'rust', f, `${f}.wasm`)], [join(fixtures, 'rust'), (f: string) => join(outDir, `rust-${f}.wasm`)]] as const) {
  if (!existsSync(base)) continue;
  for (const f of readdirSync(base)) if (existsSync(join(base, f, 'lib.rs'))) buildRustFunction(join(base, f, 'lib.rs'), out(f));
}

process.stderr.write(`build-guests: ${built} built${failed ? `, ${failed} FAILED` : ''}\n`);
process.exit(failed ? 1 : 0);
