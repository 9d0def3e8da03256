/** The real bridge service (bridge/service.ts) in this process, closed at teardown. */
import { BRIDGE_DEFAULTS } from '../../bridge/config.js';
import { startBridge, type BridgeConfig, type RunningBridge } from '../../bridge/service.js';
import type { Logger } from '../../common/logger.js';
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
