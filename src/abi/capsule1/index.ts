/**
 * Capsule ABI generation 1 — sub-generations 1a, 1b, 1c (capsule-abi.md §4): `callHandle`,
 * `callHandleHttp` with 4 / 8 / 1 parameters, `callNatsMessageHandle`, `callMqttMessageHandle`,
 * `OnLoad` / `OnExit`, the `[BODY]` / `[HEADERS]` / `[ERR][code]:` framing.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { ModuleKind } from '../../base/kinds.ts';
import type { Abi } from '../types.ts';
import type { Guest } from '../guest.ts';
import { CAPSULE_EXPECTS, CAPSULE_GUEST, CAPSULE_IMPORTS, requireMalloc, startCapsuleGuest } from '../capsule-guest.ts';
import { checkExportTypes, GEN1_EXPORTS, GEN1_HTTP } from '../signatures.ts';
import { checkCapsule1Kind, detectCapsule1 } from './detect.ts';
import { decodeGen1Response, encodeGen1Headers, parseGen1Error, requestParams } from './http.ts';
import { REQUEST_PARAMS_KEY } from '../../capabilities/host-info/index.ts';
import type { HttpRequestInput, InvocationOutput } from '../../base/invocation.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Separator of `Name:value` items in gen-1 header strings, by sub-generation (§4.3). */
export const RESPONSE_SEPARATOR: Record<string, string> = { 'capsule-1a': '|', 'capsule-1b': '²', 'capsule-1c': '²' };

async function callWith(guest: Guest, name: string, inputs: (Uint8Array | string)[]): Promise<Uint8Array> {
  try {
    const args = inputs.flatMap((b) => guest.pass(b));
    return guest.unpack(await guest.call(name, ...args));
  } finally {
    guest.freePassed();
  }
}

let nextRequestId = 1;

async function handleHttp(guest: Guest, kind: ModuleKind, req: HttpRequestInput, callData: Map<string, unknown>): Promise<Uint8Array> {
  const url = new URL(req.url);
  const method = req.method.toUpperCase();
  switch (kind) {
    case 'capsule-1a':
      return callWith(guest, 'callHandleHttp', [req.body, encodeGen1Headers(req.headers, '|')]);
    case 'capsule-1b':
      return callWith(guest, 'callHandleHttp', [req.body, url.pathname + url.search, encodeGen1Headers(req.headers, '²'), method]);
    default: {
      // 1c: the guest fetches the request with hostRequestParamsGet(reqId) during the call.
      const id = nextRequestId;
      nextRequestId = nextRequestId >= 0x7fffffff ? 1 : nextRequestId + 1;
      callData.set(REQUEST_PARAMS_KEY, { id, value: requestParams(req) });
      try {
        return guest.unpack(await guest.call('callHandleHttp', id));
      } finally {
        callData.delete(REQUEST_PARAMS_KEY);
      }
    }
  }
}

export const capsule1: Abi = {
  kinds: ['capsule-1a', 'capsule-1b', 'capsule-1c'],
  imports: CAPSULE_IMPORTS,
  expects: CAPSULE_EXPECTS,
  titles: {
    'capsule-1a': 'Capsule ABI gen 1a (Go Capsule 0.0.0 – 0.1.8)',
    'capsule-1b': 'Capsule ABI gen 1b (Go Capsule 0.1.9 – v0.2.8)',
    'capsule-1c': 'Capsule ABI gen 1c (Go Capsule v0.2.9 – v0.3.3)',
  },
  detect: detectCapsule1,
  checkKind: checkCapsule1Kind,
  resettable: true,
  guestOptions: CAPSULE_GUEST,
  generation: () => 1,
  check(parsed, detection, name) {
    const fns = requireMalloc(parsed, 1, name);
    const sub = detection.kind.slice('capsule-'.length);
    checkExportTypes(parsed, { ...GEN1_EXPORTS, callHandleHttp: GEN1_HTTP[detection.kind]! }, `Capsule gen ${sub}`, name);
    const http = fns.has('callHandleHttp');
    if (detection.kind === 'capsule-1c' && http && !parsed.imports.some((i) => i.module === 'env' && i.name === 'hostRequestParamsGet')) {
      throw new CapsuleError('BAD_MODULE', `${name}: a gen-1c module (callHandleHttp(reqId)) must import env.hostRequestParamsGet to read its request`);
    }
  },
  async initialise(guest) {
    await startCapsuleGuest(guest);
  },
  async invoke(instances, input, meta, detection): Promise<InvocationOutput> {
    return instances.withGuest(meta, async (guest, ctx): Promise<InvocationOutput> => {
      switch (input.type) {
        case 'cli': {
          if (!guest.has('callHandle')) throw new CapsuleError('BAD_MODULE', 'the module exports no callHandle: it cannot be run from the CLI');
          const text = decoder.decode(await callWith(guest, 'callHandle', [input.params ?? new Uint8Array(0)]));
          if (text.startsWith('[ERR]')) return { type: 'cli', text: encoder.encode(parseGen1Error(text).display), exitCode: 1 };
          return { type: 'cli', text: encoder.encode(text), exitCode: 0 };
        }
        case 'http': {
          if (!guest.has('callHandleHttp')) throw new CapsuleError('BAD_MODULE', 'the module exports no callHandleHttp: it cannot serve HTTP');
          const raw = await handleHttp(guest, detection.kind, input, ctx.callData);
          const notes: string[] = [];
          const out = decodeGen1Response(decoder.decode(raw), RESPONSE_SEPARATOR[detection.kind]!, notes);
          for (const note of notes) ctx.log(note);
          return out;
        }
        case 'message': {
          const entry = input.source === 'mqtt' ? 'callMqttMessageHandle' : 'callNatsMessageHandle';
          if (!guest.has(entry)) throw new CapsuleError('BAD_MODULE', `the module exports no ${entry}: it cannot handle ${input.source.toUpperCase()} messages`);
          // §4.4: the raw payload; the result is ignored except that an [ERR] result is reported.
          const text = decoder.decode(await callWith(guest, entry, [input.data]));
          if (text.startsWith('[ERR]')) return { type: 'message', ok: false, payload: encoder.encode(parseGen1Error(text).display) };
          return { type: 'message', ok: true, payload: encoder.encode(text) };
        }
        case 'lifecycle': {
          if (!guest.has(input.export)) return { type: 'lifecycle', called: false };
          await guest.call(input.export);
          return { type: 'lifecycle', called: true };
        }
      }
    }, CAPSULE_GUEST);
  },
};
