/** `capsule inspect`: what a module is and what it asks of the host. */
import { basename } from 'node:path';
import { CapsuleError } from '../base/errors.ts';
import { compileModule, digestOf, readModuleFile, type LoadedModule } from '../engine/load.ts';
import { parseModule, type ParsedModule } from '../wasm/binary.ts';
import { detectKind } from '../engine/detect.ts';
import { type Detection, type ModuleKind } from '../base/kinds.ts';
import { capabilityOf, findHostFunction } from '../capabilities/index.ts';
import { abiFor } from '../abi/index.ts';
import { formatType } from '../abi/signatures.ts';

/**
 * Inspects a module file: its description, and the load problem when it cannot run (a bad
 * export or import signature, an unknown host function…). A module that fails its checks is
 * still described as far as it parses, with the problem (the same message `run` and `serve`
 * give) as a `problem` line / JSON field.
 * @returns the text to print (trailing newline) and the problem, if any (the CLI then exits 1)
 * @throws CapsuleError LOAD (unreadable file), BAD_MODULE when the bytes are not a module at all
 */
export async function inspectFile(path: string, options: { kind?: ModuleKind; json: boolean }): Promise<{ text: string; problem?: CapsuleError }> {
  const bytes = await readModuleFile(path);
  try {
    return { text: describeModule(await compileModule(bytes, path, { kind: options.kind }), options.json) };
  } catch (e) {
    if (!(e instanceof CapsuleError) || e.code !== 'BAD_MODULE') throw e;
    let parsed: ParsedModule;
    try {
      parsed = parseModule(bytes);
    } catch {
      throw e; // not a module: nothing more to say than the error
    }
    const name = basename(path);
    let detection: Detection | undefined;
    try {
      detection = detectKind(parsed, name, options.kind);
    } catch {
      // the problem says why no kind fits
    }
    const problem = e.message.startsWith(`${name}: `) ? e.message.slice(name.length + 2) : e.message;
    const info = { ...baseInfo(name, path, bytes.length, digestOf(bytes), parsed, detection), problem };
    return { text: render(info, options.json), problem: e };
  }
}

/** Renders the description of a loaded module as text or JSON (with a trailing newline). */
export function describeModule(m: LoadedModule, json: boolean): string {
  const abi = abiFor(m.detection.kind, m.name);
  const gen = abi.generation(m.detection) ?? 2;
  const info = {
    ...baseInfo(m.name, m.source, m.size, m.digest, m.parsed, m.detection),
    capabilities: [...new Set(m.hostImports.map((n) => capabilityOf(n, gen)?.name).filter((c): c is string => c !== undefined))],
    grants: [...grantsOf(m.hostImports, gen), ...(abi.grants?.(m.parsed) ?? [])],
    memory: m.pooledMemory ?? m.importedMemory?.limits ?? m.parsed.memories[0],
    /** How "a fresh instance per call" is served (capsule-abi.md §3; docs/performance.md). */
    freshInstances: abi.reuse === 'by-default'
      ? 'one instance per worker thread, kept between calls and replaced after a trap or a deadline (--fresh: a new instance per call)'
      : m.snapshot?.ok
      ? 'one initialised instance per worker, reset after each call (unless its initialisation calls a host function or a WASI function with effects, such as a write)'
      : `a new instance per call${m.snapshot ? `: ${m.snapshot.reason}` : ''}`,
  };
  return render(info, json);
}

/** What inspect says of any module that parses. */
function baseInfo(name: string, source: string, size: number, digest: string, parsed: ParsedModule, detection: Detection | undefined) {
  return {
    module: name,
    source,
    size,
    digest,
    kind: detection?.kind,
    abi: detection ? abiFor(detection.kind, name).titles?.[detection.kind] ?? detection.kind : undefined,
    detectedBecause: detection?.reason,
    imports: parsed.imports.map((i) => ({ module: i.module, name: i.name, kind: i.kind, ...(i.type ? { signature: formatType(i.type) } : {}) })),
    exports: parsed.exports.map((e) => ({ name: e.name, kind: e.kind, ...(e.type ? { signature: formatType(e.type) } : {}) })),
  };
}

type Info = ReturnType<typeof baseInfo> & {
  problem?: string;
  capabilities?: string[];
  grants?: ReturnType<typeof grantsOf>;
  memory?: { min: number; max?: number };
  freshInstances?: string;
};

function render(info: Info, json: boolean): string {
  if (json) return JSON.stringify(info, null, 2) + '\n';
  const lines = [
    `module:       ${info.module} (${info.size} bytes, ${info.digest})`,
    `kind:         ${info.kind ? `${info.kind} — ${info.abi}` : 'none'}`,
    ...(info.detectedBecause ? [`detected by:  ${info.detectedBecause}`] : []),
    ...(info.problem !== undefined ? [`problem:      ${info.problem}`] : []),
  ];
  if (info.grants && info.capabilities) {
    lines.push(
      `capabilities: ${info.capabilities.length ? info.capabilities.join(', ') : 'none'}`,
      `grants:${info.grants.length ? '' : '       none needed'}`,
      ...info.grants.map((g) => `  ${g.grant}: ${g.lends}, for ${g.functions.join(', ')} — give it with ${g.how}`),
      `memory:       ${info.memory ? `${info.memory.min} pages at start${info.memory.max !== undefined ? `, at most ${info.memory.max}` : ''}` : 'none'}`,
      `fresh calls:  ${info.freshInstances}`,
    );
  }
  lines.push(
    'imports:',
    ...info.imports.map((i) => `  ${i.module}.${i.name} ${i.kind === 'function' ? (i.signature ?? '') : i.kind}`),
    'exports:',
    ...info.exports.map((e) => `  ${e.name} ${e.kind === 'function' ? (e.signature ?? '') : e.kind}`),
  );
  return lines.join('\n') + '\n';
}

/** The grants the imported host functions need (`Capability.grant`), with how to give them. */
function grantsOf(imports: readonly string[], gen: 1 | 2): { grant: string; lends: string; how: string; functions: string[] }[] {
  const out = new Map<string, { grant: string; lends: string; how: string; functions: string[] }>();
  for (const name of imports) {
    const capability = capabilityOf(name, gen);
    if (!capability?.grant || !findHostFunction(name, gen)?.grant) continue;
    const grant = capability.name;
    const info = capability.grant;
    let g = out.get(grant);
    if (!g) out.set(grant, (g = { grant, ...info, functions: [] }));
    g.functions.push(name);
  }
  return [...out.values()];
}
