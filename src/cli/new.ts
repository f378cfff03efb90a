/**
 * `capsule new <name> --lang <language> [--http|--cli|--message]`: writes a function project
 * (src/dev/scaffold.ts), like `spin new` or `extism generate plugin`. Only light modules are
 * imported here; the scaffolding is imported when the command runs.
 */
import { Option, type Command } from 'commander';
import { relative } from 'node:path';
import { CapsuleError } from '../base/errors.ts';
import { FUNCTION_KINDS, LANGUAGES, type FunctionKind, type Language } from '../dev/project.ts';

interface NewFlags {
  lang?: Language;
  http?: boolean;
  cli?: boolean;
  message?: boolean;
  dir?: string;
}

/** Adds `capsule new` to the program; `exit` receives the process exit code. */
export function newCommand(program: Command, exit: (code: number) => void): void {
  program.command('new')
    .description('write a new function project (source, build files, README, a test request, .gitignore, a copy of the MDK) to build with capsule build')
    .argument('<name>', 'the function\'s name: lower-case letters, digits, - and _ (the folder, <name>.wasm, the package/module/crate)')
    .addOption(new Option('--lang <language>', 'the language').choices(LANGUAGES as unknown as string[]))
    .addOption(new Option('--http', 'an HTTP handler, for capsule serve (the default)').conflicts(['cli', 'message']))
    .addOption(new Option('--cli', 'a CLI handler, for capsule run').conflicts(['http', 'message']))
    .addOption(new Option('--message', 'a message handler, for capsule nats / capsule mqtt').conflicts(['http', 'cli']))
    .option('--dir <path>', 'the folder to write (default: ./<name>); it must not exist or be empty')
    .addHelpText('after', `
Languages: ${LANGUAGES.join(', ')}. Kinds: ${FUNCTION_KINDS.map((k) => `--${k}`).join(', ')}.

Examples:
  capsule new hello --lang go --http && cd hello && capsule build && capsule serve hello.wasm
  capsule new greet --lang rust --cli && cd greet && capsule build && capsule run greet.wasm Bob
  capsule new echo --lang c --message && cd echo && capsule build && capsule nats echo.wasm
  capsule new page --lang assemblyscript && cd page && npm install && capsule build`)
    .exitOverride()
    .action(async (name: string, f: NewFlags) => {
      if (!f.lang) throw new CapsuleError('USAGE', `give the language with --lang (${LANGUAGES.join(', ')})`);
      const kind: FunctionKind = f.cli ? 'cli' : f.message ? 'message' : 'http';
      const { newProject } = await import('../dev/scaffold.ts');
      const made = newProject(name, { language: f.lang, kind, dir: f.dir });
      const where = relative(process.cwd(), made.dir) || '.';
      const run = kind === 'cli' ? `capsule run ${name}.wasm Bob` : kind === 'http' ? `capsule serve ${name}.wasm --http-port=8080` : `capsule nats ${name}.wasm`;
      process.stdout.write(`✨ ${where}: ${made.files.join(', ')}\nnext:\n  cd ${where}\n${f.lang === 'assemblyscript' ? '  npm install\n' : ''}  capsule build\n  ${run}\n`);
      exit(0);
    });
}
