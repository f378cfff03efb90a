/**
 * Normalises the Go Capsule spellings so existing scripts work unchanged (conventions.md §5):
 * `-wasm=x` → `--wasm=x`, `-httpPort=8080` → `--http-port=8080`, `-mode=http` → the `serve`
 * command, `-natssrv` → `--nats-server`, and a bare `capsule --wasm=x --params=y` → `run`.
 */

const COMMANDS = new Set(['run', 'serve', 'inspect', 'help', 'nats', 'mqtt', 'call',
  // the FaaS layer (src/faas/commands.ts) and the developer commands
  'proxy', 'registry', 'node', 'worker', 'faas', 'publish', 'deploy', 'undeploy', 'scale', 'set-default',
  'unset-default', 'list', 'routes', 'new', 'build', 'completion', 'up', 'faas-mode']);
/** Go's gen-2 FaaS child flags: meaningful only to a `--faas` main process, ignored otherwise (as Go did). */
const FAAS_CHILD_FLAGS = /^--(parent-endpoint|module-name|module-revision)(=|$)/;

/** The command each Go-named bin runs (faas-cluster.md §1.1: bin aliases of one `capsule`). */
export const BIN_COMMANDS: Record<string, string | undefined> = {
  capsule: undefined,
  'capsule-http': 'serve',
  'capsule-reverse-proxy': 'proxy',
  'capsule-registry': 'registry',
  'capsule-worker': 'node',
};
/** Runner flags, recognised after the module too; other flags there belong to the guest. */
const KNOWN = new Set(['wasm', 'url', 'auth-header-name', 'auth-header-value', 'digest', 'kind', 'env', 'env-file',
  'no-inherit-env', 'dir', 'allowed-hosts', 'timeout', 'max-memory', 'log-level', 'log-format', 'params', 'params-file', 'separator',
  'http-port', 'host', 'crt', 'key', 'stop-after', 'max-body', 'max-concurrency', 'reuse', 'workers', 'grace', 'json',
  'mode', 'help', 'version', 'nats-server', 'subject', 'queue', 'mqtt-server', 'topic', 'client-id', 'qos',
  'max-pending', 'persistent-session', 'faas', 'parent-endpoint', 'module-name', 'module-revision']);
const MODES: Record<string, string> = { cli: 'run', http: 'serve', nats: 'nats', mqtt: 'mqtt' };
const ALIASES: Record<string, string> = {
  natssrv: 'nats-server',
  mqttsrv: 'mqtt-server',
  httpport: 'http-port',
};

/** A Go flag name in commander's spelling: `httpPort` → `http-port`, `natssrv` → `nats-server`. */
export function kebab(name: string): string {
  const alias = ALIASES[name.toLowerCase()];
  if (alias) return alias;
  return name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/**
 * @param argv arguments after the executable
 * @param defaultCommand command for the `capsule-http` bin (`serve`) or undefined
 * @returns the argv commander parses
 */
export function normaliseArgv(argv: readonly string[], defaultCommand?: string): string[] {
  const out: string[] = [];
  let mode: string | undefined;
  let passThrough = false;
  let afterModule = false;
  let faas = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (passThrough || a === '--') {
      passThrough = true;
      out.push(a);
      continue;
    }
    if (!a.startsWith('-') && /\.wasm$/i.test(a)) {
      afterModule = true; // unknown flags after the module belong to the guest: left as written
      out.push(a);
      continue;
    }
    const m = /^--?([A-Za-z][A-Za-z0-9-]+)(=(.*))?$/.exec(a);
    if (!m || (a.startsWith('-') && !a.startsWith('--') && m[1]!.length === 1)) {
      out.push(a);
      continue;
    }
    const original = m[1]!;
    const name = kebab(original);
    if (afterModule && !KNOWN.has(name)) {
      out.push(a);
      continue;
    }
    if (name === 'faas') {
      // Go's bool flag: --faas, --faas=true → the gen-2 FaaS main process (capsule faas-mode)
      faas = m[3] === undefined || /^(true|1|t)$/i.test(m[3]);
      continue;
    }
    if (name === 'mode') {
      mode = m[2] !== undefined ? m[3] : argv[++i];
      continue;
    }
    let value = m[3];
    // Go's -stopAfter counted seconds; --stop-after follows the duration grammar.
    if (original === 'stopAfter' && value !== undefined && /^\d+$/.test(value)) value += 's';
    if (original === 'stopAfter' && value === undefined && /^\d+$/.test(argv[i + 1] ?? '')) {
      out.push(`--${name}=${argv[++i]}s`);
      continue;
    }
    out.push(m[2] !== undefined ? `--${name}=${value}` : `--${name}`);
  }
  const first = out.find((a) => !a.startsWith('-'));
  const serving = first === 'serve' || (defaultCommand === 'serve' && (first === undefined || !COMMANDS.has(first)));
  if (faas && serving) {
    if (first === 'serve') out.splice(out.indexOf('serve'), 1);
    return ['faas-mode', ...out];
  }
  if (first !== 'faas-mode') for (let i = out.length - 1; i >= 0; i--) if (FAAS_CHILD_FLAGS.test(out[i]!)) out.splice(i, 1);
  const hasCommand = first !== undefined && COMMANDS.has(first) && out.indexOf(first) === 0;
  if (hasCommand) return out;
  if (mode) {
    const cmd = MODES[mode];
    return cmd ? [cmd, ...out] : [`--unknown-mode=${mode}`, ...out];
  }
  if (defaultCommand) return [defaultCommand, ...out];
  if (out.some((a) => /^--(wasm|url)(=|$)/.test(a))) return ['run', ...out];
  return out;
}
