/**
 * G6 across a crash: the edge agent is its own process (edge/main.ts), SIGKILLed while a command
 * executes and while a finished command's result is not yet confirmed, then restarted on the same
 * libSQL file. The broker is the real TLS broker; the control plane is the contract's stand-in
 * (tests/helpers/control-plane-stand-in.ts); the local application is an mqtt.js client on the
 * edge's local listener that never answers the first command.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { INTERRUPTED_REASON } from '../../edge/downstream/downstream.js';
import { topics } from '../../schemas/topics.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { startControlPlaneStandIn, type ControlPlaneStandIn } from '../helpers/control-plane-stand-in.js';
import {
  connectLocalApp,
  edgeProcessOptions,
  PROCESS_START_MS,
  readEdgeCommand,
  scrapeMetric,
  startEdgeProcess,
} from '../helpers/system-processes.js';
import { tempDirectory } from '../helpers/temp-dir.js';
import { startTlsBroker, type TestTlsBroker } from '../helpers/tls-broker.js';
import { timeoutFor } from '../helpers/wait.js';

const DEVICE = '8a1f3e5d-2b4c-4d6e-8f0a-1b2c3d4e5f60';
/** through two processes on a loaded machine */
const poll = { timeout: 30_000, interval: 50 };

let certs: TestCertificates;
let broker: TestTlsBroker;
let controlPlane: ControlPlaneStandIn;
let workDir: string;

beforeAll(async () => {
  workDir = tempDirectory('edge-commands-crash');
  certs = await createTestCertificates({ deviceIds: [DEVICE], serviceNames: ['bridge'] });
  broker = await startTlsBroker({ tls: certs.broker });
  controlPlane = await startControlPlaneStandIn(broker.url, DEVICE, certs.services.bridge!, 'bridge');
}, 60_000);

const edgeOptions = (dbName: string) =>
  edgeProcessOptions({
    certificates: certs.bundle,
    deviceId: DEVICE,
    brokerUrl: broker.url,
    dbName,
    logDir: workDir,
    env: { EDGE_REPORT_RESEND_MS: '200', EDGE_LOCAL_COMMAND_TIMEOUT_MS: '600000' },
  });

describe('edge commands across a crash', () => {
  it(
    'reports a command that was executing when the agent was SIGKILLed as failed after the restart, and never runs it again',
    async () => {
      const options = await edgeOptions('executing');
      const edge = await startEdgeProcess(options);
      const app = await connectLocalApp(edge.sensorUrl);
      const command = { commandId: crypto.randomUUID(), type: 'long-job', payload: {} };
      await controlPlane.createCommand(command);
      await expect.poll(() => controlPlane.status(command.commandId), poll).toBe('executing');
      await expect.poll(() => app.received.filter((m) => m.payload.includes(command.commandId)).length, poll).toBe(1);
      const before = await readEdgeCommand(options.dbPath, command.commandId);
      expect(before).toMatchObject({ status: 'executing' });

      await edge.kill();
      const restarted = await startEdgeProcess({ ...options, name: 'edge-restarted' });
      const appAfter = await connectLocalApp(restarted.sensorUrl);

      await expect.poll(() => controlPlane.status(command.commandId), poll).toBe('failed');
      expect(controlPlane.reportsOf(command.commandId).at(-1)).toMatchObject({
        status: 'failed',
        error: INTERRUPTED_REASON,
      });
      await expect
        .poll(async () => (await readEdgeCommand(options.dbPath, command.commandId))?.['report_confirmed'], poll)
        .toBe(1);
      expect(await readEdgeCommand(options.dbPath, command.commandId)).toMatchObject({
        status: 'failed',
        started_at: before?.['started_at'],
      });
      await expect.poll(() => scrapeMetric(restarted.metricsUrl, 'edge_commands_total'), poll).toBe(1);
      // a later command runs through the restarted agent's local listener; the failed one never came back
      const later = { commandId: crypto.randomUUID(), type: 'short-job', payload: {} };
      await controlPlane.createCommand(later);
      await expect.poll(() => appAfter.received.some((m) => m.payload.includes(later.commandId)), poll).toBe(true);
      expect(appAfter.received.filter((m) => m.payload.includes(command.commandId))).toHaveLength(0);
      expect(controlPlane.reportsOf(command.commandId).filter((r) => r.status === 'executing')).toHaveLength(1);
      await appAfter.client.publishAsync(topics.localCommandResult(later.commandId), '{"status":"executed"}', {
        qos: 1,
      });
      await expect.poll(() => controlPlane.status(later.commandId), poll).toBe('executed');
    },
    timeoutFor(PROCESS_START_MS * 2, poll.timeout * 6),
  );

  it(
    'keeps a result the control plane has not confirmed across a SIGKILL and delivers it after the restart',
    async () => {
      const options = await edgeOptions('unconfirmed');
      const edge = await startEdgeProcess(options);
      const app = await connectLocalApp(edge.sensorUrl);
      const command = { commandId: crypto.randomUUID(), type: 'measure', payload: {} };
      await controlPlane.createCommand(command);
      await expect.poll(() => app.received.some((m) => m.payload.includes(command.commandId)), poll).toBe(true);
      // the control plane receives reports but commits nothing from now on
      controlPlane.confirming = false;
      await app.client.publishAsync(
        topics.localCommandResult(command.commandId),
        JSON.stringify({ status: 'executed', result: { value: 7 } }),
        { qos: 1 },
      );
      await expect
        .poll(async () => await readEdgeCommand(options.dbPath, command.commandId), poll)
        .toMatchObject({ status: 'executed', report_confirmed: 0 });

      await edge.kill();
      controlPlane.confirming = true;
      const countBefore = controlPlane.reportsOf(command.commandId).length;
      await startEdgeProcess({ ...options, name: 'edge-restarted-2' });
      await expect.poll(() => controlPlane.status(command.commandId), poll).toBe('executed');
      const resent = controlPlane.reportsOf(command.commandId).slice(countBefore);
      expect(resent.at(-1)).toMatchObject({ status: 'executed', result: { value: 7 } });
      await expect
        .poll(async () => (await readEdgeCommand(options.dbPath, command.commandId))?.['report_confirmed'], poll)
        .toBe(1);
    },
    timeoutFor(PROCESS_START_MS * 2, poll.timeout * 4),
  );
});
