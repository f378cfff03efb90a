/**
 * What a trigger asks of a guest and what it gets back. These plain objects cross the worker
 * boundary (structured clone), so they hold no classes.
 */
import type { ErrorCode } from './errors.ts';

/** What the HTTP trigger knows about the route a request matched (wasi-cgi.md §9). */
export interface CgiRoute {
  /** The route as configured, `/...` included (`X_MATCHED_ROUTE`); `/...` for a single-function server. */
  route: string;
  /** Export to call instead of `_start` (WAGI `entrypoint`). */
  entrypoint?: string;
  /** WAGI `argv` template (§3), e.g. `${SCRIPT_NAME} ${ARGS}`; absent = WAGI's default argv. */
  argv?: string;
  /** `host[:port]` used for SERVER_NAME/SERVER_PORT when the request has no `Host` (WAGI `--default-host`). */
  defaultHost?: string;
  /** Cap on the command's standard output, bytes (`--max-output`); past it the call fails. */
  maxOutputBytes?: number;
}

/** An HTTP request, as the HTTP trigger hands it to an ABI (capsule-abi.md §4.3, §5.3). */
export interface HttpRequestInput {
  type: 'http';
  method: string;
  /** Full URL `http[s]://<Host><path>[?<query>]`. */
  url: string;
  /** Header name (as received) and value; repeated headers appear once each. */
  headers: [string, string][];
  body: Uint8Array;
  remoteAddress: string;
  remotePort: number;
  /** HTTP version of the request (`1.1`, `1.0`, `2.0`); CGI `SERVER_PROTOCOL`. */
  httpVersion?: string;
  /** The route the request matched, for WASI commands served CGI-style (wasi-cgi.md §3, §4, §9). */
  cgi?: CgiRoute;
}

/** A CLI invocation (`capsule run`): Capsule ABI params, or argv for a WASI command. */
export interface CliInput {
  type: 'cli';
  /** Bytes for `callHandle` (gen 2 joins args with a space, gen 1 with its separator). */
  params?: Uint8Array;
  /** Positional arguments after the module. */
  args: string[];
  /** WASI commands: standard input bytes (EOF after them); absent = the process's stdin. */
  stdin?: Uint8Array;
  /** WASI commands: export to call instead of `_start` (WAGI `entrypoint`, `_routes`). */
  entrypoint?: string;
  /**
   * Gen 2 (`--handler`): call only this handler export; absent = `callHandle`, falling back to
   * `callHandleJSON` when it traps on JSON input (capsule-abi.md §5.2).
   */
  handler?: 'handle' | 'json';
}

/** A lifecycle or service export with no input (OnStart, OnStop, OnHealthCheck, OnMetrics, OnLoad, OnExit). */
export interface LifecycleInput {
  type: 'lifecycle';
  export: string;
}

/**
 * A message from a broker (NATS subject or MQTT topic). Gen 1 gets the raw payload
 * (capsule-abi.md §4.4); gen 2 the `callHandleMessage` JSON envelope (§8).
 */
export interface MessageInput {
  type: 'message';
  /** Which trigger delivered it. */
  source: 'nats' | 'mqtt';
  /** NATS subject or MQTT topic. */
  subject: string;
  data: Uint8Array;
  /** NATS headers / MQTT v5 user properties. */
  headers: [string, string][];
  /** Reply subject (NATS) or response topic (MQTT v5), when the sender set one. */
  replyTo?: string;
}

export type InvocationInput = HttpRequestInput | CliInput | LifecycleInput | MessageInput;

/** An HTTP response made from a guest result. */
export interface HttpResponseOutput {
  type: 'http';
  status: number;
  /**
   * Names and values as they go on the wire: a value is the latin1 string of the bytes sent
   * (UTF-8 text such as `👋` appears as its four bytes, one character each; capsule-abi.md §4.3).
   */
  headers: [string, string][];
  body: Uint8Array;
  /**
   * Set when the response reports a failure the ABI answered itself (a WASI command's exit code
   * or trap, a bad CGI header block: wasi-cgi.md §6, §8): logged and counted by the trigger.
   */
  failure?: { code: ErrorCode; message: string };
}

/** A CLI result: what to print, and the process exit code. */
export interface CliOutput {
  type: 'cli';
  /** Printed on stdout (with a newline) on success, on stderr on failure. */
  text?: Uint8Array;
  exitCode: number;
}

export interface LifecycleOutput {
  type: 'lifecycle';
  /** False when the export does not exist. */
  called: boolean;
}

/** A message handler's result: gen 2 `S`/`F` payload (published to ReplyTo by the trigger). */
export interface MessageOutput {
  type: 'message';
  ok: boolean;
  /** The S payload, or the F / [ERR] text. */
  payload: Uint8Array;
}

export type InvocationOutput = HttpResponseOutput | CliOutput | LifecycleOutput | MessageOutput;

/** Per-call facts given to host functions. */
export interface InvocationMeta {
  requestId?: string;
  /** Trigger facts for gen-1 getters and hostGetHostInformation (httpPort, natsServer, …). */
  trigger?: Record<string, string | number>;
  /** Gen 1: the last fatal error of a message handler, for hostGetExitError/Code in OnExit (§4.5). */
  exit?: { error: string; code: number };
}
