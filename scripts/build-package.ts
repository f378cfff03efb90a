// `npm run build` (run by `prepack`): the package's JavaScript and declarations in dist/, from a
// clean dist/ so that a renamed or removed source leaves no stale module behind. The published
// package runs this build (Node does not strip types under node_modules); a clone runs src/.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
// the code of the pool's workers, of the HTTP threads (`serve --http-threads`), of `capsule run`/`call`
// and of `capsule serve` in few files (dist/bundle/, scripts/build-bundle.ts): faster start-up
const w = spawnSync(process.execPath, [fileURLToPath(new URL('./build-bundle.ts', import.meta.url))], { cwd: root, stdio: 'inherit' });
process.exit(w.status ?? 1);
