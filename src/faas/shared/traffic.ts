/**
 * The rule of a traffic split (faas-cluster.md §1.5), in a module without dependencies so that
 * the proxy (proxy/table.ts `setTraffic`) and the `capsule set-default` client
 * (clients/operations.ts `parseTargets`) check a split with the same code and the same words.
 */

/** The revision a plain `/functions/<name>` call reaches, and the alias a split sets. */
export const DEFAULT_REVISION = 'default';

/** One weighted target of a traffic split: a concrete revision and its share (integer percent). */
export interface TrafficTarget {
  revision: string;
  percent: number;
}

/**
 * Why `targets` is not a valid split, or undefined when it is: at least one target, each a
 * non-empty revision other than `default` named once, with a whole percent from 0 to 100, the
 * percents adding up to 100. Whether the revisions exist is the caller's to check.
 * @param targets as received (a JSON body is checked too: not an array, a missing revision)
 */
export function trafficProblem(targets: readonly TrafficTarget[]): string | undefined {
  if (!Array.isArray(targets) || targets.length === 0) return 'targets: give at least one {"revision","percent"}';
  const seen = new Set<string>();
  let sum = 0;
  for (const t of targets) {
    if (typeof t?.revision !== 'string' || t.revision === '') return 'each target needs a "revision" (a non-empty string)';
    if (t.revision === DEFAULT_REVISION) return 'a target cannot be "default" (it is the alias being set)';
    if (seen.has(t.revision)) return `revision ${t.revision} appears twice`;
    if (!Number.isInteger(t.percent) || t.percent < 0 || t.percent > 100) return `${t.revision}: percent must be a whole number from 0 to 100`;
    seen.add(t.revision);
    sum += t.percent;
  }
  return sum === 100 ? undefined : `the percents add up to ${sum}, not 100`;
}
