/**
 * Broker process: `npx tsx broker/main.ts` (configuration: ./config.ts).
 * For a local run, create certificates first: `npx tsx certs/cli.ts dev`.
 * Cluster mode (BROKER_REDIS_URL): ./cluster-backends.ts.
 */
import { createLogger } from '../common/logger.js';
import { readTlsFiles } from '../common/tls-files.js';
import { BROKER_TLS_VARIABLES, loadBrokerConfig } from './config.js';
import { clusterBrokerId, createRedisBackends } from './cluster-backends.js';
import { startBroker, type BrokerBackends } from './server.js';

const SHUTDOWN_GRACE_MS = 10_000;

async function main(): Promise<void> {
  const logger = createLogger('broker');
  const config = loadBrokerConfig();
  let brokerId = config.brokerId;
  let backends: BrokerBackends | undefined;
  if (config.cluster !== undefined) {
    brokerId = clusterBrokerId(config.brokerId);
    logger.info({ brokerId, redis: config.cluster.redisUrlForLogs, heartbeatMs: config.heartbeatMs }, 'cluster mode');
    backends = await createRedisBackends(config.cluster.redisUrl, logger);
  }
  const broker = await startBroker({
    tls: readTlsFiles(config.tls, BROKER_TLS_VARIABLES),
    host: config.host,
    port: config.port,
    maxPayloadBytes: config.maxPayloadBytes,
    logger,
    ...(config.metricsPort === undefined ? {} : { metricsPort: config.metricsPort }),
    ...(brokerId === undefined ? {} : { brokerId }),
    ...(config.heartbeatMs === undefined ? {} : { heartbeatIntervalMs: config.heartbeatMs }),
    ...(backends === undefined ? {} : { backends }),
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const forceExit = setTimeout(() => {
      logger.error({ graceMs: SHUTDOWN_GRACE_MS }, 'shutdown took too long: exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    forceExit.unref();
    broker.close().then(
      () => {
        process.exitCode = 0;
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while shutting down');
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? `broker failed to start: ${error.message}` : error);
  process.exitCode = 1;
});
