/**
 * Names in registry paths (faas-api.md §9.5): `user_org`, `wasm_module`, `tag` and `file_name`
 * must match `[A-Za-z0-9._-]{1,128}` and not be `.` or `..`, so that no request can reach a path
 * outside the registry root (no slash, no traversal, no NUL, no over-long component).
 */
import { FaasError } from '../shared/service.ts';

/** Where a module lives: `<root>/<org>/<module>/<tag>/` (Go layout, faas-api.md §2). */
export interface ModuleRef {
  /** `user_org` of the routes. */
  org: string;
  /** `wasm_module`: the stored file is `<module>.wasm`, its description `<module>.info`. */
  module: string;
  tag: string;
}

const NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** True when `name` may be one component of a registry path. */
export function isValidName(name: string): boolean {
  return NAME.test(name) && name !== '.' && name !== '..';
}

/**
 * Checks one path component.
 * @param what the route parameter, for the message (`user_org`, `tag`, …)
 * @throws FaasError 400 ERROR_INVALID_NAME naming the parameter and the rule
 */
export function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !isValidName(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name) : 'missing';
    throw new FaasError(400, 'ERROR_INVALID_NAME', `${what} ${shown}: names are 1 to 128 characters from A-Z a-z 0-9 . _ - and not "." or ".."`);
  }
  return name;
}

/**
 * The module reference of a route's parameters.
 * @throws FaasError 400 ERROR_INVALID_NAME (see {@link checkName})
 */
export function refFromParams(params: unknown): ModuleRef {
  const p = (params ?? {}) as Record<string, unknown>;
  return { org: checkName(p['user_org'], 'user_org'), module: checkName(p['wasm_module'], 'wasm_module'), tag: checkName(p['tag'], 'tag') };
}

/** `org/module/tag` for messages and logs. */
export function refText(ref: ModuleRef): string {
  return `${ref.org}/${ref.module}/${ref.tag}`;
}
