/**
 * Bounded load for the cluster scenarios (faas-cluster.md §2: ≤ 50 rps, ≤ 30 s): one call's
 * outcome with the node that answered (`X-Capsule-Node`), a steady rate of independent calls,
 * per-node counts, and a sample of a service's Prometheus metrics.
 */

/** One call's outcome: status (0 = the connection failed), body text, answering node, `code` of a JSON error. */
export interface Outcome { status: number; text: string; node: string; code?: string }

/** Calls `url` and never throws (a failed connection is status 0). */
export async function call(url: string, init?: RequestInit): Promise<Outcome> {
  try {
    const res = await fetch(url, init);
    const text = await res.text();
    const code = res.status >= 400 && res.headers.get('content-type')?.includes('json') ? (JSON.parse(text) as { code?: string }).code : undefined;
    return { status: res.status, text, node: res.headers.get('x-capsule-node') ?? '', code };
  } catch (e) {
    return { status: 0, text: (e as Error).message, node: '' };
  }
}

/** A steady load: `rps` calls a second (each awaited on its own) until `stop`; `seen` fills as they end. */
export function startLoad(url: string, rps: number, init?: () => RequestInit): { seen: Outcome[]; stop(): Promise<Outcome[]> } {
  const seen: Outcome[] = [];
  const pending: Promise<void>[] = [];
  const timer = setInterval(() => pending.push(call(url, init?.()).then((o) => void seen.push(o))), 1000 / rps);
  // a test that fails before stop() must not keep the file's process alive (it would hang the suite)
  timer.unref();
  return {
    seen,
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      return seen;
    },
  };
}

/** Calls per answering node. */
export const perNode = (xs: Outcome[]): Record<string, number> => xs.reduce<Record<string, number>>((m, o) => ((m[o.node] = (m[o.node] ?? 0) + 1), m), {});

/** The outcomes that are not 200. */
export const failures = (xs: Outcome[]): Outcome[] => xs.filter((o) => o.status !== 200);

/** The sum of a metric's samples at `<base>/capsule/metrics` whose labels include `labels` (0 when none). */
export async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${base}/capsule/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const body = line.includes('{') ? line.slice(line.indexOf('{') + 1, line.lastIndexOf('}')) : '';
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
