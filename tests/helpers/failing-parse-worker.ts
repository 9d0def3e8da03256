// A parse worker that fails the way a real one could (it throws while loading, as an
// out-of-memory or a broken install would): for tests/unit/bridge-parse-pool.test.ts.
throw new Error('this parse worker fails at start');
