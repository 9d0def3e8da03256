/**
 * Edge agent process: `tsx edge/main.ts` with the environment described in config/edge.ts.
 * SIGINT/SIGTERM stop it gracefully (stop accepting readings, finish commits, close).
 */
import { createLogger } from '../common/logger.js';
import { loadEdgeConfig } from './config.js';
import { startEdgeAgent } from './agent.js';
import { startMetricsServer } from './metrics-server.js';

const logger = createLogger('edge-agent');

async function main(): Promise<void> {
  const { agent: config, metricsPort } = loadEdgeConfig();
  const agent = await startEdgeAgent({ ...config, logger });
  const metricsServer =
    metricsPort === undefined
      ? undefined
      : await startMetricsServer(agent.metrics.registry, metricsPort, '127.0.0.1', (error) =>
          logger.error({ err: error }, `metrics endpoint error: ${error.message}`),
        );
  if (metricsServer) logger.info(`metrics on http://127.0.0.1:${metricsServer.port}/metrics`);

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal} received; stopping`);
    Promise.all([agent.close(), metricsServer?.close()]).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((error: unknown) => {
  logger.fatal({ err: error }, `edge agent failed to start: ${(error as Error).message}`);
  process.exit(1);
});
