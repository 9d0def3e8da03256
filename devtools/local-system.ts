/**
 * The whole system in one process, on loopback: an embedded PostgreSQL (at SERIALIZABLE), dev
 * certificates, an mTLS Aedes broker, the bridge, and N edge agents, each reaching the broker
 * through a TCP proxy that can be cut to simulate an uplink outage.
 * Used by `npm run demo`, `npm run bench` and the end-to-end tests. Every component is the real
 * one; only their placement (one process) differs from a deployment.
 */
import { readTlsFiles, type TlsFiles } from '../common/tls-files.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../common/logger.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
import { ensureDevCertificates, type CertificateBundle } from '../certs/dev-bundle.js';
import { startBroker, type RunningBroker } from '../broker/server.js';
import { startBridge, type RunningBridge } from '../bridge/service.js';
import { closeDatabase, openDatabase, type Database } from '../bridge/db/connection.js';
import { startEmbeddedPostgres, type RunningEmbeddedPostgres } from './embedded-postgres.js';
import { startEdgeAgent, type EdgeAgent, type EdgeAgentConfig } from '../edge/agent.js';
import type { BackoffPolicy } from '../common/retry-policy.js';
import { freePort } from './free-port.js';
import { startControlPlaneProcesses } from './control-plane-processes.js';
import { BRIDGE_DEFAULTS, type BridgeConfig } from '../bridge/config.js';

export interface LocalSystemOptions {
  /** one edge agent each */
  deviceIds: string[];
  /** devices that only get a certificate (tests use them to speak MQTT as a device directly) */
  certificateOnlyDeviceIds?: string[];
  /** libSQL files and the PostgreSQL cluster go here */
  dataDir: string;
  /** certificates (reused between runs) */
  certDir: string;
  logger: Logger;
  /** overrides for every edge agent */
  edge?: Partial<
    Pick<EdgeAgentConfig, 'ackTimeoutMs' | 'maxInFlightBatches' | 'syncIntervalMs' | 'sendLingerMs' | 'storeThread'>
  > & {
    reconnectPolicy?: BackoffPolicy;
  };
  bridge?: { maxRecords?: number; maxMessages?: number; lingerMs?: number };
  /** overrides of the bridge's command/config settings (in-process control plane only) */
  downstream?: Partial<BridgeConfig['downstream']>;
  /**
   * 'in-process' (default): broker and bridge run in this process.
   * 'child-processes': they run as their own processes through broker/main.ts and bridge/main.ts.
   */
  controlPlane?: 'in-process' | 'child-processes';
}

export interface LocalDevice {
  deviceId: string;
  agent: EdgeAgent;
  /** between this agent and the broker: cut() is an uplink outage */
  uplink: TcpProxy;
  sensorUrl: string;
}

export interface LocalSystem {
  postgres: RunningEmbeddedPostgres;
  broker: { port: number };
  bridge: { httpPort: number | null };
  devices: LocalDevice[];
  certificates: CertificateBundle;
  /**
   * The bridge's REST API over mutual TLS, and the files of the dev bundle's operator certificate
   * ('operator') that may use it for every device.
   */
  api: { url: string; operator: TlsFiles };
  /** a connection of our own to the control-plane database, for checking results */
  db: Database;
  /** stops everything in reverse order of start; idempotent */
  close(): Promise<void>;
}

const QUICK_RECONNECT: BackoffPolicy = { initialDelayMs: 200, maxDelayMs: 2000, multiplier: 2, jitter: 'equal' };

export async function startLocalSystem(options: LocalSystemOptions): Promise<LocalSystem> {
  const cleanup: Array<() => Promise<unknown>> = [];
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      for (const step of cleanup.reverse()) {
        await step().catch((error: unknown) => options.logger.warn({ err: error }, 'shutdown step failed'));
      }
    })());
  try {
    mkdirSync(options.dataDir, { recursive: true });
    const certificates = await ensureDevCertificates({
      dir: options.certDir,
      deviceIds: [...options.deviceIds, ...(options.certificateOnlyDeviceIds ?? [])],
      serviceNames: ['bridge'],
      observerNames: ['explorer'],
      operatorNames: ['operator'],
    });

    // its own fresh directory under os.tmpdir(): the postgres OS user must be able to reach it
    const postgres = await startEmbeddedPostgres({ port: await freePort() });
    cleanup.push(() => postgres.close());

    const controlPlane =
      options.controlPlane === 'child-processes'
        ? await startControlPlaneProcesses({
            certificates,
            databaseUrl: postgres.connectionString,
            logDir: options.dataDir,
          })
        : await startInProcessControlPlane(certificates, postgres.connectionString, options);
    cleanup.push(() => controlPlane.close());
    const broker = { port: controlPlane.brokerPort };
    const bridge = { httpPort: controlPlane.bridgeHttpPort };
    const operatorFiles = certificates.operators['operator'];
    if (!operatorFiles) throw new Error('no operator certificate in the bundle');
    const api = {
      url: `https://127.0.0.1:${controlPlane.apiPort}`,
      operator: readTlsFiles({ caPath: certificates.ca.certPath, ...operatorFiles }),
    };
    const brokerUrl = (port: number) => `mqtts://127.0.0.1:${port}`;

    const devices: LocalDevice[] = [];
    for (const deviceId of options.deviceIds) {
      const files = certificates.devices[deviceId];
      if (!files) throw new Error(`no certificate for device ${deviceId}`);
      const uplink = await startTcpProxy({ host: '127.0.0.1', port: broker.port });
      cleanup.push(() => uplink.close());
      const agent = await startEdgeAgent({
        deviceId,
        dbUrl: `file:${join(options.dataDir, `edge-${deviceId}.db`)}`,
        sensorHost: '127.0.0.1',
        sensorPort: 0,
        brokerUrl: brokerUrl(uplink.port),
        tls: readTlsFiles({ caPath: certificates.ca.certPath, ...files }),
        ackTimeoutMs: 10_000,
        syncIntervalMs: 5_000,
        reconnectPolicy: QUICK_RECONNECT,
        ...options.edge,
        logger: options.logger,
      });
      cleanup.push(() => agent.close());
      devices.push({ deviceId, agent, uplink, sensorUrl: `mqtt://127.0.0.1:${agent.sensorPort}` });
    }

    const db = openDatabase({
      connectionString: postgres.connectionString,
      applicationName: 'local-system-check',
      poolSize: 2,
    });
    cleanup.push(() => closeDatabase(db));

    return { postgres, broker, bridge, devices, certificates, api, db, close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function startInProcessControlPlane(
  certificates: CertificateBundle,
  databaseUrl: string,
  options: LocalSystemOptions,
): Promise<{ brokerPort: number; bridgeHttpPort: number | null; apiPort: number; close(): Promise<void> }> {
  const brokerTls = readTlsFiles({
    caPath: certificates.ca.certPath,
    certPath: certificates.broker.certPath,
    keyPath: certificates.broker.keyPath,
  });
  const broker: RunningBroker = await startBroker({
    tls: brokerTls,
    host: '127.0.0.1',
    port: 0,
    logger: options.logger.child({ component: 'broker' }),
  });
  const bridgeFiles = certificates.services['bridge'];
  let bridge: RunningBridge;
  try {
    if (!bridgeFiles) throw new Error('no bridge certificate in the bundle');
    bridge = await startBridge(
      {
        databaseUrl,
        brokerUrl: `mqtts://127.0.0.1:${broker.port}`,
        tls: readTlsFiles({ caPath: certificates.ca.certPath, ...bridgeFiles }),
        clientId: 'bridge',
        ...BRIDGE_DEFAULTS,
        batch: { ...BRIDGE_DEFAULTS.batch, ...options.bridge },
        maxInFlight: 10_000,
        http: { host: '127.0.0.1', port: 0 },
        // the REST API; its server certificate is the broker's (issued for 127.0.0.1)
        api: { host: '127.0.0.1', port: 0, tls: brokerTls },
        downstream: { ...BRIDGE_DEFAULTS.downstream, ...options.downstream },
      },
      { logger: options.logger.child({ component: 'bridge' }) },
    );
  } catch (error) {
    await broker.close();
    throw error;
  }
  let closing: Promise<void> | undefined;
  if (bridge.api === null) throw new Error('the bridge started without its REST API');
  return {
    brokerPort: broker.port,
    bridgeHttpPort: bridge.httpPort,
    apiPort: bridge.api.port,
    close: () =>
      (closing ??= (async () => {
        await bridge.close();
        await broker.close();
      })()),
  };
}

/** Rows per device in the control-plane database. */
export async function rowCountsByDevice(db: Database): Promise<Map<string, number>> {
  const rows = await db.any<{ device_id: string; rows: string }>(
    'SELECT device_id::text AS device_id, count(*) AS rows FROM telemetry_data GROUP BY device_id',
  );
  return new Map(rows.map((row) => [row.device_id, Number(row.rows)]));
}
