// Prepended to the single executable's bundle (scripts/build-binary.ts; see packaging/sea/main.ts):
// writes the worker thread's module, an asset of the executable, to a cache folder named by its
// content hash (checked by that hash before each use) and returns the URL the bundle's
// `import.meta.url` stands for: `<folder>/engine/capsule.mjs`, so './worker.mjs' is beside it.
var seaModuleUrl = (function () {
  const { createHash } = require('node:crypto');
  const fs = require('node:fs');
  const { homedir, tmpdir } = require('node:os');
  const { join } = require('node:path');
  const { pathToFileURL } = require('node:url');
  const worker = Buffer.from(require('node:sea').getAsset('worker.mjs'));
  const hash = createHash('sha256').update(worker).digest('hex');
  const cache = process.env.XDG_CACHE_HOME || (homedir() ? join(homedir(), '.cache') : '');
  let dir = cache ? join(cache, 'capsule', `sea-${hash.slice(0, 16)}`) : '';
  const file = () => join(dir, 'engine', 'worker.mjs');
  const fresh = () => {
    try {
      return createHash('sha256').update(fs.readFileSync(file())).digest('hex') === hash;
    } catch {
      return false;
    }
  };
  try {
    if (!dir) throw new Error('no cache folder');
    if (!fresh()) {
      fs.mkdirSync(join(dir, 'engine'), { recursive: true, mode: 0o700 });
      const tmp = `${file()}.${process.pid}`;
      fs.writeFileSync(tmp, worker, { mode: 0o600 });
      fs.renameSync(tmp, file());
    }
  } catch {
    dir = fs.mkdtempSync(join(tmpdir(), 'capsule-sea-'));
    fs.mkdirSync(join(dir, 'engine'));
    fs.writeFileSync(file(), worker, { mode: 0o600 });
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return pathToFileURL(join(dir, 'engine', 'capsule.mjs')).href;
})();
