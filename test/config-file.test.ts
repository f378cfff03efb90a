/**
 * Declared capabilities: the YAML config file (`--config`, `<module>.capsule.yaml` beside the
 * module), its schema (the command's own flags), the precedence flags > file > CAPSULE_* >
 * defaults (conventions.md §1), and `capsule inspect` naming the grants a module needs.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, missing, runCapsule } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'capsule-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const probeSrc = fixture('caps-c-probe');
const skip = missing(probeSrc);

/** A copy of the C probe in its own folder, with `yaml` beside it as probe.capsule.yaml (when given). */
function setup(name: string, yaml?: string): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const wasm = join(d, 'probe.wasm');
  copyFileSync(probeSrc, wasm);
  if (yaml !== undefined) writeFileSync(join(d, 'probe.capsule.yaml'), yaml);
  return wasm;
}

describe('config file', { skip }, () => {
  it('is read beside the module, with host paths relative to the file', async () => {
    const wasm = setup('beside', 'dir:\n  - ./files:/files:ro\n');
    mkdirSync(join(dir, 'beside', 'files'));
    writeFileSync(join(dir, 'beside', 'files', 'a.txt'), 'granted by the file');
    const r = await runCapsule(['run', wasm, '--params=read:/files/a.txt'], { cwd: tmpdir() });
    assert.equal(r.stdout, 'granted by the file\n');
    assert.equal(r.code, 0, r.stderr);
    const w = await runCapsule(['run', wasm, '--params=write:/files/b.txt=x'], { cwd: tmpdir() });
    assert.match(w.stderr, /read-only/);
  });

  it('rejects an unknown key, naming the key and the file (exit 2)', async () => {
    const wasm = setup('unknown', 'allowedHosts: [example.com]\ncacheSize: 10\n');
    const r = await runCapsule(['run', wasm, '--params=ckeys:*']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /config file .*probe\.capsule\.yaml: unknown key "cacheSize" \(known keys: .*allowedHosts/);
  });

  it('rejects values of the wrong shape and invalid choices', async () => {
    const f = join(dir, 'shape.yaml');
    writeFileSync(f, 'inheritEnv: "no"\n');
    const a = await runCapsule(['run', probeSrc, `--config=${f}`, '--params=x']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /shape\.yaml: "inheritEnv" must be true or false, not "no"/);
    writeFileSync(f, 'kv: disk\n');
    const b = await runCapsule(['run', probeSrc, `--config=${f}`, '--params=x']);
    assert.match(b.stderr, /"kv" must be one of memory, redis/);
    writeFileSync(f, 'allowedHosts: {a: 1}\n');
    const c = await runCapsule(['run', probeSrc, `--config=${f}`, '--params=x']);
    assert.match(c.stderr, /"allowedHosts" must be a string or a list of strings/);
    const d = await runCapsule(['run', probeSrc, `--config=${join(dir, 'none.yaml')}`, '--params=x']);
    assert.match(d.stderr, /none\.yaml: no such file/);
  });

  it('precedence: flag > file > CAPSULE_* variable > default', async () => {
    // observable through the cache entry limit: 0 entries makes every cset fail
    const full = /the memory cache is full/;
    const fileZero = setup('prec-file-zero', 'cacheMaxEntries: 0\n');
    const fileFive = setup('prec-file-five', 'cacheMaxEntries: 5\n');
    const none = setup('prec-none');
    const fileOnly = await runCapsule(['run', fileZero, '--params=cset:a=1']);
    assert.match(fileOnly.stderr, full, 'the file applies');
    const flagWins = await runCapsule(['run', fileZero, '--cache-max-entries=5', '--params=cset:a=1']);
    assert.equal(flagWins.code, 0, 'the flag beats the file');
    const fileBeatsEnv = await runCapsule(['run', fileFive, '--params=cset:a=1'], { env: { CAPSULE_CACHE_MAX_ENTRIES: '0' } });
    assert.equal(fileBeatsEnv.code, 0, 'the file beats CAPSULE_*');
    const envOnly = await runCapsule(['run', none, '--params=cset:a=1'], { env: { CAPSULE_CACHE_MAX_ENTRIES: '0' } });
    assert.match(envOnly.stderr, full, 'CAPSULE_* beats the default');
    const defaults = await runCapsule(['run', none, '--params=cset:a=1']);
    assert.equal(defaults.code, 0);
  });

  it('adds repeatable grants up and takes env as a map', async () => {
    const wasm = setup('lists', 'allowedHosts: [a.example]\nenv:\n  GREETING: from the file\n  N: 42\n');
    const r = await runCapsule(['run', wasm, '--allowed-hosts=b.example', '--params=http:GET http://c.example/']);
    assert.match(r.stderr, /allowed: a\.example, b\.example\)/);
    const envProbe = join(dir, 'lists', 'env.wasm');
    copyFileSync(fixture('gen2-env'), envProbe);
    const f = join(dir, 'lists', 'probe.capsule.yaml');
    const e = await runCapsule(['run', envProbe, `--config=${f}`, '--params=GREETING']);
    assert.equal(e.stdout, 'from the file\n');
    const flag = await runCapsule(['run', envProbe, `--config=${f}`, '--env=GREETING=from the flag', '--params=GREETING']);
    assert.equal(flag.stdout, 'from the flag\n', 'a flag value of the same variable wins');
  });
});

describe('--env NAME passes one variable explicitly', { skip: missing(fixture('gen2-env')) }, () => {
  it('hands a secret-looking variable to the guest only when named', async () => {
    const hidden = await runCapsule(['run', fixture('gen2-env'), '--params=API_TOKEN'], { env: { API_TOKEN: 's3cret' } });
    assert.equal(hidden.stdout, '\n', '*_TOKEN is not inherited');
    const named = await runCapsule(['run', fixture('gen2-env'), '--env=API_TOKEN', '--params=API_TOKEN'], { env: { API_TOKEN: 's3cret' } });
    assert.equal(named.stdout, 's3cret\n');
    const unset = await runCapsule(['run', fixture('gen2-env'), '--env=NOT_SET_ANYWHERE', '--params=x']);
    assert.equal(unset.code, 2);
    assert.match(unset.stderr, /--env NOT_SET_ANYWHERE: NOT_SET_ANYWHERE is not set/);
  });
});

describe('capsule inspect', { skip }, () => {
  it('names the grants a module needs and how to give them', async () => {
    const r = await runCapsule(['inspect', probeSrc]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}files: .*hostReadFile, hostWriteFile — give it with --dir HOST\[:GUEST\]\[:ro\] \(config dir\)$/m);
    assert.match(r.stdout, /^ {2}http: .*hostHTTP — give it with --allowed-hosts/m);
    assert.match(r.stdout, /^ {2}redis: .*--redis-uri/m);
    const json = JSON.parse((await runCapsule(['inspect', '--json', probeSrc])).stdout) as { grants: { grant: string }[] };
    assert.deepEqual(json.grants.map((g) => g.grant).sort(), ['couchbase', 'files', 'http', 'redis']);
    const plain = await runCapsule(['inspect', fixture('gen2-echo')]);
    assert.match(plain.stdout, /^grants: +none needed$/m);
  });
});
