/**
 * The topic contract, as builders and parsers. No other file spells a topic by hand.
 *
 *   sensors/{sensorId}/{dataType}                 sensor -> edge (local listener)
 *   sensors/{sensorId}/{dataType}/error           edge -> sensor (local): why a reading was rejected
 *   devices/{id}/telemetry                        edge -> bridge   {batchId, records}
 *   devices/{id}/sync/ack                         bridge -> edge   {batchId, accepted, rejected, conflicts}
 *   devices/{id}/config/{key}                     bridge -> edge   retained {key, value, version}
 *   devices/{id}/config/reported                  edge -> bridge   {key, version, status, error?}
 *   devices/{id}/commands/{commandId}             bridge -> edge   retained, cleared when terminal
 *   devices/{id}/commands/{commandId}/result      edge -> bridge   {status, result?, error?}
 *   devices/{id}/status                           edge (and its will), retained {online, at}
 *   control/revocations                           bridge -> broker nodes, retained {generatedAt, serials}:
 *                                                 revoked certificates; no client may read it
 *
 * On the edge's local listener (local applications, never forwarded upstream):
 *   local/commands/{type}                         edge -> local apps  the command message {commandId, type, payload, ...}
 *   local/commands/{commandId}/result             local app -> edge   {status: executed|failed, result?, error?}
 *   local/config/{key}                            edge -> local apps  retained {key, value, version}
 */
import { DEVICE_ID_PATTERN, TOPIC_ID_PATTERN } from './limits.js';

export const SENSOR_READINGS_FILTER = 'sensors/+/+';

/**
 * Broker-internal, not part of the contract: a publish whose payload the broker refuses is
 * re-addressed here before aedes routes it, so that it is acknowledged but reaches no one (no
 * client may subscribe to a '$' topic, and wildcards never match one, MQTT-4.7.2-1).
 */
export const BROKER_DISCARD_TOPIC = '$discarded';
export const ALL_TELEMETRY_FILTER = 'devices/+/telemetry';
export const ALL_DEVICES_FILTER = 'devices/#';

/**
 * The revocation list (schemas/revocation-list.schema.json), published retained by the service
 * role and subscribed to by every broker node internally (broker/revocation-sync.ts); outside
 * devices/, so no client's subscription can cover it (broker/acl.ts).
 */
export const CONTROL_REVOCATIONS_TOPIC = 'control/revocations';

export const topics = {
  sensorReading: (sensorId: string, dataType: string) => `sensors/${sensorId}/${dataType}`,
  sensorError: (sensorId: string, dataType: string) => `sensors/${sensorId}/${dataType}/error`,
  telemetry: (deviceId: string) => `devices/${deviceId}/telemetry`,
  syncAck: (deviceId: string) => `devices/${deviceId}/sync/ack`,
  config: (deviceId: string, key: string) => `devices/${deviceId}/config/${key}`,
  configFilter: (deviceId: string) => `devices/${deviceId}/config/#`,
  /** the desired config keys (config/reported, the device's own report, also matches: skipped by key) */
  configMessagesFilter: (deviceId: string) => `devices/${deviceId}/config/+`,
  configReported: (deviceId: string) => `devices/${deviceId}/config/reported`,
  command: (deviceId: string, commandId: string) => `devices/${deviceId}/commands/${commandId}`,
  commandsFilter: (deviceId: string) => `devices/${deviceId}/commands/#`,
  /** the commands themselves, without the device's own results echoing back */
  commandMessagesFilter: (deviceId: string) => `devices/${deviceId}/commands/+`,
  commandResult: (deviceId: string, commandId: string) => `devices/${deviceId}/commands/${commandId}/result`,
  status: (deviceId: string) => `devices/${deviceId}/status`,
  localCommand: (type: string) => `local/commands/${type}`,
  localCommandResult: (commandId: string) => `local/commands/${commandId}/result`,
  localCommandResultFilter: () => 'local/commands/+/result',
  localConfig: (key: string) => `local/config/${key}`,
} as const;

export type DeviceTopicKind =
  | 'telemetry'
  | 'sync-ack'
  | 'config'
  | 'config-reported'
  | 'command'
  | 'command-result'
  | 'status';

export interface ParsedDeviceTopic {
  deviceId: string;
  kind: DeviceTopicKind;
  /** config key or command id, where the kind has one */
  subject?: string;
}

/** Parses a concrete devices/… topic; null when it is not part of the contract. */
export function parseDeviceTopic(topic: string): ParsedDeviceTopic | null {
  const levels = topic.split('/');
  if (levels[0] !== 'devices' || levels.length < 3) return null;
  const deviceId = levels[1] ?? '';
  if (deviceId === '' || deviceId.includes('+') || deviceId.includes('#')) return null;
  const rest = levels.slice(2);
  const [first, second, third] = rest;
  if (rest.length === 1 && first === 'telemetry') return { deviceId, kind: 'telemetry' };
  if (rest.length === 1 && first === 'status') return { deviceId, kind: 'status' };
  if (rest.length === 2 && first === 'sync' && second === 'ack') return { deviceId, kind: 'sync-ack' };
  if (rest.length === 2 && first === 'config' && second === 'reported') return { deviceId, kind: 'config-reported' };
  if (rest.length === 2 && first === 'config' && second) return { deviceId, kind: 'config', subject: second };
  if (rest.length === 2 && first === 'commands' && second) return { deviceId, kind: 'command', subject: second };
  if (rest.length === 3 && first === 'commands' && second && third === 'result') {
    return { deviceId, kind: 'command-result', subject: second };
  }
  return null;
}

export interface ParsedSensorTopic {
  sensorId: string;
  dataType: string;
}

/** Parses sensors/{sensorId}/{dataType}; null when the topic is not a valid reading topic. */
export function parseSensorTopic(topic: string): ParsedSensorTopic | null {
  const levels = topic.split('/');
  if (levels.length !== 3 || levels[0] !== 'sensors') return null;
  const [, sensorId = '', dataType = ''] = levels;
  if (!TOPIC_ID_PATTERN.test(sensorId) || !TOPIC_ID_PATTERN.test(dataType)) return null;
  return { sensorId, dataType };
}

/** local/commands/{commandId}/result on the edge's local listener: the command id, else null. */
export function parseLocalCommandResultTopic(topic: string): string | null {
  const levels = topic.split('/');
  if (levels.length !== 4 || levels[0] !== 'local' || levels[1] !== 'commands' || levels[3] !== 'result') return null;
  const commandId = levels[2] ?? '';
  return TOPIC_ID_PATTERN.test(commandId) ? commandId : null;
}

export function isDeviceId(value: string): boolean {
  return DEVICE_ID_PATTERN.test(value);
}
