/**
 * Capability `env`: the guest reads its environment (conventions.md §2).
 * Gen 2 `hostGetEnv` returns the raw value, `""` when unset (capsule-abi.md §5.7, §7.1);
 * gen 1 returns `[ERR][0]:<name> is empty` when unset or empty (§4.7).
 */
import { fail, ok, text, type Capability } from '../types.ts';

export const env: Capability = {
  name: 'env',
  functions: [
    {
      name: 'hostGetEnv', generations: [1, 2], params: ['s'], returns: true, frame: 'raw',
      run(ctx, [name]) {
        const key = text(name);
        const value = ctx.env.get(key);
        return value ? ok(value) : fail(`${key} is empty`);
      },
    },
  ],
};
