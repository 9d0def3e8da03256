/**
 * The control plane's side of commands and config (docs/contract.md, Commands and Config), played
 * by an mqtt.js client with a `service` role certificate until the real bridge's part is merged.
 * It keeps the truth in memory exactly as the bridge keeps it in its tables:
 *
 *   - a command is published retained with its status; every report moves the truth forward only
 *     (canTransition), and after every report, also a duplicate or a late one, the truth is
 *     re-published: the retained message with the new live status, or a clear once terminal;
 *   - cancel/expire clear the topic (only before execution started);
 *   - a config key is published retained with its version; every report is recorded (the newest
 *     version wins) and the desired message is re-published with reportedVersion;
 *   - after every (re)connect everything live is published again (a broker restart loses retained
 *     messages; the bridge rebuilds the cache from its tables).
 * The clientId must be the certificate CN (broker/identity.ts). `confirming = false` plays a control plane that receives reports but has not committed them
 * (nothing re-published), to watch the edge re-send.
 */
import type { MqttClient } from 'mqtt';
import { canTransition, isTerminalCommandStatus, type CommandStatus } from '../../schemas/command-lifecycle.js';
import type { CommandMessage, CommandReport, ConfigDesired, ConfigReported } from '../../schemas/messages.js';
import { parseDeviceTopic, topics } from '../../schemas/topics.js';
import { checkCommandReportPayload, checkConfigReportedPayload } from '../../schemas/validators.js';
import type { TlsFiles } from './certs.js';
import { connectClient } from './mqtt-client.js';
import { registerCleanup } from './teardown.js';

export interface ReceivedReport {
  commandId: string;
  report: CommandReport;
}

export interface ControlPlaneStandIn {
  client: MqttClient;
  /** every command report received, in order (duplicates included) */
  reports: ReceivedReport[];
  configReports: ConfigReported[];
  /** the truth per command id */
  status(commandId: string): CommandStatus | undefined;
  reportsOf(commandId: string): CommandReport[];
  createCommand(command: Omit<CommandMessage, 'status' | 'createdAt'> & { createdAt?: string }): Promise<void>;
  /** cancel (or expire, by the sweep): only from pending/delivered; clears the topic */
  finishWithoutEdge(commandId: string, to: 'canceled' | 'expired'): Promise<boolean>;
  setConfig(key: string, value: unknown, version: number): Promise<void>;
  deleteConfig(key: string): Promise<void>;
  /** what the device reported last for a key: [version, status] */
  reportedConfig(key: string): ConfigReported | undefined;
  /** publishes raw bytes, retained, on a topic of the device (garbage tests) */
  publishRaw(topic: string, payload: string | Buffer): Promise<void>;
  confirming: boolean;
  close(): Promise<void>;
}

export async function startControlPlaneStandIn(
  brokerUrl: string,
  deviceId: string,
  tls: TlsFiles,
  clientId: string,
): Promise<ControlPlaneStandIn> {
  const commands = new Map<string, CommandMessage & { truth: CommandStatus }>();
  const configs = new Map<string, ConfigDesired>();
  const reported = new Map<string, ConfigReported>();
  const reports: ReceivedReport[] = [];
  const configReports: ConfigReported[] = [];
  const client = await connectClient(brokerUrl, {
    clientId,
    clean: false,
    key: tls.key,
    cert: tls.cert,
    ca: tls.ca,
    reconnectPeriod: 100,
  });

  const publishTruth = async (commandId: string): Promise<void> => {
    const command = commands.get(commandId);
    const topic = topics.command(deviceId, commandId);
    if (command === undefined || isTerminalCommandStatus(command.truth)) {
      await client.publishAsync(topic, '', { qos: 1, retain: true });
      return;
    }
    const { truth, ...message } = command;
    await client.publishAsync(topic, JSON.stringify({ ...message, status: truth }), { qos: 1, retain: true });
  };
  const publishDesired = async (key: string): Promise<void> => {
    const desired = configs.get(key);
    const topic = topics.config(deviceId, key);
    if (desired === undefined) {
      await client.publishAsync(topic, '', { qos: 1, retain: true });
      return;
    }
    const reportedVersion = reported.get(key)?.version;
    await client.publishAsync(
      topic,
      JSON.stringify(reportedVersion === undefined ? desired : { ...desired, reportedVersion }),
      { qos: 1, retain: true },
    );
  };

  const standIn: ControlPlaneStandIn = {
    client,
    reports,
    configReports,
    confirming: true,
    status: (commandId) => commands.get(commandId)?.truth,
    reportsOf: (commandId) => reports.filter((entry) => entry.commandId === commandId).map((entry) => entry.report),
    async createCommand(command) {
      const message = {
        ...command,
        createdAt: command.createdAt ?? new Date().toISOString(),
        status: 'pending' as const,
      };
      commands.set(command.commandId, { ...message, truth: 'pending' });
      await publishTruth(command.commandId);
    },
    async finishWithoutEdge(commandId, to) {
      const command = commands.get(commandId);
      if (command === undefined || !canTransition(command.truth, to)) return false;
      command.truth = to;
      await publishTruth(commandId);
      return true;
    },
    async setConfig(key, value, version) {
      configs.set(key, { key, value, version });
      await publishDesired(key);
    },
    async deleteConfig(key) {
      configs.delete(key);
      reported.delete(key);
      await publishDesired(key);
    },
    reportedConfig: (key) => reported.get(key),
    async publishRaw(topic, payload) {
      await client.publishAsync(topic, payload, { qos: 1, retain: true });
    },
    async close() {
      await client.endAsync();
    },
  };

  client.on('message', (topic, payload) => {
    const parsed = parseDeviceTopic(topic);
    if (parsed === null || parsed.deviceId !== deviceId) return;
    if (parsed.kind === 'command-result' && parsed.subject !== undefined) {
      const checked = checkCommandReportPayload(payload);
      if (!checked.ok) throw new Error(`the edge sent an invalid report on ${topic}: ${checked.reason}`);
      const commandId = parsed.subject;
      reports.push({ commandId, report: checked.value });
      if (!standIn.confirming) return;
      const command = commands.get(commandId);
      if (command !== undefined && canTransition(command.truth, checked.value.status)) {
        command.truth = checked.value.status;
      }
      void publishTruth(commandId);
    } else if (parsed.kind === 'config-reported') {
      const checked = checkConfigReportedPayload(payload);
      if (!checked.ok) throw new Error(`the edge sent an invalid config report: ${checked.reason}`);
      configReports.push(checked.value);
      if (!standIn.confirming) return;
      const previous = reported.get(checked.value.key);
      if (previous === undefined || previous.version <= checked.value.version)
        reported.set(checked.value.key, checked.value);
      if (configs.has(checked.value.key)) void publishDesired(checked.value.key);
    }
  });
  client.on('connect', () => {
    // the bridge rebuilds the retained cache after a reconnect (a restarted broker lost it)
    for (const commandId of commands.keys()) void publishTruth(commandId).catch(() => undefined);
    for (const key of configs.keys()) void publishDesired(key).catch(() => undefined);
  });
  await client.subscribeAsync(topics.commandsFilter(deviceId), { qos: 1 });
  await client.subscribeAsync(topics.configReported(deviceId), { qos: 1 });
  registerCleanup(() => client.endAsync(true));
  return standIn;
}
