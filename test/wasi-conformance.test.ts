// WASI preview1 conformance against Linux. Each probe of test/fixtures/conformance/ (C with
// wasi-libc, Rust with std) runs twice: natively, compiled here from the same source with the
// host compiler, and under `capsule run` (built by scripts/build-guests.ts), each in its own fresh
// scratch directory. A probe prints one line per step, the result or the errno name; the two runs
// must print the same lines and leave the same files behind. Lines starting with "!" exist only in
// the wasm build (WASI rights and capabilities, which Linux has no counterpart for) and are checked
// against WASI_ONLY below.
//
// Not compared, for sandbox reasons (a Capsule guest sees only its grant, Linux sees the host):
// absolute paths (`/x` names the host's root natively, the grant's root or nothing under WASI),
// `..` above the directory a descriptor names (allowed on Linux; a WASI directory descriptor is a
// capability), and anything about stdio (natively a socket pair from this test, under Capsule
// not a host file). The probes keep those out of the compared lines; the capability rules are in
// the "!" lines. Times are printed as "set", "kept" or "now", never as values.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary, missing, root, runCapsule } from './helpers.ts';

const SRC = join(root, 'test/fixtures/conformance');
const BUILT = join(root, 'build/fixtures/conformance');
const work = mkdtempSync(join(tmpdir(), 'capsule-conformance-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Host compilers: the same ones (and, for Rust, the same Debian rustc) as the wasm builds. */
const cc = findBinary('cc') ?? findBinary('clang');
const rustc = existsSync('/usr/bin/rustc') ? '/usr/bin/rustc' : findBinary('rustc');

/**
 * What the wasm build prints on the "!" lines: WASI rights (conformance suite truncation_rights,
 * fd_fdstat_set_rights) and the capability of a directory descriptor (interesting_paths).
 */
const WASI_ONLY: Record<string, Record<string, string>> = {
  fd_filestat_set: {
    'rights.file_has_set_size': 'yes',
    'rights.set_size_without_right': 'ENOTCAPABLE',
    'rights.set_times_without_right': 'ENOTCAPABLE',
    'rights.regain_dropped_right': 'ENOTCAPABLE',
    'rights.read_only_fd_has_set_size': 'no',
    'rights.directory_has_fd_set_size': 'no',
    'rights.directory_has_path_set_size': 'yes',
    'rights.trunc_without_path_set_size': 'ENOTCAPABLE',
    'rights.open_without_trunc_still_works': 'OK',
  },
  fd_fdstat_set_flags: {
    'rights.set_flags_without_right': 'ENOTCAPABLE',
    'rights.flags_unchanged': '-',
  },
  interesting_paths: {
    'beneath.dotdot_above_dirfd': 'ENOTCAPABLE',
    'beneath.dotdot_to_dirfd_itself': 'ENOTCAPABLE',
    'beneath.absolute_path': 'ENOTCAPABLE',
    'beneath.double_slash_root': 'ENOTCAPABLE',
    'beneath.trailing_nul': 'refused',
  },
};

/** The probes: C sources (wasi-libc) and Rust sources (std). */
const probes = readdirSync(SRC).filter((f) => f.endsWith('.c') || f.endsWith('.rs')).sort();

/**
 * Builds the native twin of a probe into the work directory with `compiler` (cc or rustc).
 * @returns the executable @throws the compiler's failure, with its output
 */
function buildNative(source: string, compiler: string): string {
  const out = join(work, 'bin', source.replace(/\.(c|rs)$/, ''));
  mkdirSync(join(work, 'bin'), { recursive: true });
  const args = source.endsWith('.c') ? ['-O1', '-Wall'] : ['--edition', '2021', '-C', 'opt-level=1'];
  execFileSync(compiler, [...args, '-o', out, join(SRC, source)], { stdio: 'pipe' });
  return out;
}

/** A fresh empty scratch directory. */
function scratch(label: string): string {
  return mkdtempSync(join(work, `${label}-`));
}

/**
 * Everything a probe left in `dir`, one line per entry in name order: relative path, kind, and
 * the content of files / target of symlinks (times and inode numbers differ between runs).
 */
function tree(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, p));
    if (st.isSymbolicLink()) out.push(`${p} -> ${readlinkSync(join(dir, p))}`);
    else if (st.isDirectory()) out.push(`${p}/`, ...tree(dir, p));
    else out.push(`${p} nlink=${st.nlink} ${JSON.stringify(readFileSync(join(dir, p), 'latin1'))}`);
  }
  return out;
}

/** Splits probe output into steps (`name: result`), keeping their order. */
function steps(stdout: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const i = line.indexOf(': ');
    assert.ok(i > 0, `not a step line: ${JSON.stringify(line)}`);
    const name = line.slice(0, i);
    assert.ok(!m.has(name), `step printed twice: ${name}`);
    m.set(name, line.slice(i + 2));
  }
  return m;
}

/**
 * Every way the Capsule run differs from the native one, one line each: steps whose results
 * differ ("step: Linux … , Capsule …"), WASI-only steps ("!step: expected …"), and entries of
 * the files left behind that only one run has.
 */
function differences(native: { stdout: string; dir: string }, guest: { stdout: string; dir: string }, wasiOnly: Record<string, string>): string[] {
  const linux = steps(native.stdout);
  assert.ok(linux.size > 0 && ![...linux.keys()].some((k) => k.startsWith('!')), 'the native build prints the compared steps only');
  const capsule = steps(guest.stdout);
  const diff: string[] = [];
  for (const [name, want] of linux) {
    const got = capsule.get(name);
    if (got !== want) diff.push(`${name}: Linux "${want}", Capsule ${got === undefined ? 'printed nothing' : `"${got}"`}`);
  }
  for (const [name, got] of capsule) {
    if (name.startsWith('!')) {
      const want = wasiOnly[name.slice(1)];
      if (got !== want) diff.push(`${name}: expected ${want === undefined ? 'no such step' : `"${want}"`}, Capsule "${got}"`);
    } else if (!linux.has(name)) diff.push(`${name}: only Capsule printed it`);
  }
  for (const name of Object.keys(wasiOnly)) if (!capsule.has(`!${name}`)) diff.push(`!${name}: Capsule printed nothing`);
  const [linuxTree, capsuleTree] = [tree(native.dir), tree(guest.dir)];
  for (const entry of linuxTree) if (!capsuleTree.includes(entry)) diff.push(`file state: Linux has ${entry}`);
  for (const entry of capsuleTree) if (!linuxTree.includes(entry)) diff.push(`file state: Capsule has ${entry}`);
  return diff;
}

for (const source of probes) {
  const name = source.replace(/\.(c|rs)$/, '');
  const wasm = join(BUILT, `${name}.wasm`);
  const compiler = source.endsWith('.c') ? cc : rustc;
  const skip = missing(wasm) || (compiler ? false : `no host ${source.endsWith('.c') ? 'C compiler (cc, clang)' : 'rustc'} to build the native twin of ${source}`);

  test(`${name}: Capsule gives the errnos and file states Linux gives`, { skip }, async () => {
    const exe = buildNative(source, compiler ?? '');
    const nativeDir = scratch(`${name}-linux`);
    const native = spawnSync(exe, [nativeDir], { encoding: 'utf8' });
    assert.equal(native.status, 0, `native ${name} failed: ${native.stderr}${native.stdout}`);

    const guestDir = scratch(`${name}-capsule`);
    const run = await runCapsule(['run', '--no-inherit-env', '--dir', `${guestDir}:/sandbox`, '--wasm', wasm, '--', '/sandbox']);
    assert.equal(run.code, 0, `capsule run ${name} failed: ${run.stderr}${run.stdout}`);

    const diff = differences({ stdout: native.stdout, dir: nativeDir }, { stdout: run.stdout, dir: guestDir }, WASI_ONLY[name] ?? {});
    assert.deepEqual(diff, [], `${diff.length} difference(s) from Linux:\n  ${diff.join('\n  ')}`);
  });
}
