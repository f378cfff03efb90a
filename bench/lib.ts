/** What the benchmarks share: starting a server process and waiting for its ready line, and stopping it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Runs `node <argv…>` and resolves once it prints `capsule listening on <url>` (conventions.md §1).
 * Its later output is drained unread: keeping and searching it would take CPU from the servers
 * being measured.
 * @param o.stderr `inherit` to see the server's log (default `ignore`); o.what names it in errors;
 *   o.env is added to this process's environment
 * @throws when the process exits before its ready line
 */
export function startListening(argv: string[], o: { cwd?: string; stderr?: 'inherit' | 'ignore'; what?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, argv, { cwd: o.cwd ?? root, stdio: ['ignore', 'pipe', o.stderr ?? 'ignore'], ...(o.env ? { env: { ...process.env, ...o.env } } : {}) });
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /capsule listening on (\S+)/.exec(out);
      if (!m) return;
      child.stdout!.off('data', onData).resume();
      resolve({ child, url: m[1]! });
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${o.what ?? 'server'} exited with ${code} before listening`)));
  });
}

/** Sends SIGTERM and waits for the process to exit. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
