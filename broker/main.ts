/**
 * Broker process: `npx tsx broker/main.ts` (configuration: broker/config.ts).
 * For a local run, create certificates first: `npx tsx certs/cli.ts dev`.
 * Cluster mode (BROKER_REDIS_URL): ./cluster-backends.ts.
 * Start-up failures, SIGTERM/SIGINT and the exit code: common/process-lifecycle.ts.
 */
import { createLogger } from '../common/logger.js';
import { runProcess } from '../common/process-lifecycle.js';
import { readTlsFiles } from '../common/tls-files.js';
import { BROKER_TLS_VARIABLES, loadBrokerConfig, readCrlFile, type BrokerConfig } from './config.js';
import { clusterBrokerId, createRedisBackends } from './cluster-backends.js';
import { startBroker, type BrokerBackends, type RunningBroker } from './server.js';

const logger = createLogger('broker');

async function start(config: BrokerConfig): Promise<RunningBroker> {
  const tls = readTlsFiles(config.tls, BROKER_TLS_VARIABLES);
  const crl =
    config.crlPath === undefined ? undefined : { source: config.crlPath, content: readCrlFile(config.crlPath) };
  let brokerId = config.brokerId;
  let backends: BrokerBackends | undefined;
  if (config.cluster !== undefined) {
    brokerId = clusterBrokerId(config.brokerId);
    logger.info({ brokerId, redis: config.cluster.redisUrlForLogs, heartbeatMs: config.heartbeatMs }, 'cluster mode');
    backends = await createRedisBackends(config.cluster.redisUrl, logger);
  }
  // startBroker owns the backends from here: it closes them when it fails
  return startBroker({
    tls,
    host: config.host,
    port: config.port,
    maxPayloadBytes: config.maxPayloadBytes,
    publishRateLimits: config.publishRateLimits,
    ...(crl === undefined ? {} : { crl }),
    logger,
    ...(config.metricsPort === undefined ? {} : { metricsPort: config.metricsPort, metricsHost: config.metricsHost }),
    ...(brokerId === undefined ? {} : { brokerId }),
    ...(config.heartbeatMs === undefined ? {} : { heartbeatIntervalMs: config.heartbeatMs }),
    ...(backends === undefined ? {} : { backends }),
    admission: config.admission,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    listenBacklog: config.listenBacklog,
  });
}

void runProcess({ name: 'broker', logger, loadConfig: () => loadBrokerConfig(), start });
