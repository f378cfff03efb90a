// `npm run build` (run by `prepack`): the package's JavaScript and declarations in dist/, from a
// clean dist/ so that a renamed or removed source leaves no stale module behind. The published
// package runs this build (Node does not strip types under node_modules); a clone runs src/.
// dist/bundle is left in place: build-bundle.ts replaces its files one by one, so that a server
// or test of the clone that starts a worker meanwhile finds a bundle (`npm pack` runs this while
// the rest of the test suite runs).
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
let entries: string[] = [];
try {
  entries = readdirSync(dist);
} catch {
  // no dist/ yet
}
for (const entry of entries) if (entry !== 'bundle') rmSync(join(dist, entry), { recursive: true, force: true });
const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
// the code of the pool's workers, of the HTTP threads (`serve --http-threads`), of `capsule run`/`call`
// and of `capsule serve` in few files (dist/bundle/, scripts/build-bundle.ts): faster start-up
const w = spawnSync(process.execPath, [fileURLToPath(new URL('./build-bundle.ts', import.meta.url))], { cwd: root, stdio: 'inherit' });
process.exit(w.status ?? 1);
