/**
 * The FaaS layer's commands (faas-api.md, faas-cluster.md §1): one registration line per
 * service or client command. Each command file defines only its options; its action imports the
 * service, so `capsule run` never loads the FaaS code.
 */
import type { CommandRegistrar } from './shared/command.ts';
import { registryCommand } from './registry/command.ts';
import { nodeCommand } from './node/command.ts';
import { proxyCommand } from './proxy/command.ts';
import { faasModeCommand } from './gen2/command.ts';
import { clientCommands, faasCommand } from './clients/command.ts';
import { upCommand } from './up/command.ts';

/** Every FaaS command, in the order `capsule --help` lists them. */
export const FAAS_COMMANDS: CommandRegistrar[] = [
  proxyCommand,
  registryCommand,
  nodeCommand,
  faasModeCommand,
  faasCommand,
  clientCommands,
  upCommand,
];
