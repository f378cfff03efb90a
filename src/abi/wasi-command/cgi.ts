/**
 * CGI 1.1 / WAGI for WASI commands (wasi-cgi.md §3–§6): an HTTP request becomes argv and
 * environment variables, and the command's standard output becomes the HTTP response.
 *
 * Pure functions (no I/O): the ABI (`index.ts`) runs the guest, the HTTP trigger says which
 * route matched (`CgiRoute`).
 */
import type { CgiRoute, HttpRequestInput, HttpResponseOutput } from '../../base/invocation.ts';

/** Default cap on a CGI command's standard output (`--max-output`): 10 MiB. */
export const DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024;
/** Largest CGI header block accepted (the text before the first empty line): 64 KiB. */
export const MAX_HEADER_BLOCK_BYTES = 64 * 1024;

/** The request path and query as received, split (`/a%20b`, `x=1&y=2`; query without `?`). */
export interface RawTarget {
  path: string;
  query: string;
}

/** Splits `input.url` (`scheme://host/path?query`) into the raw path and query, not decoded. */
export function rawTarget(url: string): RawTarget {
  const afterScheme = url.indexOf('://');
  const start = afterScheme >= 0 ? url.indexOf('/', afterScheme + 3) : url.indexOf('/');
  const target = start >= 0 ? url.slice(start) : '/';
  const q = target.indexOf('?');
  const hash = (s: string) => s.replace(/#.*$/, '');
  return q >= 0 ? { path: target.slice(0, q), query: hash(target.slice(q + 1)) } : { path: hash(target), query: '' };
}

/** `decodeURIComponent` that keeps malformed escapes (`%zz`) as written instead of throwing. */
export function decodePath(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return p.replace(/%[0-9A-Fa-f]{2}/g, (m) => {
      try {
        return decodeURIComponent(m);
      } catch {
        return m;
      }
    });
  }
}

/** The route's prefix: the route without a trailing `/...` (`''` for `/...`). */
export function routePrefix(route: string): string {
  return route === '/...' ? '' : route.endsWith('/...') ? route.slice(0, -4) : route;
}

/**
 * argv of a CGI call (wasi-cgi.md §3). Without a template: the raw request path, then the query
 * split on `&` with its items left URL-encoded. With one: `${SCRIPT_NAME}` → the request path,
 * `${ARGS}` → the query with `&` turned into spaces, then split on whitespace.
 */
export function cgiArgv(target: RawTarget, template?: string): string[] {
  if (template === undefined) return [target.path, ...(target.query ? target.query.split('&') : [])];
  const text = template.replaceAll('${SCRIPT_NAME}', target.path).replaceAll('${ARGS}', target.query.replaceAll('&', ' '));
  return text.split(/\s+/).filter(Boolean);
}

/** Go's `url.QueryEscape`: `application/x-www-form-urlencoded`, unreserved `A-Za-z0-9-_.~`. */
function goQueryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%20/g, '+');
}

/** Go's `QueryUnescape` (strict: a bad `%` escape makes the pair invalid). */
function goQueryUnescape(s: string): string | undefined {
  if (/%(?![0-9A-Fa-f]{2})/.test(s)) return undefined;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return undefined; // escapes that do not form UTF-8: Go keeps the bytes; close enough to drop
  }
}

/**
 * The query in Go's `req.URL.Query().Encode()` form (wasi-cgi.md §4.2 `http_query`): pairs parsed
 * as `url.ParseQuery` does (invalid pairs and pairs with `;` dropped), keys sorted, values in
 * order, re-escaped with `QueryEscape`.
 */
export function canonicalQuery(query: string): string {
  const byKey = new Map<string, string[]>();
  for (const part of query.split('&')) {
    if (!part || part.includes(';')) continue;
    const eq = part.indexOf('=');
    const k = goQueryUnescape(eq >= 0 ? part.slice(0, eq) : part);
    const v = goQueryUnescape(eq >= 0 ? part.slice(eq + 1) : '');
    if (k === undefined || v === undefined) continue;
    const list = byKey.get(k) ?? [];
    list.push(v);
    byKey.set(k, list);
  }
  const keys = [...byKey.keys()].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : Buffer.from(a) > Buffer.from(b) ? 1 : 0));
  return keys.flatMap((k) => byKey.get(k)!.map((v) => `${goQueryEscape(k)}=${goQueryEscape(v)}`)).join('&');
}

/** Splits `host[:port]` / `[v6]:port`. */
function splitHostPort(hostport: string): { host: string; port?: string } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostport);
  if (!m) return { host: hostport };
  return { host: m[1]!, port: m[2] || undefined };
}

/**
 * The environment of a CGI call (wasi-cgi.md §4): the configured variables first, then the CGI
 * 1.1 / WAGI set (§4.1) and the lowercase set of the Bendersky server (§4.2), which therefore
 * always win.
 * @param configured the function's variables (`--env`, `--env-file`, the route's `environment`)
 */
export function cgiEnv(input: HttpRequestInput, route: CgiRoute, configured: Iterable<readonly [string, string]>): Map<string, string> {
  const env = new Map<string, string>();
  for (const [k, v] of configured) env.set(k, v);
  const target = rawTarget(input.url);
  const prefix = routePrefix(route.route);
  const rawPathInfo = target.path.startsWith(prefix) ? target.path.slice(prefix.length) : '';
  const headers = new Map<string, string[]>();
  for (const [k, v] of input.headers) {
    const key = k.toLowerCase();
    const list = headers.get(key) ?? [];
    list.push(v);
    headers.set(key, list);
  }
  const header = (name: string) => headers.get(name)?.join(', ');
  const hostHeader = header('host');
  const defaultHost = route.defaultHost ?? 'localhost:3000';
  const fromHost = hostHeader ? splitHostPort(hostHeader) : undefined;
  const fromDefault = splitHostPort(defaultHost);
  const serverName = fromHost?.host || fromDefault.host;
  const serverPort = fromHost?.port ?? fromDefault.port ?? '80';
  const scheme = /^https:/i.test(input.url) ? 'https' : 'http';
  const ip = input.remoteAddress;

  env.set('REQUEST_METHOD', input.method);
  env.set('SCRIPT_NAME', prefix || '/');
  env.set('PATH_INFO', decodePath(rawPathInfo));
  env.set('X_RAW_PATH_INFO', rawPathInfo);
  env.set('PATH_TRANSLATED', decodePath(rawPathInfo));
  env.set('QUERY_STRING', target.query);
  env.set('CONTENT_LENGTH', String(input.body.length));
  env.set('CONTENT_TYPE', header('content-type') ?? '');
  env.set('SERVER_NAME', serverName);
  env.set('SERVER_PORT', serverPort);
  env.set('SERVER_PROTOCOL', `HTTP/${input.httpVersion ?? '1.1'}`);
  env.set('SERVER_SOFTWARE', 'WAGI/1');
  env.set('GATEWAY_INTERFACE', 'CGI/1.1');
  env.set('REMOTE_ADDR', ip);
  env.set('REMOTE_HOST', ip);
  env.set('AUTH_TYPE', '');
  env.set('REMOTE_USER', '');
  env.set('X_MATCHED_ROUTE', route.route);
  env.set('X_FULL_URL', `${scheme}://${serverName}:${serverPort}${target.path}${target.query ? `?${target.query}` : ''}`);
  for (const [name, values] of headers) {
    if (name === 'authorization' || name === 'connection') continue; // RFC 3875 §4.1.18
    env.set(`HTTP_${name.toUpperCase().replaceAll('-', '_')}`, values.join(', '));
  }

  env.set('http_path', decodePath(target.path));
  env.set('http_method', input.method);
  env.set('http_host', hostHeader ?? '');
  env.set('http_query', canonicalQuery(target.query));
  env.set('remote_addr', ip.includes(':') ? `[${ip}]:${input.remotePort}` : `${ip}:${input.remotePort}`);
  return env;
}

/** An HTTP token (RFC 9110 §5.6.2): a valid header name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header values Node accepts (no control characters but HTAB). */
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Framing headers Capsule sets itself (wasi-cgi.md §6.4). */
const HOP_BY_HOP = new Set(['connection', 'transfer-encoding', 'content-length', 'keep-alive', 'upgrade']);
const TEXT_PLAIN = 'text/plain; charset=utf-8';
/** The headers that make a block of `Name: value` lines a CGI header block. */
const CGI_HEADER = /^\s*(content-type|status|location)\s*:/i;

/** The response made from a command's standard output. */
export type CgiResult =
  | { ok: true; response: HttpResponseOutput; notes: string[] }
  | { ok: false; error: string };

/**
 * Turns a CGI command's standard output into a response (wasi-cgi.md §6).
 *
 * - A header block is the text before the first empty line (`\n\n` or `\r\n\r\n`), or all of
 *   stdout when it has no empty line, provided every line is `Name: value` with `Name` an HTTP
 *   token and one of `Content-Type`, `Status`, `Location` is present.
 * - No header block: 200, `text/plain; charset=utf-8`, body = all of stdout.
 * - `Status` whose first token is not a code in 100–599 → `{ ok: false }` (the caller answers 502);
 *   so does a header block larger than {@link MAX_HEADER_BLOCK_BYTES}.
 * - `Location` without `Status` → 302; no `Content-Type` → text/plain; other headers are added,
 *   repeated names appended; hop-by-hop headers are ignored and values with control characters
 *   dropped (each one noted in `notes`, for the log).
 */
export function parseCgiOutput(stdout: Uint8Array): CgiResult {
  const lines: string[] = [];
  let pos = 0;
  let bodyStart = -1;
  let blockBytes = 0;
  let cgiHeader = false;
  while (pos < stdout.length) {
    let nl = stdout.indexOf(0x0a, pos);
    const last = nl < 0;
    if (last) nl = stdout.length;
    let end = nl;
    if (end > pos && stdout[end - 1] === 0x0d) end--;
    if (end === pos && !last) {
      bodyStart = nl + 1;
      break;
    }
    const line = Buffer.from(stdout.buffer, stdout.byteOffset + pos, end - pos).toString('latin1');
    const colon = line.indexOf(':');
    // a line that is not `Name: value`: there is no header block at all
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon).trim())) return plain(stdout);
    cgiHeader ||= CGI_HEADER.test(line);
    lines.push(line);
    blockBytes = nl;
    // a long header-shaped prefix without Content-Type/Status/Location is text, not headers
    if (blockBytes > MAX_HEADER_BLOCK_BYTES && !cgiHeader) return plain(stdout);
    pos = nl + 1;
  }
  if (!cgiHeader) return plain(stdout);
  if (blockBytes > MAX_HEADER_BLOCK_BYTES) {
    return { ok: false, error: `the function's CGI header block is larger than ${MAX_HEADER_BLOCK_BYTES / 1024} KiB` };
  }
  const body = bodyStart >= 0 ? stdout.subarray(bodyStart) : new Uint8Array(0);
  const headers: [string, string][] = [];
  const notes: string[] = [];
  let status: number | undefined;
  let location = false;
  let contentType = false;
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    const key = name.toLowerCase();
    if (key === 'status') {
      const m = /^(\d{3})(?:\s|$)/.exec(value);
      const code = m ? Number(m[1]) : NaN;
      if (!(code >= 100 && code <= 599)) return { ok: false, error: `the function's CGI Status header is not a status code from 100 to 599: "${value.slice(0, 100)}"` };
      status = code;
      continue;
    }
    if (HOP_BY_HOP.has(key)) {
      notes.push(`CGI header ${name} ignored (Capsule frames the response itself)`);
      continue;
    }
    if (!VALUE.test(value)) {
      notes.push(`CGI header ${name} dropped: its value has control characters`);
      continue;
    }
    if (key === 'location') location = true;
    if (key === 'content-type') contentType = true;
    headers.push([name, value]); // latin1: Node writes the guest's bytes back unchanged
  }
  if (!contentType) headers.push(['Content-Type', TEXT_PLAIN]);
  return { ok: true, response: { type: 'http', status: status ?? (location ? 302 : 200), headers, body }, notes };
}

function plain(stdout: Uint8Array): CgiResult {
  return { ok: true, response: { type: 'http', status: 200, headers: [['Content-Type', TEXT_PLAIN]], body: stdout }, notes: [] };
}
