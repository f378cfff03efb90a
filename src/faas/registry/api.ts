/**
 * The registry's HTTP routes (faas-api.md §2 with the §9.5 changes): upload (multipart, admin
 * token), download and info (open), list. Thin: names are checked (names.ts), bytes go to the
 * store (store.ts), replies keep Go's shapes and add the module's SHA-256.
 */
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Counter } from 'prom-client';
import type { Logger } from '../../observability/logger.ts';
import { formatBytes } from '../../base/units.ts';
import { sha256Hex } from '../../base/digest.ts';
import type { AdminPolicy } from '../shared/admin.ts';
import { adminGuard, FaasError, sendJson } from '../shared/service.ts';
import { checkName, refFromParams, refText, type ModuleRef } from './names.ts';
import type { ModuleStore, StagedModule } from './store.ts';

/** What the routes need. */
export interface RegistryApiOptions {
  store: ModuleStore;
  /** Upload guard (faas-api.md §9.1, header CAPSULE_REGISTRY_ADMIN_TOKEN). */
  admin: AdminPolicy;
  /** Largest module accepted, bytes (larger → 413). */
  maxModuleSize: number;
  logger: Logger;
  /** Uploads by outcome (`ok`, `refused`, `error`) and downloads. */
  counters?: { uploads: Counter<'outcome'>; downloads: Counter };
}

/** Longest `info` text, bytes. */
const MAX_INFO = 64 * 1024;
/** Room for the form around the module (fields, boundaries, part headers) in a Content-Length check. */
const FORM_OVERHEAD = 16 * MAX_INFO + 64 * 1024;
/** A refused upload's remaining body is read (and dropped) up to max(--max-module-size, this) before the connection is closed. */
const DRAIN_MIN = 8 * 1024 * 1024;

/** Adds the registry routes to a service app (createServiceApp). */
export async function registryRoutes(app: FastifyInstance, o: RegistryApiOptions): Promise<void> {
  // busboy stops a file at this size; the store refuses anything past maxModuleSize itself
  await app.register(multipart, { limits: { fileSize: o.maxModuleSize + 1, files: 1, fields: 16, fieldSize: MAX_INFO, parts: 32 }, throwFileSizeLimit: false });
  app.setNotFoundHandler(async (request, reply) => notFound(request, reply));

  app.get('/modules', async (_request, reply) => sendJson(reply, 200, await o.store.list()));

  app.get('/info/:user_org/:wasm_module/:tag', async (request, reply) => {
    const ref = refFromParams(request.params);
    const info = await o.store.open(ref, `${ref.module}.info`);
    if (!info) throw missing(`${refText(ref)} has no module`);
    const module = await o.store.open(ref, `${ref.module}.wasm`);
    if (module) {
      reply.header('x-capsule-sha256', module.sha256);
      await module.close();
    }
    return reply.type('text/plain; charset=utf-8').send(info.stream());
  });

  app.get('/:user_org/:wasm_module/:tag/:file_name', async (request, reply) => {
    const ref = refFromParams(request.params);
    const name = checkName((request.params as Record<string, unknown>)['file_name'], 'file_name');
    const file = await o.store.open(ref, name);
    if (!file) throw missing(`${refText(ref)}/${name} does not exist`);
    o.counters?.downloads.inc();
    reply
      .type(contentTypeOf(name))
      .header('content-length', file.size)
      .header('digest', `sha-256=${Buffer.from(file.sha256, 'hex').toString('base64')}`)
      .header('x-capsule-sha256', file.sha256)
      .header('etag', `"sha256-${file.sha256}"`);
    if (request.method === 'HEAD') {
      // an empty stream: fastify's HEAD handling keeps the headers set here (an absent body
      // would be answered with content-length 0)
      await file.close();
      return reply.send(Readable.from([]));
    }
    return reply.send(file.stream());
  });

  app.post('/upload/:user_org/:wasm_module/:tag', { onRequest: adminGuard(o.admin) }, async (request, reply) => {
    const ref = refFromParams(request.params);
    if (!request.isMultipart()) {
      throw new FaasError(400, 'ERROR_NOT_MULTIPART', 'send the module as multipart/form-data with a "file" field (curl -F "file=@hello.wasm" -F "info=…")');
    }
    // refused before reading: Node drops the unread body and keeps the connection
    if (Number(request.headers['content-length'] ?? 0) > o.maxModuleSize + FORM_OVERHEAD) throw tooLarge(o.maxModuleSize);
    try {
      const form = await readUploadForm(request, ref, o);
      o.counters?.uploads.inc({ outcome: 'ok' });
      o.logger.info({ module: refText(ref), sha256: form.sha256, size: form.size }, 'module uploaded');
      return sendJson(reply, 200, { code: 'OK', message: `🙂 ${form.filename} uploaded!`, sha256: form.sha256 });
    } catch (e) {
      const status = e instanceof FaasError ? e.status : 500;
      o.counters?.uploads.inc({ outcome: status < 500 ? 'refused' : 'error' });
      o.logger.warn({ module: refText(ref), status, err: (e as Error).message }, 'upload refused');
      // Refused mid-body: the rest is read and dropped so that the client gets the reply and its
      // kept-alive socket stays usable; past a bound the connection is closed after the reply.
      if (!(await drainRequest(request.raw, Math.max(o.maxModuleSize, DRAIN_MIN)))) reply.header('connection', 'close');
      throw e;
    }
  });
}

/**
 * Reads the upload form: `file` streamed into the store, `info` text, optional `sha256` (the
 * fields may come before or after the file), then checks the digest and commits.
 * @throws FaasError (400 ERROR_MISSING_FILE, ERROR_SHA256_MISMATCH, ERROR_INVALID_SHA256,
 *   ERROR_BAD_FORM; 413 ERROR_MODULE_TOO_LARGE; the store's refusals); nothing is stored then
 */
async function readUploadForm(request: FastifyRequest, ref: ModuleRef, o: RegistryApiOptions): Promise<{ filename: string; sha256: string; size: number }> {
  let staged: StagedModule | undefined;
  let filename = '';
  let info = '';
  let expected: string | undefined;
  let refusal: unknown;
  try {
    // Every part is read to the end even after a refusal: the parser never stalls on an unread part.
    for await (const part of request.parts()) {
      if (refusal !== undefined) {
        if (part.type === 'file') await discard(part.file);
        continue;
      }
      try {
        if (part.type === 'file') {
          if (part.fieldname !== 'file') throw new FaasError(400, 'ERROR_BAD_FORM', `unexpected file field "${part.fieldname}": the module goes in the field "file"`);
          filename = part.filename;
          staged = await o.store.stage(ref, part.file, { maxBytes: o.maxModuleSize });
        } else if (part.valueTruncated) {
          throw new FaasError(400, 'ERROR_BAD_FORM', `field "${part.fieldname}" is longer than ${formatBytes(MAX_INFO)}`);
        } else if (part.fieldname === 'info') {
          info = String(part.value);
        } else if (part.fieldname === 'sha256') {
          const hex = sha256Hex(String(part.value));
          if (hex === undefined) throw new FaasError(400, 'ERROR_INVALID_SHA256', 'field "sha256": expected 64 hexadecimal digits (optionally after "sha256:")');
          expected = hex;
        }
      } catch (e) {
        refusal = e;
        if (part.type === 'file') await discard(part.file);
      }
    }
  } catch (e) {
    refusal ??= e;
  }
  try {
    if (refusal !== undefined) throw refusal;
    if (!staged) throw new FaasError(400, 'ERROR_MISSING_FILE', 'no "file" field: send the module as multipart/form-data (curl -F "file=@hello.wasm")');
    if (expected !== undefined && expected !== staged.sha256) {
      throw new FaasError(400, 'ERROR_SHA256_MISMATCH', `the module's SHA-256 is ${staged.sha256}, the form says ${expected}: nothing stored`);
    }
    await staged.commit(info);
    return { filename, sha256: staged.sha256, size: staged.size };
  } catch (e) {
    await staged?.discard();
    throw formError(e, o.maxModuleSize);
  }
}

/** Reads a part to its end and drops it (nothing when it was already ended or destroyed). */
async function discard(file: Readable): Promise<void> {
  if (file.destroyed || file.readableEnded) return;
  file.resume();
  await finished(file).catch(() => undefined);
}

/**
 * Reads and drops the rest of a request body, up to `limit` bytes.
 * @returns true when the body was read to its end (the connection can be kept)
 */
function drainRequest(req: IncomingMessage, limit: number): Promise<boolean> {
  if (req.complete) return Promise.resolve(true);
  if (req.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    let n = 0;
    const done = (ok: boolean) => {
      req.off('data', onData).off('end', onEnd).off('close', onClose);
      resolve(ok);
    };
    const onData = (chunk: Buffer) => {
      n += chunk.length;
      if (n > limit) {
        req.pause();
        done(false);
      }
    };
    const onEnd = () => done(true);
    const onClose = () => done(req.complete);
    req.on('data', onData).once('end', onEnd).once('close', onClose);
    req.resume();
  });
}

/** A multipart parser error as a FaasError (limits → 413, malformed → 400). */
function formError(e: unknown, maxModuleSize: number): unknown {
  if (e instanceof FaasError) return e;
  const err = e as Error & { code?: string; statusCode?: number };
  if (err.code === 'FST_REQ_FILE_TOO_LARGE') return tooLarge(maxModuleSize);
  if (err.statusCode === 413) return new FaasError(413, 'ERROR_BAD_FORM', `${err.message} (one "file", at most 16 fields)`);
  if (typeof err.code === 'string' && err.code.startsWith('FST_')) return new FaasError(400, 'ERROR_BAD_FORM', err.message);
  if (/multipart|part terminated|unexpected end/i.test(err.message ?? '')) return new FaasError(400, 'ERROR_BAD_FORM', `malformed multipart body: ${err.message}`);
  return e;
}

const missing = (message: string) => new FaasError(404, 'ERROR_NOT_FOUND', message);
const tooLarge = (max: number) => new FaasError(413, 'ERROR_MODULE_TOO_LARGE', `the module is larger than ${formatBytes(max)} (--max-module-size)`);

function contentTypeOf(name: string): string {
  if (name.endsWith('.wasm')) return 'application/wasm';
  if (name.endsWith('.info') || name.endsWith('.sha256')) return 'text/plain; charset=utf-8';
  return 'application/octet-stream';
}

/**
 * Unknown routes: Go's `404 PAGE_NOT_FOUND`, except that a path shaped like a registry route
 * whose names do not fit in one route parameter (a slash, or longer than the router takes) is a
 * bad name (400), and so is any other path under `/upload/`.
 */
function notFound(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const segments = request.url.replace(/[?#].*$/, '').split('/').slice(1);
  const decoded = segments.map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  const names = ['user_org', 'wasm_module', 'tag', 'file_name'];
  if (request.method === 'POST' && decoded[0] === 'upload') {
    if (decoded.length !== 4) throw new FaasError(400, 'ERROR_INVALID_NAME', 'the upload path is /upload/<user_org>/<wasm_module>/<tag>: names are 1 to 128 characters from A-Z a-z 0-9 . _ - and not "." or ".."');
    decoded.slice(1).forEach((n, i) => checkName(n, names[i]!));
  } else if ((request.method === 'GET' || request.method === 'HEAD') && decoded.length === 4) {
    const what = decoded[0] === 'info' ? names.slice(0, 3) : names;
    decoded.slice(decoded[0] === 'info' ? 1 : 0).forEach((n, i) => checkName(n, what[i]!));
  }
  return sendJson(reply, 404, { code: 'PAGE_NOT_FOUND', message: '😢 Page not found 🥵' });
}
