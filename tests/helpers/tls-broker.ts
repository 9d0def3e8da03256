/**
 * The real broker (broker/server.ts: mutual TLS, identity from the certificate, ACL, limits) on a
 * free port of 127.0.0.1, silent unless a logger is given, closed at teardown.
 */
import { startBroker, type BrokerOptions, type RunningBroker } from '../../broker/server.js';
import { testLogger } from './logger.js';
import { registerCleanup } from './teardown.js';

export interface TestTlsBroker extends RunningBroker {
  /** mqtts://127.0.0.1:{port} */
  url: string;
}

export async function startTlsBroker(options: BrokerOptions): Promise<TestTlsBroker> {
  const broker = await startBroker({ host: '127.0.0.1', port: 0, logger: testLogger('broker'), ...options });
  registerCleanup(() => broker.close());
  return Object.assign(broker, { url: `mqtts://127.0.0.1:${broker.port}` });
}
