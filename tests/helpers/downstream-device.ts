/**
 * A test device that speaks the downstream contract (docs/contract.md, Commands and Config) over
 * mutual TLS with its device certificate: it subscribes to its command and config topics, keeps
 * what is currently retained for it (an empty payload clears a topic), and publishes reports.
 * The real edge agent side (edge/) is tested against the bridge after the merge.
 */
import type { IClientOptions, MqttClient } from 'mqtt';
import type { CommandMessage, CommandReport, ConfigDesired, ConfigReported } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import type { TlsFiles } from './certs.js';
import { connectClient } from './mqtt-client.js';
import { collectMessages, type ReceivedMessage } from './mqtt-observe.js';

export interface DownstreamDevice {
  id: string;
  client: MqttClient;
  /** every message received, in order */
  received: ReceivedMessage[];
  /** the live command messages as the broker currently shows them (cleared topics removed) */
  commands(): Map<string, CommandMessage>;
  /** the desired config per key (deleted keys removed) */
  config(): Map<string, ConfigDesired>;
  /** payloads received on one topic, in order ('' = a clear) */
  on(topic: string): string[];
  reportCommand(commandId: string, report: CommandReport): Promise<void>;
  reportConfig(report: ConfigReported): Promise<void>;
  close(): Promise<void>;
}

export async function connectDownstreamDevice(
  url: string,
  deviceId: string,
  tls: TlsFiles,
  options: IClientOptions = {},
): Promise<DownstreamDevice> {
  const client = await connectClient(url, { ...tls, clientId: deviceId, clean: true, ...options });
  const received = collectMessages(client);
  await client.subscribeAsync(topics.commandMessagesFilter(deviceId), { qos: 1 });
  await client.subscribeAsync(`devices/${deviceId}/config/+`, { qos: 1 });
  const latest = (prefix: string): Map<string, string> => {
    const state = new Map<string, string>();
    for (const message of received) {
      if (!message.topic.startsWith(prefix) || message.topic.split('/').length !== 4) continue;
      const subject = message.topic.split('/')[3] ?? '';
      if (subject === 'reported') continue;
      if (message.payload === '') state.delete(subject);
      else state.set(subject, message.payload);
    }
    return state;
  };
  const parsed = <T>(state: Map<string, string>) =>
    new Map([...state].map(([key, payload]) => [key, JSON.parse(payload) as T] as const));
  return {
    id: deviceId,
    client,
    received,
    commands: () => parsed<CommandMessage>(latest(`devices/${deviceId}/commands/`)),
    config: () => parsed<ConfigDesired>(latest(`devices/${deviceId}/config/`)),
    on: (topic) => received.filter((message) => message.topic === topic).map((message) => message.payload),
    reportCommand: async (commandId, report) => {
      await client.publishAsync(topics.commandResult(deviceId, commandId), JSON.stringify(report), { qos: 1 });
    },
    reportConfig: async (report) => {
      await client.publishAsync(topics.configReported(deviceId), JSON.stringify(report), { qos: 1 });
    },
    close: async () => {
      await client.endAsync();
    },
  };
}
