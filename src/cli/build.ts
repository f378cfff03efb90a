/**
 * `capsule build [dir]`: builds a function project into `<name>.wasm` (src/dev/build.ts, where
 * `buildProject` is). Exit 0 and the module's path on stdout; 1 when a toolchain is missing (the
 * message names the package to install) or the compiler fails (its output on stderr); 2 when the
 * folder holds no project.
 */
import type { Command } from 'commander';
import { relative } from 'node:path';

/** Adds `capsule build` to the program; `exit` receives the process exit code. */
export function buildCommand(program: Command, exit: (code: number) => void): void {
  program.command('build')
    .description('build the function project in a folder (from capsule new) into <name>.wasm with the toolchain found: clang + wasi-libc, rustc, go, asc, wat2wasm')
    .argument('[dir]', 'the project folder', '.')
    .option('-o, --out <file>', 'where to write the module (default: <dir>/<name>.wasm)')
    .option('-q, --quiet', 'do not print the commands run')
    .exitOverride()
    .action(async (dir: string, f: { out?: string; quiet?: boolean }) => {
      const { buildProject } = await import('../dev/build.ts');
      const { wasm, language } = await buildProject(dir, {
        out: f.out, log: f.quiet ? undefined : (text) => process.stderr.write(text),
      });
      process.stdout.write(`✅ ${relative(process.cwd(), wasm) || wasm} (${language})\n`);
      exit(0);
    });
}
