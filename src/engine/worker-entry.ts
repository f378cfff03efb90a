/**
 * Which module a worker thread loads (engine/pool.ts): the one-file bundle of worker.ts when
 * `npm run build` or the set-up made one (scripts/build-bundle.ts: dist/bundle/worker.js), else
 * worker.ts / worker.js beside the pool. A bundle loads ~20 ms sooner than the ~65 modules it
 * holds (docs/performance.md, "Start-up").
 *
 * In a clone (the pool runs from src/) the bundle is used only while it is newer than every
 * source it was made from (dist/bundle/inputs.json), so an edited source is never shadowed by a
 * stale bundle; checking costs one read and ~65 stats, once per process. The package ships no
 * sources: there the bundle is used when present. CAPSULE_BUNDLE=0 turns it off (and the CLI's bundle, bin/launch.js).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';

/**
 * @param poolUrl the pool module's own URL (`import.meta.url`): its extension picks worker.ts or
 *   worker.js, its place finds the bundle (two directories below the root, as src/ and dist/)
 * @returns the URL of the module a worker thread imports
 */
export function workerEntryUrl(poolUrl: string): URL {
  const ext = poolUrl.slice(poolUrl.lastIndexOf('.'));
  const own = new URL(`./worker${ext}`, poolUrl);
  if (process.env['CAPSULE_BUNDLE'] === '0') return own;
  return bundleIfFresh(new URL('../../', poolUrl), 'worker.js') ?? own;
}

/**
 * `dist/bundle/<file>` under `root` when it exists and, in a clone (`src/` present), is newer
 * than every source listed in dist/bundle/inputs.json; else undefined.
 */
export function bundleIfFresh(root: URL, file: string): URL | undefined {
  const bundle = new URL(`dist/bundle/${file}`, root);
  try {
    const built = statSync(bundle).mtimeMs;
    if (!existsSync(new URL('src/', root))) return bundle; // the package: no sources to be newer
    const { inputs } = JSON.parse(readFileSync(new URL('dist/bundle/inputs.json', root), 'utf8')) as { inputs: string[] };
    for (const input of inputs) if (statSync(new URL(input, root)).mtimeMs > built) return undefined;
    return bundle;
  } catch {
    return undefined; // no bundle, or a source gone: the sources
  }
}
