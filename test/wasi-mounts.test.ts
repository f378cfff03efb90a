// The shared path resolver (src/wasi/mounts.ts) that WASI and the file host functions use:
// `--dir` grants, guest paths through the mount table, and the sandbox rules (conventions.md §2),
// against real temporary directories.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDirGrant, resolveAt, resolveInMounts, type Follow } from '../src/wasi/mounts.ts';
import { type Mount } from '../src/base/settings.ts';
import { Errno } from '../src/wasi/errno.ts';
import { CapsuleError } from '../src/base/errors.ts';

const base = realpathSync(mkdtempSync(join(tmpdir(), 'capsule-mounts-')));
after(() => rmSync(base, { recursive: true, force: true }));
const app = join(base, 'app');
const data = join(base, 'data');
const outside = join(base, 'outside');
for (const d of [join(app, 'sub'), data, outside]) mkdirSync(d, { recursive: true });
writeFileSync(join(app, 'a.txt'), 'a');
writeFileSync(join(data, 'd.txt'), 'd');
writeFileSync(join(outside, 'secret'), 's');
symlinkSync('../outside/secret', join(app, 'escape'));
symlinkSync('sub', join(app, 'tosub'));
symlinkSync(join(app, 'a.txt'), join(app, 'absolute'));
symlinkSync('../../outside', join(app, 'sub', 'up'));

const mounts: Mount[] = [parseDirGrant('.', app), parseDirGrant(`${data}:/data:ro`)];

/** Resolves through the mounts and gives the host path it names (the descriptor's place + name). */
function hostOf(r: ReturnType<typeof resolveInMounts>): string {
  assert.ok(r.ok, r.ok ? undefined : r.message);
  const dir = readlinkSync(`/proc/self/fd/${r.dir}`);
  r.release();
  return r.name === '' ? dir : join(dir, r.name);
}

/** resolveAt from a descriptor on `dir` (closed afterwards). */
function at(dir: string, path: string, follow: Follow): ReturnType<typeof resolveAt> & { host?: string } {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const r = resolveAt({ mount: mounts[0]!, fd }, path, follow);
    if (!r.ok) return r;
    const d = readlinkSync(`/proc/self/fd/${r.dir}`);
    r.release();
    return { ...r, host: r.name === '' ? d : join(d, r.name) };
  } finally {
    closeSync(fd);
  }
}

test('parseDirGrant: guest path defaults to the host path as written; :ro', () => {
  assert.deepEqual(
    { ...parseDirGrant('./data', base) },
    { hostPath: data, guestPath: '/data', readOnly: false, spec: './data' },
  );
  assert.equal(parseDirGrant('.', app).guestPath, '/');
  assert.equal(parseDirGrant(`${data}:/srv:ro`).readOnly, true);
  assert.throws(() => parseDirGrant(join(base, 'nope')), (e: CapsuleError) => e.code === 'USAGE');
});

test('resolveInMounts: longest guest prefix wins; relative paths resolve against /', () => {
  assert.equal(hostOf(resolveInMounts(mounts, '/sub/../a.txt')), join(app, 'a.txt'));
  const r2 = resolveInMounts(mounts, 'data/d.txt');
  assert.ok(r2.ok && r2.mount.guestPath === '/data');
  assert.equal(hostOf(r2), join(data, 'd.txt'));
  const r3 = resolveInMounts(mounts, '/tosub/new.txt', { write: true });
  assert.ok(r3.ok && r3.stat === null, 'a missing last component is not an error');
  assert.equal(hostOf(r3), join(app, 'sub', 'new.txt'));
});

test('resolveInMounts: .. is walked from the mount it starts in and refused at its root, naming its guest path', () => {
  const r = resolveInMounts(mounts, '/data/../a.txt');
  assert.ok(!r.ok);
  assert.equal(r.errno, Errno.NOTCAPABLE);
  assert.equal(r.message, '/data/../a.txt: climbs above the mount root /data');
});

test('resolveInMounts: what follows the mount is walked as written (a trailing /. wants a directory)', () => {
  const r = resolveInMounts(mounts, '/data/d.txt/.');
  assert.ok(!r.ok && r.errno === Errno.NOTDIR, r.ok ? 'resolved' : r.message);
  assert.equal(hostOf(resolveInMounts(mounts, '/data/./')), data);
  assert.equal(hostOf(resolveInMounts(mounts, 'data')), data);
});

test('resolveInMounts: read-only mounts refuse writes, naming the grant by its guest path only', () => {
  const r = resolveInMounts(mounts, '/data/d.txt', { write: true });
  assert.ok(!r.ok);
  assert.equal(r.errno, Errno.ROFS);
  assert.equal(r.message, '/data/d.txt: the mount /data is read-only');
  hostOf(resolveInMounts(mounts, '/data/d.txt'));
});

test('resolveInMounts: no grant → a message naming the missing --dir', () => {
  const r = resolveInMounts([], '/etc/passwd');
  assert.ok(!r.ok);
  assert.equal(r.errno, Errno.NOTCAPABLE);
  assert.match(r.message, /\/etc\/passwd: no --dir grant covers this path .*add --dir HOST:\/etc/);
  const only = resolveInMounts([mounts[1]!], '/var/x');
  assert.ok(!only.ok && /granted: \/data/.test(only.message));
});

test('resolveInMounts: symlinks out of the mount are refused, final or not', () => {
  for (const p of ['/escape', '/absolute', '/sub/up/secret', '/tosub/up/secret']) {
    const r = resolveInMounts(mounts, p);
    assert.ok(!r.ok, p);
    assert.equal(r.errno, Errno.NOTCAPABLE, p);
    assert.match(r.message, new RegExp(`^${p.replace(/\//g, '\\/')}: `), p);
    assert.ok(!r.message.includes(base), r.message);
  }
  const noFollow = resolveInMounts(mounts, '/escape', { follow: false });
  assert.ok(noFollow.ok && noFollow.stat?.isSymbolicLink(), 'the link itself may be looked at (lstat, unlink)');
  assert.equal(hostOf(noFollow), join(app, 'escape'));
});

test('resolveAt: .. above the starting directory, absolute paths, NUL, loops, over-long names', () => {
  const up = at(app, '../outside/secret', true);
  assert.ok(!up.ok && up.errno === Errno.NOTCAPABLE);
  const fromSub = at(join(app, 'sub'), '../a.txt', true);
  assert.ok(!fromSub.ok && fromSub.errno === Errno.NOTCAPABLE, 'a descriptor grants what is below it');
  const down = at(app, 'sub/../a.txt', true);
  assert.ok(down.ok && down.host === join(app, 'a.txt'));
  const abs = at(app, join(outside, 'secret'), true);
  assert.ok(!abs.ok && abs.errno === Errno.NOTCAPABLE);
  const nul = at(app, 'a.txt\0x', true);
  assert.ok(!nul.ok && nul.errno === Errno.INVAL);
  const notDir = at(app, 'a.txt/x', true);
  assert.ok(!notDir.ok && notDir.errno === Errno.NOTDIR);
  const dotAfterFile = at(app, 'a.txt/.', true);
  assert.ok(!dotAfterFile.ok && dotAfterFile.errno === Errno.NOTDIR);
  const missing = at(app, 'nope/x', true);
  assert.ok(!missing.ok && missing.errno === Errno.NOENT);
  symlinkSync('l2', join(app, 'l1'));
  symlinkSync('l1', join(app, 'l2'));
  const loop = at(app, 'l1', true);
  assert.ok(!loop.ok && loop.errno === Errno.LOOP);
  const dot = at(app, 'sub/.', true);
  assert.ok(dot.ok && dot.name === '' && dot.host === join(app, 'sub') && dot.stat?.isDirectory());
  const long = at(app, 'x'.repeat(256), true);
  assert.ok(!long.ok && long.errno === Errno.NAMETOOLONG);
  const longer = at(app, 'a/'.repeat(2048), true);
  assert.ok(!longer.ok && longer.errno === Errno.NAMETOOLONG);
  const never = at(app, 'tosub/', 'never');
  assert.ok(never.ok && never.stat?.isSymbolicLink(), "'never' does not follow a last symlink, even before a /");
});
