// `npm run build:binary`: the `capsule` CLI as one executable file (a Node.js single executable
// application, SEA) at build/bin/capsule — this Node's binary with the bundled CLI injected
// (https://nodejs.org/api/single-executable-applications.html). Steps:
//   1. esbuild bundles the CLI (packaging/sea/main.ts) into one CommonJS script, and the worker
//      thread's module (src/engine/worker.ts) into one ES module, which the executable carries as
//      an asset and writes to a cache folder at start (packaging/sea/boot.cjs): threads cannot
//      load code from inside the binary;
//   2. node --experimental-sea-config writes the blob; postject injects it into a copy of node.
// The version is inlined (there is no package.json beside the binary). CouchBase's client is a
// native addon and stays outside the bundle: the executable's couchbase capability reports it
// missing. Copy or link the file as `capsule-http` for that command.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions, type Plugin } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'build/sea');
const exe = join(root, 'build/bin', process.platform === 'win32' ? 'capsule.exe' : 'capsule');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

/** Replaces src/base/version.ts (which reads package.json beside the sources) by the version itself. */
const inlineVersion: Plugin = {
  name: 'inline-version',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]base[\\/]version\.ts$/ }, () => ({
      contents: `/** This runner's version. */\nexport const CAPSULE_VERSION: string = ${JSON.stringify(version)};\n`,
      loader: 'ts',
    }));
  },
};
const common: BuildOptions = {
  bundle: true, platform: 'node', target: 'node24', external: ['couchbase'], plugins: [inlineVersion],
  logLevel: 'warning', legalComments: 'none',
};

/** Runs a command, or exits with its status. */
function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`build:binary: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})\n`);
    process.exit(1);
  }
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
mkdirSync(join(root, 'build/bin'), { recursive: true });
await build({
  ...common, entryPoints: [join(root, 'src/engine/worker.ts')], format: 'esm', outfile: join(out, 'worker.mjs'),
  // CommonJS dependencies inside an ES module bundle call require()
  banner: { js: "import { createRequire as __capsuleCreateRequire } from 'node:module'; const require = __capsuleCreateRequire(import.meta.url);" },
});
await build({
  ...common, entryPoints: [join(root, 'packaging/sea/main.ts')], format: 'cjs', outfile: join(out, 'capsule.cjs'),
  banner: { js: readFileSync(join(root, 'packaging/sea/boot.cjs'), 'utf8') },
  define: { 'import.meta.url': 'seaModuleUrl' },
});
writeFileSync(join(out, 'sea-config.json'), JSON.stringify({
  main: join(out, 'capsule.cjs'), output: join(out, 'sea-prep.blob'), disableExperimentalSEAWarning: true,
  useSnapshot: false, useCodeCache: true, assets: { 'worker.mjs': join(out, 'worker.mjs') },
}, null, 2));
run(process.execPath, ['--experimental-sea-config', join(out, 'sea-config.json')]);
rmSync(exe, { force: true });
copyFileSync(process.execPath, exe);
chmodSync(exe, 0o755);
run(process.execPath, [join(root, 'node_modules/postject/dist/cli.js'), exe, 'NODE_SEA_BLOB', join(out, 'sea-prep.blob'),
  '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2', ...(process.platform === 'darwin' ? ['--macho-segment-name', 'NODE_SEA'] : [])]);
process.stdout.write(`build:binary: ${exe.replace(root, '')} (Node ${process.version}, capsule ${version})\n`);
