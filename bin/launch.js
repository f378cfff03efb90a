// Shared by the bins: Capsule needs Node.js 24+ (JSPI, TypeScript type stripping). When started
// by an older Node, re-run the bin with the Node 24 that `npm install` put in node_modules, as a
// child that stands for this process: SIGTERM, SIGINT and SIGHUP are passed on to it (`kill PID`
// of a server stops the real server), and this process ends the way the child did (its exit
// code, or the same signal).
//
// The `--` before the script (here and in the bins' `#!/usr/bin/env -S node --` line) ends
// Node's own options: Node looks for `--env-file` among *all* its arguments up to the first
// `--`, even after the script, and would read (or fail on) a guest's `--env-file` itself.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const FORWARDED = /** @type {const} */ (['SIGTERM', 'SIGINT', 'SIGHUP']);

/** @param {'capsule' | 'capsule-http'} bin */
export async function launch(bin) {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) {
    const local = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
    if (!existsSync(local)) {
      process.stderr.write(`${bin} needs Node.js 24 or newer (this is ${process.version}); run \`npm run setup\` to install one locally.\n`);
      process.exit(2);
    }
    relaunch(local, [process.argv[1] ?? '', ...process.argv.slice(2)]);
    return;
  }
  const { main } = await import('../src/cli/main.ts');
  await main(process.argv.slice(2), { bin });
}

/**
 * Runs `node -- script args…` as a child with this process's stdio, forwards signals to it,
 * and exits like it.
 * @param {string} node
 * @param {string[]} args the script, then its arguments
 */
function relaunch(node, args) {
  const child = spawn(node, ['--', ...args], { stdio: 'inherit' });
  /** @type {Map<NodeJS.Signals, () => void>} */
  const handlers = new Map();
  for (const sig of FORWARDED) {
    const h = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    };
    handlers.set(sig, h);
    process.on(sig, h);
  }
  child.on('error', (e) => {
    process.stderr.write(`❌ cannot start ${node}: ${e.message}\n`);
    process.exit(2);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // end the same way: no handler of ours left for it, so the default action applies
      for (const [sig, h] of handlers) process.off(sig, h);
      process.kill(process.pid, signal);
      // a signal Node ignores (SIGPIPE) does not end us: exit as a shell reports it
      setImmediate(() => process.exit(128 + (constants.signals[signal] ?? 0)));
      return;
    }
    process.exit(code ?? 1);
  });
}
