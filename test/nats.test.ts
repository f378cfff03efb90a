/**
 * `capsule nats` end to end against a real nats-server on a loopback port: pub/sub, wildcards,
 * queue groups, request/reply, publishing from the guest, failing messages between good ones,
 * and the broker killed and restarted mid-stream. No timing is asserted: outcomes are polled
 * with a bounded wait.
 */
import { describe, it, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { eventually, example, fixture, missing, runCapsule } from './helpers.ts';
import { findBinary, metric, startNatsServer, startRunner, type Broker } from './brokers.ts';

const natsServer = findBinary('nats-server');
const probe = fixture('msg-probe');
const gen1 = fixture('gen1-messages');
/** Longest wait for an outcome (ms): generous, for loaded machines; nothing is timed. */
const WAIT = 20_000;
const skip = !natsServer ? 'nats-server is not installed (scripts/setup.sh installs it)' : missing(probe);

/** Collects what arrives on a subject (wildcards allowed). */
function collect(nc: NatsConnection, subject: string): { subject: string; text: string }[] {
  const got: { subject: string; text: string }[] = [];
  nc.subscribe(subject, { callback: (_e, m) => { got.push({ subject: m.subject, text: m.string() }); } });
  return got;
}

describe('capsule nats', { skip }, () => {
  let broker: Broker;
  /** The test's own client: a fresh one per test (one that lived through the broker restart once stopped sending). */
  let nc: NatsConnection;
  const clients: NatsConnection[] = [];

  before(async () => {
    broker = await startNatsServer(natsServer!);
  });
  beforeEach(async () => {
    nc = await connect({ servers: broker.url, reconnectTimeWait: 50, maxReconnectAttempts: -1 });
    clients.push(nc);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await broker?.kill();
  });

  it('handles subjects and wildcards, publishes from the guest and answers requests with headers', async () => {
    const r = await startRunner(['nats', `--wasm=${probe}`, `--nats-server=${broker.url}`, '--subject=a.b', '--subject=c.>', '--env=PROBE=one']);
    try {
      assert.match(r.line, new RegExp(`^capsule subscribed to ${broker.url} \\(a\\.b, c\\.>\\)$`));
      const seen = collect(nc, 'seen.>');
      await nc.flush();
      nc.publish('a.b', 'first');
      nc.publish('c.x.y', 'deep');
      nc.publish('other', 'ignored');
      await eventually(() => seen.length >= 2, WAIT);
      assert.deepEqual(seen.map((s) => `${s.subject} ${s.text}`).sort(), ['seen.a.b first', 'seen.c.x.y deep']);

      const h = headers();
      h.set('X-Test', 'header value');
      const reply = await nc.request('c.z', 'question', { timeout: WAIT, headers: h });
      assert.equal(reply.string(), 'c.z|question|header value|one');
      assert.equal(reply.headers?.get('Capsule-Error') ?? '', '');
      await eventually(() => /"subject":"c\.z"/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('replies to a failing, trapping or timing-out message with Capsule-Error, logs and counts it, and keeps going', async () => {
    const r = await startRunner(['nats', probe, `--nats-server=${broker.url}`, '--subject=jobs', '--timeout=3s', '--http-port=0']);
    try {
      const good1 = await nc.request('jobs', 'good-1', { timeout: WAIT });
      assert.equal(good1.string(), 'jobs|good-1||');
      const failed = await nc.request('jobs', 'fail', { timeout: WAIT });
      assert.equal(failed.string(), 'asked to fail');
      assert.equal(failed.headers?.get('Capsule-Error'), 'true');
      const trapped = await nc.request('jobs', 'trap', { timeout: WAIT });
      assert.equal(trapped.headers?.get('Capsule-Error'), 'true');
      assert.equal(trapped.headers?.get('Capsule-Error-Code'), 'TRAP');
      assert.match(trapped.string(), /trapped/);
      const spun = await nc.request('jobs', 'spin', { timeout: WAIT });
      assert.equal(spun.headers?.get('Capsule-Error-Code'), 'TIMEOUT');
      const good2 = await nc.request('jobs', 'good-2', { timeout: WAIT });
      assert.equal(good2.string(), 'jobs|good-2||');

      const url = r.httpUrl!;
      assert.equal(await metric(url, 'capsule_messages_total', { trigger: 'nats', outcome: 'ok' }), 2);
      assert.equal(await metric(url, 'capsule_messages_total', { trigger: 'nats', outcome: 'failed' }), 1);
      assert.equal(await metric(url, 'capsule_messages_total', { trigger: 'nats', outcome: 'error' }), 2);
      assert.equal(await metric(url, 'capsule_errors_total', { code: 'TRAP' }), 1);
      assert.equal(await metric(url, 'capsule_errors_total', { code: 'TIMEOUT' }), 1);
      assert.equal(await metric(url, 'capsule_timeouts_total'), 1);
      const ready = await fetch(`${url}/capsule/ready`);
      assert.equal(ready.status, 200);
      assert.equal((await ready.json() as { subjects: string[] }).subjects[0], 'jobs');
      assert.equal((await fetch(`${url}/health`)).status, 200);
      // the log is written asynchronously
      await eventually(() => /"subject":"jobs".*message on jobs failed: the function trapped/.test(r.logs()), WAIT);
      await eventually(() => /"code":"TIMEOUT"/.test(r.logs()) && /the handler failed: asked to fail/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('shares the messages of a queue group between two runners, each message once', async () => {
    const args = [`--wasm=${probe}`, `--nats-server=${broker.url}`, '--subject=q.work', '--queue=workers'];
    const [r1, r2] = await Promise.all([startRunner(['nats', ...args, '--env=PROBE=r1']), startRunner(['nats', ...args, '--env=PROBE=r2'])]);
    try {
      const seen = collect(nc, 'seen.q.work');
      await nc.flush();
      const replies = await Promise.all(Array.from({ length: 24 }, (_, i) => nc.request('q.work', `m${i}`, { timeout: WAIT })));
      const by = replies.map((m) => m.string().split('|'));
      assert.deepEqual(by.map((p) => p[1]), Array.from({ length: 24 }, (_, i) => `m${i}`));
      const runners = new Set(by.map((p) => p[3]));
      assert.deepEqual([...runners].sort(), ['r1', 'r2'], 'both runners handled messages');
      await eventually(() => seen.length >= 24, WAIT);
      assert.equal(new Set(seen.map((s) => s.text)).size, 24);
    } finally {
      await Promise.all([r1.stop(), r2.stop()]);
    }
  });

  it('lets the guest make NATS requests (hostNatsRequest), with an error when nobody answers', async () => {
    const r = await startRunner(['nats', probe, `--nats-server=${broker.url}`, '--subject=asker']);
    try {
      nc.subscribe('svc.echo', { callback: (_e, m) => { m.respond(`pong:${m.string()}`); } });
      await nc.flush();
      assert.equal((await nc.request('asker', 'request:svc.echo', { timeout: WAIT })).string(), 'reply=pong:ping');
      assert.match((await nc.request('asker', 'request:svc.nobody', { timeout: WAIT })).string(), /^error=no responders/);
    } finally {
      await r.stop();
    }
  });

  it('reconnects after the broker is killed and restarted, and handles later messages', async () => {
    const r = await startRunner(['nats', probe, `--nats-server=${broker.url}`, '--subject=restart.me', '--http-port=0']);
    try {
      const seen = collect(nc, 'seen.restart.me');
      await nc.flush();
      nc.publish('restart.me', 'before');
      await eventually(() => seen.some((s) => s.text === 'before'), WAIT);
      await broker.kill();
      await eventually(async () => (await fetch(`${r.httpUrl}/capsule/ready`)).status === 503, WAIT);
      await broker.start();
      // Publish until the runner (which resubscribes after reconnecting) handles one.
      let n = 0;
      await eventually(async () => {
        if (!nc.isClosed()) nc.publish('restart.me', `after-${n++}`);
        await new Promise((res) => setTimeout(res, 100));
        return seen.some((s) => s.text.startsWith('after-'));
      }, 20_000);
      assert.equal((await fetch(`${r.httpUrl}/capsule/ready`)).status, 200);
      await eventually(() => /lost the NATS connection/.test(r.logs()) && /reconnected to NATS/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('runs gen-1 callNatsMessageHandle: hostNatsReply, hostNatsPublish, ad-hoc connections, getters; its result is not a reply', { skip: missing(gen1) }, async () => {
    const r = await startRunner(['nats', gen1, `--nats-server=${broker.url}`, '--subject=g1.>']);
    try {
      const results = collect(nc, 'gen1.result');
      const out = collect(nc, 'out.>');
      nc.subscribe('svc.g1', { callback: (_e, m) => { m.respond(`pong:${m.string()}`); } });
      await nc.flush();
      // A cursor over the results, not their count when asked: the result of 'reply hello' can
      // arrive in the same read as the reply itself, before the awaited request resumes us.
      let taken = 0;
      const next = async () => {
        await eventually(() => results.length > taken, WAIT);
        return results[taken++]!.text;
      };
      const reply = await nc.request('g1.a', 'reply hello', { timeout: WAIT });
      assert.equal(reply.string(), 'hello');
      assert.match(await next(), /^\[OK\]\(_INBOX\.[^:]+:hello\)$/);
      nc.publish('g1.a', 'reply nobody-asked');
      assert.equal(await next(), '[ERR][0]:message has no reply subject');
      nc.publish('g1.b', 'publish out.x data1');
      assert.equal(await next(), '[OK](out.x:data1)');
      nc.publish('g1.b', `connect-publish ${broker.url} out.y data2`);
      assert.equal(await next(), '[OK](out.y:data2)');
      await eventually(() => out.length >= 2, WAIT);
      assert.deepEqual(out.map((o) => `${o.subject} ${o.text}`).sort(), ['out.x data1', 'out.y data2']);
      nc.publish('g1.c', `connect-request ${broker.url} svc.g1 q`);
      assert.equal(await next(), 'pong:q');
      nc.publish('g1.c', 'connect-request nats://127.0.0.1:1 svc.g1 q');
      assert.match(await next(), /^\[ERR\]\[0\]:cannot connect to NATS server nats:\/\/127\.0\.0\.1:1/);
      nc.publish('g1.d', 'trap');
      nc.publish('g1.d', 'info');
      const info = await next();
      const [subject, server, json] = info.split(';');
      assert.equal(subject, 'subject=g1.>');
      assert.equal(server, `server=${broker.url}`);
      assert.equal(JSON.parse(json!.slice('info='.length)).natsServer, broker.url);
      await eventually(() => /message on g1\.d failed: the function trapped/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('serves the message handlers of both SDKs (AssemblyScript and C probes)', async (t) => {
    for (const [name, expected] of [['mdk-as-probe', /^sdk\.as: hi reply=_INBOX\.\S+ headers=\{"A":"1"\}$/], ['mdk-c-probe', /^sdk\.c: hi reply=_INBOX\.\S+ a=1$/]] as const) {
      if (missing(fixture(name))) {
        t.diagnostic(`${name} was not built`);
        continue;
      }
      const subject = name === 'mdk-as-probe' ? 'sdk.as' : 'sdk.c';
      const r = await startRunner(['nats', fixture(name), `--nats-server=${broker.url}`, `--subject=${subject}`]);
      try {
        const h = headers();
        h.set('A', '1');
        assert.match((await nc.request(subject, 'hi', { timeout: WAIT, headers: h })).string(), expected);
        const failed = await nc.request(subject, 'fail', { timeout: WAIT });
        assert.equal(failed.headers?.get('Capsule-Error'), 'true');
      } finally {
        assert.equal(await r.stop(), 0);
      }
    }
  });

  for (const name of ['nats-echo', 'nats-echo-c']) {
    it(`runs the ${name} example as a responder`, { skip: missing(example(name)) }, async () => {
      await echoExample(name);
    });
  }

  async function echoExample(name: string): Promise<void> {
    const r = await startRunner(['nats', example(name), `--nats-server=${broker.url}`, '--subject=echo']);
    try {
      assert.equal((await nc.request('echo', 'hello', { timeout: WAIT })).string(), 'echo: hello');
      const empty = await nc.request('echo', '', { timeout: WAIT });
      assert.equal(empty.headers?.get('Capsule-Error'), 'true');
      assert.equal(empty.string(), 'nothing to echo');
      await eventually(() => /📨 echo: hello/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  }

  it('keeps at most --max-concurrency running and --max-pending waiting, and counts the dropped ones', async () => {
    const r = await startRunner(['nats', probe, `--nats-server=${broker.url}`, '--subject=busy', '--workers=1', '--max-concurrency=1', '--max-pending=1', '--timeout=2s', '--http-port=0']);
    try {
      nc.publish('busy', 'spin');
      await eventually(async () => await metric(r.httpUrl!, 'capsule_inflight_requests') === 1, WAIT);
      for (let i = 0; i < 4; i++) nc.publish('busy', `extra-${i}`);
      await nc.flush();
      await eventually(async () => await metric(r.httpUrl!, 'capsule_messages_dropped_total') === 3, WAIT);
      // the one that waited runs after the spinning one
      await eventually(async () => await metric(r.httpUrl!, 'capsule_messages_total', { outcome: 'ok' }) === 1, WAIT);
      await eventually(() => /dropped 3 message\(s\)/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('runs OnLoad at start and OnExit at shutdown for gen 1, with the error of a message that trapped', { skip: missing(fixture('gen1-1b')) }, async () => {
    const r = await startRunner(['nats', fixture('gen1-1b'), `--nats-server=${broker.url}`, '--subject=g1b']);
    await eventually(() => /OnLoad called/.test(r.logs()), WAIT);
    nc.publish('g1b', 'trap');
    nc.publish('g1b', 'fine');
    await eventually(() => /nats: fine/.test(r.logs()), WAIT);
    assert.equal(await r.stop(), 0);
    await eventually(() => /OnExit: the function trapped/.test(r.logs()), WAIT);
  });

  it('answers gen-2 publishes outside the triggers with a failure that says why', async () => {
    const ran = await runCapsule(['run', probe]);
    assert.equal(ran.code, 0);
    assert.match(ran.stdout, /^nats=no NATS connection: .*capsule nats.*;mqtt=no MQTT connection: .*capsule mqtt/);
  });

  it('finishes a message in flight on SIGTERM: its reply is sent, then the runner exits 0', async () => {
    const r = await startRunner(['nats', probe, `--nats-server=${broker.url}`, '--subject=draining']);
    const asked: Msg[] = [];
    nc.subscribe('svc.slow', { callback: (_e, m) => { asked.push(m); } });
    await nc.flush();
    // the guest asks svc.slow and waits: it is in flight until the test answers
    const reply = nc.request('draining', 'request:svc.slow', { timeout: WAIT });
    await eventually(() => asked.length === 1, WAIT);
    r.child.kill('SIGTERM');
    await eventually(() => /shutting down/.test(r.logs()), WAIT);
    asked[0]!.respond('late answer');
    assert.equal((await reply).string(), 'reply=late answer');
    assert.equal(await r.exited, 0);
  });

  it('accepts the Go spellings -mode=nats -natssrv= -subject=', async () => {
    const r = await startRunner([`-wasm=${probe}`, '-mode=nats', `-natssrv=${broker.url}`, '-subject=legacy.s']);
    try {
      assert.equal((await nc.request('legacy.s', 'x', { timeout: WAIT })).string(), 'legacy.s|x||');
    } finally {
      await r.stop();
    }
  });

  it('refuses bad starts: no subject (exit 2), no broker, a module without a message handler (exit 1)', async () => {
    const noSubject = await runCapsule(['nats', probe, `--nats-server=${broker.url}`]);
    assert.equal(noSubject.code, 2);
    assert.match(noSubject.stderr, /--subject/);
    const noBroker = await runCapsule(['nats', probe, '--nats-server=nats://127.0.0.1:1', '--subject=x']);
    assert.equal(noBroker.code, 1);
    assert.match(noBroker.stderr, /cannot connect to the NATS server nats:\/\/127\.0\.0\.1:1/);
    if (!missing(example('hello-world'))) {
      const noHandler = await runCapsule(['nats', example('hello-world'), `--nats-server=${broker.url}`, '--subject=x']);
      assert.equal(noHandler.code, 1);
      assert.match(noHandler.stderr, /exports no callHandleMessage/);
    }
  });
});
