/**
 * Edge agent process: `npx tsx edge/main.ts` (configuration: edge/config.ts).
 * SIGINT/SIGTERM close it gracefully (stop accepting readings, finish commits, close); start-up
 * failures, signals and the exit code: common/process-lifecycle.ts.
 */
import { createLogger } from '../common/logger.js';
import { runProcess } from '../common/process-lifecycle.js';
import { loadEdgeConfig } from './config.js';
import { startEdgeAgent } from './agent.js';

const logger = createLogger('edge-agent');

void runProcess({
  name: 'edge agent',
  logger,
  loadConfig: () => loadEdgeConfig(),
  start: ({ agent, metricsPort }) =>
    startEdgeAgent({ ...agent, ...(metricsPort === undefined ? {} : { metricsPort }), logger }),
});
