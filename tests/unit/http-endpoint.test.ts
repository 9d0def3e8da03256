/** The pure parts of common/http-endpoint.ts: which requests are served, and how checks become health. */
import { describe, expect, it } from 'vitest';
import { routeRequest, runHealthChecks, type HttpReply, type Routes } from '../../common/http-endpoint.js';

const reply = (body: string) => (): Promise<HttpReply> =>
  Promise.resolve({ status: 200, contentType: 'text/plain', body });
const routes: Routes = { '/metrics': reply('metrics'), '/healthz': reply('health') };

describe('routeRequest', () => {
  it('hands GET and HEAD of a known path to its handler, ignoring the query string', () => {
    expect(routeRequest(routes, 'GET', '/metrics')).toEqual({ kind: 'handle', handler: routes['/metrics'] });
    expect(routeRequest(routes, 'HEAD', '/metrics')).toEqual({ kind: 'handle', handler: routes['/metrics'] });
    expect(routeRequest(routes, 'GET', '/healthz?verbose=1')).toEqual({ kind: 'handle', handler: routes['/healthz'] });
  });

  it('answers another method on a known path with 405 and the allowed methods', () => {
    for (const method of ['POST', 'PUT', 'DELETE', undefined]) {
      expect(routeRequest(routes, method, '/metrics'), String(method)).toEqual({
        kind: 'method-not-allowed',
        allow: 'GET, HEAD',
      });
    }
  });

  it('answers an unknown path with 404 naming the paths there are, whatever the method', () => {
    for (const url of ['/', '/metrics/', '/healthz/extra', '/constructor', '/__proto__', undefined]) {
      expect(routeRequest(routes, 'GET', url), String(url)).toEqual({
        kind: 'not-found',
        paths: ['/metrics', '/healthz'],
      });
    }
    expect(routeRequest(routes, 'POST', '/nope')).toMatchObject({ kind: 'not-found' });
  });
});

describe('runHealthChecks', () => {
  it('is healthy only when every check passes, and reports each check by name', async () => {
    expect(await runHealthChecks({ database: () => true, broker: () => Promise.resolve(true) }, 1000)).toEqual({
      healthy: true,
      results: { database: true, broker: true },
    });
    expect(await runHealthChecks({ database: () => true, broker: () => false }, 1000)).toEqual({
      healthy: false,
      results: { database: true, broker: false },
    });
    expect(await runHealthChecks({}, 1000)).toEqual({ healthy: true, results: {} });
  });

  it('counts a check that throws, rejects or never answers as failed, without failing the others', async () => {
    const outcome = await runHealthChecks(
      {
        throws: () => {
          throw new Error('boom');
        },
        rejects: () => Promise.reject(new Error('down')),
        hangs: () => new Promise<boolean>(() => undefined),
        passes: () => true,
      },
      20,
    );
    expect(outcome).toEqual({ healthy: false, results: { throws: false, rejects: false, hangs: false, passes: true } });
  });
});
