/**
 * The REST API (fastify 5.12.8) over mutual TLS, started by the bridge (bridge/service.ts) when
 * API_PORT is set. What it guarantees:
 *
 * - TLS 1.3 with `requestCert` and `rejectUnauthorized` against the project CA: a client without
 *   a certificate, with one of another CA or an expired one never completes the handshake (G9).
 * - ONE auth hook (onRequest, `authenticate`) turns the connection into an ApiIdentity
 *   (./identity.ts: the broker's certificate → identity mapping, common/certificate-identity.ts,
 *   plus the revocation list, ./revocation-cache.ts) before any route runs, the 404 handler
 *   included. It is the single place a token scheme plugs in later. Authorization per route is
 *   ./authorization.ts.
 * - Every request body is parsed by one JSON parser that keeps the raw bytes (the telemetry
 *   fallback hands them to the MQTT ingest unchanged) and refuses non-JSON with a reason; other
 *   content types get 415, bodies over `bodyLimit` 413 (fastify's own errors, re-shaped).
 * - Validation uses the JSON Schemas of schemas/ (schemas/http-api.ts) with two ajv instances:
 *   bodies without type coercion and without removing properties (so HTTP accepts exactly what
 *   MQTT accepts; fastify's default would coerce "5" to 5 and silently drop unknown properties),
 *   params and query strings with coercion (they are text).
 * - Every error is the standard body (./errors.ts), logged (4xx warn, 5xx error) and counted in
 *   http_requests_total{route,method,status}; latency in http_request_duration_seconds{route,method}.
 * - /api/v1/openapi.json (@fastify/swagger 9.9.3) is generated from the same route schemas.
 * - close() is idempotent; it stops the revocation polling and closes open connections.
 */
import type { TLSSocket } from 'node:tls';
import swagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../../common/logger.js';
import type { TlsFiles } from '../../common/tls-files.js';
import { MAX_HTTP_BODY_BYTES } from '../../schemas/http-api.js';
import { parseJson } from '../../schemas/validators.js';
import type { Database } from '../db/connection.js';
import type { BridgeMetrics } from '../metrics.js';
import type { DownstreamPort } from './downstream-port.js';
import { ApiError, errorReply } from './errors.js';
import type { TelemetryIngest } from './http-ingest.js';
import { identifyRequest, type ApiIdentity } from './identity.js';
import { keepRawBody } from './raw-body.js';
import { startRevocationCache, type RevocationCache } from './revocation-cache.js';
import { registerApiRoutes } from './routes.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** set by the auth hook before any handler runs */
    identity: ApiIdentity | null;
  }
}

export interface ApiServerOptions {
  host: string;
  /** 0: any free port (see ApiServer.port) */
  port: number;
  tls: TlsFiles;
  db: Database;
  logger: Logger;
  metrics: Pick<BridgeMetrics, 'httpRequests' | 'httpRequestSeconds'>;
  /** the ingest pipeline's entry point (IngestPipeline.accept) */
  ingest: TelemetryIngest;
  /** the command and config services; null: those routes answer 503 */
  downstream: DownstreamPort | null;
  revocationPollMs: number;
  /** default MAX_PAYLOAD_BYTES (1 MiB), the largest telemetry batch MQTT takes */
  bodyLimit?: number;
  /** how long POST /sync/telemetry waits for the commit before answering 503; default 30 s */
  ingestTimeoutMs?: number;
}

export interface ApiServer {
  host: string;
  port: number;
  /** https://host:port */
  url: string;
  revocations: RevocationCache;
  /** idempotent */
  close(): Promise<void>;
}

const addFormats = addFormatsPlugin as unknown as (ajv: Ajv) => Ajv;

function validators(): { body: Ajv; text: Ajv } {
  const common = { strict: true, allowUnionTypes: true, allErrors: false, useDefaults: true, removeAdditional: false };
  return {
    body: addFormats(new Ajv({ ...common, coerceTypes: false })),
    text: addFormats(new Ajv({ ...common, coerceTypes: true })),
  };
}

export async function buildApi(options: ApiServerOptions & { revocations: RevocationCache }): Promise<FastifyInstance> {
  const bodyLimit = options.bodyLimit ?? MAX_HTTP_BODY_BYTES;
  const log = options.logger;
  const app = Fastify({
    https: {
      key: options.tls.key,
      cert: options.tls.cert,
      ca: options.tls.ca,
      requestCert: true,
      rejectUnauthorized: true, // G9: no certificate, another CA, expired: no handshake
      minVersion: 'TLSv1.3',
    },
    bodyLimit,
    logger: false,
    return503OnClosing: true,
    forceCloseConnections: true,
  });

  const ajv = validators();
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? ajv.body : ajv.text).compile(schema));

  // fastify 5 also parses text/plain by default: only JSON is taken, anything else is 415
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const raw = body as Buffer;
    keepRawBody(request, raw);
    if (raw.length === 0) {
      done(new ApiError(400, 'invalid-json', 'the request body is empty; send a JSON document'), undefined);
      return;
    }
    const parsed = parseJson(raw);
    if (parsed.ok) done(null, parsed.value);
    else done(new ApiError(400, 'invalid-json', `the request body is not JSON: ${parsed.reason}`), undefined);
  });

  app.decorateRequest('identity', null);
  // G9: the one auth hook; a token scheme (a later issue) is a second branch here
  app.addHook('onRequest', (request, _reply, done) => {
    const socket = request.raw.socket as TLSSocket;
    const decision = identifyRequest({
      certificate: socket.getPeerCertificate(),
      authorized: socket.authorized,
      isRevoked: (serial) => options.revocations.isRevoked(serial),
    });
    if (!decision.ok) {
      done(new ApiError(decision.status, decision.code, decision.reason));
      return;
    }
    request.identity = decision.identity;
    done();
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const labels = { route, method: request.method };
    options.metrics.httpRequests.inc({ ...labels, status: String(reply.statusCode) });
    options.metrics.httpRequestSeconds.observe(labels, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((error, request, reply) => {
    const { status, body } = errorReply(error, bodyLimit);
    const context = {
      route: request.routeOptions.url ?? request.url,
      method: request.method,
      status,
      code: body.error.code,
      identity: request.identity === null ? null : `${request.identity.kind}:${request.identity.id}`,
    };
    if (status >= 500) log.error({ ...context, err: error }, `REST API: ${body.error.message}`);
    else log.warn(context, `REST API refused a request: ${body.error.message}`);
    return reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    log.warn(
      { method: request.method, url: request.url.split('?')[0], status: 404, code: 'not-found' },
      'REST API refused a request: no such route',
    );
    return reply.status(404).send({
      error: {
        code: 'not-found',
        message: `no route ${request.method} ${request.url.split('?')[0] ?? ''}; see /api/v1/openapi.json`,
      },
    });
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'mqtt-edge-sync control-plane API',
        version: '1',
        description:
          'Mutual TLS with certificates of the project CA: OU device (its own resources) or operator (all). Errors: {error: {code, message, details?}}.',
      },
    },
  });
  registerApiRoutes(app, { ...options, bodyLimit, ingestTimeoutMs: options.ingestTimeoutMs ?? 30_000 });
  app.get('/api/v1/openapi.json', { schema: { hide: true } }, () => app.swagger());
  return app;
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const revocations = await startRevocationCache({
    db: options.db,
    pollIntervalMs: options.revocationPollMs,
    logger: options.logger,
  });
  let app: FastifyInstance;
  try {
    app = await buildApi({ ...options, revocations });
    await app.listen({ host: options.host, port: options.port });
  } catch (error) {
    await revocations.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  options.logger.info({ host: options.host, port }, 'REST API listening');
  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port,
    url: `https://${host}:${port}`,
    revocations,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await revocations.close();
      })()),
  };
}
