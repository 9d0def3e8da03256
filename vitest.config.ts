import { defineConfig } from 'vitest/config';

// Two projects: unit tests (pure logic, in-memory libSQL, no servers) run fast with a short timeout;
// integration tests start real servers (embedded PostgreSQL, Aedes over TLS, Redis, child processes)
// and get a longer one. Each integration test that waits longer sets its own timeout, larger than
// the sum of its inner waits.
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
