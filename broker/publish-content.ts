/**
 * Which published payloads the broker checks itself, and what it decides (pure).
 *
 * The broker routes most payloads unread: telemetry is validated record by record by the bridge,
 * which answers every batch (G5). A retained payload is different: the broker keeps it and hands
 * it to every later subscriber as the current truth, so nothing else can reject it. So the broker
 * checks the one retained payload a device may publish, `devices/{id}/status` (also when it is a
 * will), against schemas/device-status.schema.json and the clock rule of
 * schemas/validators.ts checkDeviceStatusPayload. A refused payload is dropped (never routed,
 * never retained) by ./authorization-hooks.ts.
 *
 * The revocation list on control/revocations (G9) is checked the same way, against
 * schemas/revocation-list.schema.json: every broker node reads the retained one when it starts,
 * so a malformed list must never become the retained one.
 */
import { CONTROL_REVOCATIONS_TOPIC, parseDeviceTopic } from '../schemas/topics.js';
import { checkDeviceStatusPayload, checkRevocationListPayload } from '../schemas/validators.js';

export type ContentDecision = { accepted: true } | { accepted: false; kind: string; reason: string };

const ACCEPTED: ContentDecision = { accepted: true };

export function decidePublishContent(topic: string, payload: Buffer | string, nowMs: number): ContentDecision {
  if (topic === CONTROL_REVOCATIONS_TOPIC) {
    const list = checkRevocationListPayload(payload);
    return list.ok ? ACCEPTED : { accepted: false, kind: 'revocation-list', reason: list.reason };
  }
  if (parseDeviceTopic(topic)?.kind === 'status') {
    const status = checkDeviceStatusPayload(payload, nowMs);
    return status.ok ? ACCEPTED : { accepted: false, kind: 'status', reason: status.reason };
  }
  return ACCEPTED;
}
