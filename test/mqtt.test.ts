/**
 * `capsule mqtt` end to end against a real mosquitto on a loopback port: pub/sub, wildcards,
 * response topics, publishing from the guest, failing messages between good ones, QoS 1
 * acknowledged only after the handler, persistent sessions, shared subscriptions, and the broker
 * killed and restarted mid-stream. No timing is asserted: outcomes are polled with a bounded wait.
 */
import { describe, it, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { eventually, example, fixture, missing, runCapsule } from './helpers.ts';
import { findBinary, metric, startMosquitto, startRunner, type Broker } from './brokers.ts';
import { topicMatches } from '../src/triggers/mqtt/index.ts';

const mosquitto = findBinary('mosquitto');
const probe = fixture('msg-probe');
const gen1 = fixture('gen1-messages');
/** Longest wait for an outcome (ms): generous, for loaded machines; nothing is timed. */
const WAIT = 20_000;
const skip = !mosquitto ? 'mosquitto is not installed (scripts/setup.sh installs it)' : missing(probe);

interface Got { topic: string; text: string; props: Record<string, unknown>; correlation?: string }

const collectors: MqttClient[] = [];

/** Collects what arrives on a topic filter, with a client of its own (closed after the tests). */
async function collect(url: string, filter: string): Promise<Got[]> {
  const got: Got[] = [];
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 100 });
  collectors.push(c);
  c.on('message', (topic, payload, packet) => {
    got.push({ topic, text: payload.toString(), props: (packet.properties?.userProperties ?? {}) as Record<string, unknown>, correlation: packet.properties?.correlationData?.toString() });
  });
  await c.subscribeAsync(filter, { qos: 1 });
  return got;
}

describe('capsule mqtt', { skip }, () => {
  let broker: Broker;
  let client: MqttClient;

  before(async () => {
    broker = await startMosquitto(mosquitto!);
  });
  beforeEach(async () => {
    // the publisher: a fresh client per test
    client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 100 });
    collectors.push(client);
  });
  after(async () => {
    await Promise.all(collectors.map((c) => c.endAsync(true)));
    await broker?.kill();
  });

  it('handles topic filters, publishes from the guest and answers on the response topic', async () => {
    const r = await startRunner(['mqtt', `--wasm=${probe}`, `--mqtt-server=${broker.url}`, '--topic=sensors/+/temp', '--topic=rooms/#', '--env=PROBE=one']);
    try {
      assert.match(r.line, new RegExp(`^capsule subscribed to ${broker.url} \\(sensors/\\+/temp, rooms/#; QoS 0\\)$`));
      const seen = await collect(broker.url, 'seen/#');
      const replies = await collect(broker.url, 'replies/#');
      await client.publishAsync('sensors/k1/temp', '21.5');
      await client.publishAsync('rooms/a/b/c', 'deep');
      await client.publishAsync('sensors/k1/humidity', 'ignored');
      await eventually(() => seen.length >= 2, WAIT);
      assert.deepEqual(seen.map((s) => `${s.topic} ${s.text}`).sort(), ['seen/rooms/a/b/c deep', 'seen/sensors/k1/temp 21.5']);

      await client.publishAsync('sensors/k2/temp', 'question', {
        qos: 1, properties: { responseTopic: 'replies/me', correlationData: Buffer.from('corr-1'), userProperties: { 'X-Test': 'header value' } },
      });
      await eventually(() => replies.length >= 1, WAIT);
      assert.equal(replies[0]!.text, 'sensors/k2/temp|question|header value|one');
      assert.equal(replies[0]!.correlation, 'corr-1');
      assert.equal(replies[0]!.props['Capsule-Error'], undefined);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('logs and counts a failing or trapping message between good ones, replies with Capsule-Error, and keeps going', async () => {
    const r = await startRunner(['mqtt', probe, `--mqtt-server=${broker.url}`, '--topic=jobs/+', '--qos=1', '--http-port=0']);
    try {
      const seen = await collect(broker.url, 'seen/jobs/#');
      const replies = await collect(broker.url, 'answers/#');
      const props = (n: string) => ({ qos: 1 as const, properties: { responseTopic: `answers/${n}` } });
      await client.publishAsync('jobs/1', 'good-1', props('1'));
      await client.publishAsync('jobs/2', 'trap', props('2'));
      await client.publishAsync('jobs/3', 'fail', props('3'));
      await client.publishAsync('jobs/4', 'good-2', props('4'));
      await eventually(() => seen.length >= 2 && replies.length >= 4, WAIT);
      assert.deepEqual(seen.map((s) => s.text), ['good-1', 'good-2'], 'QoS 1 messages run one at a time, in order');
      const byTopic = Object.fromEntries(replies.map((g) => [g.topic, g]));
      assert.equal(byTopic['answers/2']!.props['Capsule-Error'], 'true');
      assert.equal(byTopic['answers/2']!.props['Capsule-Error-Code'], 'TRAP');
      assert.equal(byTopic['answers/3']!.text, 'asked to fail');
      assert.equal(byTopic['answers/3']!.props['Capsule-Error'], 'true');
      assert.equal(byTopic['answers/4']!.text, 'jobs/4|good-2||');
      const url = r.httpUrl!;
      assert.equal(await metric(url, 'capsule_messages_total', { trigger: 'mqtt', outcome: 'ok' }), 2);
      assert.equal(await metric(url, 'capsule_messages_total', { trigger: 'mqtt', outcome: 'error' }), 1);
      assert.equal(await metric(url, 'capsule_messages_total', { trigger: 'mqtt', outcome: 'failed' }), 1);
      assert.equal(await metric(url, 'capsule_errors_total', { code: 'TRAP' }), 1);
      await eventually(() => /"topic":"jobs\/2".*message on jobs\/2 failed: the function trapped/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('handles QoS 2 messages (acknowledged with PUBREC after the handler)', async () => {
    const r = await startRunner(['mqtt', probe, `--mqtt-server=${broker.url}`, '--topic=exactly/+', '--qos=2']);
    try {
      const seen = await collect(broker.url, 'seen/exactly/#');
      await client.publishAsync('exactly/a', 'once', { qos: 2 });
      await client.publishAsync('exactly/b', 'twice', { qos: 2 });
      await eventually(() => seen.length >= 2, WAIT);
      assert.deepEqual(seen.map((x) => x.text).sort(), ['once', 'twice']);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('acknowledges QoS 1 only after the handler: a message in flight when the runner dies is redelivered to its persistent session', async () => {
    const clientId = `capsule-test-${process.pid}`;
    const args = ['mqtt', probe, `--mqtt-server=${broker.url}`, '--topic=durable/+', '--qos=1', `--client-id=${clientId}`, '--persistent-session'];
    const seen = await collect(broker.url, 'seen/durable/#');
    const first = await startRunner([...args, '--timeout=60s', '--http-port=0']);
    await client.publishAsync('durable/a', 'spin', { qos: 1 }); // runs until the runner is killed
    await eventually(async () => await metric(first.httpUrl!, 'capsule_inflight_requests') === 1, WAIT);
    await first.stop('SIGKILL');
    await client.publishAsync('durable/b', 'while-away', { qos: 1 });
    const second = await startRunner([...args, '--timeout=2s']);
    try {
      await eventually(() => seen.some((s) => s.text === 'while-away'), WAIT);
      // the spinning message was never acknowledged: the broker sent it again, and it timed out this time
      await eventually(() => /message on durable\/a failed: .*did not return/.test(second.logs()), WAIT);
    } finally {
      assert.equal(await second.stop(), 0);
    }
  });

  it('shares a $share subscription between two runners', async () => {
    const args = [`--wasm=${probe}`, `--mqtt-server=${broker.url}`, '--topic=$share/workers/work/+', '--qos=1'];
    const [r1, r2] = await Promise.all([startRunner(['mqtt', ...args, '--env=PROBE=r1']), startRunner(['mqtt', ...args, '--env=PROBE=r2'])]);
    try {
      const replies = await collect(broker.url, 'done/#');
      for (let i = 0; i < 16; i++) await client.publishAsync(`work/${i}`, `m${i}`, { qos: 1, properties: { responseTopic: `done/${i}` } });
      await eventually(() => replies.length >= 16, WAIT);
      const texts = replies.map((g) => g.text.split('|'));
      assert.equal(new Set(texts.map((p) => p[1])).size, 16, 'each message handled once');
      assert.deepEqual([...new Set(texts.map((p) => p[3]))].sort(), ['r1', 'r2']);
    } finally {
      await Promise.all([r1.stop(), r2.stop()]);
    }
  });

  it('reconnects after the broker is killed and restarted, and handles later messages', async () => {
    const r = await startRunner(['mqtt', probe, `--mqtt-server=${broker.url}`, '--topic=restart/me', '--http-port=0']);
    try {
      const seen = await collect(broker.url, 'seen/restart/#');
      await client.publishAsync('restart/me', 'before');
      await eventually(() => seen.some((s) => s.text === 'before'), WAIT);
      await broker.kill();
      await eventually(async () => (await fetch(`${r.httpUrl}/capsule/ready`)).status === 503, WAIT);
      await broker.start();
      // the test's clients reconnect too (and subscribe again: a fresh broker has no session)
      await eventually(() => client.connected, WAIT);
      let n = 0;
      await eventually(async () => {
        if (client.connected) await client.publishAsync('restart/me', `after-${n++}`).catch(() => undefined);
        await new Promise((res) => setTimeout(res, 100));
        return seen.some((s) => s.text.startsWith('after-'));
      }, 20_000);
      assert.equal((await fetch(`${r.httpUrl}/capsule/ready`)).status, 200);
      await eventually(() => /lost the MQTT connection/.test(r.logs()) && /reconnected to the MQTT broker/.test(r.logs()), WAIT);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('runs gen-1 callMqttMessageHandle: hostMqttPublish, hostMqttConnectPublish, getters', { skip: missing(gen1) }, async () => {
    const r = await startRunner(['mqtt', gen1, `--mqtt-server=${broker.url}`, '--topic=g1/#', '--client-id=g1-client']);
    try {
      const results = await collect(broker.url, 'gen1/result');
      const out = await collect(broker.url, 'out/#');
      const next = async () => {
        const n = results.length;
        await eventually(() => results.length > n, WAIT);
        return results[n]!.text;
      };
      await client.publishAsync('g1/a', 'publish out/x data1');
      assert.equal(await next(), '[OK](out/x:data1)');
      await client.publishAsync('g1/a', `connect-publish 127.0.0.1:${broker.port} ad-hoc-client out/y data2`);
      assert.equal(await next(), '[OK](out/y:data2)');
      await eventually(() => out.length >= 2, WAIT);
      assert.deepEqual(out.map((o) => `${o.topic} ${o.text}`).sort(), ['out/x data1', 'out/y data2']);
      await client.publishAsync('g1/b', 'info');
      const [topic, server, clientId, json] = (await next()).split(';');
      assert.equal(topic, 'topic=g1/#');
      assert.equal(server, `server=${broker.url}`);
      assert.equal(clientId, 'clientId=g1-client');
      assert.equal(JSON.parse(json!.slice('info='.length)).mqttServer, broker.url);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('runs the mqtt-temperature example: logs readings, republishes an alert above the threshold', { skip: missing(example('mqtt-temperature')) }, async () => {
    const r = await startRunner(['mqtt', example('mqtt-temperature'), `--mqtt-server=${broker.url}`, '--topic=sensors/+/temperature', '--qos=1', '--env=ALERT_ABOVE=30']);
    try {
      const alerts = await collect(broker.url, 'alerts/#');
      await client.publishAsync('sensors/kitchen/temperature', '21.5', { qos: 1 });
      await client.publishAsync('sensors/attic/temperature', '{"celsius": 35.25}', { qos: 1 });
      await client.publishAsync('sensors/garage/temperature', 'warm', { qos: 1 });
      await eventually(() => alerts.length >= 1, WAIT);
      assert.equal(alerts[0]!.topic, 'alerts/attic');
      assert.deepEqual(JSON.parse(alerts[0]!.text), { sensor: 'attic', celsius: 35.25, above: 30 });
      await eventually(() => /🌡️ kitchen: 21.5 °C/.test(r.logs()) && /the handler failed: not a temperature: warm/.test(r.logs()), WAIT);
      assert.equal(alerts.length, 1);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });

  it('accepts the Go spellings -mode=mqtt -mqttsrv= -topic= -clientId=', async () => {
    const r = await startRunner([`-wasm=${probe}`, '-mode=mqtt', `-mqttsrv=127.0.0.1:${broker.port}`, '-topic=legacy/t', '-clientId=legacy-client']);
    try {
      const seen = await collect(broker.url, 'seen/legacy/#');
      await client.publishAsync('legacy/t', 'x');
      await eventually(() => seen.length >= 1, WAIT);
      await eventually(() => /"clientId":"legacy-client"/.test(r.logs()), WAIT);
    } finally {
      await r.stop();
    }
  });

  it('refuses bad starts: no topic (exit 2), --persistent-session without --client-id (exit 2), no broker (exit 1)', async () => {
    const noTopic = await runCapsule(['mqtt', probe, `--mqtt-server=${broker.url}`]);
    assert.equal(noTopic.code, 2);
    assert.match(noTopic.stderr, /--topic/);
    const noId = await runCapsule(['mqtt', probe, `--mqtt-server=${broker.url}`, '--topic=x', '--persistent-session']);
    assert.equal(noId.code, 2);
    assert.match(noId.stderr, /--client-id/);
    const noBroker = await runCapsule(['mqtt', probe, '--mqtt-server=mqtt://127.0.0.1:1', '--topic=x']);
    assert.equal(noBroker.code, 1);
    assert.match(noBroker.stderr, /cannot connect to the MQTT broker mqtt:\/\/127\.0\.0\.1:1/);
  });
});

describe('MQTT topic filters', () => {
  it('match like the broker does', () => {
    assert.equal(topicMatches('sensors/+/temp', 'sensors/k1/temp'), true);
    assert.equal(topicMatches('sensors/+/temp', 'sensors/k1/x/temp'), false);
    assert.equal(topicMatches('sport/#', 'sport'), true);
    assert.equal(topicMatches('sport/#', 'sport/tennis/player1'), true);
    assert.equal(topicMatches('#', '$SYS/x'), false);
    assert.equal(topicMatches('$share/g/work/+', 'work/1'), true);
    assert.equal(topicMatches('a/b', 'a/b/c'), false);
  });
});
