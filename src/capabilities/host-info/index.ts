/**
 * Capability `host-info`: facts about the runner and the current invocation, for gen-1 modules
 * (capsule-abi.md §4.3, §4.5, §4.6, §4.7): hostGetHostInformation, hostPing,
 * hostRequestParamsGet, hostGetExitError, hostGetExitCode.
 */
import { fail, ok, text, type Capability } from '../types.ts';

/** callData key under which the 1c request waits for `hostRequestParamsGet`. */
export const REQUEST_PARAMS_KEY = 'capsule1.requestParams';

export const hostInfo: Capability = {
  name: 'host-info',
  functions: [
    {
      // §4.6: JSON by trigger; the CLI gets the version (Go Capsule returned "", which trapped).
      name: 'hostGetHostInformation', generations: [1], params: [], returns: true,
      run(ctx) {
        const t = ctx.trigger;
        const info: Record<string, string | number> = {};
        if (t['httpPort'] !== undefined) info['httpPort'] = Number(t['httpPort']);
        else if (t['natsServer'] !== undefined) info['natsServer'] = String(t['natsServer']);
        else if (t['mqttServer'] !== undefined) info['mqttServer'] = String(t['mqttServer']);
        info['capsuleVersion'] = ctx.capsuleVersion;
        return ok(JSON.stringify(info));
      },
    },
    {
      // Dropped from Go Capsule in v0.3.0; provided to every gen-1 module.
      name: 'hostPing', generations: [1], params: ['s'], returns: true,
      run(_ctx, [message]) {
        return ok(`🏓 pong: ${text(message)}`);
      },
    },
    {
      // 1c: the request of the running callHandleHttp(reqId) as body²headers²uri²method.
      name: 'hostRequestParamsGet', generations: [1], params: ['n'], returns: true,
      run(ctx, [id]) {
        const request = ctx.callData.get(REQUEST_PARAMS_KEY) as { id: number; value: Uint8Array } | undefined;
        if (!request || request.id !== id) return fail('key (requestId) does not exist');
        return ok(request.value);
      },
    },
    {
      name: 'hostGetExitError', generations: [1], params: [], returns: true,
      run(ctx) {
        return ok(ctx.exit?.error ?? '');
      },
    },
    {
      name: 'hostGetExitCode', generations: [1], params: [], returns: true,
      run(ctx) {
        return ok(String(ctx.exit?.code ?? 0));
      },
    },
  ],
};
