/**
 * The bridge's one pg-promise instance and its connection pools.
 *
 * node-postgres connects to ONE host: in production that is a load balancer in front of the
 * CockroachDB nodes (or PostgreSQL). Connections are recycled after `maxLifetimeSeconds` so that
 * the load balancer can spread them again after a node joins or restarts.
 */
import pgPromise from 'pg-promise';

export const pgp = pgPromise({
  capSQL: true,
  connect: ({ client, useCount }) => {
    // A server ending a connection (node drain, restart: SQLSTATE 57P01) emits 'error' on the
    // client. node-postgres forwards that to the pool only while the client is idle in it; a
    // client being closed (pool.end) has no listener left, and an unhandled 'error' event would
    // crash the process. Queries on a broken connection still fail through their promises.
    if (useCount === 0) client.on('error', () => undefined);
  },
});

export type Database = pgPromise.IDatabase<object>;
export type Task = pgPromise.ITask<object>;

export interface DatabaseOptions {
  connectionString: string;
  /** reported in pg_stat_activity / crdb_internal.node_sessions */
  applicationName: string;
  poolSize?: number;
  connectionTimeoutMs?: number;
  maxLifetimeSeconds?: number;
  /** an idle pooled connection was lost (e.g. SQLSTATE 57P01 when a node drains); it is replaced on demand */
  onIdleConnectionError?: (error: Error) => void;
}

export function openDatabase(options: DatabaseOptions): Database {
  const db = pgp({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    maxLifetimeSeconds: options.maxLifetimeSeconds ?? 1800,
    keepAlive: true,
  });
  // node-postgres re-emits an idle client's error on the pool; without a listener that 'error'
  // event would crash the process.
  db.$pool.on('error', (error: Error) => options.onIdleConnectionError?.(error));
  return db;
}

/** Closes the pool of one Database (not the whole library, which other pools may still use). */
export async function closeDatabase(db: Database): Promise<void> {
  await db.$pool.end();
}
