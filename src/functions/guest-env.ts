/**
 * The guest-visible environment (conventions.md §2).
 */
import { readFileSync } from 'node:fs';
import { CapsuleError } from '../base/errors.ts';

/** Names never inherited from the runner's environment (they hold secrets). */
export function isSecretName(name: string): boolean {
  return /^CAPSULE_/i.test(name) || /_(TOKEN|PWD|PASSWORD|SECRET|KEY)$/i.test(name);
}

/**
 * Parses `--env-file` content: dotenv lines (`K=V`, `export K=V`, quotes, `#` comments) and
 * WAGI's `K = "V"` lines.
 * @throws CapsuleError USAGE naming the file and line
 */
export function parseEnvFile(content: string, file: string): [string, string][] {
  const out: [string, string][] = [];
  content.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new CapsuleError('USAGE', `${file}:${i + 1}: expected NAME=value, got "${line}"`);
    let v = m[2]!;
    if ((v.startsWith('"') && v.endsWith('"') && v.length >= 2)) {
      v = v.slice(1, -1).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    } else if (v.startsWith("'") && v.endsWith("'") && v.length >= 2) {
      v = v.slice(1, -1);
    } else {
      v = v.replace(/\s+#.*$/, '');
    }
    out.push([m[1]!, v]);
  });
  return out;
}

/**
 * Parses `--env K=V`, or `--env K` alone: the runner's own value of `K`, passed explicitly (the
 * way to hand a guest a variable that is never inherited, such as `*_TOKEN`, conventions.md §2).
 * @throws CapsuleError USAGE for an empty name, or a bare name that is not set in the runner's
 *   environment
 */
export function parseEnvPair(pair: string): [string, string] {
  const i = pair.indexOf('=');
  if (i < 0 && /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(pair)) {
    const v = process.env[pair];
    if (v === undefined) throw new CapsuleError('USAGE', `--env ${pair}: ${pair} is not set in the runner's environment (use --env ${pair}=value)`);
    return [pair, v];
  }
  if (i <= 0) throw new CapsuleError('USAGE', `--env "${pair}": expected NAME=value or NAME`);
  return [pair.slice(0, i), pair.slice(i + 1)];
}

export interface GuestEnvOptions {
  /** Inherit the runner's environment minus secrets (single-module runs, unless --no-inherit-env). */
  inherit: boolean;
  /** `--env-file` paths, in order. */
  envFiles?: readonly string[];
  /** `--env K=V` and config `env:` entries, in order (later wins). */
  env?: readonly [string, string][];
  /** The process environment (default `process.env`). */
  processEnv?: NodeJS.ProcessEnv;
}

/**
 * Builds the guest environment. Order of precedence (later wins): inherited, env files, `--env`.
 * @throws CapsuleError USAGE when an env file cannot be read or parsed
 */
export function buildGuestEnv(o: GuestEnvOptions): [string, string][] {
  const env = new Map<string, string>();
  if (o.inherit) {
    for (const [k, v] of Object.entries(o.processEnv ?? process.env)) {
      if (v !== undefined && !isSecretName(k)) env.set(k, v);
    }
  }
  for (const f of o.envFiles ?? []) {
    let content: string;
    try {
      content = readFileSync(f, 'utf8');
    } catch (e) {
      throw new CapsuleError('USAGE', `--env-file ${f}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    for (const [k, v] of parseEnvFile(content, f)) env.set(k, v);
  }
  for (const [k, v] of o.env ?? []) env.set(k, v);
  return [...env];
}
