/**
 * Bridge process: `npx tsx bridge/main.ts` (configuration: bridge/config.ts).
 * Start-up failures, SIGTERM/SIGINT and the exit code: common/process-lifecycle.ts.
 */
import { createLogger } from '../common/logger.js';
import { runProcess } from '../common/process-lifecycle.js';
import { loadBridgeConfig } from './config.js';
import { startBridge } from './service.js';

const logger = createLogger('bridge');

void runProcess({
  name: 'bridge',
  logger,
  loadConfig: () => loadBridgeConfig(),
  start: (config) => startBridge(config, { logger }),
});
