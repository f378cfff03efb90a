/**
 * Harness of the cluster scenarios (faas-cluster.md §2): three real `nats-server` processes
 * (Debian's 2.9) forming one cluster with JetStream, on free loopback ports, each with its own
 * store directory in a temporary folder, short ping timeouts (`ping_interval: 2s`, `ping_max: 2`)
 * so a frozen client is dropped in seconds, a short `write_deadline` (2s: a client whose socket
 * stays full that long is cut as a slow consumer; nats-server 2.9 does not ping a client it keeps
 * writing to, docs/cluster.md) and `max_payload: 8MB`. Servers are killed by PID only
 * and can be started again on the same ports with the same store (a restart keeps JetStream data).
 */
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, restartable, type Restartable } from '../helpers.ts';

/** One server of the cluster. */
export interface ClusterServer extends Restartable {
  readonly name: string;
  /** `nats://127.0.0.1:<client port>`. */
  readonly url: string;
  /** Monitoring endpoint base, `http://127.0.0.1:<port>`. */
  readonly monitor: string;
}

/** A running cluster. */
export interface NatsCluster {
  readonly servers: ClusterServer[];
  /** Every client URL, comma-separated (what `--cluster` takes). */
  readonly urls: string;
  /** Kills every server (SIGKILL) and removes the store directories. */
  stop(): Promise<void>;
}

/**
 * Starts `size` clustered JetStream servers (1 = one plain JetStream server) and waits until each
 * answers `/healthz`.
 * @param bin path of `nats-server`
 * @param listen the client listener's interface: 127.0.0.1, or 0.0.0.0 to have each server
 *   announce one `connect_urls` entry per address of the machine (as a production server does)
 * @throws when a server does not come up within 20 s
 */
export async function startNatsCluster(bin: string, size = 3, listen = '127.0.0.1'): Promise<NatsCluster> {
  // A free port is free when picked, not when the server binds it: a test running beside this
  // one may take it first ("address already in use"). Then the whole cluster starts again on
  // fresh ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(bin, size, listen);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test(String((e as Error).message))) throw e;
    }
  }
}

async function startOnce(bin: string, size: number, listen: string): Promise<NatsCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'capsule-nats-cluster-'));
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), cluster: await freePort(), http: await freePort() })));
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.cluster}`);
  const servers: ClusterServer[] = [];
  for (const [i, p] of ports.entries()) {
    const name = `n${i + 1}`;
    const store = join(dir, name);
    mkdirSync(store, { recursive: true });
    const conf = join(dir, `${name}.conf`);
    writeFileSync(conf, [
      `server_name: ${name}`,
      `listen: ${listen}:${p.client}`,
      `http: 127.0.0.1:${p.http}`,
      'ping_interval: "2s"',
      'ping_max: 2',
      'write_deadline: "2s"',
      'max_payload: 8MB',
      `jetstream { store_dir: "${store}", max_memory_store: 64MB, max_file_store: 1GB }`,
      size > 1 ? `cluster { name: capsule-test, listen: 127.0.0.1:${p.cluster}, routes: [${routes.filter((_, j) => j !== i).join(', ')}] }` : '',
      '',
    ].join('\n'));
    const r = await restartable(bin, ['-c', conf], p.client).catch(async (e: Error) => {
      await Promise.all(servers.map((s) => s.kill())); // none left running (they would keep the test process alive)
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${name} did not start: ${e.message}`, { cause: e });
    });
    servers.push({ ...r, name, url: `nats://127.0.0.1:${p.client}`, monitor: `http://127.0.0.1:${p.http}` });
  }
  await Promise.all(servers.map((s) => waitHealthy(s.monitor))).catch(async (e: Error) => {
    await Promise.all(servers.map((s) => s.kill()));
    throw new Error(`${e.message}\n${servers.map((s) => `${s.name}: ${s.logs().split('\n').slice(-5).join('\n')}`).join('\n')}`, { cause: e });
  });
  return {
    servers,
    urls: servers.map((s) => s.url).join(','),
    async stop() {
      await Promise.all(servers.map((s) => s.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until a server's `/healthz` answers 200 (JetStream up and current). */
export async function waitHealthy(monitor: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if ((await fetch(`${monitor}/healthz`)).ok) return;
    } catch { /* not listening yet */ }
    if (Date.now() > end) throw new Error(`${monitor}/healthz did not answer 200 within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
