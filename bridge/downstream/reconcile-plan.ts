/**
 * G6: the reconciliation diff (pure): the database's live commands and current config keys are
 * the truth; the broker's retained store is a cache of it. Given what is retained (topic ->
 * payload, from a snapshot subscription) and what should be (topic -> payload and publish order),
 *   - every desired topic whose retained payload is missing or different is published;
 *   - every retained command or config topic that is not desired is cleared (a command that
 *     became terminal or expired, a deleted key, or a message for a row the database never had).
 * devices/{id}/config/reported is a report topic, never retained by the bridge: never cleared.
 */
import { parseDeviceTopic } from '../../schemas/topics.js';

export interface DesiredTopic {
  payload: string;
  order: number[];
}

export interface ReconcileAction {
  topic: string;
  /** '' clears */
  payload: string;
  order: number[];
  kind: 'command' | 'config';
}

export function planReconcile(
  retained: ReadonlyMap<string, string>,
  desired: ReadonlyMap<string, DesiredTopic>,
  clearOrder: (kind: 'command' | 'config') => number[],
): ReconcileAction[] {
  const actions: ReconcileAction[] = [];
  for (const [topic, want] of desired) {
    if (retained.get(topic) === want.payload) continue;
    const kind = downstreamKind(topic);
    if (kind !== null) actions.push({ topic, payload: want.payload, order: want.order, kind });
  }
  for (const [topic, payload] of retained) {
    if (payload === '' || desired.has(topic)) continue;
    const kind = downstreamKind(topic);
    if (kind !== null) actions.push({ topic, payload: '', order: clearOrder(kind), kind });
  }
  return actions;
}

function downstreamKind(topic: string): 'command' | 'config' | null {
  const parsed = parseDeviceTopic(topic);
  if (parsed?.kind === 'command') return 'command';
  if (parsed?.kind === 'config') return 'config';
  return null;
}
