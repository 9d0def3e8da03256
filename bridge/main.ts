/** Process entry of the bridge: configuration from the environment, graceful stop on SIGINT/SIGTERM. */
import { createLogger } from '../common/logger.js';
import { loadBridgeConfig } from './config.js';
import { startBridge } from './service.js';

const logger = createLogger('bridge');

try {
  const bridge = await startBridge(loadBridgeConfig(), { logger });
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    bridge.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
} catch (error) {
  logger.fatal({ err: error }, 'bridge failed to start');
  process.exitCode = 1;
}
