/**
 * Files capability (hostReadFile / hostWriteFile): only inside the granted mounts, from the
 * AssemblyScript and C SDKs (gen 2) and a gen-1 guest; escapes through `..`, absolute paths and
 * symlinks are refused and never touch the host file system (capsule-abi.md §7.5,
 * conventions.md §2). The attacks on the resolver itself are in test/sandbox.test.ts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDirGrant } from '../src/wasi/mounts.ts';
import { example, fixture, missing, runCapsule } from './helpers.ts';
import { loadProbe, type Probe } from './backends.ts';

const base = mkdtempSync(join(tmpdir(), 'capsule-files-'));
const data = join(base, 'data');
const ro = join(base, 'ro');
const secret = join(base, 'secret.txt');
mkdirSync(data);
mkdirSync(ro);
mkdirSync(join(data, 'sub'));
writeFileSync(join(data, 'hello.txt'), 'hello from data');
writeFileSync(join(data, 'sub', 'inner.txt'), 'inner');
writeFileSync(join(ro, 'fixed.txt'), 'read only');
writeFileSync(secret, 'TOP SECRET');
symlinkSync('../secret.txt', join(data, 'up-link'));          // relative, climbs out
symlinkSync(secret, join(data, 'abs-link'));                  // absolute
symlinkSync('sub/inner.txt', join(data, 'inside-link'));     // stays inside: allowed
symlinkSync('..', join(data, 'sub', 'parent'));             // back to the mount root: allowed

after(() => rmSync(base, { recursive: true, force: true }));

for (const [sdk, path] of [['AssemblyScript', fixture('caps-as-probe')], ['C', fixture('caps-c-probe')]] as const) {
  describe(`files from the ${sdk} SDK`, { skip: missing(path) }, () => {
    let p: Probe;
    let none: Probe;
    before(async () => {
      p = await loadProbe(path, { mounts: [parseDirGrant(`${data}:/data`), parseDirGrant(`${ro}:/ro:ro`)] });
      none = await loadProbe(path);
    });
    after(async () => {
      await p.close();
      await none.close();
    });

    it('reads a granted file by absolute and relative guest path, and through symlinks that stay inside', async () => {
      assert.deepEqual(await p.run('read:/data/hello.txt'), { ok: true, text: 'hello from data' });
      assert.deepEqual(await p.run('read:data/sub/inner.txt'), { ok: true, text: 'inner' });
      assert.deepEqual(await p.run('read:/data/inside-link'), { ok: true, text: 'inner' });
      assert.deepEqual(await p.run('read:/data/sub/parent/hello.txt'), { ok: true, text: 'hello from data' });
      assert.deepEqual(await p.run('read:/ro/fixed.txt'), { ok: true, text: 'read only' });
    });

    it('writes a file (mode 0644) and answers the path', async () => {
      const name = `${sdk}-out.txt`;
      assert.deepEqual(await p.run(`write:/data/${name}=written by ${sdk}`), { ok: true, text: `/data/${name}` });
      assert.equal(readFileSync(join(data, name), 'utf8'), `written by ${sdk}`);
      assert.deepEqual(await p.run(`read:/data/${name}`), { ok: true, text: `written by ${sdk}` });
    });

    it('refuses ../ escapes, for reads and writes, without touching the host', async () => {
      const r = await p.run('read:/data/../secret.txt');
      assert.equal(r.ok, false);
      assert.doesNotMatch(r.text, /TOP SECRET/);
      assert.equal(r.text, '/data/../secret.txt: climbs above the mount root /data');
      const w = await p.run('write:/data/sub/../../escaped.txt=x');
      assert.equal(w.ok, false);
      assert.equal(existsSync(join(base, 'escaped.txt')), false);
    });

    it('refuses absolute host paths outside every mount, naming the --dir to add', async () => {
      const r = await p.run(`read:${secret}`);
      assert.equal(r.ok, false);
      assert.match(r.text, /no --dir grant covers this path \(granted: \/data, \/ro\); add --dir HOST:/);
    });

    it('refuses symlinks that point out of the mount (relative or absolute)', async () => {
      const up = await p.run('read:/data/up-link');
      assert.equal(up.ok, false);
      assert.match(up.text, /climbs above the mount root/);
      const abs = await p.run('read:/data/abs-link');
      assert.equal(abs.ok, false);
      assert.match(abs.text, /points to an absolute path/);
      const w = await p.run('write:/data/up-link=overwritten');
      assert.equal(w.ok, false);
      assert.equal(readFileSync(secret, 'utf8'), 'TOP SECRET');
    });

    it('refuses writes to a read-only mount, and says which', async () => {
      const r = await p.run('write:/ro/new.txt=x');
      assert.equal(r.ok, false);
      assert.match(r.text, /read-only/);
      assert.equal(existsSync(join(ro, 'new.txt')), false);
    });

    it('reports missing files and directories as failures', async () => {
      assert.match((await p.run('read:/data/nope.txt')).text, /no such file or directory/);
      assert.match((await p.run('read:/data/sub')).text, /is a directory/);
    });

    it('without a grant, fails naming the --dir to add', async () => {
      const r = await none.run('read:/data/hello.txt');
      assert.deepEqual(r, { ok: false, text: '/data/hello.txt: no --dir grant covers this path (no directory is granted); add --dir HOST:/data' });
    });
  });
}

describe('files from a gen-1 guest', { skip: missing(fixture('gen1-caps-1b')) }, () => {
  it('reads the content, writes with "file created", and fails with [ERR][0]:', async () => {
    const p = await loadProbe(fixture('gen1-caps-1b'), { mounts: [parseDirGrant(`${data}:/data`)] });
    try {
      assert.deepEqual(await p.run('read', '/data/hello.txt'), { ok: true, text: 'hello from data' });
      assert.deepEqual(await p.run('write', '/data/gen1.txt', 'from gen 1'), { ok: true, text: 'file created' });
      assert.equal(readFileSync(join(data, 'gen1.txt'), 'utf8'), 'from gen 1');
      const r = await p.run('read', '/data/../secret.txt');
      assert.equal(r.ok, false, 'an [ERR] answer');
      assert.match(r.text, /climbs above the mount root \/data/);
    } finally {
      await p.close();
    }
  });
});

describe('capsule run file-reader (config file beside the module)', { skip: missing(example('file-reader')) }, () => {
  it('reads /data/hello.txt through the read-only grant of file-reader.capsule.yaml, and refuses the rest', async () => {
    const r = await runCapsule(['run', example('file-reader'), '/data/hello.txt']);
    assert.equal(r.stdout, 'Hello from a granted directory 📂\n\n');
    assert.equal(r.code, 0, r.stderr);
    const out = await runCapsule(['run', example('file-reader'), '/data/../../README.md']);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /^\/data\/\.\.\/\.\.\/README\.md: climbs above the mount root \/data$/m);
  });

  it('the C twin reads the same file with --dir', { skip: missing(example('file-reader-c')) }, async () => {
    const r = await runCapsule(['run', example('file-reader-c'), '--dir=examples/file-reader/data:/data:ro', '/data/hello.txt']);
    assert.equal(r.stdout, 'Hello from a granted directory 📂\n\n');
    assert.equal(r.code, 0, r.stderr);
  });
});
