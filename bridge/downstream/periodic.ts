/**
 * A job that runs every `intervalMs` after the previous run finished (never two runs at once),
 * can be asked to run soon (`trigger`), logs its first failure of a series and its recovery, and
 * whose close() waits for the run in progress. Used by the change poller, the expiry sweep, the
 * reconciler and the metrics refresh of bridge/downstream/.
 */
import type { Logger } from '../../common/logger.js';

export interface Periodic {
  /** runs the job as soon as the current run (if any) has finished */
  trigger(): void;
  /** stops; waits for the run in progress. Idempotent. */
  close(): Promise<void>;
}

export function startPeriodic(
  name: string,
  intervalMs: number,
  job: () => Promise<void>,
  logger: Logger,
  options: { initialDelayMs?: number } = {},
): Periodic {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let failing = false;
  let closed = false;

  const schedule = (delayMs: number): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(run, delayMs);
  };
  const run = (): void => {
    timer = undefined;
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    again = false;
    running = job()
      .then(() => {
        if (failing) logger.info({ job: name }, `${name} recovered`);
        failing = false;
      })
      .catch((error: unknown) => {
        if (!failing) logger.warn({ err: error, job: name }, `${name} failed; retrying every ${intervalMs} ms`);
        failing = true;
      })
      .finally(() => {
        running = undefined;
        schedule(again ? 0 : intervalMs);
      });
  };
  schedule(options.initialDelayMs ?? 0);

  return {
    trigger() {
      if (running) again = true;
      else schedule(0);
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}
