/**
 * Topic permissions by role (pure). Every denial carries a reason a human can act on.
 *
 *   device    publishes only its own devices/{id}/telemetry, config/reported,
 *             commands/{cid}/result and status (the only one it may retain);
 *             subscribes only within its own sync/ack, config/# and commands/#
 *   service   publishes and subscribes anywhere under devices/ (the bridge)
 *   observer  subscribes anywhere under devices/, never publishes (mosquitto_sub, MQTT Explorer)
 *
 * One topic outside devices/: control/revocations (the revocation list, G9), which only the service
 * role may publish, QoS 1 and retained, and nobody may subscribe to (no filter a client is granted
 * covers it; the broker nodes read it internally, ./revocation-sync.ts).
 *
 * For everyone else: nothing outside devices/, nothing starting with '$', publishes at QoS 1 only
 * (aedes#994: a QoS 0 message after a QoS 1 message can drop the QoS 1 one), payload size bounded.
 * Subscriptions are granted at QoS 1.
 */
import {
  ALL_DEVICES_FILTER,
  CONTROL_REVOCATIONS_TOPIC,
  parseDeviceTopic,
  topics,
  type DeviceTopicKind,
} from '../schemas/topics.js';
import type { ClientIdentity } from './identity.js';
import { filterCoveredBy, isValidTopicFilter, topicMatchesFilter } from './topic-filter.js';

export const REQUIRED_QOS = 1 as const;

export type QosLevel = 0 | 1 | 2;

export interface AclLimits {
  maxPayloadBytes: number;
}

export interface PublishRequest {
  topic: string;
  qos: number;
  retain: boolean;
  payloadBytes: number;
}

export type AclDecision = { allowed: true; qos?: QosLevel } | { allowed: false; reason: string };

const DEVICE_PUBLISHABLE_KINDS: ReadonlySet<DeviceTopicKind> = new Set([
  'telemetry',
  'config-reported',
  'command-result',
  'status',
]);

/** The filters a device may subscribe within (and the only topics it may receive). */
export function deviceSubscriptionFilters(deviceId: string): string[] {
  return [topics.syncAck(deviceId), topics.configFilter(deviceId), topics.commandsFilter(deviceId)];
}

export function decidePublish(identity: ClientIdentity, request: PublishRequest, limits: AclLimits): AclDecision {
  if (request.topic === CONTROL_REVOCATIONS_TOPIC) return decideRevocationListPublish(identity, request, limits);
  const common = decideCommonPublishRules(request, limits);
  if (!common.allowed) return common;
  switch (identity.role) {
    case 'observer':
      return deny(`observer '${identity.id}' is read-only and may not publish (to '${request.topic}')`);
    case 'service':
      return allow();
    case 'device':
      return decideDevicePublish(identity.id, request);
  }
}

/**
 * Rules for a will that aedes publishes for a client that is gone (client = null: a will persisted
 * by a broker node that died). The will's owner was checked when it connected (the broker refuses
 * a CONNECT whose will it would not allow), so only the rules that need no identity apply here.
 */
export function decideStoredWillPublish(request: PublishRequest, limits: AclLimits): AclDecision {
  return decideCommonPublishRules(request, limits);
}

export function decideSubscribe(identity: ClientIdentity, topicFilter: string): AclDecision {
  if (!isValidTopicFilter(topicFilter)) return deny(`'${topicFilter}' is not a valid MQTT topic filter`);
  if (topicFilter.startsWith('$'))
    return deny(`'${topicFilter}': topics starting with '$' are reserved for the broker`);
  if (identity.role === 'service' || identity.role === 'observer') {
    if (filterCoveredBy(topicFilter, ALL_DEVICES_FILTER)) return allow(REQUIRED_QOS);
    return deny(`${identity.role} '${identity.id}' may subscribe only under devices/, not to '${topicFilter}'`);
  }
  const allowedFilters = deviceSubscriptionFilters(identity.id);
  if (allowedFilters.some((allowed) => filterCoveredBy(topicFilter, allowed))) return allow(REQUIRED_QOS);
  return deny(
    `device '${identity.id}' may subscribe only within ${allowedFilters.join(', ')}, not to '${topicFilter}'`,
  );
}

/**
 * Whether a message on `topic` may be delivered to the client. Mirrors decideSubscribe for concrete
 * topics; the broker checks it on every delivery as a second line of defence (aedes can queue
 * messages for a persistent session under filters that were never granted).
 */
export function decideDelivery(identity: ClientIdentity, topic: string): AclDecision {
  if (identity.role === 'service' || identity.role === 'observer') {
    if (topicMatchesFilter(topic, ALL_DEVICES_FILTER)) return allow();
    return deny(`${identity.role} '${identity.id}' may receive only topics under devices/, not '${topic}'`);
  }
  if (deviceSubscriptionFilters(identity.id).some((filter) => topicMatchesFilter(topic, filter))) return allow();
  return deny(`device '${identity.id}' may not receive '${topic}'`);
}

function decideCommonPublishRules(request: PublishRequest, limits: AclLimits): AclDecision {
  const { topic } = request;
  if (topic.startsWith('$')) return deny(`'${topic}': topics starting with '$' are reserved for the broker`);
  if (!topicMatchesFilter(topic, ALL_DEVICES_FILTER) || topic === 'devices') {
    return deny(`'${topic}' is outside devices/: only topics under devices/ are allowed`);
  }
  if (request.qos !== REQUIRED_QOS) {
    return deny(
      `'${topic}' was published with QoS ${request.qos}; every publish under devices/ must use QoS 1 ` +
        '(mixing QoS levels can drop messages, aedes#994)',
    );
  }
  if (request.payloadBytes > limits.maxPayloadBytes) {
    return deny(
      `payload of ${request.payloadBytes} bytes on '${topic}' exceeds the limit of ${limits.maxPayloadBytes} bytes`,
    );
  }
  return allow();
}

function decideRevocationListPublish(
  identity: ClientIdentity,
  request: PublishRequest,
  limits: AclLimits,
): AclDecision {
  const topic = request.topic;
  if (identity.role !== 'service') {
    return deny(
      `only the service role may publish '${topic}' (the revocation list), not ${identity.role} '${identity.id}'`,
    );
  }
  if (request.qos !== REQUIRED_QOS) return deny(`'${topic}' was published with QoS ${request.qos}; it must use QoS 1`);
  if (!request.retain) return deny(`'${topic}' must be retained: broker nodes read it when they start`);
  if (request.payloadBytes > limits.maxPayloadBytes) {
    return deny(
      `payload of ${request.payloadBytes} bytes on '${topic}' exceeds the limit of ${limits.maxPayloadBytes} bytes`,
    );
  }
  return allow();
}

function decideDevicePublish(deviceId: string, request: PublishRequest): AclDecision {
  const parsed = parseDeviceTopic(request.topic);
  if (parsed === null) return deny(`'${request.topic}' is not a topic of the devices/ contract`);
  if (parsed.deviceId !== deviceId) {
    return deny(`device '${deviceId}' may not publish for device '${parsed.deviceId}' (topic '${request.topic}')`);
  }
  if (!DEVICE_PUBLISHABLE_KINDS.has(parsed.kind)) {
    return deny(
      `device '${deviceId}' may publish only telemetry, config/reported, commands/{id}/result and status; ` +
        `'${request.topic}' is published by the bridge`,
    );
  }
  if (request.retain && parsed.kind !== 'status') {
    return deny(`'${request.topic}' may not be retained: a device may retain only devices/{id}/status`);
  }
  return allow();
}

function allow(qos?: QosLevel): AclDecision {
  return qos === undefined ? { allowed: true } : { allowed: true, qos };
}

function deny(reason: string): AclDecision {
  return { allowed: false, reason };
}
