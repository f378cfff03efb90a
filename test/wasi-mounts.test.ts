// The shared path resolver (src/wasi/mounts.ts) that WASI and the file host functions use:
// `--dir` grants, guest paths through the mount table, and the sandbox rules (conventions.md §2),
// against real temporary directories.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDirGrant, resolveBeneath, resolveInMounts, type Mount } from '../src/wasi/mounts.ts';
import { Errno } from '../src/wasi/errno.ts';
import { CapsuleError } from '../src/engine/errors.ts';

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
  const r1 = resolveInMounts(mounts, '/sub/../a.txt');
  assert.ok(r1.ok);
  assert.equal(r1.hostPath, join(app, 'a.txt'));
  assert.equal(r1.exists, true);
  const r2 = resolveInMounts(mounts, 'data/d.txt');
  assert.ok(r2.ok);
  assert.equal(r2.hostPath, join(data, 'd.txt'));
  assert.equal(r2.mount.guestPath, '/data');
  const r3 = resolveInMounts(mounts, '/tosub/new.txt', { write: true });
  assert.ok(r3.ok);
  assert.equal(r3.hostPath, join(app, 'sub', 'new.txt'));
  assert.equal(r3.exists, false);
});

test('resolveInMounts: read-only mounts refuse writes, naming the grant', () => {
  const r = resolveInMounts(mounts, '/data/d.txt', { write: true });
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.errno === Errno.ROFS && r.message.includes(`${data}:/data:ro`) && r.message.includes('read-only'), JSON.stringify(r));
  assert.ok(resolveInMounts(mounts, '/data/d.txt').ok);
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
  }
  const noFollow = resolveInMounts(mounts, '/escape', { follow: false });
  assert.ok(noFollow.ok, 'the link itself may be looked at (lstat, unlink)');
  assert.equal(noFollow.hostPath, join(app, 'escape'));
});

test('resolveBeneath: .. above the base mount root, absolute paths, NUL, loops', () => {
  const m = mounts[0]!;
  const up = resolveBeneath(m, [], '../outside/secret', true);
  assert.ok(!up.ok && up.errno === Errno.NOTCAPABLE);
  const fromSub = resolveBeneath(m, ['sub'], '../a.txt', true);
  assert.ok(fromSub.ok && fromSub.host === join(app, 'a.txt'));
  const twoUp = resolveBeneath(m, ['sub'], '../../x', true);
  assert.ok(!twoUp.ok && twoUp.errno === Errno.NOTCAPABLE);
  const abs = resolveBeneath(m, [], join(outside, 'secret'), true);
  assert.ok(!abs.ok && abs.errno === Errno.NOTCAPABLE);
  const nul = resolveBeneath(m, [], 'a.txt\0x', true);
  assert.ok(!nul.ok && nul.errno === Errno.INVAL);
  const notDir = resolveBeneath(m, [], 'a.txt/x', true);
  assert.ok(!notDir.ok && notDir.errno === Errno.NOTDIR);
  const missing = resolveBeneath(m, [], 'nope/x', true);
  assert.ok(!missing.ok && missing.errno === Errno.NOENT);
  symlinkSync('l2', join(app, 'l1'));
  symlinkSync('l1', join(app, 'l2'));
  const loop = resolveBeneath(m, [], 'l1', true);
  assert.ok(!loop.ok && loop.errno === Errno.LOOP);
  const dot = resolveBeneath(m, ['sub'], '.', true);
  assert.ok(dot.ok && dot.host === join(app, 'sub') && dot.stat?.isDirectory());
});
