/**
 * The REST API as the bridge serves it: PostgreSQL at SERIALIZABLE, a plain-TCP Aedes broker for
 * the bridge's MQTT side, the real bridge service with its API over mutual TLS (the server
 * certificate is the test CA's broker certificate: serverAuth for localhost and 127.0.0.1), and
 * certificates of the project CA for devices and operators. Everything closed at teardown.
 */
import { randomUUID } from 'node:crypto';
import type { Database } from '../../bridge/db/connection.js';
import type { BridgeConfig, RunningBridge } from '../../bridge/service.js';
import { apiClient, type ApiClient } from './api-client.js';
import { startBridgeService } from './bridge-service.js';
import { createTestCertificates, type TestCertificates } from './certs.js';
import { openTestDatabase, startTestPostgres, type TestPostgres } from './postgres.js';
import { startTestBroker, type TestBroker } from './test-broker.js';

export interface ApiSystem {
  postgres: TestPostgres;
  db: Database;
  broker: TestBroker;
  bridge: RunningBridge;
  certificates: TestCertificates;
  url: string;
  /** a client with the certificate of that device / operator */
  device(deviceId: string): ApiClient;
  operator(name?: string): ApiClient;
}

export async function startApiSystem(options: {
  deviceIds: string[];
  operatorNames?: string[];
  observerNames?: string[];
  bridge?: Partial<BridgeConfig>;
}): Promise<ApiSystem> {
  const operatorNames = options.operatorNames ?? ['alice'];
  const [postgres, certificates, broker] = await Promise.all([
    startTestPostgres(),
    createTestCertificates({
      deviceIds: options.deviceIds,
      operatorNames,
      observerNames: options.observerNames ?? [],
    }),
    startTestBroker(),
  ]);
  const db = await openTestDatabase(postgres, 'api-test', { poolSize: 3 });
  const bridge = await startBridgeService({
    databaseUrl: postgres.connectionString,
    brokerUrl: broker.url,
    clientId: `bridge-${randomUUID().slice(0, 8)}`,
    dbPoolSize: 5,
    revocationPollMs: 100,
    http: { host: '127.0.0.1', port: 0 },
    api: { host: '127.0.0.1', port: 0, tls: certificates.broker },
    ...options.bridge,
  });
  if (bridge.api === null) throw new Error('the bridge did not start its API');
  const url = bridge.api.url;
  const clientFor = (files: TestCertificates['devices'][string] | undefined, name: string): ApiClient => {
    if (files === undefined) throw new Error(`no test certificate for ${name}`);
    return apiClient(url, files);
  };
  return {
    postgres,
    db,
    broker,
    bridge,
    certificates,
    url,
    device: (deviceId) => clientFor(certificates.devices[deviceId], deviceId),
    operator: (name = operatorNames[0] ?? 'alice') => clientFor(certificates.operators[name], name),
  };
}
