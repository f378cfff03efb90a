// The file sandbox under attack (conventions.md §2, README "What a guest sees"): a guest granted
// only `--dir HOST:/rw` tries every way out of it that was found to work before the resolver
// walked from descriptors — symlink chains whose `..` climbs out, a directory descriptor kept
// across a rename and a planted symlink, O_CREAT / O_TRUNC / unlink / rename / link / mkdir /
// set-times through it, two guests racing on one writable grant — and the file host functions
// are asked for escaping and over-long paths. Every test checks the errno (or the answer) AND
// that the host tree outside the grant is unchanged (listing, contents, times).
// Guests: test/fixtures/wasi-sandbox.c (raw preview1 calls; "E<errno>" on failure: 44 NOENT,
// 76 NOTCAPABLE), test/fixtures/caps-c-probe.c and test/fixtures/files-http-probe.c.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CapsuleFunction } from '../src/engine/function.ts';
import { parseDirGrant } from '../src/wasi/mounts.ts';
import { loadProbe } from './backends.ts';
import { fixture, missing, runCapsule, startServer } from './helpers.ts';

const SB = fixture('wasi-sandbox');
const base = realpathSync(mkdtempSync(join(tmpdir(), 'capsule-sandbox-')));
after(() => rmSync(base, { recursive: true, force: true }));
let counter = 0;

/**
 * A fresh tree: <host>/rw is granted as /rw; <host> holds what no guest may touch:
 * victim.txt, OUTSIDE-MARKER and a directory with a file.
 */
function tree(): { host: string; rw: string } {
  const host = join(base, `t${++counter}`, 'host');
  const rw = join(host, 'rw');
  mkdirSync(join(rw, 'box'), { recursive: true });
  mkdirSync(join(host, 'outdir'));
  writeFileSync(join(host, 'victim.txt'), 'outside victim');
  writeFileSync(join(host, 'OUTSIDE-MARKER'), 'marker');
  writeFileSync(join(host, 'outdir', 'kept.txt'), 'kept');
  writeFileSync(join(rw, 'box', 'inside.txt'), 'in box');
  writeFileSync(join(rw, 'file.txt'), 'a file');
  return { host, rw };
}

/** Every entry below `dir` except `skip`: type, size, times, content or link target. */
function snapshot(dir: string, skip: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (p === skip) continue;
      const st = lstatSync(p, { bigint: true });
      const what = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? `link ${readlinkSync(p)}` : `file ${readFileSync(p, 'utf8')}`;
      out.push(`${p.slice(dir.length)} ${what} mtime=${st.mtimeNs} nlink=${st.nlink}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** Runs wasi-sandbox with `rw` granted as /rw; commands are joined with ",". */
async function guest(rw: string, commands: string[][]): Promise<string[]> {
  const f = await CapsuleFunction.load({ path: SB }, { stdio: 'capture', workers: 1, mounts: [parseDirGrant(`${rw}:/rw`)] });
  try {
    const args = commands.flatMap((c, i) => (i === 0 ? c : [',', ...c]));
    const r = await f.invoke({ type: 'cli', args, stdin: new Uint8Array(0) });
    return (r.logs?.stdout ?? '').split('\n').filter((l) => l !== '');
  } finally {
    await f.close();
  }
}

test('a symlink whose target climbs out of the grant cannot be made, however it is chained', { skip: missing(SB) }, async () => {
  const { host, rw } = tree();
  const before = snapshot(host, rw);
  const lines = await guest(rw, [
    ['mkdir', '3:tsub'],
    ['symlink', '..', '3:tsub/up'],            // back to the grant root: allowed
    ['symlink', 'tsub/up/..', '3:box2'],       // each link passes a lexical check; walked, it climbs out
    ['symlink', 'tsub/up/../..', '3:box3'],
    ['symlink', 'nowhere/../../x', '3:box4'],  // dangling, and still climbs out
    ['symlink', '../victim.txt', '3:tsub/up/esc'],
    ['lstat', '3:box2'],
    ['cat', '3:tsub/up/../victim.txt'],
    ['stat', '3:tsub/up/..'],
    ['write', '3:tsub/up/../victim.txt', 'PWNED'],
  ]);
  assert.deepEqual(lines, ['OK', 'OK', 'E76', 'E76', 'E76', 'E76', 'E44', 'E76', 'E76', 'E76']);
  assert.deepEqual(readdirSync(rw).sort(), ['box', 'file.txt', 'tsub']);
  assert.deepEqual(snapshot(host, rw), before);
});

test('a directory descriptor kept across a rename and a planted symlink stays on its directory', { skip: missing(SB) }, async () => {
  const { host, rw } = tree();
  const before = snapshot(host, rw);
  const lines = await guest(rw, [
    ['opendir', '3:box'],
    ['mv', '3:box', '3:moved'],
    ['mkdir', '3:t'],
    ['symlink', '..', '3:t/up'],               // inside when made …
    ['mv', '3:t/up', '3:box'],                 // … and, renamed, box -> .. is the grant's parent
    ['ls', '@1'],
    ['stat', '@1:victim.txt'],
    ['cat', '@1:victim.txt'],
    ['mv', '@1:victim.txt', '@1:renamed'],
    ['ln', '@1:victim.txt', '@1:hard'],
    ['rm', '@1:victim.txt'],
    ['touch', '@1:victim.txt'],
    ['trunc', '@1:victim.txt'],
    ['rmdir', '@1:outdir'],
    ['write', '@1:new.txt', 'made-inside'],
    ['mkdir', '@1:newdir'],
    ['creat', '@1:victim.txt'],
    ['symlink', 'new.txt', '@1:to-new'],
    ['touch', '@1:inside.txt'],
    ['stat', '@1:..'],
    ['cat', '@1:../victim.txt'],
    ['cat', '3:box/victim.txt'],
    ['opendir', '3:box'],
    ['ls', '@1'],
  ]);
  assert.deepEqual(lines, [
    'FD @1', 'OK', 'OK', 'OK', 'OK',
    'LS inside.txt',
    'E44', 'E44', 'E44', 'E44', 'E44', 'E44', 'E44', 'E44',
    'OK', 'OK', 'OK', 'OK', 'OK',
    'E76', 'E76', 'E76', 'E76',
    'LS inside.txt new.txt newdir to-new victim.txt',
  ]);
  assert.deepEqual(snapshot(host, rw), before);
  assert.equal(readFileSync(join(rw, 'moved', 'new.txt'), 'utf8'), 'made-inside');
  assert.equal(lstatSync(join(rw, 'moved', 'inside.txt')).mtimeMs, 1e12, 'set-times reached the moved directory');
});

test('deeper chains: a descriptor whose old name now leads to the host root still reads only its directory', { skip: missing(SB) }, async () => {
  const { host, rw } = tree();
  const before = snapshot(host, rw);
  const depth = 24; // deeper than the temporary directory is below /
  const dirs = Array.from({ length: depth }, (_, i) => `d${i}`);
  const lines = await guest(rw, [
    ['opendir', '3:box'],
    ['mv', '3:box', '3:moved'],
    ...dirs.map((_, i) => ['mkdir', `3:${dirs.slice(0, i + 1).join('/')}`]),
    ['symlink', Array(depth).fill('..').join('/'), `3:${dirs.join('/')}/root`], // the grant root, seen from there
    ['mv', `3:${dirs.join('/')}/root`, '3:box'],                                // from the grant root: the host's /
    ['cat', '@1:etc/passwd'],
    ['cat', '3:box/etc/passwd'],
    ['ls', '@1'],
  ]);
  assert.deepEqual(lines.slice(-5), ['OK', 'OK', 'E44', 'E76', 'LS inside.txt']);
  assert.ok(!lines.some((l) => l.includes('root:')), 'no line of the host /etc/passwd');
  assert.deepEqual(snapshot(host, rw), before);
});

test('two guests sharing a writable grant: one swapping a directory for an escaping symlink cannot make the other write outside', { skip: missing(SB) }, async () => {
  const { host, rw } = tree();
  const before = snapshot(host, rw);
  // The attacker swaps until the victim has made its 200 rounds (each guest waits for the
  // other through marker directories in the grant, not for a time).
  const [attacker, victim] = await Promise.all([guest(rw, [['attack', '1000000']]), guest(rw, [['victim', '200']])]);
  assert.deepEqual(attacker, ['ATTACK made=0 moved=0 swaps=some']);
  assert.deepEqual(victim, ['VICTIM saw=0']);
  assert.deepEqual(snapshot(host, rw), before);
});

const PROBE = fixture('caps-c-probe');

test('hostReadFile/hostWriteFile: refusals name the guest path and /rw, never the host directory; a 100 000-byte name is a short failure', { skip: missing(PROBE) }, async () => {
  const { host, rw } = tree();
  const before = snapshot(host, rw);
  const p = await loadProbe(PROBE, { mounts: [parseDirGrant(`${rw}:/rw`)] });
  try {
    await p.run('write:/rw/t/keep=x'); // no t/: fails
    const ww = await guest(rw, [['mkdir', '3:t'], ['symlink', '..', '3:t/up'], ['mv', '3:t/up', '3:out']]);
    assert.deepEqual(ww, ['OK', 'OK', 'OK']);
    const answers = [
      await p.run('read:/rw/out/victim.txt'),
      await p.run('write:/rw/out/victim.txt=PWNED'),
      await p.run('read:/rw/../victim.txt'),
      await p.run('write:/rw/box/../../victim.txt=PWNED'),
      await p.run('read:/rw/t/../../victim.txt'),
    ];
    for (const a of answers) {
      assert.equal(a.ok, false, a.text);
      assert.match(a.text, /climbs above the mount root \/rw$/);
      assert.ok(!a.text.includes(base), `no host path in "${a.text}"`);
    }
    assert.deepEqual(await p.run('read:/rw/box/inside.txt'), { ok: true, text: 'in box' });
    const long = `/rw/${'x'.repeat(100_000)}`;
    for (const a of [await p.run(`read:${long}`), await p.run(`write:${long}=x`)]) {
      assert.equal(a.ok, false);
      assert.ok(a.text.length < 300, `a short message, not ${a.text.length} characters`);
      assert.match(a.text, /^\/rw\/x{56}… \(100004 bytes\): the path is longer than 4095 bytes$/);
    }
    const name = await p.run(`read:/rw/box/${'z'.repeat(300)}`);
    assert.equal(name.ok, false);
    assert.match(name.text, /^\/rw\/box\/z{52}… \(308 bytes\): a path component is longer than 255 bytes$/);
  } finally {
    await p.close();
  }
  assert.deepEqual(snapshot(host, rw), before);
});

const HTTP_PROBE = fixture('files-http-probe');

test('an over-long or escaping path in hostReadFile: exit 1 from capsule run and the ABI failure answer over HTTP, short and without host paths', { skip: missing(HTTP_PROBE) }, async () => {
  const { host, rw } = tree();
  const before = snapshot(host, rw);
  const long = `/rw/${'y'.repeat(100_000)}`;
  const r = await runCapsule(['run', HTTP_PROBE, `--dir=${rw}:/rw`, long]);
  assert.equal(r.code, 1);
  assert.ok(r.stderr.length < 400 && !r.stderr.includes(base) && !/host error/.test(r.stderr), r.stderr.slice(0, 400));
  assert.match(r.stderr, /^\/rw\/y{56}… \(100004 bytes\): the path is longer than 4095 bytes$/m);
  const s = await startServer(['serve', HTTP_PROBE, `--dir=${rw}:/rw`, '--http-port=0']);
  try {
    const ok = await fetch(s.url, { method: 'POST', body: '/rw/box/inside.txt' });
    assert.equal(await ok.text(), 'in box');
    for (const body of [long, '/rw/../victim.txt']) {
      const res = await fetch(s.url, { method: 'POST', body });
      const text = await res.text();
      assert.equal(res.status, 500);
      assert.ok(text.length < 300 && !text.includes(base) && !/host error/.test(text), text.slice(0, 300));
      assert.match(text, /^\/rw\/(y{56}… \(100004 bytes\): the path is longer than 4095 bytes|\.\.\/victim\.txt: climbs above the mount root \/rw)$/);
    }
  } finally {
    await s.stop();
  }
  assert.deepEqual(snapshot(host, rw), before);
});
