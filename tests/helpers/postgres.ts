/**
 * A fresh, real PostgreSQL per test file, configured like the bridge expects CockroachDB to
 * behave: SERIALIZABLE by default (so 40001 retry paths are real), fsync off for speed.
 */
import {
  SERIALIZABLE_POSTGRES_FLAGS,
  startEmbeddedPostgres,
  type RunningEmbeddedPostgres,
} from '../../devtools/embedded-postgres.js';
import { freePort } from '../../devtools/free-port.js';

export type TestPostgres = Pick<RunningEmbeddedPostgres, 'connectionString' | 'port' | 'close'>;

const TEST_FLAGS = [...SERIALIZABLE_POSTGRES_FLAGS, '-c', 'fsync=off'];

/** Starts PostgreSQL on a free port; retries with another port if the chosen one was taken meanwhile. */
export async function startTestPostgres(): Promise<TestPostgres> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    try {
      const server = await startEmbeddedPostgres({
        port: await freePort(),
        persistent: false,
        postgresFlags: TEST_FLAGS,
      });
      return { connectionString: server.connectionString, port: server.port, close: () => server.close() };
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}
