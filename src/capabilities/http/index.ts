/**
 * Capability `http`: outbound HTTP requests (capsule-abi.md §5.7, §4.7, §7.6), granted by the
 * function's `allowedHosts` (none by default); see client.ts for the policy (redirects re-checked,
 * deadline, response size cap). Async: the guest waits with JSPI while its worker fetches.
 *
 * Gen 2 `hostHTTP(request JSON)`: the request `{"JSONBody":…,"TextBody":"…","URI":"…",
 * "Method":"…","Headers":{…}}` (field names matched case-insensitively, as Go's decoder did;
 * a `{}` or null JSONBody counts as absent; the body is JSONBody when present, else TextBody) →
 * `S{"JSONBody":<raw body>,"Headers":{"Name":["v",…]},"StatusCode":n}` when the response is JSON
 * (`application/json`, `…+json`) and parses, else `S{"TextBody":"<body, JSON-escaped>",…}`;
 * refusals and transport errors → `F<error>`.
 *
 * Gen 1 `hostHttp(url, method, headers, body)`: headers `Name:value` items joined by `|` (1a) or
 * `²`, split at the first `:`; a headers or body argument equal to `empty` means none (§7.6) →
 * the response body (whatever the status) / `[ERR][0]:<error>`.
 */
import { fail, ok, text, type Capability, type HostCallContext, type HostResult } from '../types.ts';
import { CAPABILITY_DEFAULTS } from '../settings.ts';
import { gen1ListSeparator } from '../gen1-encodings.ts';
import { parseAllowedHosts, type AllowRule } from './allow-list.ts';
import { OutboundError, outboundFetch, type OutboundPolicy, type OutboundRequest, type OutboundResponse } from './client.ts';

const decoder = new TextDecoder();
const rulesCache = new WeakMap<readonly string[], AllowRule[]>();

/** The outbound policy of the calling function. @throws CapsuleError for an invalid allow-list */
export function policyOf(ctx: Pick<HostCallContext, 'settings'>): OutboundPolicy {
  const hosts = ctx.settings.allowedHosts;
  let rules = rulesCache.get(hosts);
  if (!rules) {
    rules = parseAllowedHosts(hosts, 'allowedHosts');
    rulesCache.set(hosts, rules);
  }
  return {
    rules,
    allowedHosts: hosts,
    timeoutMs: ctx.settings.http?.timeoutMs ?? CAPABILITY_DEFAULTS.httpTimeoutMs,
    maxResponseBytes: ctx.settings.http?.maxResponseBytes ?? CAPABILITY_DEFAULTS.maxResponseBytes,
  };
}

/** Go's canonical header name (`content-type` → `Content-Type`), as `http.Header` keys are. */
export function canonicalHeaderName(name: string): string {
  return name.toLowerCase().replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

/** Decodes a gen-2 hostHTTP request JSON. @throws Error with the reason */
export function parseHostHttpRequest(json: string): OutboundRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new Error(`the request is not valid JSON: ${(e as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the request is not a JSON object');
  const field = (name: string): unknown => {
    const obj = parsed as Record<string, unknown>;
    if (name in obj) return obj[name];
    const k = Object.keys(obj).find((key) => key.toLowerCase() === name.toLowerCase());
    return k === undefined ? undefined : obj[k];
  };
  const uri = field('URI');
  if (typeof uri !== 'string' || uri === '') throw new Error('the request has no URI');
  const method = field('Method');
  const headers: [string, string][] = [];
  const h = field('Headers');
  if (h && typeof h === 'object' && !Array.isArray(h)) {
    for (const [name, value] of Object.entries(h as Record<string, unknown>)) {
      for (const v of Array.isArray(value) ? value : [value]) headers.push([name, typeof v === 'string' ? v : JSON.stringify(v)]);
    }
  }
  const jsonBody = field('JSONBody');
  const textBody = field('TextBody');
  const emptyObject = jsonBody !== null && typeof jsonBody === 'object' && !Array.isArray(jsonBody) && Object.keys(jsonBody).length === 0;
  let body: string | undefined;
  if (jsonBody !== undefined && jsonBody !== null && !emptyObject) {
    body = JSON.stringify(jsonBody);
    if (!headers.some(([n]) => n.toLowerCase() === 'content-type')) headers.push(['Content-Type', 'application/json; charset=utf-8']);
  } else if (typeof textBody === 'string' && textBody !== '') {
    body = textBody;
  }
  return { method: typeof method === 'string' && method !== '' ? method : 'GET', url: uri, headers, body };
}

/** Renders a response as the gen-2 hostHTTP result JSON (without the `S`). */
export function renderHostHttpResponse(res: OutboundResponse): string {
  const headers: Record<string, string[]> = {};
  for (const [name, value] of res.headers) (headers[canonicalHeaderName(name)] ??= []).push(value);
  const type = (res.headers.find(([n]) => n === 'content-type')?.[1] ?? '').split(';')[0]!.trim().toLowerCase();
  const isJson = type === 'application/json' || type.endsWith('+json');
  const textBody = decoder.decode(res.body);
  if (isJson) {
    const raw = textBody.trim();
    let valid = raw !== '';
    try {
      if (valid) JSON.parse(raw);
    } catch {
      valid = false;
    }
    if (valid) return `{"JSONBody":${raw},"Headers":${JSON.stringify(headers)},"StatusCode":${res.status}}`;
  }
  return `{"TextBody":${JSON.stringify(textBody)},"Headers":${JSON.stringify(headers)},"StatusCode":${res.status}}`;
}

async function fetchFor(ctx: HostCallContext, req: OutboundRequest, render: (r: OutboundResponse) => HostResult): Promise<HostResult> {
  let policy: OutboundPolicy;
  try {
    policy = policyOf(ctx);
  } catch (e) {
    return fail((e as Error).message);
  }
  try {
    return render(await outboundFetch(req, policy));
  } catch (e) {
    if (e instanceof OutboundError) return fail(e.message);
    return fail(`${req.method} ${req.url}: ${(e as Error)?.message ?? String(e)}`);
  }
}

/** Parses gen-1 hostHttp headers: `Name:value` items joined by `sep`; `empty` = none. */
export function parseGen1Headers(headers: string, sep: string): [string, string][] {
  if (headers === '' || headers === 'empty') return [];
  const out: [string, string][] = [];
  for (const item of headers.split(sep)) {
    const i = item.indexOf(':');
    if (i <= 0) continue;
    const name = item.slice(0, i).trim();
    if (name) out.push([name, item.slice(i + 1).trim()]);
  }
  return out;
}

export const http: Capability = {
  name: 'http',
  grant: { lends: 'outbound HTTP to allowed hosts', how: '--allowed-hosts HOST,… (config allowedHosts)' },
  functions: [
    {
      name: 'hostHTTP', generations: [2], params: ['s'], returns: true, async: true, grant: true,
      async run(ctx, [request]) {
        let req: OutboundRequest;
        try {
          req = parseHostHttpRequest(text(request));
        } catch (e) {
          return fail(`hostHTTP: ${(e as Error).message}`);
        }
        return fetchFor(ctx, req, (res) => ok(renderHostHttpResponse(res)));
      },
    },
    {
      name: 'hostHttp', generations: [1], params: ['s', 's', 's', 's'], returns: true, async: true, grant: true,
      async run(ctx, [url, method, headers, body]) {
        const b = body as Uint8Array;
        const noBody = b.length === 0 || text(b) === 'empty';
        const req: OutboundRequest = {
          url: text(url),
          method: text(method) || 'GET',
          headers: parseGen1Headers(text(headers), gen1ListSeparator(ctx)),
          body: noBody ? undefined : b,
        };
        return fetchFor(ctx, req, (res) => ok(res.body));
      },
    },
  ],
};
