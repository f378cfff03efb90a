/**
 * Load-time checks of the function signatures a module declares against those its ABI expects
 * (capsule-abi.md §1, §2.1, §2.5, §5.2, §5.5; wasi-cgi.md §1). A module that exports
 * `callHandle(i64, i32)` or `malloc(i32) -> ()` would otherwise fail on its first call with a
 * JavaScript conversion error, or a misleading one; here it is refused at load with a
 * `BAD_MODULE` error naming the export or import, its type and the expected one.
 */
import { CapsuleError } from '../base/errors.ts';
import type { FuncType, ParsedModule, ValType } from '../wasm/binary.ts';

/** A function type from its parameter and result types. */
export function sig(params: readonly ValType[], results: readonly ValType[]): FuncType {
  return { params: [...params], results: [...results] };
}

/** `(i32, i32) -> i64`, `(i32) -> ()`, `() -> (i32, i32)`: how messages and `capsule inspect` write a type. */
export function formatType(t: FuncType): string {
  const results = t.results.length === 1 ? t.results[0]! : `(${t.results.join(', ')})`;
  return `(${t.params.join(', ')}) -> ${results}`;
}

/** Whether two function types are the same. */
export function sameType(a: FuncType, b: FuncType): boolean {
  const eq = (x: readonly ValType[], y: readonly ValType[]) => x.length === y.length && x.every((t, i) => t === y[i]);
  return eq(a.params, b.params) && eq(a.results, b.results);
}

/** Accepted types of one export or import, and who expects them (`Capsule gen 2`, `a WASI command`). */
export interface Expected {
  /** Every type accepted; the message lists them joined with ` or `. */
  types: readonly FuncType[];
  /** Subject of the message: `<who> expects <types>`. */
  who: string;
}

/** `expects (i32) -> i32` / `expects (i32, i32) -> i32 or (i32, i32) -> ()`. */
export function expectation(e: Expected): string {
  return `${e.who} expects ${e.types.map(formatType).join(' or ')}`;
}

/**
 * Checks the types of the function exports a module has among `expected` (absent exports are
 * not checked here; whether one is required is the ABI's business). Exports whose type could not
 * be read (GC types) are let through: the engine then reports what it finds.
 * @param name the module's display name, first in the message
 * @throws CapsuleError BAD_MODULE, e.g. `m.wasm: export callHandle has type (i64, i32) -> i32;
 *   Capsule gen 2 expects (i32, i32) -> i64`
 */
export function checkExportTypes(parsed: ParsedModule, expected: Readonly<Record<string, FuncType>>, who: string, name: string): void {
  for (const e of parsed.exports) {
    if (e.kind !== 'function' || !e.type || !Object.hasOwn(expected, e.name)) continue;
    const want = expected[e.name]!;
    if (!sameType(e.type, want)) {
      throw new CapsuleError('BAD_MODULE', `${name}: export ${e.name} has type ${formatType(e.type)}; ${expectation({ types: [want], who })}`);
    }
  }
}

/**
 * The message for an import whose declared type is not accepted.
 * @example `m.wasm: import env.hostGetEnv has type (i32) -> i32; Capsule gen 2 expects (i32, i32, i32, i32) -> i32 or (i32, i32, i32, i32) -> ()`
 */
export function badImportType(name: string, module: string, field: string, declared: FuncType, e: Expected): CapsuleError {
  return new CapsuleError('BAD_MODULE', `${name}: import ${module}.${field} has type ${formatType(declared)}; ${expectation(e)}`);
}

const I32 = 'i32';
const I64 = 'i64';
const HANDLER = sig([I32, I32], [I64]);
const VOID = sig([], []);

/**
 * Exports every Capsule generation shares (§2.1, §2.2): start-up, and the allocator the host
 * calls to pass input (`malloc`, `free`) and return bytes (`allocateBuffer`).
 */
export const CAPSULE_COMMON_EXPORTS: Readonly<Record<string, FuncType>> = {
  _start: VOID,
  _initialize: VOID,
  malloc: sig([I32], [I32]),
  free: sig([I32], []),
  allocateBuffer: sig([I32], [I32]),
};

/** Gen-1 entry exports (§1, §4.2–§4.5); `callHandleHttp` by sub-generation (`GEN1_HTTP`). */
export const GEN1_EXPORTS: Readonly<Record<string, FuncType>> = {
  ...CAPSULE_COMMON_EXPORTS,
  callHandle: HANDLER,
  callNatsMessageHandle: HANDLER,
  callMqttMessageHandle: HANDLER,
  OnLoad: VOID,
  OnExit: VOID,
};

/** Gen-1 `callHandleHttp`: 4 (1a), 8 (1b) or 1 (1c) i32 parameters, an i64 result (§1). */
export const GEN1_HTTP: Readonly<Record<string, FuncType>> = {
  'capsule-1a': sig(new Array<ValType>(4).fill(I32), [I64]),
  'capsule-1b': sig(new Array<ValType>(8).fill(I32), [I64]),
  'capsule-1c': sig([I32], [I64]),
};

/** Gen-2 entry, lifecycle and service exports (§5.2, §5.5; `callHandleMessage` of §8). */
export const GEN2_EXPORTS: Readonly<Record<string, FuncType>> = {
  ...CAPSULE_COMMON_EXPORTS,
  callHandle: HANDLER,
  callHandleJSON: HANDLER,
  callHandleHTTP: HANDLER,
  callHandleMessage: HANDLER,
  OnStart: VOID,
  OnStop: VOID,
  OnHealthCheck: sig([], [I64]),
  OnMetrics: sig([], [I64]),
};

/** Names of the functions a module exports. */
export function functionExports(parsed: ParsedModule): Set<string> {
  return new Set(parsed.exports.filter((e) => e.kind === 'function').map((e) => e.name));
}

/** The type of an exported function, when the module exports one by that name. */
export function exportType(parsed: ParsedModule, name: string): FuncType | undefined {
  return parsed.exports.find((e) => e.name === name && e.kind === 'function')?.type;
}

/**
 * Checks that a module whose kind was set explicitly (`--kind`) exports one of `names`.
 * @param what how the message names the exports the kind needs
 * @throws CapsuleError BAD_MODULE `<name>: --kind <kind> needs an export <what>`, listing the exports
 */
export function needExport(parsed: ParsedModule, kind: string, names: readonly string[], what: string, name: string): void {
  const exports = functionExports(parsed);
  if (!names.some((n) => exports.has(n))) {
    throw new CapsuleError('BAD_MODULE', `${name}: --kind ${kind} needs an export ${what}; the module exports [${[...exports].join(', ')}]`);
  }
}
