/**
 * common/http-endpoint.ts as a real server on a free port: what a Prometheus scraper and a
 * load-balancer health probe see, the error listener installed after start-up, and close() with a
 * keep-alive connection still open.
 */
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  healthRoute,
  metricsRoute,
  startHttpEndpoint,
  type HttpEndpoint,
  type HttpEndpointOptions,
} from '../../common/http-endpoint.js';
import { capturedLogger, testLogger } from '../helpers/logger.js';
import { registerCleanup } from '../helpers/teardown.js';

async function start(overrides: Partial<HttpEndpointOptions> = {}): Promise<HttpEndpoint & { base: string }> {
  const endpoint = await startHttpEndpoint({
    host: '127.0.0.1',
    port: 0,
    routes: {},
    logger: testLogger('http-endpoint'),
    ...overrides,
  });
  registerCleanup(() => endpoint.close());
  return Object.assign(endpoint, { base: `http://127.0.0.1:${endpoint.port}` });
}

describe('startHttpEndpoint', () => {
  it('serves a registry on GET /metrics in the Prometheus text format', async () => {
    const registry = new Registry();
    new Counter({ name: 'widgets_total', help: 'widgets', registers: [registry] }).inc(3);
    const endpoint = await start({ routes: { '/metrics': metricsRoute(registry) } });
    const response = await fetch(`${endpoint.base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(registry.contentType);
    expect(await response.text()).toMatch(/^widgets_total 3$/m);
  });

  it('answers /healthz 200 with the checks by name, 503 when one fails, and a custom body when asked', async () => {
    let brokerUp = true;
    const endpoint = await start({
      routes: {
        '/healthz': healthRoute({ database: () => true, broker: () => brokerUp }),
        '/short': healthRoute(
          { broker: () => brokerUp },
          { body: (_results, healthy) => ({ status: healthy ? 'ok' : 'unavailable' }) },
        ),
      },
    });
    const healthy = await fetch(`${endpoint.base}/healthz`);
    expect([healthy.status, healthy.headers.get('content-type')]).toEqual([200, 'application/json']);
    expect(await healthy.json()).toEqual({ database: true, broker: true });
    brokerUp = false;
    const unhealthy = await fetch(`${endpoint.base}/healthz`);
    expect(unhealthy.status).toBe(503);
    expect(await unhealthy.json()).toEqual({ database: true, broker: false });
    expect(await (await fetch(`${endpoint.base}/short`)).json()).toEqual({ status: 'unavailable' });
  });

  it('answers an unknown path with 404, another method with 405 and Allow, HEAD without a body', async () => {
    const registry = new Registry();
    const endpoint = await start({ routes: { '/metrics': metricsRoute(registry) } });
    const missing = await fetch(`${endpoint.base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toBe('not found; try GET /metrics\n');
    const post = await fetch(`${endpoint.base}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    const head = await fetch(`${endpoint.base}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('answers 500 when a handler fails, and keeps serving', async () => {
    const endpoint = await start({
      routes: { '/broken': () => Promise.reject(new Error('registry exploded')), '/ok': healthRoute({}) },
    });
    const broken = await fetch(`${endpoint.base}/broken`);
    expect(broken.status).toBe(500);
    expect(await broken.text()).toBe('internal error: registry exploded\n');
    expect((await fetch(`${endpoint.base}/ok`)).status).toBe(200);
  });

  it('fails to start with a message naming the address when the port is taken', async () => {
    const first = await start({ name: 'test endpoint' });
    await expect(start({ name: 'test endpoint', port: first.port })).rejects.toThrow(
      `test endpoint cannot listen on 127.0.0.1:${first.port}: EADDRINUSE`,
    );
  });

  it('logs a server error after start-up with its code and hands it on, instead of crashing', async () => {
    const { logger, lines } = capturedLogger();
    const seen: string[] = [];
    const endpoint = await start({
      name: 'test endpoint',
      logger,
      routes: { '/ok': healthRoute({}) },
      onError: (error) => seen.push(error.code ?? '?'),
    });
    // what libuv hands to the server when accept() fails; the real trigger (running out of file
    // descriptors) cannot be produced reliably, see broker/server.ts
    endpoint.server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }));
    expect(seen).toEqual(['EMFILE']);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 50, code: 'EMFILE', msg: 'test endpoint error: accept EMFILE' }),
    );
    expect((await fetch(`${endpoint.base}/ok`)).status).toBe(200);
  });

  it('closes while a request is still being answered, and close() twice returns the same promise', async () => {
    let checkStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (checkStarted = resolve));
    const hanging = () => {
      checkStarted();
      return new Promise<boolean>(() => undefined);
    };
    const endpoint = await start({ routes: { '/healthz': healthRoute({ hanging }, { timeoutMs: 600_000 }) } });
    const inFlight = fetch(`${endpoint.base}/healthz`);
    await started;
    const first = endpoint.close();
    expect(endpoint.close()).toBe(first);
    // server.close() alone would wait for the answer (10 minutes away): the open socket is destroyed
    await first;
    await expect(inFlight).rejects.toThrow();
    await expect(fetch(`${endpoint.base}/healthz`)).rejects.toThrow();
  });
});
