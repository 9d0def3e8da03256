/**
 * GET /metrics (Prometheus text format) and GET /healthz (200 only when every check passes,
 * 503 otherwise, with a JSON body naming each check). Nothing else.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export type HealthCheck = () => Promise<boolean>;

export interface HealthServerOptions {
  host: string;
  /** 0 picks a free port */
  port: number;
  registry: Registry;
  checks: Record<string, HealthCheck>;
  /** a check that takes longer counts as failed; default 2 s */
  checkTimeoutMs?: number;
}

export interface RunningHealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(options: HealthServerOptions): Promise<RunningHealthServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET') {
      response.writeHead(405).end();
    } else if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
    } else if (path === '/healthz') {
      void runChecks(options.checks, options.checkTimeoutMs ?? 2000).then((results) => {
        const healthy = Object.values(results).every(Boolean);
        response.writeHead(healthy ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(results));
      });
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function runChecks(checks: Record<string, HealthCheck>, timeoutMs: number): Promise<Record<string, boolean>> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => [name, await withTimeout(check(), timeoutMs)] as const),
  );
  return Object.fromEntries(entries);
}

async function withTimeout(check: Promise<boolean>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([check.catch(() => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
