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

async function timed<T>(work: Promise<T>): Promise<{ ms: number; error: unknown }> {
  const started = performance.now();
  const error = await work.then(
    () => null,
    (failure: unknown) => failure,
  );
  return { ms: performance.now() - started, error };
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
    expect(await db.one('SELECT 1 AS n')).toEqual({ n: 1 });
    relay.silenceOpenConnections();

    const { ms, error } = await timed(db.one('SELECT 2 AS n'));
    expect((error as Error).message).toBe('Query read timeout');
    expect(ms).toBeLessThan(QUERY_TIMEOUT_MS * 3);
    expect(classifyError(error)).toBe('network');

    const next = await timed(db.one('SELECT 3 AS n'));
    expect(next.error).toBeNull();
    expect(next.ms).toBeLessThan(QUERY_TIMEOUT_MS);
  });

  it('ends a transaction whose connection dies mid-way within one timeout, as a network error', async () => {
    const { ms, error } = await timed(
      runSerializable(db, 'dies-mid-way', async (t) => {
        await t.one('SELECT 1 AS n');
        relay.silenceOpenConnections();
        return t.one('SELECT 2 AS n');
      }),
    );
    expect(error).toBeInstanceOf(Error);
    expect(classifyError(error)).toBe('network');
    // without closing the connection, the ROLLBACK would wait a second query_timeout behind the first
    expect(ms).toBeLessThan(QUERY_TIMEOUT_MS * 1.8);
    expect(await db.one('SELECT 4 AS n')).toEqual({ n: 4 });
  });
});
