/**
 * The outbound HTTP allow-list (conventions.md §2; capsule-abi.md §7.6): `--allowed-hosts` /
 * config `allowedHosts` entries, each one of
 *
 * - `*` — any host;
 * - `host` — that host, any port, http or https (`example.com`, `127.0.0.1`, `[::1]`);
 * - `*.host` — any name below `host` (not `host` itself); `*` may stand anywhere in a name and
 *   matches any run of characters, dots included;
 * - `host:port` — that host on that port only;
 * - `scheme://host[:port]` — only with that scheme (`http` or `https`).
 *
 * Hosts compare case-insensitively, after the WHATWG URL parser's normalisation (so
 * `http://2130706433/` is `127.0.0.1`); a URL without a port has its scheme's default port.
 * Default: the empty list, which allows nothing.
 */
import { CapsuleError } from '../../base/errors.ts';

/** One parsed entry. */
export interface AllowRule {
  /** The entry as written, for messages. */
  readonly text: string;
  readonly scheme?: 'http' | 'https';
  /** Host pattern (lower case), `*` globs; undefined = any host. */
  readonly host?: RegExp;
  readonly port?: number;
}

const ENTRY = /^(?:(https?):\/\/)?(\[[0-9a-f:.]+\]|[^\s:/[\]]+)(?::(\d{1,5}))?\/?$/i;

/**
 * Parses allow-list entries (also comma-separated ones).
 * @throws CapsuleError USAGE naming the entry that does not follow the grammar
 */
export function parseAllowedHosts(entries: readonly string[], what = '--allowed-hosts'): AllowRule[] {
  const rules: AllowRule[] = [];
  for (const raw of entries.flatMap((e) => e.split(','))) {
    const text = raw.trim();
    if (!text) continue;
    if (text === '*') {
      rules.push({ text });
      continue;
    }
    const m = ENTRY.exec(text);
    const port = m?.[3] !== undefined ? Number(m[3]) : undefined;
    if (!m || (port !== undefined && (port < 1 || port > 65535))) {
      throw new CapsuleError('USAGE', `${what}: "${text}" is not an allowed-host entry (expected host, *.host, host:port, http[s]://host[:port] or *)`);
    }
    const host = m[2]!.toLowerCase();
    const pattern = host.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')).join('.*');
    rules.push({ text, scheme: m[1] ? (m[1].toLowerCase() as 'http' | 'https') : undefined, host: new RegExp(`^${pattern}$`), port });
  }
  return rules;
}

/** The port a URL connects to (its scheme's default when it names none). */
export function effectivePort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/** Whether `url` (http or https) is allowed by `rules`. */
export function isAllowed(rules: readonly AllowRule[], url: URL): boolean {
  const scheme = url.protocol.slice(0, -1);
  const host = url.hostname.toLowerCase();
  const port = effectivePort(url);
  return rules.some((r) => (!r.scheme || r.scheme === scheme) && (!r.host || r.host.test(host)) && (r.port === undefined || r.port === port));
}
