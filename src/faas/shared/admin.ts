/**
 * Admin-token rules of every FaaS admin route (faas-api.md §9.1): the token travels in a header
 * named like the variable (`CAPSULE_FAAS_TOKEN`, matched case-insensitively, the hyphenated
 * `Capsule-Faas-Token` too) or as `Authorization: Bearer <token>`. Header absent → 401, wrong
 * value → 403, never a fall-through to later routes; the comparison is constant-time. Without a
 * configured token, only loopback clients may call admin routes unless `insecureAdmin` is set.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** How a service guards its admin routes. */
export interface AdminPolicy {
  /** `from` of the JSON refusal, e.g. `reverse-proxy`, `registry`, `worker`, `faas`. */
  service: string;
  /** The variable/header name, e.g. `CAPSULE_REVERSE_PROXY_ADMIN_TOKEN`. */
  header: string;
  /** The configured token; undefined or empty = none configured. */
  token: string | undefined;
  /** Accept admin calls from any client when no token is configured (`--insecure-admin`). */
  insecureAdmin?: boolean;
}

/** Why a request was refused: 401 (no token given) or 403 (wrong token, or not loopback). */
export interface AdminRefusal {
  status: 401 | 403;
  body: { code: 'KO'; from: string; message: 'Unauthorized' | 'Forbidden' };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The token a request carries (header of the policy's name in any spelling, or a Bearer token). */
export function presentedToken(headers: IncomingHttpHeaders, header: string): string | undefined {
  const lower = header.toLowerCase();
  for (const name of [lower, lower.replaceAll('_', '-')]) {
    const v = headers[name];
    if (typeof v === 'string') return v;
    if (Array.isArray(v) && v.length > 0) return v[0];
  }
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1];
  }
  return undefined;
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || a.startsWith('127.');
}

/**
 * Checks one admin request against the policy (faas-api.md §9.1).
 * @param headers the request headers (Node lower-cases names)
 * @param remoteAddress the client's address (`req.socket.remoteAddress`)
 * @returns undefined when allowed, else the refusal to send
 */
export function checkAdmin(policy: AdminPolicy, headers: IncomingHttpHeaders, remoteAddress: string | undefined): AdminRefusal | undefined {
  const refuse = (status: 401 | 403): AdminRefusal => ({
    status,
    body: { code: 'KO', from: policy.service, message: status === 401 ? 'Unauthorized' : 'Forbidden' },
  });
  if (!policy.token) {
    return policy.insecureAdmin || isLoopback(remoteAddress) ? undefined : refuse(403);
  }
  const given = presentedToken(headers, policy.header);
  if (given === undefined) return refuse(401);
  // equal-length digests: the comparison time says nothing about the token's length or prefix
  return timingSafeEqual(digest(given), digest(policy.token)) ? undefined : refuse(403);
}
