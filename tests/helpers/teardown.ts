/**
 * Teardown registered where a resource is created, so that a test failing half-way cannot leak a
 * server, a process or a folder. Every helper of this folder that creates something registers
 * its own cleanup here; test files do not keep cleanup arrays.
 *
 * - Called inside a test or a beforeEach: the cleanup runs when that test finishes, passed or
 *   failed (vitest's onTestFinished, after the afterEach hooks).
 * - Called in beforeAll (or anywhere outside a test): it runs after the file's last test, after
 *   the file's own afterAll hooks.
 *
 * Cleanups run in the reverse order of their registration (a client before its server, a
 * database pool before its PostgreSQL). A failing cleanup does not keep the others from running;
 * its error fails the test (or the file) afterwards.
 */
import { afterAll, onTestFinished } from 'vitest';

type Cleanup = () => unknown;

/**
 * The file-scoped cleanups. Vitest evaluates this module once per test file (each file is
 * isolated, the default), so the afterAll hook below belongs to the file importing it. Being
 * imported before the file's own hooks are declared, it runs after them (after-hooks run in
 * reverse order).
 */
const fileCleanups: Cleanup[] = [];
afterAll(async () => {
  await runAll(fileCleanups.splice(0).reverse());
});

/**
 * Registers `cleanup` for the end of the current test (or of the file, from beforeAll), and returns
 * a function that runs it now instead. Either way it runs once: calling the returned function
 * again, or the registered teardown after it, waits for the same run.
 */
export function registerCleanup(cleanup: Cleanup): () => Promise<void> {
  let running: Promise<void> | undefined;
  const runOnce = () => {
    running ??= Promise.resolve()
      .then(cleanup)
      .then(() => undefined);
    return running;
  };
  if (!registerForCurrentTest(runOnce)) fileCleanups.push(runOnce);
  return runOnce;
}

function registerForCurrentTest(cleanup: Cleanup): boolean {
  try {
    onTestFinished(async () => {
      await cleanup();
    });
    return true;
  } catch (error) {
    // vitest refuses onTestFinished outside a running test (beforeAll, module scope)
    if (error instanceof Error && /can only be called inside a test/.test(error.message)) return false;
    throw error;
  }
}

async function runAll(cleanups: Cleanup[]): Promise<void> {
  const errors: unknown[] = [];
  for (const cleanup of cleanups) {
    try {
      await cleanup();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed`);
}
