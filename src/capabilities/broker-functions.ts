/**
 * What the broker capabilities (nats, mqtt) share: the trigger's connection a hub holds, and the
 * publish host functions of both generations (capsule-abi.md §4.7, §8).
 */
import { argBytes, fail, ok, text, type HostCallContext, type HostFunction, type HostResult } from './types.ts';
import { okEcho } from './gen1-encodings.ts';

/**
 * A loader that imports a client module on its first call (so a runner that never uses the broker
 * never loads its client) and returns the same promise afterwards.
 */
export function importOnFirstUse<T>(load: () => Promise<T>): () => Promise<T> {
  let loaded: Promise<T> | undefined;
  return () => (loaded ??= load());
}

/** A broker service's answer to a publish: done, or why not. */
export type PublishReply = { ok: true } | { ok: false; error: string };

/**
 * `<name>(target, data)`: publishes `data` on a subject or topic through the capability's
 * main-thread service. Results: gen 1 `[OK](<target>:<data>)`, gen 2 `S<target>`; a failure
 * `failure(reply)` (by default the service's error text).
 * @param publish sends the request to the service (the data is the guest's bytes as they are)
 */
export function publishFunction<R extends PublishReply>(
  name: string,
  generation: 1 | 2,
  publish: (ctx: HostCallContext, target: string, data: Uint8Array) => Promise<R>,
  failure: (reply: Extract<R, { ok: false }>) => HostResult = (reply) => fail(reply.error),
): HostFunction {
  return {
    name, generations: [generation], params: ['s', 's'], returns: true, async: true,
    async run(ctx, [target, data]) {
      const t = text(target);
      const payload = argBytes(data);
      const reply = await publish(ctx, t, payload);
      if (!reply.ok) return failure(reply as Extract<R, { ok: false }>);
      return generation === 1 ? okEcho(t, payload) : ok(t);
    },
  };
}

/**
 * The trigger's connection of a broker hub (one per worker pool): set by the trigger when it
 * connects, forgotten at shutdown; host functions that publish "on the trigger's connection" use it.
 */
export class TriggerConnection<C> {
  #connection: C | undefined;
  #server = '';

  /** The trigger's connection and the server it reached (for messages). */
  attach(connection: C, server: string): void {
    this.#connection = connection;
    this.#server = server;
  }

  /** Forgets the trigger's connection (at shutdown), unless another one replaced it. */
  detach(connection: C): void {
    if (this.#connection === connection) this.#connection = undefined;
  }

  /** The trigger's connection, when one is attached. */
  protected get connection(): C | undefined {
    return this.#connection;
  }

  /** The server of the attached connection (`''` when none was). */
  protected get server(): string {
    return this.#server;
  }
}
