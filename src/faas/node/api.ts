/**
 * The worker API of a function node (faas-api.md §3, with the §9 changes): thin routes that bind
 * the JSON body, call the node's `Deployments` and answer 202 with the Go reply. Every route but
 * the list needs the worker admin token (§9.1: header `CAPSULE_WORKER_ADMIN_TOKEN`, 401/403);
 * a body that does not parse → 400 ERROR_JSON_BINDING (§9.9) instead of Go's 500 JSON_PARSE_ERROR.
 * Beyond Go: `PUT /functions/revisions/module` reloads a revision (faas-cluster.md §1.3).
 */
import type { FastifyInstance } from 'fastify';
import type { AdminPolicy } from '../shared/admin.ts';
import { adminGuard, bindJson, FaasError, sendJson } from '../shared/service.ts';
import type { Deployments } from './deployments.ts';

/** Go stringified every value of `envVariables` (`fmt.Sprintf("%v")`); objects become JSON text here. */
function envOf(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new FaasError(400, 'ERROR_JSON_BINDING', 'field "envVariables" must be a JSON object of names to values');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k)) throw new FaasError(400, 'ERROR_JSON_BINDING', `envVariables: "${k}" is not a variable name`);
    out[k] = typeof v === 'string' ? v : v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  return out;
}

/** An optional string field. @throws FaasError 400 when present but not a string */
function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new FaasError(400, 'ERROR_JSON_BINDING', `field "${field}" must be a string`);
  return v;
}

/** What the worker routes call: the node's `Deployments`, or the cluster's desired state (cluster/desired.ts). */
export type WorkerApi = Pick<Deployments, 'list' | 'deploy' | 'undeploy' | 'downscale' | 'setDefault' | 'removeDefault' | 'reload'>;

/**
 * Cluster-mode deploy fields beyond Go's body (faas-cluster.md §1.6): `idleSeconds` (scale to zero,
 * seconds) and `placement` (labels a node must carry). A one-machine node ignores them.
 * @throws FaasError 400 ERROR_JSON_BINDING when present with the wrong shape
 */
function clusterExtras(body: Record<string, unknown>): { idleSeconds?: number; placement?: Record<string, string> } {
  const out: { idleSeconds?: number; placement?: Record<string, string> } = {};
  const idle = body.idleSeconds;
  if (idle !== undefined && idle !== null) {
    if (typeof idle !== 'number' || !Number.isFinite(idle) || idle < 0) throw new FaasError(400, 'ERROR_JSON_BINDING', 'field "idleSeconds" must be a number of seconds ≥ 0');
    out.idleSeconds = idle;
  }
  const p = body.placement;
  if (p !== undefined && p !== null) {
    if (typeof p !== 'object' || Array.isArray(p) || !Object.values(p).every((v) => typeof v === 'string')) throw new FaasError(400, 'ERROR_JSON_BINDING', 'field "placement" must be an object of label names to string values');
    out.placement = p as Record<string, string>;
  }
  return out;
}

/** Adds the worker routes to the node's app. */
export function registerNodeRoutes(app: FastifyInstance, deployments: WorkerApi, policy: AdminPolicy): void {
  const admin = { onRequest: adminGuard(policy) };
  app.get('/functions/list', async (_req, reply) => reply.code(202).type('application/json; charset=utf-8').send(JSON.stringify(await deployments.list(), null, 4)));
  app.post('/functions/deploy', admin, async (req, reply) => {
    const b = bindJson(req, reply, ['function', 'revision', 'downloadUrl']);
    if (!b) return reply;
    const r = await deployments.deploy({ function: b.function, revision: b.revision, downloadUrl: b.downloadUrl, envVariables: envOf(b.envVariables), sha256: optionalString(b, 'sha256'), ...clusterExtras(b) });
    return sendJson(reply, 202, r);
  });
  app.delete('/functions/revisions/deployments', admin, async (req, reply) => {
    const b = bindJson(req, reply, ['function', 'revision']);
    return b ? sendJson(reply, 202, await deployments.undeploy(b.function, b.revision)) : reply;
  });
  app.delete('/functions/revisions/downscale', admin, async (req, reply) => {
    const b = bindJson(req, reply, ['function', 'revision']);
    return b ? sendJson(reply, 202, await deployments.downscale(b.function, b.revision)) : reply;
  });
  app.post('/functions/set_default_revision', admin, async (req, reply) => {
    const b = bindJson(req, reply, ['function', 'revision']);
    return b ? sendJson(reply, 202, await deployments.setDefault(b.function, b.revision)) : reply;
  });
  app.delete('/functions/remove_default_revision', admin, async (req, reply) => {
    const b = bindJson(req, reply, ['function']);
    return b ? sendJson(reply, 202, await deployments.removeDefault(b.function)) : reply;
  });
  app.put('/functions/revisions/module', admin, async (req, reply) => {
    const b = bindJson(req, reply, ['function', 'revision']);
    if (!b) return reply;
    const downloadUrl = optionalString(b, 'downloadUrl');
    const sha256 = optionalString(b, 'sha256');
    if (downloadUrl === undefined && sha256 === undefined) throw new FaasError(400, 'ERROR_JSON_BINDING', 'give "downloadUrl" or "sha256" (a module this node has already loaded)');
    return sendJson(reply, 202, await deployments.reload(b.function, b.revision, { downloadUrl, sha256 }));
  });
}
