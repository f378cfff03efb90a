/**
 * Capability `log`: the guest prints and logs text.
 * Gen 2 `hostPrintString` (stdout) and `hostLogString` (function log); gen 1 `hostLogString`
 * (function log). capsule-abi.md §4.7, §5.7.
 */
import { text, type Capability } from '../types.ts';

export const log: Capability = {
  name: 'log',
  functions: [
    {
      name: 'hostPrintString', generations: [2], params: ['s'], returns: false,
      run(ctx, [s]) {
        // the guest's bytes as they are (the CLI passes them through unchanged)
        const bytes = s as Uint8Array;
        const line = new Uint8Array(bytes.length + 1);
        line.set(bytes);
        line[bytes.length] = 0x0a;
        ctx.stdout(line);
      },
    },
    {
      name: 'hostLogString', generations: [1, 2], params: ['s'], returns: false,
      run(ctx, [s]) { ctx.log(text(s)); },
    },
    {
      name: 'hostTalk', generations: [2], params: ['s'], returns: true, frame: 'raw',
      run(ctx, [s]) {
        ctx.log(text(s));
        return { ok: true, value: "Hello 😀 I'm the host" };
      },
    },
  ],
};
