/**
 * When the uplink may claim and send another batch, and when a burst of new readings should be
 * sent at once rather than after a short linger (pure).
 */
export const DEFAULT_MAX_IN_FLIGHT_BATCHES = 4;

/**
 * Small batches a full batch's in-flight slot may be split into: at most
 * maxInFlight × SMALL_BATCHES_PER_SLOT batches are in flight, whatever their size.
 */
export const SMALL_BATCHES_PER_SLOT = 4;

export interface SendState {
  connected: boolean;
  stopping: boolean;
  /** batches published and not yet acknowledged by sync/ack or timed out */
  inFlight: number;
  /** readings in those batches */
  inFlightRecords: number;
  /** MAX_IN_FLIGHT_BATCHES: full batches' worth of readings in flight */
  maxInFlight: number;
  /** readings in a full batch (MAX_BATCH_RECORDS, or agent.batchMaxRecords) */
  maxBatchRecords: number;
  /** G7: the bridge said "retry later": nothing is sent while true (see retryLaterDelayMs) */
  holding?: boolean;
}

/**
 * A new batch may be claimed only while connected (offline, readings stay pending and nothing is
 * claimed), not stopping, not holding after a "retry later" ack, and below the in-flight limit.
 *
 * The limit is a budget of readings, maxInFlight full batches' worth, not a count of batches:
 * counted in batches, a steady trickle (1,000 readings/s, a batch after each 5 ms linger) filled
 * the four slots with batches of a few readings each, and every later reading waited for a sync/ack
 * to free a slot: publish → row median 76 ms against 32 ms when the slower in-thread store happened
 * to gather larger batches (scripts/bench.ts --in-flight, docs/capacity.md). Small batches may
 * use up to SMALL_BATCHES_PER_SLOT times as many messages, so what the bridge holds for one device
 * stays bounded in readings (maxInFlight × maxBatchRecords) and in messages.
 */
export function mayClaimBatch(state: SendState): boolean {
  return (
    state.connected &&
    !state.stopping &&
    state.holding !== true &&
    state.inFlightRecords < state.maxInFlight * state.maxBatchRecords &&
    state.inFlight < state.maxInFlight * SMALL_BATCHES_PER_SLOT
  );
}

/** The longest the uplink holds its batches after one "retry later" ack, whatever the ack says. */
export const MAX_RETRY_LATER_MS = 60_000;

/**
 * G7: how long to hold every send after a sync/ack with retryAfterMs (the bridge is over a bound on
 * what it holds and stored nothing of the batch): no earlier than the bridge asked, plus up to half
 * of it again at random so that the devices it refused at the same moment do not come back
 * together; at most MAX_RETRY_LATER_MS. `random` is in [0, 1).
 */
export function retryLaterDelayMs(retryAfterMs: number, random: number): number {
  const asked = Math.min(Math.max(0, retryAfterMs), MAX_RETRY_LATER_MS);
  return Math.min(MAX_RETRY_LATER_MS, Math.ceil(asked + (random * asked) / 2));
}

export type SendTrigger = 'now' | 'linger';

/** A full batch's worth of new readings goes out at once; fewer wait for the linger to gather more. */
export function triggerForNewReadings(unsentReadings: number, maxBatchRecords: number): SendTrigger {
  return unsentReadings >= maxBatchRecords ? 'now' : 'linger';
}

/** A batch sent this many times or more waits the longest ack timeout. */
const MAX_ACK_TIMEOUT_FACTOR = 16;

/**
 * How long the `send`-th sending of one batch (1 = the first) waits for its sync/ack: the base
 * timeout, doubled with every re-send up to 16 times it. While the bridge is down for long, the
 * broker queues every copy of a re-sent batch in the bridge's persistent session; backing off
 * bounds that growth (4 batches every 8 minutes instead of every 30 s per device).
 */
export function ackTimeoutForSend(baseTimeoutMs: number, send: number): number {
  const factor = Math.min(MAX_ACK_TIMEOUT_FACTOR, 2 ** Math.max(0, send - 1));
  return Math.min(2_147_483_647, baseTimeoutMs * factor);
}
