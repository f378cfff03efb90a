/**
 * What every FaaS service (proxy, registry, node, gen-2 FaaS) shares: a fastify app with the
 * runner routes `/capsule/health` and `/capsule/ready` (conventions.md §4), JSON bodies whose
 * parse failure is `400 {"code":"ERROR_JSON_BINDING"}` (faas-api.md §9.9), JSON errors that never
 * take the process down, `/capsule/metrics` when given a registry, admin-route guarding (§9.1, ./admin.ts), and a listener that reports
 * its URL. Each service builds its routes on the app this returns and stays a library: the CLI
 * commands in `src/faas/<service>/command.ts` are thin wrappers.
 */
import { fastify, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { AddressInfo } from 'node:net';
import { checkAdmin, type AdminPolicy } from './admin.ts';
import { CapsuleError } from '../../base/errors.ts';
import { listenError } from '../../triggers/http/connections.ts';
import type { Logger } from '../../observability/logger.ts';

/** TLS material (PEM) for `--crt`/`--key`. */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/** Options of {@link createServiceApp}. */
export interface ServiceAppOptions {
  /** Service name used in logs and JSON refusals (`reverse-proxy`, `registry`, `worker`, `faas`). */
  service: string;
  logger: Logger;
  tls?: TlsFiles;
  /** Largest JSON body accepted, bytes (default 1 MiB). Larger → 413. */
  bodyLimit?: number;
  /** `/capsule/ready` answers 200 while this returns true (default: always). */
  ready?: () => boolean;
  /** Served at `/capsule/metrics` (a prom-client Registry fits): Prometheus text. */
  metrics?: { readonly contentType: string; metrics(): Promise<string> };
}

/** A service listening on a port. */
export interface RunningService {
  /** `http://HOST:PORT` (or https). */
  readonly url: string;
  readonly port: number;
  readonly app: FastifyInstance;
  /** Stops accepting and closes the listener (in-flight requests finish). Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts one service of a kit that runs several in one process (`capsule faas`, `capsule up --all`).
 * @param service its name in the error (`registry`)
 * @throws Error naming the service that could not start (`the registry: cannot listen on …`), the
 *   original as `cause`
 */
export async function startNamed<T>(service: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (e) {
    throw new Error(`the ${service}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * A refusal a FaaS service answers as JSON `{code, message}` with `status` (faas-api.md: Go codes
 * such as `ERROR_FUNCTION_NOT_FOUND`, §9 codes such as `FUNCTION_NOT_FOUND`). Thrown by the
 * services' state (route table, deployments, store) and turned into a reply by the app's error
 * handler; never a crash.
 */
export class FaasError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'FaasError';
    this.status = status;
    this.code = code;
  }
}

/** Sends `{code, message}` JSON with a status (the reply shape of faas-api.md). */
export function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));
}

/**
 * Reads a JSON object body and checks that each named field is a string (faas-api.md §9.9:
 * missing fields never crash). Fastify already parsed the body; a non-object or a missing
 * field answers 400 ERROR_JSON_BINDING and returns undefined.
 */
export function bindJson<K extends string>(request: FastifyRequest, reply: FastifyReply, required: readonly K[]): (Record<K, string> & Record<string, unknown>) | undefined {
  const body = request.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    sendJson(reply, 400, { code: 'ERROR_JSON_BINDING', message: 'the body must be a JSON object' });
    return undefined;
  }
  for (const k of required) {
    if (typeof (body as Record<string, unknown>)[k] !== 'string' || (body as Record<string, string>)[k] === '') {
      sendJson(reply, 400, { code: 'ERROR_JSON_BINDING', message: `field "${k}" (a non-empty string) is missing` });
      return undefined;
    }
  }
  return body as Record<K, string> & Record<string, unknown>;
}

/**
 * A fastify `onRequest` hook enforcing the admin policy (faas-api.md §9.1) on the routes it is
 * attached to: `app.post('/x', { onRequest: adminGuard(policy) }, handler)`.
 */
export function adminGuard(policy: AdminPolicy) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const refusal = checkAdmin(policy, request.headers, request.socket.remoteAddress);
    if (refusal) await sendJson(reply, refusal.status, refusal.body);
  };
}

/**
 * Creates the app of one FaaS service with its runner routes, JSON parsing and error handling.
 * Fastify's own request logging is off: services log what they decide (one line per proxied
 * request, deployments, refusals) with `o.logger`.
 */
export function createServiceApp(o: ServiceAppOptions): FastifyInstance {
  const app = fastify({
    logger: false,
    bodyLimit: o.bodyLimit ?? 1024 * 1024,
    ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}),
    // Go routes such as /functions/:name/:revision take names with dots
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256 },
  }) as unknown as FastifyInstance;
  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof FaasError) return sendJson(reply, error.status, { code: error.code, message: error.message });
    const status = error.statusCode ?? 500;
    if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      return sendJson(reply, 400, { code: 'ERROR_JSON_BINDING', message: error.message });
    }
    if (status >= 500) o.logger.error({ service: o.service, url: request.url, err: error.message }, 'request failed');
    return sendJson(reply, status, { code: status === 413 ? 'TOO_LARGE' : status >= 500 ? 'ERROR' : 'BAD_REQUEST', message: error.message });
  });
  app.get('/capsule/health', async (_req, reply) => sendJson(reply, 200, { status: 'ok', service: o.service }));
  app.get('/capsule/ready', async (_req, reply) => {
    const ready = o.ready ? o.ready() : true;
    return sendJson(reply, ready ? 200 : 503, { status: ready ? 'ready' : 'starting', service: o.service });
  });
  const metrics = o.metrics;
  if (metrics) app.get('/capsule/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
  return app;
}

/**
 * Starts listening (`port` 0 = a free port).
 * @throws CapsuleError USAGE (exit 2) naming host and port and what to change (EADDRINUSE, EACCES, …)
 */
export async function listenService(app: FastifyInstance, o: { host: string; port: number; tls?: TlsFiles }): Promise<RunningService> {
  try {
    await app.listen({ host: o.host, port: o.port });
  } catch (e) {
    throw new CapsuleError('USAGE', listenError(e as NodeJS.ErrnoException, o.host, o.port));
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `${o.tls ? 'https' : 'http'}://${host}:${address.port}`,
    port: address.port,
    app,
    close: () => (closing ??= app.close()),
  };
}
