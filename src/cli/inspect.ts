/** `capsule inspect`: what a module is and what it asks of the host. */
import type { LoadedModule } from '../engine/load.ts';
import { findHostFunction } from '../capabilities/index.ts';
import { CAPABILITIES } from '../capabilities/index.ts';
import { GRANTS } from '../capabilities/grants.ts';

const GENERATION: Record<string, string> = {
  'capsule-1a': 'Capsule ABI gen 1a (Go Capsule 0.0.0 – 0.1.8)',
  'capsule-1b': 'Capsule ABI gen 1b (Go Capsule 0.1.9 – v0.2.8)',
  'capsule-1c': 'Capsule ABI gen 1c (Go Capsule v0.2.9 – v0.3.3)',
  'capsule-2': 'Capsule ABI gen 2 (Go Capsule v0.3.4 – v0.4.2)',
  extism: 'Extism plugin',
  wasi: 'WASI preview1 command',
};

/** Renders the module description as text or JSON (with a trailing newline). */
export function describeModule(m: LoadedModule, json: boolean): string {
  const gen = m.detection.kind.startsWith('capsule-1') ? 1 : 2;
  const capabilityOf = (name: string) => {
    const f = findHostFunction(name, gen);
    return f ? CAPABILITIES.find((c) => c.functions.includes(f))?.name : undefined;
  };
  const info = {
    module: m.name,
    source: m.source,
    size: m.size,
    digest: m.digest,
    kind: m.detection.kind,
    abi: GENERATION[m.detection.kind],
    detectedBecause: m.detection.reason,
    capabilities: [...new Set(m.hostImports.map(capabilityOf).filter(Boolean))],
    grants: grantsOf(m.hostImports, gen),
    imports: m.parsed.imports.map((i) => ({ module: i.module, name: i.name, kind: i.kind, ...(i.type ? { signature: sig(i.type) } : {}) })),
    exports: m.parsed.exports.map((e) => ({ name: e.name, kind: e.kind, ...(e.type ? { signature: sig(e.type) } : {}) })),
    memory: m.pooledMemory ?? m.importedMemory?.limits ?? m.parsed.memories[0],
    /** How "a fresh instance per call" is served (capsule-abi.md §3; docs/performance.md). */
    freshInstances: m.snapshot?.ok
      ? 'one initialised instance per worker, reset after each call (unless its initialisation calls the host)'
      : `a new instance per call${m.snapshot ? `: ${m.snapshot.reason}` : ''}`,
  };
  if (json) return JSON.stringify(info, null, 2) + '\n';
  const lines = [
    `module:       ${info.module} (${info.size} bytes, ${info.digest})`,
    `kind:         ${info.kind} — ${info.abi}`,
    `detected by:  ${info.detectedBecause}`,
    `capabilities: ${info.capabilities.length ? info.capabilities.join(', ') : 'none'}`,
    `grants:${info.grants.length ? '' : '       none needed'}`,
    ...info.grants.map((g) => `  ${g.grant}: ${g.lends}, for ${g.functions.join(', ')} — give it with ${g.how}`),
    `memory:       ${info.memory ? `${info.memory.min} pages at start${info.memory.max !== undefined ? `, at most ${info.memory.max}` : ''}` : 'none'}`,
    `fresh calls:  ${info.freshInstances}`,
    'imports:',
    ...info.imports.map((i) => `  ${i.module}.${i.name} ${i.kind === 'function' ? (i.signature ?? '') : i.kind}`),
    'exports:',
    ...info.exports.map((e) => `  ${e.name} ${e.kind === 'function' ? (e.signature ?? '') : e.kind}`),
  ];
  return lines.join('\n') + '\n';
}

/** The grants the imported host functions need (capabilities/grants.ts), with how to give them. */
function grantsOf(imports: readonly string[], gen: 1 | 2): { grant: string; lends: string; how: string; functions: string[] }[] {
  const out = new Map<string, { grant: string; lends: string; how: string; functions: string[] }>();
  for (const name of imports) {
    const grant = findHostFunction(name, gen)?.grant;
    if (!grant) continue;
    const info = GRANTS[grant] ?? { lends: grant, how: `the ${grant} settings` };
    let g = out.get(grant);
    if (!g) out.set(grant, (g = { grant, ...info, functions: [] }));
    g.functions.push(name);
  }
  return [...out.values()];
}

function sig(t: { params: string[]; results: string[] }): string {
  return `(${t.params.join(', ')}) -> (${t.results.join(', ')})`;
}
