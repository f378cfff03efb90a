/**
 * Capsule ABI generation 2 (capsule-abi.md §5): `callHandle`, `callHandleJSON`, `callHandleHTTP`,
 * S/F framing, the HTTP request/response JSON, OnStart/OnStop/OnHealthCheck/OnMetrics.
 */
import { CapsuleError } from '../../base/errors.ts';
import type { Abi, GuestInstances } from '../types.ts';
import type { Guest } from '../guest.ts';
import type { HostCallContext } from '../../capabilities/types.ts';
import { CAPSULE_EXPECTS, CAPSULE_GUEST, CAPSULE_IMPORTS, isGuestTrap, requireMalloc, startCapsuleGuest } from '../capsule-guest.ts';
import { checkExportTypes, GEN2_EXPORTS } from '../signatures.ts';
import { checkCapsule2Kind, detectCapsule2 } from './detect.ts';
import { encodeHttpRequest, decodeHttpResponse, missingExportResponse } from './http.ts';
import type { CliInput, CliOutput, HttpResponseOutput, InvocationMeta, InvocationOutput } from '../../base/invocation.ts';

const S = 0x53;
const F = 0x46;

/**
 * Splits a gen-2 frame. The payload is a view of `bytes` (no copy).
 * @throws CapsuleError BAD_RESULT for an empty or unframed result
 */
export function unframe<B extends Uint8Array>(bytes: B, what: string): { ok: boolean; payload: B } {
  if (bytes.length === 0) throw new CapsuleError('BAD_RESULT', `${what} returned an empty result; gen-2 results start with S or F (capsule-abi.md §5.1)`);
  if (bytes[0] !== S && bytes[0] !== F) {
    throw new CapsuleError('BAD_RESULT', `${what} returned a result starting with byte 0x${bytes[0]!.toString(16)}; gen-2 results start with S or F (capsule-abi.md §5.1)`);
  }
  return { ok: bytes[0] === S, payload: bytes.subarray(1) as B };
}

/**
 * Calls a handler export with `input` (§2.3) and turns its result into `T` with `take`, which
 * sees the result bytes in place (a view of linear memory, valid only inside `take`: the guest
 * frees its input right after).
 */
async function callEntry<T>(guest: Guest, name: string, input: Uint8Array | string | undefined, take: (result: Buffer) => T): Promise<T> {
  try {
    const args = input !== undefined ? guest.pass(input) : [];
    const result = await guest.call(name, ...args);
    return take(guest.unpackView(result));
  } finally {
    guest.freePassed();
  }
}

/** `callEntry` for a guest that does not suspend: the same steps without a promise. */
function callEntrySync<T>(guest: Guest, name: string, input: Uint8Array | string | undefined, take: (result: Buffer) => T): T {
  try {
    const result = input === undefined ? guest.callSync(name) : guest.callSync(name, ...guest.pass(input));
    return take(guest.unpackView(result));
  } finally {
    guest.freePassed();
  }
}

/** A CLI or message result: frame split, payload copied out of linear memory. */
function framed(what: string): (result: Buffer) => { ok: boolean; payload: Uint8Array } {
  return (result) => {
    const { ok, payload } = unframe(result, what);
    return { ok, payload: Uint8Array.prototype.slice.call(payload) };
  };
}

/**
 * An HTTP result; headers the host leaves out are noted in the call's log (`ctx.log`). The steps
 * of `callEntry` written out: one `async` layer less per request.
 */
async function callHttp(guest: Guest, ctx: HostCallContext, name: string, input: string | undefined): Promise<HttpResponseOutput> {
  let out: HttpResponseOutput;
  let notes: string[] | undefined;
  try {
    const result = input === undefined ? await guest.call(name) : await guest.call(name, ...guest.pass(input));
    out = decodeHttpResponse(unframe(guest.unpackView(result), name), (notes = []));
  } finally {
    guest.freePassed();
  }
  for (const note of notes) ctx.log(note);
  return out;
}

/** The notes of the running synchronous HTTP call (one call at a time runs synchronously: no array per call). */
const syncNotes: string[] = [];

/** `callHttp` for a guest that does not suspend (`invokeSync`). */
function callHttpSync(guest: Guest, ctx: HostCallContext, name: string, input: string | undefined): HttpResponseOutput {
  syncNotes.length = 0;
  const out = callEntrySync(guest, name, input, (result) => decodeHttpResponse(unframe(result, name), syncNotes));
  if (syncNotes.length > 0) for (const note of syncNotes.splice(0)) ctx.log(note);
  return out;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Whether bytes are a JSON text (UTF-8). */
function isJson(bytes: Uint8Array): boolean {
  try {
    JSON.parse(strictUtf8.decode(bytes));
    return true;
  } catch {
    return false;
  }
}

/**
 * `capsule run` (§5.2): `callHandle` with the input (`callHandleJSON` when the module has no
 * `callHandle`). MDK builds export every handler whichever one the module registered, and an
 * unregistered one traps: so when `callHandle` traps, the module exports `callHandleJSON` and the
 * input is JSON, `callHandleJSON` runs with the same input on a fresh instance and its result is
 * used; when that fails too, the first trap is reported. `input.handler` forces one export (no
 * fallback).
 * @throws what the guest call throws (the first trap when both fail); CapsuleError BAD_MODULE
 *   when the chosen export is missing
 */
async function invokeCli(instances: GuestInstances, input: CliInput, meta: InvocationMeta): Promise<CliOutput> {
  const params = input.params ?? new Uint8Array(0);
  let first: string | undefined;
  let hasJson = false;
  const run = (entryOf: (guest: Guest) => string) => instances.withGuest(meta, async (guest): Promise<CliOutput> => {
    const entry = entryOf(guest);
    if (!guest.has(entry)) throw new CapsuleError('BAD_MODULE', `the module exports no ${entry}: it cannot be run from the CLI`);
    const { ok, payload } = await callEntry(guest, entry, params, framed(entry));
    return { type: 'cli', text: payload, exitCode: ok ? 0 : 1 };
  }, CAPSULE_GUEST);
  try {
    return await run((guest) => {
      hasJson = guest.has('callHandleJSON');
      const json = input.handler === 'json' || (input.handler === undefined && !guest.has('callHandle') && hasJson);
      return (first = json ? 'callHandleJSON' : 'callHandle');
    });
  } catch (e) {
    if (input.handler !== undefined || first !== 'callHandle' || !hasJson || !isGuestTrap(e) || !isJson(params)) throw e;
    try {
      return await run(() => 'callHandleJSON');
    } catch {
      throw e;
    }
  }
}

export const capsule2: Abi = {
  kinds: ['capsule-2'],
  imports: CAPSULE_IMPORTS,
  expects: CAPSULE_EXPECTS,
  titles: { 'capsule-2': 'Capsule ABI gen 2 (Go Capsule v0.3.4 – v0.4.2)' },
  detect: detectCapsule2,
  checkKind: checkCapsule2Kind,
  reuse: 'on-request',
  resettable: true,
  guestOptions: CAPSULE_GUEST,
  generation: () => 2,
  check(parsed, _d, name) {
    requireMalloc(parsed, 2, name);
    checkExportTypes(parsed, GEN2_EXPORTS, 'Capsule gen 2', name);
  },
  async initialise(guest) {
    await startCapsuleGuest(guest);
    if (guest.has('OnStart')) await guest.call('OnStart');
  },
  /** An HTTP request on a ready instance (`GuestInstances.withReadyGuestSync`); other calls take `invoke`. */
  invokeSync(instances, input, meta) {
    if (input.type !== 'http' || !instances.withReadyGuestSync) return undefined;
    return instances.withReadyGuestSync(meta, (guest, ctx) => {
      if (!guest.has('callHandleHTTP')) return missingExportResponse('callHandleHTTP');
      return callHttpSync(guest, ctx, 'callHandleHTTP', encodeHttpRequest(input));
    }, CAPSULE_GUEST)?.value;
  },
  invoke(instances, input, meta): Promise<InvocationOutput> {
    if (input.type === 'cli') return invokeCli(instances, input, meta);
    // an HTTP request: withGuest's promise is the call's, no async layer of ours around it
    if (input.type === 'http') {
      return instances.withGuest(meta, (guest, ctx) => guest.has('callHandleHTTP')
        ? callHttp(guest, ctx, 'callHandleHTTP', encodeHttpRequest(input))
        : Promise.resolve(missingExportResponse('callHandleHTTP')), CAPSULE_GUEST);
    }
    return instances.withGuest(meta, async (guest, ctx): Promise<InvocationOutput> => {
      switch (input.type) {
        case 'message': {
          // §8 extension: the JSON envelope; the trigger publishes an S payload to ReplyTo.
          if (!guest.has('callHandleMessage')) throw new CapsuleError('BAD_MODULE', 'the module exports no callHandleMessage: it cannot handle messages (capsule-abi.md §8)');
          const envelope = JSON.stringify({
            [input.source === 'mqtt' ? 'Topic' : 'Subject']: input.subject,
            Data: Buffer.from(input.data).toString('base64'),
            Headers: Object.fromEntries(input.headers),
            ReplyTo: input.replyTo ?? '',
          });
          const { ok, payload } = await callEntry(guest, 'callHandleMessage', envelope, framed('callHandleMessage'));
          return { type: 'message', ok, payload };
        }
        case 'lifecycle': {
          const name = input.export;
          if (name === 'OnHealthCheck' || name === 'OnMetrics') {
            if (!guest.has(name)) return missingExportResponse(name);
            return callHttp(guest, ctx, name, undefined);
          }
          if (!guest.has(name)) return { type: 'lifecycle', called: false };
          await guest.call(name);
          return { type: 'lifecycle', called: true };
        }
      }
    }, CAPSULE_GUEST);
  },
};
