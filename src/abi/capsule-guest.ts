/**
 * How the Capsule ABI generations start and call a guest: the WASI settings of every call and
 * start-up (capsule-abi.md §2.2), and what counts as the guest failing.
 */
import { WasiExit } from '../wasi/preview1.ts';
import { CapsuleError } from '../base/errors.ts';
import { GuestFault, type Guest } from './guest.ts';
import type { ParsedModule } from '../wasm/binary.ts';
import type { GuestOptions, ImportProvider } from './types.ts';
import { functionExports } from './signatures.ts';

/** The import namespaces of every Capsule ABI generation: WASI, and the host functions under `env` (§2.5). */
export const CAPSULE_IMPORTS: Readonly<Record<string, ImportProvider>> = { wasi_snapshot_preview1: 'wasi-preview1', env: 'host-functions' };

/** What the Capsule ABI generations accept, for the message when no ABI recognises a module. */
export const CAPSULE_EXPECTS = 'a Capsule module (callHandleHttp, callHandle, callHandleHTTP or callHandleJSON)';

/**
 * The module's exported functions, once checked to include `malloc` (§2.1).
 * @throws CapsuleError BAD_MODULE when it does not export malloc
 */
export function requireMalloc(parsed: ParsedModule, generation: 1 | 2, name: string): Set<string> {
  const fns = functionExports(parsed);
  if (!fns.has('malloc')) throw new CapsuleError('BAD_MODULE', `${name}: a gen-${generation} module must export malloc(size) -> ptr to receive its input (capsule-abi.md §2.1)`);
  return fns;
}

/**
 * WASI settings of every Capsule ABI call (§2.2): argv is one empty string, `[""]` — TinyGo
 * samples read `os.Args[0]` and panic on an empty argv; others look at whether it ends in `.wasm`.
 */
export const CAPSULE_GUEST: GuestOptions = { wasi: { args: [''] } };

/**
 * Whether a thrown value is the guest failing — a trap (including stack exhaustion), a WASI exit
 * inside a handler, a (ptr, len) outside its memory — rather than the host (a `CapsuleError`).
 */
export function isGuestTrap(e: unknown): boolean {
  return e instanceof WebAssembly.RuntimeError || (e instanceof RangeError && /call stack/i.test(e.message)) || e instanceof WasiExit || e instanceof GuestFault;
}

/**
 * §2.2 step 2: `_initialize` if exported, else `_start`. A WASI exit 0 inside it is success;
 * any other exit is a load failure.
 */
export async function startCapsuleGuest(guest: Guest): Promise<void> {
  const entry = guest.has('_initialize') ? '_initialize' : guest.has('_start') ? '_start' : undefined;
  if (!entry) return;
  try {
    await guest.call(entry);
  } catch (e) {
    if (e instanceof WasiExit && e.code === 0) return;
    if (e instanceof WasiExit) throw new CapsuleError('TRAP', `${entry} exited with code ${e.code}`);
    throw e;
  }
}
