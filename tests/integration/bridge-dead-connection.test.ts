/**
 * Bounded waits on a silently dead database connection (a node or load balancer that vanished
 * without closing the TCP connection): a query without an answer fails after query_timeout, its
 * connection is thrown away, and the pool goes on with a fresh one. Real PostgreSQL behind a relay
 * that can swallow the traffic of its open connections.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyError } from '../../common/retry-policy.js';
import { poolConfig, type Database } from '../../bridge/db/connection.js';
import { runSerializable } from '../../bridge/db/transaction-retry.js';
import { openTestDatabase, startTestPostgres } from '../helpers/postgres.js';
import { registerCleanup } from '../helpers/teardown.js';

interface SilencingRelay {
  port: number;
  /** from now on the connections open now pass nothing, in either direction, and stay open */
  silenceOpenConnections(): void;
}

/** Relays 127.0.0.1:{port} to targetPort; closed at teardown. */

async function startSilencingRelay(targetPort: number): Promise<SilencingRelay> {
  const pairs = new Set<{ silent: boolean; sockets: Socket[] }>();
  const server: Server = createServer((downstream) => {
    const upstream = connect(targetPort, '127.0.0.1');
    const pair = { silent: false, sockets: [downstream, upstream] };
    pairs.add(pair);
    const teardown = (): void => {
      downstream.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    downstream
      .on('data', (chunk) => pair.silent || upstream.write(chunk))
      .on('error', teardown)
      .on('close', teardown);
    upstream
      .on('data', (chunk) => pair.silent || downstream.write(chunk))
      .on('error', teardown)
      .on('close', teardown);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  registerCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const pair of pairs) for (const socket of pair.sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay has no TCP address');
  return {
    port: address.port,
    silenceOpenConnections: () => {
      for (const pair of pairs) pair.silent = true;
    },
  };
}

const QUERY_TIMEOUT_MS = 1000;

let relay: SilencingRelay;
let db: Database;

beforeAll(async () => {
  const postgres = await startTestPostgres();
  relay = await startSilencingRelay(postgres.port);
  const url = new URL(postgres.connectionString);
  url.port = String(relay.port);
  // one connection: the next query can only succeed if the dead one was replaced
  db = await openTestDatabase({ connectionString: url.toString() }, 'bridge-dead-connection-test', {
    poolSize: 1,
    queryTimeoutMs: QUERY_TIMEOUT_MS,
  });
});

/** The rejection of `work`, or null if it succeeded. */
function failureOf(work: Promise<unknown>): Promise<unknown> {
  return work.then(
    () => null,
    (failure: unknown) => failure,
  );
}

/** Every statement that failed, as pg-promise reports it (its error event), until the test ends. */
function recordFailures(): Array<{ query: string; message: string }> {
  const failures: Array<{ query: string; message: string }> = [];
  const options = db.$config.options;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- put back as it was, and called with .call(options)
  const reportError = options.error;
  options.error = (error: unknown, context) => {
    failures.push({ query: String(context.query), message: (error as Error).message });
    reportError?.call(options, error, context);
  };
  registerCleanup(() => {
    options.error = reportError;
  });
  return failures;
}

describe('a silently dead connection', () => {
  it('is configured with a query timeout and early TCP keepalive by default', () => {
    expect(poolConfig({ connectionString: 'postgres://x/y', applicationName: 'a' })).toMatchObject({
      query_timeout: 60_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
  });

  it('fails a query after query_timeout, and the pool goes on with a new connection', async () => {
    const first = await db.one<{ n: number; pid: number }>('SELECT 1 AS n, pg_backend_pid() AS pid');
    expect(first.n).toBe(1);
    relay.silenceOpenConnections();
    const failures = recordFailures();

    const error = await failureOf(db.one('SELECT 2 AS n'));
    // node-postgres' query_timeout, not a TCP keepalive or connection error, ended the wait
    expect((error as Error).message).toBe('Query read timeout');
    expect(classifyError(error)).toBe('network');

    // the next query is not queued behind the unanswered one: it runs on a new connection (another
    // backend), and nothing else failed
    const next = await db.one<{ n: number; pid: number }>('SELECT 3 AS n, pg_backend_pid() AS pid');
    expect(next.n).toBe(3);
    expect(next.pid).not.toBe(first.pid);
    expect(failures).toEqual([{ query: 'SELECT 2 AS n', message: 'Query read timeout' }]);
  });

  it('ends a transaction whose connection dies mid-way within one timeout, as a network error', async () => {
    const failures = recordFailures();
    const error = await failureOf(
      runSerializable(db, 'dies-mid-way', async (t) => {
        await t.one('SELECT 1 AS n');
        relay.silenceOpenConnections();
        return t.one('SELECT 2 AS n');
      }),
    );
    expect(error).toBeInstanceOf(Error);
    expect(classifyError(error)).toBe('network');
    // one query timeout; the ROLLBACK behind it failed at once on the closed connection, where it
    // would otherwise have waited for a second query_timeout
    expect(failures.filter((failure) => failure.message === 'Query read timeout')).toEqual([
      { query: 'SELECT 2 AS n', message: 'Query read timeout' },
    ]);
    expect(failures).toContainEqual({ query: 'ROLLBACK', message: 'Connection terminated unexpectedly' });
    expect(await db.one('SELECT 4 AS n')).toEqual({ n: 4 });
  });
});
