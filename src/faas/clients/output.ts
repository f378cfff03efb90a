/** Output of the FaaS client commands: aligned tables for people, JSON for scripts. */

/**
 * Columns padded to the widest cell (by code points), two spaces apart, no trailing spaces.
 * @param headers column titles
 * @param rows one array of cells per row, as many as `headers`
 * @returns the lines, header first
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const width = (s: string) => [...s].length;
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - width(c)))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** Writes lines to stdout. */
export function print(lines: readonly string[]): void {
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
}

/** Writes a value as indented JSON to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
