/**
 * The bridge's one pg-promise instance and its connection pools.
 *
 * node-postgres connects to ONE host: in production that is a load balancer in front of the
 * CockroachDB nodes (or PostgreSQL). Connections are recycled after `maxLifetimeSeconds` so that
 * the load balancer can spread them again after a node joins or restarts.
 *
 * Bounded waits on a silently dead connection (a node or load balancer gone without a FIN or RST):
 * TCP keepalive probes start after `keepAliveInitialDelayMs` of silence, so an idle pooled
 * connection is found dead and dropped; a query that gets no answer within `queryTimeoutMs`
 * (node-postgres `query_timeout`) fails, and its connection is closed at once: its state is
 * unknown, and node-postgres would queue the next statement (the transaction's ROLLBACK, or the
 * next user's query) behind the unanswered one.
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
  error: (error, context) => {
    if (isQueryReadTimeout(error) && context?.client !== undefined)
      discardConnection(context.client, context.ctx !== undefined);
  },
});

export type Database = pgPromise.IDatabase<object>;
/** node-postgres's pool configuration, as pg-promise types it */
export type PoolConfig = Exclude<Parameters<typeof pgp>[0], string>;
type Client = pgPromise.IEventContext['client'];
export type Task = pgPromise.ITask<object>;

export interface DatabaseOptions {
  connectionString: string;
  /** reported in pg_stat_activity / crdb_internal.node_sessions */
  applicationName: string;
  poolSize?: number;
  connectionTimeoutMs?: number;
  maxLifetimeSeconds?: number;
  /** a query without an answer for this long fails and its connection is closed; default 60 s */
  queryTimeoutMs?: number;
  /** idle time before TCP keepalive probes start; default 10 s */
  keepAliveInitialDelayMs?: number;
  /** an idle pooled connection was lost (e.g. SQLSTATE 57P01 when a node drains); it is replaced on demand */
  onIdleConnectionError?: (error: Error) => void;
}

/** The node-postgres pool configuration for `options` (pure). */
export function poolConfig(options: DatabaseOptions): PoolConfig {
  return {
    connectionString: options.connectionString,
    application_name: options.applicationName,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    maxLifetimeSeconds: options.maxLifetimeSeconds ?? 1800,
    query_timeout: options.queryTimeoutMs ?? 60_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: options.keepAliveInitialDelayMs ?? 10_000,
  };
}

export function openDatabase(options: DatabaseOptions): Database {
  const db = pgp(poolConfig(options));
  // node-postgres re-emits an idle client's error on the pool; without a listener that 'error'
  // event would crash the process.
  db.$pool.on('error', (error: Error) => options.onIdleConnectionError?.(error));
  return db;
}

/** Closes the pool of one Database (not the whole library, which other pools may still use). */
export async function closeDatabase(db: Database): Promise<void> {
  await db.$pool.end();
}

/** node-postgres's error for a query without an answer within query_timeout (it has no code). */
function isQueryReadTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === 'Query read timeout';
}

/**
 * Throws away a client whose query got no answer; its socket is destroyed at once.
 * - Inside a task or transaction the client stays checked out: the statements queued behind the
 *   unanswered one (the transaction's ROLLBACK) fail with "Connection terminated unexpectedly", a
 *   network error, and only then is the client released, unusable, so the pool discards it.
 * - A single query releases its client right after this hook, before the socket's close event:
 *   node-postgres's own Client#end marks the client as ending, so the pool discards it instead of
 *   handing it to the next query, and (a query being unanswered) destroys the socket. pg-promise
 *   replaces `client.end` while the client is in use (and logs a warning when it is called),
 *   hence the prototype's method.
 */
function discardConnection(client: Client, inTask: boolean): void {
  if (inTask) {
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    return;
  }
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with .call(client) just below
  const { end } = pgp.pg.Client.prototype as unknown as { end(this: Client): Promise<void> };
  end.call(client).catch(() => undefined);
}
