/**
 * The real bridge service (bridge/service.ts) in this process, closed at teardown; and the
 * configuration the downstream tests start it with.
 */
import { BRIDGE_DEFAULTS, type DownstreamSettings } from '../../bridge/config.js';
import { startBridge, type BridgeConfig, type RunningBridge } from '../../bridge/service.js';
import type { Logger } from '../../common/logger.js';
import type { TestCertificates } from './certs.js';
import { testLogger } from './logger.js';
import { registerCleanup } from './teardown.js';

export type BridgeServiceConfig = Pick<BridgeConfig, 'databaseUrl' | 'brokerUrl' | 'clientId'> & Partial<BridgeConfig>;

/** BRIDGE_DEFAULTS, no TLS and no HTTP endpoint unless `config` says otherwise. */
export function bridgeServiceConfig(config: BridgeServiceConfig): BridgeConfig {
  return { tls: null, ...BRIDGE_DEFAULTS, http: null, ...config };
}

export async function startBridgeService(
  config: BridgeServiceConfig,
  logger: Logger = testLogger(config.clientId),
): Promise<RunningBridge> {
  const bridge = await startBridge(bridgeServiceConfig(config), { logger });
  // the bridge's own close() (idempotent), so that tests calling it exercise the real one
  registerCleanup(() => bridge.close());
  return bridge;
}

/**
 * The downstream tests' timings: polling and expiry sweeps every 200 ms, an hour's default TTL and
 * reconciliation interval (neither interferes unless a test asks), 500 reconciliation publishes/s.
 */
export const TEST_DOWNSTREAM: DownstreamSettings = {
  commandDefaultTtlMs: 3_600_000,
  pollMs: 200,
  expirySweepMs: 200,
  reconcileIntervalMs: 3_600_000,
  reconcilePublishRate: 500,
};

/**
 * The bridge with its downstream side (TEST_DOWNSTREAM, `downstream` over it) as the service
 * 'bridge' of `certs`, with 4 database connections; anything else of `config` over that.
 */
export function downstreamBridgeConfig(
  options: Pick<BridgeConfig, 'databaseUrl' | 'brokerUrl'> & {
    certs: TestCertificates;
    downstream?: Partial<DownstreamSettings>;
  } & Partial<Omit<BridgeConfig, 'downstream'>>,
): BridgeServiceConfig {
  const { certs, downstream, ...config } = options;
  return {
    tls: certs.services['bridge']!,
    clientId: 'bridge',
    dbPoolSize: 4,
    ...config,
    downstream: { ...TEST_DOWNSTREAM, ...downstream },
  };
}
