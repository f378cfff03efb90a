// WASI preview1 files through mounts (conventions.md §2): preopens, file operations inside a
// mount, the sandbox (.., absolute paths, symlinks leading out, read-only mounts, no mount),
// fd_readdir over many entries and the per-call fd cap. Guest: test/fixtures/wasi-fs.c; each
// command prints one line, "ERR <errno> <op>" on failure (wasi-libc errno = WASI errno:
// 20 EXIST, 32 LOOP, 33 MFILE, 44 NOENT, 69 ROFS, 76 NOTCAPABLE).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CapsuleFunction } from '../src/engine/function.ts';
import { parseDirGrant } from '../src/wasi/mounts.ts';
import type { CliOutput } from '../src/base/invocation.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const FS = `${root}build/fixtures/wasi-fs.wasm`;
const skip = existsSync(FS) ? false : 'build/fixtures/wasi-fs.wasm is missing: clang/wasi-libc are not installed (npm run setup)';

const base = mkdtempSync(join(tmpdir(), 'capsule-wasi-fs-'));
after(() => rmSync(base, { recursive: true, force: true }));
let counter = 0;

/**
 * A fresh tree: <t>/m (to be mounted) with a.txt, sub/b.txt, and host-made symlinks; <t>/outside
 * with secret.txt that no guest may read.
 */
function tree(): { t: string; m: string; outside: string } {
  const t = join(base, `t${++counter}`);
  const m = join(t, 'm');
  const outside = join(t, 'outside');
  mkdirSync(join(m, 'sub'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret.txt'), 'TOP-SECRET');
  writeFileSync(join(m, 'a.txt'), 'alpha');
  writeFileSync(join(m, 'sub', 'b.txt'), 'bravo');
  symlinkSync('../outside', join(m, 'out'));             // directory symlink leading out
  symlinkSync('../../outside/secret.txt', join(m, 'sub', 'up')); // final-component symlink leading out
  symlinkSync(outside, join(m, 'abs'));                   // absolute target
  symlinkSync('out', join(m, 'chain'));                   // symlink to a symlink leading out
  symlinkSync('sub/../a.txt', join(m, 'inner'));          // stays inside: allowed
  symlinkSync('loop2', join(m, 'loop1'));
  symlinkSync('loop1', join(m, 'loop2'));
  return { t, m, outside };
}

/** Runs wasi-fs with the given `--dir` grants (relative to `cwd`); commands are joined with ",". */
async function guest(grants: string[], commands: string[][], cwd = base): Promise<{ lines: string[]; out: CliOutput; stderr: string }> {
  const f = await CapsuleFunction.load({ path: FS }, { stdio: 'capture', workers: 1, mounts: grants.map((g) => parseDirGrant(g, cwd)) });
  try {
    const args = commands.flatMap((c, i) => (i === 0 ? c : [',', ...c]));
    const r = await f.invoke({ type: 'cli', args, stdin: new Uint8Array(0) });
    const stdout = r.logs?.stdout ?? '';
    return { lines: stdout.split('\n').filter((l) => l !== ''), out: r.output as CliOutput, stderr: r.logs?.stderr ?? '' };
  } finally {
    await f.close();
  }
}

test('preopens: one fd per grant, named by its guest path', { skip }, async () => {
  const { t, m } = tree();
  mkdirSync(join(t, 'data'));
  const { lines } = await guest(['.', './data', `${m}:/srv/files:ro`], [['prestat']], t);
  assert.deepEqual(lines, [`PRESTAT 3=/ 4=/data 5=/srv/files`]);
});

test('files inside a mount: create, read, append, list, stat, rename, link, remove', { skip }, async () => {
  const { m } = tree();
  const { lines } = await guest([`${m}:/`], [
    ['cat', 'a.txt'],
    ['cat', '/sub/b.txt'],
    ['write', 'new.txt', 'fresh content'],
    ['cat', 'new.txt'],
    ['create-excl', 'new.txt', 'again'],
    ['append', 'log.txt'],
    ['mkdir', 'dir1'],
    ['mkdir', 'dir1'],
    ['write', 'dir1/inside.txt', 'x'],
    ['rmdir', 'dir1'],
    ['rm', 'dir1/inside.txt'],
    ['rmdir', 'dir1'],
    ['stat', 'sub'],
    ['stat', 'a.txt'],
    ['mv', 'new.txt', 'sub/moved.txt'],
    ['ln', 'a.txt', 'hard.txt'],
    ['stat', 'hard.txt'],
    ['symlink', 'sub/b.txt', 'tob'],
    ['readlink', 'tob'],
    ['cat', 'tob'],
    ['cat', 'inner'],
    ['lstat', 'tob'],
    ['rm', 'tob'],
    ['seek', 'seek.bin'],
    ['utimes', 'a.txt'],
    ['cat', 'missing.txt'],
  ]);
  assert.deepEqual(lines, [
    'DATA alpha',
    'DATA bravo',
    'OK wrote 13',
    'DATA fresh content',
    'ERR 20 open',
    'DATA xyz',
    'OK',
    'ERR 20 mkdir',
    'OK wrote 1',
    'ERR 55 rmdir',
    'OK',
    'OK',
    'STAT dir size=' + statSync(join(m, 'sub')).size + ' nlink=' + statSync(join(m, 'sub')).nlink + ' ino=set',
    'STAT file size=5 nlink=1 ino=set',
    'OK',
    'OK',
    'STAT file size=5 nlink=2 ino=set',
    'OK',
    'LINK sub/b.txt',
    'DATA bravo',
    'DATA alpha',
    'STAT link size=9 nlink=1 ino=set',
    'OK',
    'SEEK end=10 at=3 read=345 after=6 fromEnd=8 tail=89 pread=AB2 pos=10 size=4 bad=-1/28',
    'MTIME 1234567890.500000000',
    'ERR 44 open',
  ]);
  // The host sees what the guest did.
  assert.equal(readFileSync(join(m, 'sub', 'moved.txt'), 'utf8'), 'fresh content');
  assert.equal(readFileSync(join(m, 'log.txt'), 'utf8'), 'xyz');
  assert.equal(existsSync(join(m, 'new.txt')), false);
  assert.equal(existsSync(join(m, 'dir1')), false);
  assert.equal(statSync(join(m, 'hard.txt')).ino, statSync(join(m, 'a.txt')).ino);
  assert.equal(readFileSync(join(m, 'seek.bin'), 'utf8'), 'AB23');
  assert.equal(Math.floor(statSync(join(m, 'a.txt')).mtimeMs / 1000), 1234567890);
});

test('descriptors: fdstat types and rights, read-only fds, fsync, fd_renumber', { skip }, async () => {
  const { m } = tree();
  const { lines } = await guest([`${m}:/`], [['fdops', 'a.txt', 'sub/b.txt', 'sub']]);
  // filetype 4 = regular file, 3 = directory; "wr" = FD_WRITE and FD_READ rights; 8 = BADF, 31 = ISDIR
  assert.deepEqual(lines, [
    'FDSTAT ro=4-r rw=4wr dir=3-- readdir=1 write-ro=-1/8 fsync=0 fdatasync=0 read-dir=-1/31 renumber=0 read-renumbered=5:alpha read-old=-1/8 renumber-bad=8 close-twice=8',
  ]);
});

test('".." cannot climb above the mount root', { skip }, async () => {
  const { m } = tree();
  const { lines } = await guest([`${m}:/`], [
    ['cat', '../outside/secret.txt'],
    ['cat', 'sub/../../outside/secret.txt'],
    ['raw-open', '3', '../outside/secret.txt'],
    ['raw-open', '3', 'sub/../../outside/secret.txt'],
    ['raw-open', '3', 'sub/../a.txt'],
    ['write', '../outside/planted.txt', 'x'],
    ['raw-open', '3', '../outside/planted2.txt', 'w'],
  ]);
  assert.deepEqual(lines.map((l) => l.replace(/^(ERR \d+).*/, '$1')), [
    'ERR 76', 'ERR 76',
    'RAW 76', 'RAW 76', 'RAW 0 read=0 alpha', 'ERR 76', 'RAW 76',
  ]);
  assert.equal(existsSync(join(m, '..', 'outside', 'planted2.txt')), false);
  assert.equal(existsSync(join(m, '..', 'outside', 'planted.txt')), false);
});

test('absolute host paths do not reach the host', { skip }, async () => {
  const { m, outside } = tree();
  const secret = join(outside, 'secret.txt');
  const { lines } = await guest([`${m}:/data`], [
    ['cat', secret],
    ['raw-open', '3', secret],
    ['raw-open', '3', '/data/a.txt'],
    ['cat', '/data/a.txt'],
  ]);
  assert.deepEqual(lines, ['ERR 76 open', 'RAW 76', 'RAW 76', 'DATA alpha']);
});

test('symlinks leading out of the mount are refused, wherever they are in the path', { skip }, async () => {
  const { m, outside } = tree();
  const { lines } = await guest([`${m}:/`], [
    ['cat', 'out/secret.txt'],
    ['cat', 'sub/up'],
    ['cat', 'abs/secret.txt'],
    ['cat', 'chain/secret.txt'],
    ['raw-open', '3', 'out/secret.txt'],
    ['raw-open', '3', 'sub/up'],
    ['raw-open', '3', 'abs/secret.txt'],
    ['stat', 'sub/up'],
    ['lstat', 'sub/up'],
    ['readlink', 'out'],
    ['write', 'out/planted.txt', 'x'],
    ['mkdir', 'out/planted-dir'],
    ['rm', 'out/secret.txt'],
    ['mv', 'out/secret.txt', 'stolen.txt'],
    // link() does not follow: this hard-links the symlink itself, which still cannot be followed out
    ['ln', 'sub/up', 'hard-up'],
    ['cat', 'hard-up'],
    ['cat', 'loop1'],
    ['ls', 'out'],
    ['raw-open', '3', 'sub/up', 'n'],
    ['cat', 'inner'],
  ]);
  assert.deepEqual(lines.map((l) => l.replace(/^(ERR \d+).*/, '$1')), [
    'ERR 76', 'ERR 76', 'ERR 76', 'ERR 76',
    'RAW 76', 'RAW 76', 'RAW 76',
    'ERR 76', 'STAT link size=24 nlink=1 ino=set', 'LINK ../outside',
    'ERR 76', 'ERR 76', 'ERR 76', 'ERR 76', 'OK', 'ERR 76',
    'ERR 32',
    'ERR 76',
    'RAW 32', // O_NOFOLLOW on a symlink
    'DATA alpha',
  ]);
  assert.deepEqual(readdirSync(outside), ['secret.txt']);
  assert.equal(readFileSync(join(outside, 'secret.txt'), 'utf8'), 'TOP-SECRET');
});

test('a guest cannot create a symlink that points out of its mount', { skip }, async () => {
  const { m } = tree();
  const { lines } = await guest([`${m}:/`], [
    ['symlink', '../outside/secret.txt', 'evil1'],
    ['symlink', '/etc/passwd', 'evil2'],
    ['symlink', '../../outside', 'sub/evil3'],
    ['symlink', 'sub/../../outside', 'evil4'],
    ['symlink', '../a.txt', 'sub/fine'],
    ['cat', 'sub/fine'],
  ]);
  assert.deepEqual(lines.map((l) => l.replace(/^(ERR \d+).*/, '$1')), ['ERR 76', 'ERR 76', 'ERR 76', 'ERR 76', 'OK', 'DATA alpha']);
  for (const p of ['evil1', 'evil2', 'sub/evil3', 'evil4']) assert.equal(lstatSync(join(m, p), { throwIfNoEntry: false }), undefined, p);
  assert.equal(readlinkSync(join(m, 'sub', 'fine')), '../a.txt');
});

test('a read-only mount refuses every change with ROFS and still reads', { skip }, async () => {
  const { m } = tree();
  const before = readdirSync(m).sort();
  const { lines } = await guest([`${m}:/data:ro`], [
    ['cat', '/data/a.txt'],
    ['write', '/data/a.txt', 'overwrite'],
    ['write', '/data/new.txt', 'x'],
    ['append', '/data/a.txt'],
    ['mkdir', '/data/d'],
    ['rm', '/data/a.txt'],
    ['rmdir', '/data/sub'],
    ['mv', '/data/a.txt', '/data/z.txt'],
    ['ln', '/data/a.txt', '/data/h.txt'],
    ['symlink', 'a.txt', '/data/l'],
    ['truncate', '/data/a.txt', '1'],
    ['utimes', '/data/a.txt'],
    ['raw-open', '3', 'x.txt', 'w'],
    ['ls', '/data/sub'],
  ]);
  assert.deepEqual(lines.map((l) => l.replace(/^(ERR \d+).*/, '$1')), [
    'DATA alpha', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69', 'ERR 69',
    'RAW 69', 'LS b.txt:f up:l count=2 zero_ino=0',
  ]);
  assert.deepEqual(readdirSync(m).sort(), before);
  assert.equal(readFileSync(join(m, 'a.txt'), 'utf8'), 'alpha');
});

test('with no mount nothing of the host file system is visible', { skip }, async () => {
  const { lines } = await guest([], [['prestat'], ['cat', '/etc/hostname'], ['cat', 'a.txt'], ['raw-open', '3', 'etc/hostname'], ['ls', '/']]);
  assert.deepEqual(lines.map((l) => l.replace(/^(ERR \d+).*/, '$1')), ['PRESTAT', 'ERR 76', 'ERR 76', 'RAW 8', 'ERR 76']);
});

test('nested mounts: the longest guest path wins', { skip }, async () => {
  const { t, m } = tree();
  const other = join(t, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'a.txt'), 'from other');
  const { lines } = await guest([`${m}:/`, `${other}:/sub`], [['cat', '/a.txt'], ['cat', '/sub/a.txt'], ['cat', '/sub/b.txt']]);
  assert.deepEqual(lines.map((l) => l.replace(/^(ERR \d+).*/, '$1')), ['DATA alpha', 'DATA from other', 'ERR 44']);
});

test('fd_readdir: every entry once, types and inodes set, cookies resume (telldir/seekdir)', { skip }, async () => {
  const { m } = tree();
  const big = join(m, 'big');
  mkdirSync(big);
  const names: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const name = `entry-${i}-${'x'.repeat(i % 200)}`; // lengths 9..212: many buffer refills
    names.push(name);
    writeFileSync(join(big, name), '');
  }
  const small = join(m, 'small');
  mkdirSync(small);
  const smallNames: string[] = [];
  for (let i = 0; i < 300; i++) {
    const name = i % 10 === 0 ? `d${i}` : `f${i}.txt`;
    smallNames.push(name);
    if (i % 10 === 0) mkdirSync(join(small, name));
    else writeFileSync(join(small, name), 'x');
  }
  symlinkSync('f1.txt', join(small, 'link'));
  const { lines } = await guest([`${m}:/`], [['count', 'big'], ['ls', 'small']]);
  assert.equal(lines[0], 'COUNT 3002 seekdir=ok rewind=3002');
  const ls = lines[1]!.split(' ');
  assert.equal(ls[0], 'LS');
  assert.equal(ls.at(-1), 'zero_ino=0');
  assert.equal(ls.at(-2), 'count=301');
  const seen = ls.slice(1, -2);
  const want = [...smallNames.map((n) => `${n}:${n.startsWith('d') ? 'd' : 'f'}`), 'link:l'];
  assert.deepEqual([...seen].sort(), want.sort());
});

test('a guest opening 5000 files is capped at 1024 per call and leaks nothing across calls', { skip }, async () => {
  const { m } = tree();
  const fdCount = () => readdirSync('/proc/self/fd').length;
  const f = await CapsuleFunction.load({ path: FS }, { stdio: 'capture', workers: 1, mounts: [parseDirGrant(`${m}:/`)] });
  try {
    const run = async () => (await f.invoke({ type: 'cli', args: ['openmany', '5000', 'a.txt'], stdin: new Uint8Array(0) })).logs?.stdout;
    assert.equal(await run(), 'OPENED 1024 errno=33\n');
    const hasProc = existsSync('/proc/self/fd');
    const before = hasProc ? fdCount() : 0;
    assert.equal(await run(), 'OPENED 1024 errno=33\n', 'the second call may open as many: the first call\'s fds were closed');
    assert.equal(await run(), 'OPENED 1024 errno=33\n');
    if (hasProc) assert.ok(fdCount() <= before + 8, `host fds grew from ${before} to ${fdCount()}`);
  } finally {
    await f.close();
  }
});

const KEEP = `${root}build/fixtures/gen2-keep-file.wasm`;
test('--reuse: a file the guest opened in one call is still open in the next; a fresh instance has none', { skip: existsSync(KEEP) ? false : 'build/fixtures/gen2-keep-file.wasm is missing' }, async () => {
  const { m } = tree();
  writeFileSync(join(m, 'letters.txt'), 'abcdefghij');
  const cli = (text: string) => ({ type: 'cli' as const, params: new TextEncoder().encode(text), args: [] });
  const answer = (r: { output: unknown }) => {
    const o = r.output as CliOutput;
    return `${o.exitCode} ${new TextDecoder().decode(o.text)}`;
  };
  const reused = await CapsuleFunction.load({ path: KEEP }, { reuse: true, workers: 1, mounts: [parseDirGrant(`${m}:/data`)] });
  try {
    assert.equal(answer(await reused.invoke(cli('open:/data/letters.txt'))), '0 opened');
    assert.equal(answer(await reused.invoke(cli('read'))), '0 abcde');
    assert.equal(answer(await reused.invoke(cli('read'))), '0 fghij');
    assert.equal(answer(await reused.invoke(cli('read'))), '0 ');
  } finally {
    await reused.close();
  }
  const fresh = await CapsuleFunction.load({ path: KEEP }, { workers: 1, mounts: [parseDirGrant(`${m}:/data`)] });
  try {
    assert.equal(answer(await fresh.invoke(cli('open:/data/letters.txt'))), '0 opened');
    assert.equal(answer(await fresh.invoke(cli('read'))), '1 nothing open');
  } finally {
    await fresh.close();
  }
});

test('a call stopped at its deadline leaves no host file open behind it', { skip: existsSync(KEEP) ? false : 'build/fixtures/gen2-keep-file.wasm is missing' }, async () => {
  const { m } = tree();
  writeFileSync(join(m, 'held.txt'), 'held');
  const openFiles = () => readdirSync('/proc/self/fd').length;
  const fn = await CapsuleFunction.load({ path: KEEP }, { workers: 1, timeoutMs: 200, mounts: [parseDirGrant(`${m}:/data`)] });
  try {
    const cli = (text: string) => ({ type: 'cli' as const, params: new TextEncoder().encode(text), args: [] });
    await fn.invoke(cli('read')); // the worker and its instance exist before counting
    const before = openFiles();
    for (let i = 0; i < 4; i++) {
      await assert.rejects(fn.invoke(cli('hang:/data/held.txt')), (e: unknown) => (e as { code?: string }).code === 'TIMEOUT');
    }
    await fn.invoke(cli('read')); // a new worker answers
    // Node closes the raw fds of a worker that exits (Worker option trackUnmanagedFds, on by
    // default): the killed workers' files are closed once they have exited
    const deadline = Date.now() + 5000;
    while (openFiles() > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(openFiles() <= before, `${openFiles() - before} file(s) left open by stopped calls`);
  } finally {
    await fn.close();
  }
});
