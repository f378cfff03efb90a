/**
 * Names of the Capsule cluster on NATS (faas-cluster.md §1.2): a lattice prefix `L` isolates
 * tenants on one NATS (as wasmCloud's lattice prefix); buckets are `CAPSULE_<L>_<KIND>`; invoke
 * subjects carry function and revision names base64url-encoded (a Go function name may hold any
 * character, a subject token may not hold `.`, `*`, `>` or spaces), and so do KV keys.
 */
import { FaasError } from '../shared/service.ts';

/** The KV buckets and the Object Store of a lattice (faas-cluster.md §1.2). */
export type BucketKind = 'ROUTES' | 'DEPLOY' | 'NODES' | 'PROCS' | 'MODULES';

/** Lattice names: letters, digits, `-`, `_` (they become parts of stream names). */
const LATTICE_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Checks a lattice name.
 * @throws FaasError 400 BAD_LATTICE with what is allowed
 */
export function checkLattice(name: string): string {
  if (!LATTICE_RE.test(name)) throw new FaasError(400, 'BAD_LATTICE', `lattice "${name}": use 1 to 64 letters, digits, - or _`);
  return name;
}

/** `CAPSULE_<L>_<KIND>`, e.g. `CAPSULE_default_ROUTES`. */
export function bucketName(lattice: string, kind: BucketKind): string {
  return `CAPSULE_${lattice}_${kind}`;
}

/** One subject or key token for any text (base64url, no padding; `''` → `_`). */
export function token(text: string): string {
  return text === '' ? '_' : Buffer.from(text, 'utf8').toString('base64url');
}

/** The text of a {@link token}. */
export function untoken(tok: string): string {
  return tok === '_' ? '' : Buffer.from(tok, 'base64url').toString('utf8');
}

/** Subject gateways request and nodes serve for a revision: `capsule.<L>.invoke.<f>.<rev>`. */
export function invokeSubject(lattice: string, fn: string, revision: string): string {
  return `capsule.${lattice}.invoke.${token(fn)}.${token(revision)}`;
}

/** Queue group of a revision's subscribers: every node serving it shares its requests. */
export function queueGroup(fn: string, revision: string): string {
  return `capsule.${token(fn)}.${token(revision)}`;
}

/** Node-direct subject (index routes, drain, debugging): `capsule.<L>.node.<id>.invoke.<f>.<rev>`. */
export function nodeSubject(lattice: string, nodeId: string, fn: string, revision: string): string {
  return `capsule.${lattice}.node.${token(nodeId)}.invoke.${token(fn)}.${token(revision)}`;
}

/** KV key of a function's routes: `fn.<f>`. */
export const routesKey = (fn: string) => `fn.${token(fn)}`;
/** KV key of a revision's desired state: `rev.<f>.<rev>`. */
export const deployKey = (fn: string, revision: string) => `rev.${token(fn)}.${token(revision)}`;

/** The function (and revision) a `fn.<f>` / `rev.<f>.<rev>` key names. */
export function parseKey(key: string): { function: string; revision?: string } | undefined {
  const parts = key.split('.');
  if (parts[0] === 'fn' && parts.length === 2) return { function: untoken(parts[1]!) };
  if (parts[0] === 'rev' && parts.length === 3) return { function: untoken(parts[1]!), revision: untoken(parts[2]!) };
  return undefined;
}
