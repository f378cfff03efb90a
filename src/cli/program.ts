/**
 * The `capsule` commands (commander wiring only; the work is in src/triggers and src/engine);
 * main.ts parses the command line with the program built here.
 * Exit codes (conventions.md §4): 0 success, 1 guest failure, 2 usage error; WASI commands pass
 * their own exit code through.
 *
 * `capsule run` and what every command that loads a module shares are module-command.ts's.
 *
 * Start-up (docs/performance.md): this module loads only what declaring the commands needs
 * (commander, the option declarations); each action imports its engine, trigger, logger,
 * brokers, metrics or progress bar when it runs, so `capsule run` never loads fastify, pino,
 * prom-client, Redis, NATS, MQTT, YAML or the progress bar.
 */
import { Argument, Command, Option } from 'commander';
import { CapsuleError } from '../base/errors.ts';
import type { CapsuleFunction } from '../engine/function.ts';
import type { ModuleKind } from '../base/kinds.ts';
import { KINDS } from '../abi/index.ts';
import { parseDuration } from '../base/units.ts';
import type { Logger } from '../observability/logger.ts';
import type { RunningMessageTrigger } from '../triggers/message/index.ts';
import { intFlag, logFormatOption, workersFlag } from './flags.ts';
import { callCommand } from './call.ts';
import { newCommand } from './new.ts';
import { buildCommand } from './build.ts';
import { serveCommand } from './serve.ts';
import { FAAS_COMMANDS } from '../faas/commands.ts';
import { baseProgram, collect, configHooks, functionOptions, loadFromFlags, moduleOptions, runCommand, type ModuleFlags } from './module-command.ts';

/**
 * The `capsule` program: every command with its options; actions call `exit(code)` when done.
 */
export function buildProgram(exit: (code: number) => void): Command {
  const program = baseProgram();
  program.addHelpText('after', `
Examples:
  capsule run hello.wasm Bob Morane
  capsule run --wasm=hello.wasm --params="Bob Morane"
  capsule serve --wasm=hello-you.wasm --http-port=8080
  capsule nats --wasm=echo.wasm --nats-server=nats://127.0.0.1:4222 --subject=echo --queue=workers
  capsule mqtt --wasm=logger.wasm --mqtt-server=mqtt://127.0.0.1:1883 --topic='sensors/+/temperature' --qos=1
  capsule inspect hello.wasm
  capsule new hello --lang rust --http && capsule build hello && capsule serve hello/hello.wasm
  capsule faas                      # gateway :8080, registry :4999, node :9999 in one process
  capsule publish hello.wasm demo/hello/1.0.0 && capsule deploy hello blue demo/hello/1.0.0
  capsule up --all                  # a local NATS with JetStream, and the FaaS kit in cluster mode

Go Capsule spellings are accepted: capsule -wasm=x.wasm -mode=cli -params=y,
capsule -wasm=x.wasm -mode=http -httpPort=8080, capsule-http --wasm=x.wasm --httpPort=8080,
capsule -wasm=x.wasm -mode=nats -natssrv=nats://… -subject=…, capsule -wasm=x.wasm -mode=mqtt -mqttsrv=… -topic=… -clientId=….`);

  runCommand(program, exit);
  serveCommand(program, exit);
  messageCommands(program, exit);
  inspectCommand(program, exit);
  configHooks(program);
  callCommand(program, exit);
  newCommand(program, exit);
  buildCommand(program, exit);
  for (const add of FAAS_COMMANDS) add(program, exit);
  completionCommand(program, exit);
  return program;
}

/** `capsule completion bash|zsh`: the shell completion script of this program (completion.ts). */
function completionCommand(program: Command, exit: (code: number) => void): void {
  program.command('completion')
    .description('print a shell completion script: source <(capsule completion bash), or save it in the shell\'s completion folder')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh']))
    .exitOverride()
    .action(async (shell: 'bash' | 'zsh') => {
      const { completionScript } = await import('./completion.ts');
      process.stdout.write(completionScript(program, shell));
      exit(0);
    });
}

/** `capsule nats` and `capsule mqtt`: a module per message. */
function messageCommands(program: Command, exit: (code: number) => void): void {
  // Message triggers (README "NATS and MQTT"): one ready line on stdout, logs on stderr.
  const messageFlags = (cmd: Command) => moduleOptions(cmd)
    .argument('[module]', 'module file (or use --wasm / --url)')
    .option('--http-port <port>', 'serve /capsule/health, /capsule/ready, /capsule/metrics, /health, /metrics on this port (0 = a free one)')
    .option('--host <address>', 'interface of --http-port', '127.0.0.1')
    .option('--reuse', 'gen-2 modules: keep long-lived instances (globals persist between calls)', false)
    .option('--fresh', 'Extism plugins: a fresh instance per call (default: one instance per worker thread)', false)
    .option('--workers <n>', 'worker threads running guests (default: CPU cores)')
    .option('--grace <duration>', 'time given to in-flight messages on SIGTERM', '10s')
    .addOption(logFormatOption());
  type MessageFlags = ModuleFlags & { httpPort?: string; host: string; reuse: boolean; fresh: boolean; workers?: string; grace: string; maxConcurrency?: string };
  const startMessages = async (positional: string | undefined, f: MessageFlags, start: (fn: CapsuleFunction, common: {
    logger: Logger; graceMs: number; http?: { host: string; port: number }; maxConcurrency?: number;
  }) => Promise<RunningMessageTrigger>, describe: string) => {
    const [{ createLogger }, { serveUntilClosed }, { CapsuleFunction }] = await Promise.all([
      import('../observability/logger.ts'), import('../triggers/lifecycle.ts'), import('../engine/function.ts'),
    ]);
    const logger = createLogger(f.logLevel, f.logFormat);
    const http = f.httpPort !== undefined ? { host: f.host, port: intFlag(f.httpPort, '--http-port', 0, 65535) } : undefined;
    const graceMs = parseDuration(f.grace, '--grace');
    const maxConcurrency = f.maxConcurrency !== undefined ? intFlag(f.maxConcurrency, '--max-concurrency', 1, 100_000) : undefined;
    const module = await loadFromFlags(f, positional);
    const fn = CapsuleFunction.fromModule(module, {
      ...functionOptions(f, module, true), stdio: 'capture', reuse: f.reuse, fresh: f.fresh,
      workers: workersFlag(f.workers),
      onWarning: (m) => logger.warn(m),
    });
    let trigger: RunningMessageTrigger;
    try {
      trigger = await start(fn, { logger, graceMs, http, maxConcurrency });
    } catch (e) {
      await fn.close();
      throw e;
    }
    exit(await serveUntilClosed(trigger, `capsule subscribed to ${trigger.server} (${describe})${trigger.httpUrl ? `; runner routes on ${trigger.httpUrl}` : ''}`, logger));
  };

  messageFlags(program.command('nats').description('run a module for each message on NATS subjects (gen 2: callHandleMessage; gen 1: callNatsMessageHandle)'))
    .option('--nats-server <url>', 'NATS server: nats://host:port, tls://host:port or host:port (comma-separated for a cluster)', 'nats://127.0.0.1:4222')
    .option('--subject <subject>', 'subject to subscribe to, wildcards * and > allowed (repeatable)', collect, [])
    .option('--queue <group>', 'queue group: runners with the same group share the messages')
    .option('--max-concurrency <n>', 'messages handled at once (default: 2 × workers)')
    .option('--max-pending <n>', 'messages kept waiting beyond those; more are dropped and counted', '1000')
    .exitOverride()
    .action(async (positional: string | undefined, f: MessageFlags & { natsServer: string; subject: string[]; queue?: string; maxPending: string }) => {
      if (f.subject.length === 0) throw new CapsuleError('USAGE', 'give at least one --subject (e.g. --subject=greetings or --subject="orders.>")');
      const maxPending = intFlag(f.maxPending, '--max-pending', 0, 1_000_000);
      const { serveNats } = await import('../triggers/nats/index.ts');
      await startMessages(positional, f, (fn, c) => serveNats(fn, {
        server: f.natsServer, subjects: f.subject, queue: f.queue, maxPending, ...c,
      }), `${f.subject.join(', ')}${f.queue ? `; queue ${f.queue}` : ''}`);
    });

  messageFlags(program.command('mqtt').description('run a module for each message on MQTT topics (gen 2: callHandleMessage; gen 1: callMqttMessageHandle)'))
    .option('--mqtt-server <url>', 'MQTT broker: mqtt://host:port, mqtts://, tcp://, ws://, wss:// or host:port', 'mqtt://127.0.0.1:1883')
    .option('--topic <filter>', 'topic filter, wildcards + and # allowed, $share/<group>/<filter> for a shared subscription (repeatable)', collect, [])
    .option('--client-id <id>', 'MQTT client id (default: capsule-<random>)')
    .addOption(new Option('--qos <qos>', 'subscription QoS, also used by the guest\'s hostMqttPublish (gen 2); 1 and 2 are acknowledged after the handler returned').choices(['0', '1', '2']).default('0'))
    .option('--persistent-session', 'keep the session (subscriptions, queued QoS ≥ 1 messages) while the runner is away; needs --client-id', false)
    .option('--max-concurrency <n>', 'QoS 0 messages handled at once (default: 2 × workers); QoS 1/2 run one at a time')
    .exitOverride()
    .action(async (positional: string | undefined, f: MessageFlags & { mqttServer: string; topic: string[]; clientId?: string; qos: string; persistentSession: boolean }) => {
      if (f.topic.length === 0) throw new CapsuleError('USAGE', 'give at least one --topic (e.g. --topic="sensors/+/temperature")');
      const { serveMqtt } = await import('../triggers/mqtt/index.ts');
      await startMessages(positional, f, (fn, c) => serveMqtt(fn, {
        server: f.mqttServer, topics: f.topic, clientId: f.clientId, qos: Number(f.qos) as 0 | 1 | 2,
        persistentSession: f.persistentSession, ...c,
      }), `${f.topic.join(', ')}; QoS ${f.qos}`);
    });
}

/** `capsule inspect`: what a module is and asks for. */
function inspectCommand(program: Command, exit: (code: number) => void): void {
  program.command('inspect')
    .description('print a module\'s kind, ABI generation, imports (the capabilities it asks for) and exports')
    .argument('<module>', 'module file')
    .option('--json', 'print JSON')
    .addOption(new Option('--kind <kind>', 'module kind, instead of detecting it').choices(KINDS as string[]))
    .exitOverride()
    .action(async (path: string, f: { json?: boolean; kind?: ModuleKind }) => {
      // a module that fails its load checks is still described, with the problem; then exit 1
      const { inspectFile } = await import('./inspect.ts');
      const { text, problem } = await inspectFile(path, { kind: f.kind, json: f.json === true });
      process.stdout.write(text);
      if (problem) throw problem;
      exit(0);
    });
}
