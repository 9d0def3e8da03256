/**
 * G6 across an edge crash, end to end: the edge agent is its own process (edge/main.ts), SIGKILLed
 * and restarted on the same libSQL file; the real mutual-TLS broker, the real bridge service with
 * its downstream side and PostgreSQL run in the test process; the edge reaches the broker through
 * a cuttable TCP proxy; local applications are mqtt.js clients on the edge's local listener.
 * The broker keeps its sessions and retained messages in a throwaway redis-server (cluster mode), so it
 * can be restarted with its store kept.
 * Proves: a command executing when the agent is killed is reported `failed` with the crash reason
 * after the restart and never handed out again; a result produced while the uplink is down survives
 * the SIGKILL and reaches PostgreSQL after the restart; a broker restarted with its retained store
 * and sessions kept redelivers a running command, which still runs once.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../bridge/db/connection.js';
import type { RunningBridge } from '../../bridge/service.js';
import { createRedisBackends } from '../../broker/cluster-backends.js';
import { startBroker, type RunningBroker } from '../../broker/server.js';
import { startTcpProxy, type TcpProxy } from '../../devtools/tcp-proxy.js';
import { INTERRUPTED_REASON } from '../../edge/downstream/downstream.js';
import { topics } from '../../schemas/topics.js';
import { downstreamBridgeConfig, startBridgeService } from '../helpers/bridge-service.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import type { ReceivedMessage } from '../helpers/mqtt-observe.js';
import { openTestDatabase, startTestPostgres, storedCommand } from '../helpers/postgres.js';
import {
  connectLocalApp,
  edgeProcessOptions,
  PROCESS_START_MS,
  readEdgeCommand,
  startEdgeProcess,
} from '../helpers/system-processes.js';
import { registerCleanup } from '../helpers/teardown.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { testLogger } from '../helpers/logger.js';
import { startTestRedis, type TestRedis } from '../helpers/redis.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE = '4e5f6a7b-8c9d-4e0f-8a1b-3c4d5e6f7a8b';
/** through two processes on a loaded machine */
const poll = { timeout: 30_000, interval: 50 };

let certs: TestCertificates;
let db: Database;
let redis: TestRedis;
let broker: RunningBroker;
let bridge: RunningBridge;
let uplink: TcpProxy;
let workDir: string;

beforeAll(async () => {
  workDir = tempDirectory('e2e-downstream-crash');
  const [generated, postgres, startedRedis] = await Promise.all([
    createTestCertificates({ deviceIds: [DEVICE], serviceNames: ['bridge'] }),
    startTestPostgres(),
    startTestRedis(),
  ]);
  certs = generated;
  redis = startedRedis;
  registerCleanup(() => redis.close());
  db = await openTestDatabase(postgres, 'e2e-downstream-crash-test', { poolSize: 2 });
  broker = await startRedisBroker(0);
  registerCleanup(() => broker.close());
  bridge = await startBridgeService(
    downstreamBridgeConfig({
      databaseUrl: postgres.connectionString,
      brokerUrl: `mqtts://127.0.0.1:${broker.port}`,
      certs,
    }),
  );
  await db.none(`INSERT INTO devices (device_id, device_name, device_type) VALUES ($1, $1, 'edge')`, [DEVICE]);
  uplink = await startTcpProxy({ host: '127.0.0.1', port: broker.port });
  registerCleanup(() => uplink.close());
}, 90_000);

async function startRedisBroker(port: number): Promise<RunningBroker> {
  const logger = testLogger('broker');
  return startBroker({
    tls: certs.broker,
    host: '127.0.0.1',
    port,
    logger,
    backends: await createRedisBackends(redis.url, logger),
  });
}

const edgeOptions = (dbName: string) =>
  edgeProcessOptions({
    certificates: certs.bundle,
    deviceId: DEVICE,
    brokerUrl: `mqtts://127.0.0.1:${uplink.port}`,
    dbName,
    logDir: workDir,
    env: { EDGE_REPORT_RESEND_MS: '200', EDGE_LOCAL_COMMAND_TIMEOUT_MS: '600000' },
  });

const handedOut = (app: { received: ReceivedMessage[] }, commandId: string) =>
  app.received.filter((m) => m.topic.startsWith('local/commands/') && m.payload.includes(commandId)).length;

const commandRow = (commandId: string) => storedCommand(db, commandId);

describe('commands across an edge crash, end to end', () => {
  it(
    'reports a command that was executing when the edge was SIGKILLed as failed with the crash reason after the restart, and never runs it again',
    async () => {
      const options = await edgeOptions('executing');
      const edge = await startEdgeProcess(options);
      const app = await connectLocalApp(edge.sensorUrl);
      const command = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'long.job', payload: {} });
      await expect.poll(async () => (await commandRow(command.commandId)).status, poll).toBe('executing');
      expect(handedOut(app, command.commandId)).toBe(1);

      await edge.kill();
      const restarted = await startEdgeProcess({ ...options, name: 'edge-restarted' });
      const appAfter = await connectLocalApp(restarted.sensorUrl);
      await expect.poll(async () => (await commandRow(command.commandId)).status, poll).toBe('failed');
      expect(await commandRow(command.commandId)).toMatchObject({ error: INTERRUPTED_REASON });

      // a later command goes through the restarted agent's local listener; the failed one never came back
      const later = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'short.job', payload: {} });
      await expect.poll(() => handedOut(appAfter, later.commandId), poll).toBe(1);
      await appAfter.client.publishAsync(topics.localCommandResult(later.commandId), '{"status":"executed"}', {
        qos: 1,
      });
      await expect.poll(async () => (await commandRow(later.commandId)).status, poll).toBe('executed');
      expect(handedOut(appAfter, command.commandId)).toBe(0);
      expect(await commandRow(command.commandId)).toMatchObject({ status: 'failed' });
    },
    timeoutFor(PROCESS_START_MS * 2, poll.timeout * 5),
  );

  it(
    'keeps a result produced while the uplink is down across a SIGKILL, and stores it in PostgreSQL after the restart',
    async () => {
      const options = await edgeOptions('offline-result');
      const edge = await startEdgeProcess(options);
      const app = await connectLocalApp(edge.sensorUrl);
      const command = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'measure', payload: {} });
      await expect.poll(async () => (await commandRow(command.commandId)).status, poll).toBe('executing');

      uplink.cut();
      await app.client.publishAsync(
        topics.localCommandResult(command.commandId),
        JSON.stringify({ status: 'executed', result: { value: 7 } }),
        { qos: 1 },
      );
      // stored in libSQL, not confirmed by the control plane (the uplink is down); then the crash
      await expect
        .poll(() => readEdgeCommand(options.dbPath, command.commandId), poll)
        .toMatchObject({ status: 'executed', report_confirmed: 0 });
      await edge.kill();
      expect((await commandRow(command.commandId)).status).toBe('executing');

      uplink.restore();
      const restarted = await startEdgeProcess({ ...options, name: 'edge-restarted-2' });
      await connectLocalApp(restarted.sensorUrl);
      await expect.poll(async () => (await commandRow(command.commandId)).status, poll).toBe('executed');
      expect(await commandRow(command.commandId)).toMatchObject({ result: { value: 7 }, error: null });
    },
    timeoutFor(PROCESS_START_MS * 2, poll.timeout * 3),
  );

  it(
    'runs a command once when the broker restarts with its retained store and sessions kept and redelivers it',
    async () => {
      const options = await edgeOptions('broker-restart');
      const edge = await startEdgeProcess(options);
      const app = await connectLocalApp(edge.sensorUrl);
      const command = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'count.job', payload: {} });
      await expect.poll(async () => (await commandRow(command.commandId)).status, poll).toBe('executing');
      expect(handedOut(app, command.commandId)).toBe(1);

      // the same port, the same Redis: retained messages and persistent sessions survive
      const port = broker.port;
      await broker.close();
      // closed at the end of the file by the cleanup registered in beforeAll (it reads `broker`)
      broker = await startRedisBroker(port);
      // a later command through the restarted broker: the redelivered copy reached the edge before it
      const later = await bridge.downstream.commands.create({ deviceId: DEVICE, type: 'ping', payload: {} });
      await expect.poll(async () => (await commandRow(later.commandId)).status, poll).toBe('executed');
      await app.client.publishAsync(
        topics.localCommandResult(command.commandId),
        JSON.stringify({ status: 'executed', result: { runs: 1 } }),
        { qos: 1 },
      );
      await expect.poll(async () => (await commandRow(command.commandId)).status, poll).toBe('executed');
      expect(await commandRow(command.commandId)).toMatchObject({ result: { runs: 1 } });
      expect(handedOut(app, command.commandId)).toBe(1);
    },
    timeoutFor(PROCESS_START_MS, poll.timeout * 3),
  );
});
