/**
 * A lightweight device for fleet-sized benchmarks: one mqtt.js connection with the device's own
 * certificate that answers commands and config exactly as docs/contract.md says an edge agent
 * does on the wire, without an edge agent behind it (no libSQL, no worker thread, no sensors), so
 * that a thousand of them fit in one process next to a few real agents.
 *
 * On a retained command (status pending) it reports `delivered`, `executing` and `executed`
 * (result {pong: true, at} for ping, {} otherwise), each once; on a retained config message with
 * a version newer than the one it applied it reports `applied`. It does not persist anything and
 * does not re-send unconfirmed reports: a benchmark's devices stay connected. It subscribes one
 * filter per SUBSCRIBE, as the edge agent does (aedes-persistence-redis 11.2.2 never answers a
 * multi-filter SUBSCRIBE on a persistent session).
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { SecureContext } from 'node:tls';
import { checkCommandMessagePayload, checkConfigDesiredPayload } from '../schemas/validators.js';
import { parseDeviceTopic, topics } from '../schemas/topics.js';
import type { CommandReport, ConfigReported } from '../schemas/messages.js';

export interface ContractDevice {
  deviceId: string;
  /** commands this device ran (by id), to check exactly-once */
  executed: Map<string, number>;
  close(): Promise<void>;
}

export async function connectContractDevice(
  brokerUrl: string,
  deviceId: string,
  tls: { secureContext: SecureContext; ca: Buffer },
  extra: Partial<IClientOptions> = {},
): Promise<ContractDevice> {
  const client: MqttClient = await mqtt.connectAsync(brokerUrl, {
    clientId: deviceId,
    protocolVersion: 4,
    clean: false,
    reconnectPeriod: 1000,
    connectTimeout: 30_000,
    // one TLS context per device, built by the caller (node's tls.connect option; mqtt.js passes it through)
    ...{ secureContext: tls.secureContext },
    ca: tls.ca,
    rejectUnauthorized: true,
    ...extra,
  });
  const executed = new Map<string, number>();
  const appliedVersions = new Map<string, number>();
  const publish = (topic: string, body: CommandReport | ConfigReported) =>
    client.publishAsync(topic, JSON.stringify(body), { qos: 1 }).catch(() => undefined);

  client.on('message', (topic, payload) => {
    const parsed = parseDeviceTopic(topic);
    if (parsed?.deviceId !== deviceId || payload.length === 0 || parsed.subject === undefined) return;
    if (parsed.kind === 'command') {
      const message = checkCommandMessagePayload(payload);
      if (!message.ok || message.value.status !== 'pending' || executed.has(message.value.commandId)) return;
      const { commandId, type } = message.value;
      executed.set(commandId, 1);
      const resultTopic = topics.commandResult(deviceId, commandId);
      const at = () => new Date().toISOString();
      void (async () => {
        await publish(resultTopic, { status: 'delivered', at: at() });
        await publish(resultTopic, { status: 'executing', at: at() });
        const result = type === 'ping' ? { pong: true, at: at() } : {};
        await publish(resultTopic, { status: 'executed', at: at(), result });
      })();
    } else if (parsed.kind === 'config') {
      const desired = checkConfigDesiredPayload(payload);
      if (!desired.ok) return;
      const { key, version } = desired.value;
      if ((appliedVersions.get(key) ?? 0) >= version) return;
      appliedVersions.set(key, version);
      void publish(topics.configReported(deviceId), { key, version, status: 'applied', at: new Date().toISOString() });
    }
  });
  for (const filter of [topics.commandMessagesFilter(deviceId), `devices/${deviceId}/config/+`]) {
    await client.subscribeAsync(filter, { qos: 1 });
  }
  let closing: Promise<void> | undefined;
  return {
    deviceId,
    executed,
    close: () => (closing ??= client.endAsync(true).then(() => undefined)),
  };
}
