/**
 * `capsule build`: builds a function project (one `capsule new` wrote, or any folder laid out
 * the same way, src/dev/project.ts) into `<name>.wasm` with the toolchain found on the machine.
 * `capsule serve --watch` calls `buildProject` when a source changes.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CapsuleError } from '../base/errors.ts';
import { PACKAGE_ROOT, readProject, type Language } from './project.ts';

/** A build that could not run (`reason: 'toolchain'`, the message names what to install) or failed (`'compile'`, with the compiler's output). */
export class BuildError extends CapsuleError {
  readonly reason: 'toolchain' | 'compile';
  constructor(reason: 'toolchain' | 'compile', message: string) {
    super('LOAD', message);
    this.name = 'BuildError';
    this.reason = reason;
  }
}

/** Options of `buildProject`. */
export interface BuildOptions {
  /** Where to write the module; default `<dir>/<name>.wasm`. */
  out?: string;
  /** Receives each command line before it runs (`$ clang …`) and the compilers' warnings. */
  log?: (text: string) => void;
  /** Cancels the build (the compiler is killed; the promise rejects). */
  signal?: AbortSignal;
}

/** A step: a program and its arguments, run in the project's folder. */
interface Step {
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Shown instead of `cmd` in the log (for `node …/asc.js`). */
  shown?: string;
}

/**
 * Builds the function project in `dir`: C with clang and wasi-libc (or `$WASI_SDK_PATH`), Rust
 * with Debian's `/usr/bin/rustc --target wasm32-wasi` (the MDK of `mdk/` as an rlib in `build/`,
 * then a cdylib reactor), Go with `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` (Go ≥
 * 1.24), AssemblyScript with the project's `node_modules` asc, WAT with wat2wasm (the project's
 * or this package's npm `wabt`, else the one on PATH). The module is written to a temporary file
 * beside `out` and renamed, so a watcher never sees half a module.
 * @param dir the project's folder
 * @returns the absolute path of the module written and the project's language
 * @throws CapsuleError USAGE when `dir` holds no project; BuildError `toolchain` (naming the
 *   Debian or npm package to install) or `compile` (with the compiler's output)
 */
export async function buildProject(dir: string, o: BuildOptions = {}): Promise<{ wasm: string; language: Language }> {
  const project = readProject(dir);
  const out = resolve(o.out ?? join(project.dir, `${project.name}.wasm`));
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}-${++builds}.tmp`);
  const steps = await STEPS[project.language](project.dir, tmp);
  mkdirSync(dirname(out), { recursive: true });
  try {
    for (const step of steps) await runStep(step, project.dir, o, (a) => (a === tmp ? out : a));
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { force: true });
  }
  return { wasm: out, language: project.language };
}

/** Builds started by this process: names each one's temporary module (two builds may overlap under a watcher). */
let builds = 0;

const STEPS: Record<Language, (dir: string, out: string) => Promise<Step[]>> = {
  c: async (dir, out) => {
    const sdk = process.env['WASI_SDK_PATH'];
    const clang = sdk ? join(sdk, 'bin/clang') : onPath('clang');
    const sysroot = sdk ? join(sdk, 'share/wasi-sysroot') : '/usr';
    if (!clang || !existsSync(clang) || !existsSync(sdk ? sysroot : '/usr/lib/wasm32-wasi')) {
      throw new BuildError('toolchain', sdk
        ? `WASI_SDK_PATH=${sdk} holds no bin/clang and share/wasi-sysroot (https://github.com/WebAssembly/wasi-sdk)`
        : `${clang ? 'wasi-libc is' : 'clang is'} not installed: C functions need clang and wasi-libc (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32; or set WASI_SDK_PATH to a wasi-sdk)`);
    }
    const sources = readdirSync(dir).filter((f) => f.endsWith('.c')).sort();
    return [{ cmd: clang, args: ['--target=wasm32-wasi', `--sysroot=${sysroot}`, '-O2', '-Wall', '-I', 'mdk', '-mexec-model=reactor', '-o', out, ...sources] }];
  },
  rust: async (dir, out) => {
    const rustc = '/usr/bin/rustc';
    if (!existsSync(rustc) || !existsSync('/usr/lib/rustlib/wasm32-wasi')) {
      throw new BuildError('toolchain', `${existsSync(rustc) ? 'the wasm32-wasi standard library is' : 'Debian\'s rustc is'} not installed: Rust functions need /usr/bin/rustc with wasm32-wasi (Debian: apt-get install rustc libstd-rust-dev-wasm32); with rustup and Cargo, build with cargo build --release instead (README.md)`);
    }
    const common = ['--target', 'wasm32-wasi', '--edition', '2021', '-C', 'opt-level=2'];
    const lib = join(dir, 'build/libcapsule.rlib');
    const mdk = join(dir, 'mdk/src');
    const steps: Step[] = [];
    if (!existsSync(lib) || newest(mdk) > statSync(lib).mtimeMs) {
      mkdirSync(dirname(lib), { recursive: true });
      steps.push({ cmd: rustc, args: [...common, '--crate-type=rlib', '--crate-name=capsule', '-o', 'build/libcapsule.rlib', 'mdk/src/lib.rs'] });
    }
    steps.push({ cmd: rustc, args: [...common, '--crate-type=cdylib', '-C', 'strip=symbols', '--extern', 'capsule=build/libcapsule.rlib', '-C', 'link-arg=--export=malloc', '-C', 'link-arg=--export=free', '-o', out, 'src/lib.rs'] });
    return steps;
  },
  go: async (_dir, out) => {
    const go = onPath('go') ?? (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
    const version = go ? await goVersion(go) : '';
    const m = /^go(\d+)\.(\d+)/.exec(version);
    if (!go || !m || (Number(m[1]) === 1 && Number(m[2]) < 24)) {
      throw new BuildError('toolchain', `${go ? `${version || 'this go'} is older than Go 1.24` : 'go is not installed'}: Go functions need Go 1.24 or newer for go:wasmexport (https://go.dev/dl; Debian: apt-get install golang-go when its version is 1.24+)`);
    }
    return [{
      cmd: go, args: ['build', '-buildmode=c-shared', '-buildvcs=false', '-trimpath', '-ldflags=-s -w', '-o', out, '.'],
      env: { ...process.env, GOOS: 'wasip1', GOARCH: 'wasm' },
    }];
  },
  assemblyscript: async (dir, out) => {
    const asc = join(dir, 'node_modules/assemblyscript/bin/asc.js');
    if (!existsSync(asc) || !existsSync(join(dir, 'node_modules/@capsule/mdk-assemblyscript'))) {
      throw new BuildError('toolchain', `the AssemblyScript compiler or MDK is not installed in ${dir}: run npm install there (its package.json lists the npm packages assemblyscript and @capsule/mdk-assemblyscript, from mdk/)`);
    }
    return [{ cmd: process.execPath, shown: 'asc', args: [asc, 'assembly/index.ts', '--config', 'asconfig.json', '--target', 'release', '-o', out] }];
  },
  wat: async (dir, out) => {
    const sources = readdirSync(dir).filter((f) => f.endsWith('.wat')).sort();
    if (sources.length > 1) throw new CapsuleError('USAGE', `${dir} holds ${sources.length} .wat files (${sources.join(', ')}): a WAT function is one module, one file`);
    const npm = [join(dir, 'node_modules/wabt/bin/wat2wasm'), join(PACKAGE_ROOT, 'node_modules/wabt/bin/wat2wasm')].find((p) => existsSync(p));
    if (npm) return [{ cmd: process.execPath, shown: 'wat2wasm', args: [npm, sources[0]!, '-o', out] }];
    const native = onPath('wat2wasm');
    if (!native) throw new BuildError('toolchain', 'wat2wasm is not installed: WAT functions need wabt (Debian: apt-get install wabt; or the npm package: npm i -D wabt in the project)');
    return [{ cmd: native, args: [sources[0]!, '-o', out] }];
  },
};

/** Runs one step; its command line and output go to `o.log`. @throws BuildError compile with the output when it fails */
function runStep(step: Step, cwd: string, o: BuildOptions, shownArg: (arg: string) => string): Promise<void> {
  // the log shows the module's final path, not the temporary one it is written to
  o.log?.(`$ ${[step.shown ?? step.cmd, ...(step.shown ? step.args.slice(1) : step.args).map(shownArg)].join(' ')}\n`);
  return new Promise((done, fail) => {
    execFile(step.cmd, step.args, { cwd, env: step.env, maxBuffer: 16 << 20, signal: o.signal }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`.trim();
      if (!err) {
        if (output) o.log?.(`${output}\n`);
        done();
        return;
      }
      if ((err as { name?: string }).name === 'AbortError') {
        fail(err);
        return;
      }
      const how = typeof err.code === 'number' ? `exited with ${err.code}` : err.message;
      const tail = output.length > 8000 ? `…${output.slice(-8000)}` : output;
      fail(new BuildError('compile', `build failed: ${step.shown ?? basename(step.cmd)} ${how}${tail ? `:\n${tail}` : ''}`));
    });
  });
}

/** An executable on PATH, or undefined. */
function onPath(name: string): string | undefined {
  for (const d of (process.env['PATH'] ?? '').split(':')) {
    const p = join(d || '.', name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `go env GOVERSION` (e.g. go1.26.8), or '' when it fails. */
function goVersion(go: string): Promise<string> {
  return new Promise((done) => execFile(go, ['env', 'GOVERSION'], (err, stdout) => done(err ? '' : stdout.trim())));
}

/** The newest modification time in a file tree (ms). */
function newest(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return readdirSync(path).reduce((m, e) => Math.max(m, newest(join(path, e))), st.mtimeMs);
}
