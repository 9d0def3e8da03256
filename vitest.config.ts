import { defineConfig } from 'vitest/config';

// Two projects: unit tests (pure logic, in-memory libSQL, no servers) run fast with a short timeout;
// integration tests start real servers (embedded PostgreSQL, Aedes over TLS, Redis, child processes)
// and get a longer one. Each integration test whose bounded inner waits add up to more sets its own
// timeout, timeoutFor(...its waits) from tests/helpers/wait.ts, so that a failing wait reports its
// own assertion instead of a bare "Test timed out".
export default defineConfig({
  test: {
    // two cores: integration files each start real servers (PostgreSQL, brokers)
    fileParallelism: true,
    maxWorkers: 2,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['tests/unit/**/*.test.ts'], testTimeout: 15_000, hookTimeout: 30_000 },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['tests/integration/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
