/**
 * The small HTTP endpoint every process serves for operations: GET /metrics (a prom-client
 * registry in the Prometheus text format) and GET /healthz (named checks, each bounded by a
 * timeout). Used by the broker (broker/server.ts), the edge agent (edge/agent.ts) and the bridge
 * (bridge/service.ts); not meant for an application API.
 *
 * Guarantees:
 * - only the routes given are served, for GET and HEAD; another method on a route is 405 with
 *   an Allow header, an unknown path 404 naming the routes;
 * - a health check that throws, rejects or takes longer than its timeout (default 2 s) counts
 *   as failed: /healthz is 200 only when every check passes, 503 otherwise;
 * - after listen() succeeds, an 'error' on the server (an accept error such as EMFILE) is logged
 *   with its code and handed to onError: without a listener Node.js would throw it as an
 *   uncaught exception and end the process;
 * - close() stops listening and destroys the open connections (a keep-alive scraper would hold
 *   server.close() forever); it is idempotent, a second call returns the same promise.
 *
 * The routing and the health evaluation are pure functions (routeRequest, runHealthChecks),
 * unit-tested in tests/unit/http-endpoint.test.ts; tests/integration/http-endpoint.test.ts runs
 * the server.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';

export interface HttpReply {
  status: number;
  contentType: string;
  body: string;
}

export type RouteHandler = () => Promise<HttpReply>;

/** path → handler; the path is matched exactly, the query string ignored */
export type Routes = Record<string, RouteHandler>;

export type RouteDecision =
  | { kind: 'handle'; handler: RouteHandler }
  | { kind: 'method-not-allowed'; allow: string }
  | { kind: 'not-found'; paths: string[] };

const ALLOWED_METHODS = ['GET', 'HEAD'];

/** What to do with a request (pure). */
export function routeRequest(routes: Routes, method: string | undefined, url: string | undefined): RouteDecision {
  const path = (url ?? '/').split('?')[0] ?? '/';
  const handler = Object.hasOwn(routes, path) ? routes[path] : undefined;
  if (handler === undefined) return { kind: 'not-found', paths: Object.keys(routes) };
  if (!ALLOWED_METHODS.includes(method ?? '')) return { kind: 'method-not-allowed', allow: ALLOWED_METHODS.join(', ') };
  return { kind: 'handle', handler };
}

/** Serves a registry as GET /metrics. */
export function metricsRoute(registry: Registry): RouteHandler {
  return async () => ({ status: 200, contentType: registry.contentType, body: await registry.metrics() });
}

export type HealthCheck = () => boolean | Promise<boolean>;

export interface HealthRouteOptions {
  /** a check that takes longer counts as failed; default 2 s */
  timeoutMs?: number;
  /** the JSON body; default: the result of each check by name, e.g. {"database":true,"broker":false} */
  body?: (results: Record<string, boolean>, healthy: boolean) => unknown;
}

/** Runs every check at once; a check that throws, rejects or takes longer than timeoutMs is false. */
export async function runHealthChecks(
  checks: Record<string, HealthCheck>,
  timeoutMs: number,
): Promise<{ healthy: boolean; results: Record<string, boolean> }> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => [name, await boundedCheck(check, timeoutMs)] as const),
  );
  const results = Object.fromEntries(entries);
  return { healthy: entries.every(([, passed]) => passed), results };
}

/** Serves named checks as GET /healthz: 200 when every check passes, 503 otherwise. */
export function healthRoute(checks: Record<string, HealthCheck>, options: HealthRouteOptions = {}): RouteHandler {
  const timeoutMs = options.timeoutMs ?? 2000;
  const body = options.body ?? ((results) => results);
  return async () => {
    const { healthy, results } = await runHealthChecks(checks, timeoutMs);
    return {
      status: healthy ? 200 : 503,
      contentType: 'application/json',
      body: JSON.stringify(body(results, healthy)),
    };
  };
}

export interface HttpEndpointOptions {
  host: string;
  /** 0 picks a free port (see HttpEndpoint.port) */
  port: number;
  routes: Routes;
  logger: Logger;
  /** names the endpoint in log lines; default 'http endpoint' */
  name?: string;
  /** called with every server error after start-up (they are logged already), e.g. to count them */
  onError?: (error: NodeJS.ErrnoException) => void;
}

export interface HttpEndpoint {
  host: string;
  port: number;
  /** the node:http server, for inspection; end it with close() */
  server: Server;
  /** idempotent: a second call returns the same promise */
  close(): Promise<void>;
}

export async function startHttpEndpoint(options: HttpEndpointOptions): Promise<HttpEndpoint> {
  const name = options.name ?? 'http endpoint';
  const log = options.logger;
  const server = createServer((request, response) => void respond(options.routes, request, response, log, name));
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) =>
      reject(new Error(`${name} cannot listen on ${options.host}:${options.port}: ${error.code ?? error.message}`));
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (error: NodeJS.ErrnoException) => {
    log.error({ err: error, code: error.code }, `${name} error: ${error.message}`);
    options.onError?.(error);
  });

  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      })),
  };
}

async function respond(
  routes: Routes,
  request: IncomingMessage,
  response: ServerResponse,
  log: Logger,
  name: string,
): Promise<void> {
  const decision = routeRequest(routes, request.method, request.url);
  let reply: HttpReply;
  switch (decision.kind) {
    case 'not-found':
      reply = text(404, `not found; try ${decision.paths.map((path) => `GET ${path}`).join(' or ')}\n`);
      break;
    case 'method-not-allowed':
      response.setHeader('allow', decision.allow);
      reply = text(405, `method not allowed; allowed: ${decision.allow}\n`);
      break;
    case 'handle':
      try {
        reply = await decision.handler();
      } catch (error) {
        log.error({ err: error, path: request.url }, `${name}: request failed`);
        reply = text(500, `internal error: ${error instanceof Error ? error.message : String(error)}\n`);
      }
      break;
  }
  // for HEAD, node:http sends the headers and drops the body
  response.writeHead(reply.status, { 'content-type': reply.contentType }).end(reply.body);
}

function text(status: number, body: string): HttpReply {
  return { status, contentType: 'text/plain; charset=utf-8', body };
}

async function boundedCheck(check: HealthCheck, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    const result = Promise.resolve()
      .then(check)
      .then(
        (passed) => passed === true,
        () => false,
      );
    return await Promise.race([result, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
