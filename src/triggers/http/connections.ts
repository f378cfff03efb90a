/**
 * The HTTP servers' connection level, below the request pipeline (conventions.md §4: every
 * answer the runner makes is JSON `{"error","code"}` with `X-Request-Id`):
 *
 * - **Half-closed clients** (`nc -N`, `curl --no-keepalive` scripts that shut their write side
 *   once the request is sent) get their answers: Node ends such a connection at the client's
 *   FIN and drops the answers still being computed unless `httpAllowHalfOpen` is set, which
 *   makes the last answer end the connection instead.
 * - **Malformed requests** (`clientError`): requests parsed before the bad bytes on the same
 *   connection (pipelining) are answered first, in order; then `400` (`431` headers too large,
 *   `408` too slow) JSON, and the connection is closed. Node's default answers 400 at once and
 *   destroys the connection, losing the answers still being computed.
 * - **`CONNECT`** (Capsule is no proxy) gets `405` JSON, after the answers the connection still
 *   owes; Node's default closes the connection without a word.
 * - **Listening**: a port in use, an address that is not this machine's, an unknown host name or
 *   a certificate that cannot be used are `USAGE` errors with one clear line (exit 2 in the CLI).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { CapsuleError } from '../../base/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import { newRequestId } from '../shared/request-id.ts';

/** Status and reason of a runner-made answer to a protocol error, by Node's error code. */
const CLIENT_ERRORS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Content Too Large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout'],
};

/** Methods a function may be called with (the `Allow` header of the answer to `CONNECT`). */
const ALLOW = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE';

/** What one connection still owes, and the runner's last answer once it owes nothing. */
interface ConnectionState {
  /**
   * Its requests and their responses, oldest first, some maybe answered already: the answered
   * ones at the front are dropped when the next request comes (a connection answers in order).
   */
  open: Exchange[];
  /** A raw answer to send (then close) once every complete request in `open` is answered. */
  last?: string;
  /** A protocol error or CONNECT was seen: later events of the connection are ignored. */
  failed?: boolean;
}

/** A request and its response. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
}

/** A connection's state, on the socket itself (a property is cheaper per request than a WeakMap). */
const STATE = Symbol('capsule.connection');

/** Installed on a server by {@link guardConnections}. */
export interface ConnectionGuard {
  /**
   * Records a request so that a protocol error later on its connection is answered after it.
   * Call at the start of the request handler.
   */
  track(req: IncomingMessage, res: ServerResponse): void;
}

/**
 * Makes `server` answer half-closed clients, malformed requests and `CONNECT` (see the module
 * comment). Each runner-made answer is logged as a `request` line with its status and code.
 */
export function guardConnections(server: Server, log: Logger): ConnectionGuard {
  // Undocumented but long-standing (Node's own tests set it): the http server's reading of the
  // net server's allowHalfOpen. With it, a client's FIN marks the last answer as the last.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  const stateOf = (socket: Duplex): ConnectionState =>
    ((socket as Duplex & { [STATE]?: ConnectionState })[STATE] ??= { open: [] });
  /**
   * Sends the last answer once no complete request is waiting for its own; else waits for the
   * first such response to close (then looks again). A request's response is watched only from
   * then on: no listener per request.
   */
  const settle = (socket: Duplex, st: ConnectionState) => {
    if (st.last === undefined) return;
    for (const { req, res } of st.open) {
      if (req.complete && !res.closed) {
        res.once('close', () => settle(socket, st));
        return;
      }
    }
    const text = st.last;
    st.last = undefined;
    if (socket.writable) socket.end(text);
    else socket.destroy();
  };
  const fail = (socket: Duplex, status: number, reason: string, body: { error: string; code: string }, fields: Record<string, unknown>, extra = '') => {
    const st = stateOf(socket);
    st.failed = true;
    const requestId = newRequestId();
    const json = JSON.stringify(body);
    st.last = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(json)}\r\n`
      + `X-Request-Id: ${requestId}\r\n${extra}Connection: close\r\n\r\n${json}`;
    log.info({ requestId, ...fields, status, code: body.code }, 'request');
    settle(socket, st);
  };

  server.on('clientError', (err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex) => {
    const st = stateOf(socket);
    if (st.failed) return;
    if (err.code === 'ECONNRESET' || !socket.writable) {
      st.failed = true;
      socket.destroy();
      return;
    }
    const [status, reason] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'Bad Request'];
    const why = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'the request was not received in time' : `malformed HTTP request: ${err.reason ?? err.message}`;
    fail(socket, status, reason, { error: why, code: status === 408 ? 'REQUEST_TIMEOUT' : 'BAD_REQUEST' }, { error: err.code });
  });

  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    const st = stateOf(socket);
    if (st.failed) return;
    fail(socket, 405, 'Method Not Allowed', { error: 'CONNECT is not supported: Capsule serves functions, it is not a proxy', code: 'METHOD_NOT_ALLOWED' },
      { method: req.method, url: req.url }, `Allow: ${ALLOW}\r\n`);
  });

  return {
    track(req, res) {
      const open = stateOf(req.socket).open;
      // answered ones go (in order: a connection answers its requests in the order they came)
      while (open.length > 0 && open[0]!.res.closed) open.shift();
      open.push({ req, res });
    },
  };
}

/**
 * Listens on `host:port`; with `reusePort` (Linux, Node ≥ 22.12) beside other sockets of this
 * process bound to the same port, the kernel spreading new connections among them.
 * @returns the port bound (the one picked when `port` is 0)
 * @throws CapsuleError USAGE with one line naming the address and the flag to change
 */
export async function listen(server: Server, port: number, host: string, reusePort = false): Promise<number> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(reusePort ? { port, host, reusePort } : { port, host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    throw new CapsuleError('USAGE', listenError(e as NodeJS.ErrnoException, host, port));
  }
  return (server.address() as { port: number }).port;
}

/** Why a listen failed, in one line that says what to change (EADDRINUSE → another --http-port, …). */
export function listenError(e: NodeJS.ErrnoException, host: string, port: number): string {
  const at = `cannot listen on ${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch (e.code) {
    case 'EADDRINUSE': return `${at}: the port is already in use; pick another with --http-port (0 = a free one)`;
    case 'EACCES': return `${at}: permission denied (ports below 1024 need privileges); pick another with --http-port`;
    case 'EADDRNOTAVAIL': return `${at}: ${host} is not an address of this machine (--host)`;
    case 'ENOTFOUND': case 'EAI_AGAIN': case 'EAI_FAIL': return `${at}: unknown host name ${host} (--host)`;
    default: return `${at}: ${e.message}`;
  }
}

/**
 * Why a PEM certificate and key could not make a TLS server (`createServer` threw `e`), in one
 * line for a `USAGE` error; says so when the two files look swapped.
 */
export function tlsError(e: unknown, tls: { cert: Buffer; key: Buffer }): string {
  const swapped = tls.cert.includes('PRIVATE KEY') && tls.key.includes('CERTIFICATE');
  const reason = (e as { reason?: string }).reason ?? (e as Error).message;
  return swapped
    ? `--crt and --key are swapped: --crt is the certificate (BEGIN CERTIFICATE), --key the private key (BEGIN … PRIVATE KEY)`
    : `--crt / --key cannot be used for TLS: ${reason}`;
}
