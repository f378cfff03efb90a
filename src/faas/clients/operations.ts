/**
 * What the `capsule publish | deploy | undeploy | scale | set-default | unset-default | list |
 * routes` commands do, as functions that return data (the commands print it as a table or JSON).
 * They call the Go routes of the registry (faas-api.md §2), the node (§3) and the proxy (§1).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { CapsuleError } from '../../base/errors.ts';
import { callService, ServiceError, serviceToken, serviceUrl } from './http.ts';
import { trafficProblem, type TrafficTarget } from '../shared/traffic.ts';

/** Where the services are and the admin tokens to send. */
export interface ClientContext {
  registry: string;
  node: string;
  proxy: string;
  /** Prefix of the proxy's registration API (`memory`). */
  backend: string;
  tokens: { registry?: string; node?: string; proxy?: string };
}

/** The URLs a client was given (flags); undefined = the environment, else the Go default. */
export interface ClientUrls {
  registry?: string;
  node?: string;
  proxy?: string;
  backend?: string;
}

/**
 * The services' URLs and tokens of a client (`capsule publish|deploy|…` and `caps`): each URL from
 * `urls`, else its environment variable ({@link SERVICES}), else the Go default; the backend from
 * `urls`, else `CAPSULE_BACKEND`, else `memory`; the admin tokens from the environment.
 * @param registryEnv where the registry URL variable is read (`caps` passes `{}`: Go caps read only `-registryUrl`)
 * @throws CapsuleError USAGE when a URL is not http(s) (serviceUrl)
 */
export function clientContext(urls: ClientUrls, env: NodeJS.ProcessEnv = process.env, registryEnv: NodeJS.ProcessEnv = env): ClientContext {
  return {
    registry: serviceUrl('registry', urls.registry, registryEnv), node: serviceUrl('node', urls.node, env), proxy: serviceUrl('proxy', urls.proxy, env),
    backend: urls.backend || env['CAPSULE_BACKEND'] || 'memory',
    tokens: { registry: serviceToken('registry', env), node: serviceToken('node', env), proxy: serviceToken('proxy', env) },
  };
}

/**
 * A deployment's environment given as a JSON object (`--env-variables`, Go caps' `-envVariables`):
 * values that are not strings are sent as their JSON text (`{"N":42}` → `N=42`), as Go's caps
 * sent every value as a string.
 * @throws Error when the text is not a JSON object (the caller words the failure)
 */
export function envVariablesOf(json: string): Record<string, string> {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (e) {
    throw new Error(`expected a JSON object, e.g. '{"MESSAGE":"hi"}' (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`expected a JSON object, e.g. '{"MESSAGE":"hi"}' (got ${json})`);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, typeof x === 'string' ? x : JSON.stringify(x)]));
}

/** A module in the registry: `<org>/<name>/<tag>`. */
export interface ModuleRef {
  org: string;
  name: string;
  tag: string;
}

type Json = Record<string, unknown>;

/** `demo/hello/0.0.0` (or `demo/hello:0.0.0`) → its parts. @throws CapsuleError USAGE otherwise */
export function parseModuleRef(text: string): ModuleRef {
  const m = /^([^/:\s]+)\/([^/:\s]+)[/:]([^/:\s]+)$/.exec(text);
  if (!m) throw new CapsuleError('USAGE', `"${text}": expected a registry module as <org>/<name>/<tag>, e.g. demo/hello/0.0.0`);
  return { org: m[1]!, name: m[2]!, tag: m[3]! };
}

/** The registry URL a node downloads a module from (Go layout `<org>/<name>/<tag>/<name>.wasm`). */
export function moduleUrl(registry: string, ref: ModuleRef): string {
  return `${registry}/${[ref.org, ref.name, ref.tag, `${ref.name}.wasm`].map(encodeURIComponent).join('/')}`;
}

/** What `publish` did. */
export interface Published {
  module: string;
  file: string;
  size: number;
  sha256: string;
  downloadUrl: string;
}

/**
 * Uploads a module; the registry verifies the SHA-256 computed here.
 * @throws CapsuleError USAGE when the file cannot be read; ServiceError from the registry
 */
export async function publishModule(ctx: ClientContext, file: string, ref: ModuleRef, info: string): Promise<Published> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new CapsuleError('USAGE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const form = new FormData();
  form.set('file', new Blob([new Uint8Array(bytes)], { type: 'application/wasm' }), basename(file));
  form.set('info', info);
  form.set('sha256', sha256);
  const path = `/upload/${[ref.org, ref.name, ref.tag].map(encodeURIComponent).join('/')}`;
  await callService('registry', ctx.registry, 'POST', path, { form, token: ctx.tokens.registry });
  return { module: `${ref.org}/${ref.name}/${ref.tag}`, file, size: bytes.length, sha256, downloadUrl: moduleUrl(ctx.registry, ref) };
}

/** One deployment request: the body the node takes (faas-api.md §3 plus the digest pin). */
export type { DeployRequest } from '../node/deployments.ts';
import type { DeployRequest } from '../node/deployments.ts';

/** `POST /functions/deploy`: the node's reply (`localUrl`, `remoteUrl`, …). @throws ServiceError */
export async function deployRevision(ctx: ClientContext, d: DeployRequest): Promise<Json> {
  const body: Json = { function: d.function, revision: d.revision, downloadUrl: d.downloadUrl, envVariables: d.envVariables };
  if (d.sha256) body['sha256'] = d.sha256;
  return (await callService('node', ctx.node, 'POST', '/functions/deploy', { json: body, token: ctx.tokens.node })).json as Json;
}

/** A node route taking `{function[, revision]}`. @throws ServiceError */
async function nodeChange(ctx: ClientContext, method: string, path: string, body: Json): Promise<Json> {
  return (await callService('node', ctx.node, method, path, { json: body, token: ctx.tokens.node })).json as Json;
}

/** Removes every replica of a revision. @throws ServiceError */
export function undeployRevision(ctx: ClientContext, fn: string, rev: string): Promise<Json> {
  return nodeChange(ctx, 'DELETE', '/functions/revisions/deployments', { function: fn, revision: rev });
}

/**
 * Removes one replica of a revision (the newest). The node answers 202 with code
 * `WASM_MODULE_DEPLOYMENT_NOT_REMOVED` when it is the last one. @throws ServiceError
 */
export function downscaleRevision(ctx: ClientContext, fn: string, rev: string): Promise<Json> {
  return nodeChange(ctx, 'DELETE', '/functions/revisions/downscale', { function: fn, revision: rev });
}

/** Makes `rev` the default revision of `fn` (`/functions/<fn>`). @throws ServiceError */
export function setDefaultRevision(ctx: ClientContext, fn: string, rev: string): Promise<Json> {
  return nodeChange(ctx, 'POST', '/functions/set_default_revision', { function: fn, revision: rev });
}

/** Removes the default revision of `fn`. @throws ServiceError */
export function unsetDefaultRevision(ctx: ClientContext, fn: string): Promise<Json> {
  return nodeChange(ctx, 'DELETE', '/functions/remove_default_revision', { function: fn });
}

/** One replica in the node's list. */
interface ListedReplica {
  localUrl?: string;
  remoteUrl?: string;
  envVariables?: Record<string, string>;
  status?: string;
}

/** One revision in the node's list (faas-api.md §3, plus Capsule's `sha256`, `generation`). */
interface ListedRevision {
  wasmRegistryUrl?: string;
  isDefaultRevision?: string;
  sha256?: string;
  generation?: number;
  wasmModules?: Record<string, ListedReplica>;
}

/** A deployed revision, flattened for a table or a script. */
export interface DeploymentRow {
  function: string;
  revision: string;
  default: boolean;
  replicas: number;
  module: string;
  sha256: string;
  url: string;
  localUrls: string[];
}

/** The node's raw list. @throws ServiceError */
async function nodeList(ctx: ClientContext): Promise<Record<string, Record<string, ListedRevision>>> {
  const r = await callService('node', ctx.node, 'GET', '/functions/list');
  return (r.json ?? {}) as Record<string, Record<string, ListedRevision>>;
}

/** Every deployed revision, sorted by function then revision. @throws ServiceError */
export async function listDeployments(ctx: ClientContext): Promise<DeploymentRow[]> {
  const rows: DeploymentRow[] = [];
  for (const [fn, revs] of Object.entries(await nodeList(ctx))) {
    for (const [rev, r] of Object.entries(revs)) {
      const replicas = Object.values(r.wasmModules ?? {});
      rows.push({
        function: fn, revision: rev, default: r.isDefaultRevision === 'true', replicas: replicas.length,
        module: r.wasmRegistryUrl ?? '', sha256: r.sha256 ?? '', url: replicas[0]?.remoteUrl ?? '',
        localUrls: replicas.map((x) => x.localUrl ?? ''),
      });
    }
  }
  return rows.sort((a, b) => a.function.localeCompare(b.function) || a.revision.localeCompare(b.revision));
}

/** What `scale` did. */
export interface Scaled {
  function: string;
  revision: string;
  from: number;
  to: number;
  localUrls: string[];
}

/**
 * Brings a deployed revision to `replicas` replicas: adds replicas of the same module (digest
 * pinned) and environment, or removes the newest ones.
 * @throws CapsuleError USAGE when `replicas` < 1; ServiceError when the revision is not deployed or the node refuses
 */
export async function scaleRevision(ctx: ClientContext, fn: string, rev: string, replicas: number): Promise<Scaled> {
  if (!Number.isInteger(replicas) || replicas < 1) throw new CapsuleError('USAGE', `replicas: expected a whole number ≥ 1 (use capsule undeploy ${fn} ${rev} to remove the revision)`);
  const listed = (await nodeList(ctx))[fn]?.[rev];
  const current = Object.values(listed?.wasmModules ?? {});
  if (!listed || current.length === 0) throw new ServiceError('node', `${fn}/${rev} is not deployed on the node at ${ctx.node}: deploy it first (capsule deploy ${fn} ${rev} <org/name/tag>)`);
  for (let n = current.length; n < replicas; n++) {
    await deployRevision(ctx, { function: fn, revision: rev, downloadUrl: listed.wasmRegistryUrl ?? '', envVariables: current[0]!.envVariables ?? {}, sha256: listed.sha256 || undefined });
  }
  for (let n = current.length; n > replicas; n--) {
    const r = await downscaleRevision(ctx, fn, rev);
    if (r['code'] === 'WASM_MODULE_DEPLOYMENT_NOT_REMOVED') throw new ServiceError('node', `the node kept ${fn}/${rev} at ${n} replica(s): ${String(r['message'])}`);
  }
  const after = Object.values((await nodeList(ctx))[fn]?.[rev]?.wasmModules ?? {});
  return { function: fn, revision: rev, from: current.length, to: after.length, localUrls: after.map((x) => x.localUrl ?? '') };
}

/**
 * `blue=90 green=10` → targets, checked by the proxy's rule ({@link trafficProblem}, the code
 * setTraffic in proxy/table.ts runs) so a bad split fails before any request.
 * @throws CapsuleError USAGE on a malformed target, `default`, a percent above 100, a revision
 *   named twice, or percents that do not add up to 100
 */
export function parseTargets(texts: readonly string[]): TrafficTarget[] {
  const targets = texts.map((t) => {
    const m = /^([^=\s]+)=(\d{1,3})%?$/.exec(t);
    if (!m) throw new CapsuleError('USAGE', `"${t}": expected <revision>=<percent>, e.g. blue=90 green=10`);
    return { revision: m[1]!, percent: Number(m[2]) };
  });
  const problem = trafficProblem(targets);
  if (problem !== undefined) throw new CapsuleError('USAGE', `${problem} (e.g. blue=90 green=10)`);
  return targets;
}

/**
 * Splits the default route of a function between revisions (the proxy's
 * `PUT /<backend>/functions/<fn>/traffic`, faas-cluster.md §1.5).
 * @param sticky `header:<name>` or `cookie:<name>`: one client keeps one revision
 * @throws ServiceError (the proxy checks the percents and the revisions)
 */
export async function splitTraffic(ctx: ClientContext, fn: string, targets: TrafficTarget[], sticky?: string): Promise<Json> {
  const body: Json = { targets };
  if (sticky) body['sticky'] = sticky;
  const path = `/${ctx.backend}/functions/${encodeURIComponent(fn)}/traffic`;
  return (await callService('proxy', ctx.proxy, 'PUT', path, { json: body, token: ctx.tokens.proxy })).json as Json;
}

/** A route of the proxy. */
export interface RouteRow {
  function: string;
  revision: string;
  upstreams: string[];
  /** For `default`: the revisions it sends traffic to. */
  traffic?: TrafficTarget[];
  sticky?: string;
}

/** The proxy's routing table (`default` shows the URLs of the revision it aliases). @throws ServiceError */
export async function listRoutes(ctx: ClientContext): Promise<RouteRow[]> {
  const r = await callService('proxy', ctx.proxy, 'GET', `/${ctx.backend}/functions/list`);
  const rows: RouteRow[] = [];
  for (const [fn, revs] of Object.entries((r.json ?? {}) as Record<string, Record<string, string[] | null>>)) {
    for (const [rev, urls] of Object.entries(revs)) rows.push({ function: fn, revision: rev, upstreams: urls ?? [] });
  }
  for (const row of rows.filter((x) => x.revision === 'default')) {
    const t = await callService('proxy', ctx.proxy, 'GET', `/${ctx.backend}/functions/${encodeURIComponent(row.function)}/traffic`, { accept: (x) => x.status === 404 || x.status === 405 });
    const traffic = t.json as { targets?: TrafficTarget[]; sticky?: string } | undefined;
    if (t.status === 200 && traffic?.targets?.length) {
      row.traffic = traffic.targets;
      if (traffic.sticky) row.sticky = traffic.sticky;
    }
  }
  return rows.sort((a, b) => a.function.localeCompare(b.function) || a.revision.localeCompare(b.revision));
}
