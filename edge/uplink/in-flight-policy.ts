/**
 * When the uplink may claim and send another batch, and when a burst of new readings should be
 * sent at once rather than after a short linger (pure).
 */
export const DEFAULT_MAX_IN_FLIGHT_BATCHES = 4;

export interface SendState {
  connected: boolean;
  stopping: boolean;
  /** batches published and not yet acknowledged by sync/ack or timed out */
  inFlight: number;
  maxInFlight: number;
}

/**
 * A new batch may be claimed only while connected (offline, readings stay pending and nothing is
 * claimed), not stopping, and below the in-flight limit.
 */
export function mayClaimBatch(state: SendState): boolean {
  return state.connected && !state.stopping && state.inFlight < state.maxInFlight;
}

export type SendTrigger = 'now' | 'linger';

/** A full batch's worth of new readings goes out at once; fewer wait for the linger to gather more. */
export function triggerForNewReadings(unsentReadings: number, maxBatchRecords: number): SendTrigger {
  return unsentReadings >= maxBatchRecords ? 'now' : 'linger';
}
