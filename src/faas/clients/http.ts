/**
 * One HTTP call from a FaaS client (`capsule publish|deploy|…`, `caps`) to a FaaS service (the
 * registry, a node, the reverse proxy), with the service's admin token and errors that name the
 * service: a refused connection says which `capsule …` command should be running where, a refusal
 * gives the service's status, code and message (faas-api.md §1–§3, §9).
 */
import { CapsuleError } from '../../base/errors.ts';

/** The services a client talks to, and how a user starts each. */
export const SERVICES = {
  registry: { label: 'registry', command: 'capsule registry', token: 'CAPSULE_REGISTRY_ADMIN_TOKEN', urlEnv: 'CAPSULE_REGISTRY_URL', url: 'http://localhost:4999' },
  node: { label: 'node', command: 'capsule node', token: 'CAPSULE_WORKER_ADMIN_TOKEN', urlEnv: 'CAPSULE_WORKER_URL', url: 'http://localhost:9999' },
  proxy: { label: 'reverse proxy', command: 'capsule proxy', token: 'CAPSULE_REVERSE_PROXY_ADMIN_TOKEN', urlEnv: 'CAPSULE_REVERSE_PROXY_URL', url: 'http://localhost:8080' },
} as const;

/** `registry`, `node` or `proxy`. */
export type ServiceName = keyof typeof SERVICES;

/** A service's answer. `json` is the parsed body, undefined when it is not JSON. */
export interface ServiceReply {
  status: number;
  text: string;
  json: unknown;
}

/**
 * A call that failed: the service could not be reached (`status` undefined) or answered an error
 * status (`status`, and the reply's Go `code` when it had one). The message is for a human.
 */
export class ServiceError extends Error {
  readonly service: ServiceName;
  readonly status: number | undefined;
  readonly code: string | undefined;
  constructor(service: ServiceName, message: string, status?: number, code?: string) {
    super(message);
    this.name = 'ServiceError';
    this.service = service;
    this.status = status;
    this.code = code;
  }
}

/** What to send. */
export interface CallOptions {
  /** Admin token, sent in the service's Go header (`CAPSULE_WORKER_ADMIN_TOKEN`, …); empty = none. */
  token?: string;
  /** JSON body. */
  json?: unknown;
  /** Multipart body (registry uploads). */
  form?: FormData;
  /** Statuses that are not errors besides 2xx (e.g. a Go code the caller reports itself). */
  accept?: (reply: ServiceReply) => boolean;
}

/**
 * The base URL of a service: the flag, else its environment variable, else the Go default; no trailing slash.
 * @throws CapsuleError USAGE when it is not an http(s) URL (naming where it came from)
 */
export function serviceUrl(service: ServiceName, flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const s = SERVICES[service];
  const url = (flag || env[s.urlEnv] || s.url).replace(/\/+$/, '');
  if (!/^https?:$/.test(URL.parse(url)?.protocol ?? '')) {
    const from = flag ? 'the command line' : s.urlEnv;
    throw new CapsuleError('USAGE', `the ${s.label} URL "${url}" (from ${from}) must be an http(s) base URL, e.g. ${s.url}`);
  }
  return url;
}

/** The admin token of a service from the environment (undefined when unset or empty). */
export function serviceToken(service: ServiceName, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[SERVICES[service].token] || undefined;
}

/** Why a connection failed, from undici's `fetch failed` cause. */
function causeOf(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (e as Error).message;
}

/**
 * Sends one request to a service.
 * @param base the service's base URL (see {@link serviceUrl})
 * @param path path and query, starting with `/`
 * @returns the reply, when its status is 2xx or `o.accept` takes it
 * @throws ServiceError when the service cannot be reached or answers an error
 */
export async function callService(service: ServiceName, base: string, method: string, path: string, o: CallOptions = {}): Promise<ServiceReply> {
  const s = SERVICES[service];
  const headers: Record<string, string> = {};
  if (o.token) headers[s.token] = o.token;
  let body: string | FormData | undefined;
  if (o.json !== undefined) {
    headers['content-type'] = 'application/json; charset=utf-8';
    body = JSON.stringify(o.json);
  } else if (o.form) {
    body = o.form;
  }
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { method, headers, body });
  } catch (e) {
    const why = causeOf(e);
    const hint = why === 'ECONNREFUSED' ? `: connection refused — is \`${s.command}\` running on ${base}?` : `: ${why}`;
    throw new ServiceError(service, `cannot reach the ${s.label} at ${base}${hint}`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  const reply = { status: res.status, text, json };
  if ((res.status >= 200 && res.status < 300) || o.accept?.(reply)) return reply;
  throw refusal(service, method, path, reply);
}

/** A ServiceError for an error reply: `the node refused POST /functions/deploy (403 KO): Forbidden`. */
function refusal(service: ServiceName, method: string, path: string, r: ServiceReply): ServiceError {
  const body = (r.json !== null && typeof r.json === 'object' ? r.json : {}) as { code?: unknown; message?: unknown };
  const code = typeof body.code === 'string' ? body.code : undefined;
  const message = typeof body.message === 'string' ? body.message : r.text.trim().slice(0, 300) || 'no message';
  let hint = '';
  if (r.status === 401) hint = ` (set ${SERVICES[service].token})`;
  else if (r.status === 403 && code === 'KO') hint = ` (check ${SERVICES[service].token})`;
  else if (r.status === 404 && code === undefined) hint = ` (is this a Capsule ${SERVICES[service].label}?)`;
  const what = code ? `${r.status} ${code}` : `${r.status}`;
  return new ServiceError(service, `the ${SERVICES[service].label} refused ${method} ${path} (${what}): ${message}${hint}`, r.status, code);
}
