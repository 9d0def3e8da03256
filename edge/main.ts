/**
 * Edge agent process: `npx tsx edge/main.ts` (configuration: edge/config.ts).
 * SIGINT/SIGTERM close it gracefully (stop accepting readings, finish commits, close); start-up
 * failures, signals and the exit code: common/process-lifecycle.ts.
 */
import { createLogger } from '../common/logger.js';
import { runProcess } from '../common/process-lifecycle.js';
import { loadEdgeConfig } from './config.js';
import { startEdgeAgent } from './agent.js';
import { startMetricsServer } from './metrics-server.js';

const logger = createLogger('edge-agent');

void runProcess({
  name: 'edge agent',
  logger,
  loadConfig: () => loadEdgeConfig(),
  start: async ({ agent: config, metricsPort }) => {
    const agent = await startEdgeAgent({ ...config, logger });
    if (metricsPort === undefined) return agent;
    const metricsServer = await startMetricsServer(agent.metrics.registry, metricsPort, '127.0.0.1', (error) =>
      logger.error({ err: error }, `metrics endpoint error: ${error.message}`),
    ).catch(async (error: unknown) => {
      await agent.close();
      throw error;
    });
    logger.info(`metrics on http://127.0.0.1:${metricsServer.port}/metrics`);
    return { close: async () => void (await Promise.all([agent.close(), metricsServer.close()])) };
  },
});
