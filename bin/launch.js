// Shared by the bins: Capsule needs Node.js 24+ (JSPI, TypeScript type stripping). When started
// by an older Node, re-run the bin with the Node 24 that `npm install` put in node_modules.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** @param {'capsule' | 'capsule-http'} bin */
export async function launch(bin) {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) {
    const local = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
    if (!existsSync(local)) {
      process.stderr.write(`${bin} needs Node.js 24 or newer (this is ${process.version}); run \`npm run setup\` to install one locally.\n`);
      process.exit(2);
    }
    const r = spawnSync(local, [process.argv[1], ...process.argv.slice(2)], { stdio: 'inherit' });
    process.exit(r.status ?? (r.signal === 'SIGTERM' ? 143 : 1));
  }
  const { main } = await import('../src/cli/main.ts');
  await main(process.argv.slice(2), { bin });
}
