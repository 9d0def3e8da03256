/**
 * Poison-message isolation (pure decisions; G5: a bad message never blocks the messages
 * behind it).
 *
 * A failed database batch is retried after a backoff, its messages unacknowledged: right for an
 * outage, but a message whose content the database refuses would fail every retry and stall every
 * device behind it. Content can break a batch with almost any error, not only SQLSTATE class 22/23
 * (e.g. 08P01, a protocol violation, once came from a NUL byte in the SQL text), so the error's
 * class does not decide. The batch's own messages do: when a batch of more than one message fails
 * (unless the failure says the database is unreachable or out of resources), its messages are
 * written one at a time, and
 *   - a message that fails alone while at least one other message of the batch is stored is
 *     poison: it is answered with an error sync/ack and acknowledged;
 *   - when no single write succeeds, the problem is the database (down, a table missing, a
 *     constraint refusing everything), not the messages: nothing is rejected, everything is
 *     retried after a backoff. Rejecting is final on the device; retrying is always safe.
 * A single write that fails as an outage would (network, resource, serialization conflict) stops
 * the one-by-one writes: its message and the ones not yet written are retried, never rejected.
 */
import { classifyError } from '../../common/retry-policy.js';

/** Whether a failed batch is written again one message at a time to find what the database refuses. */
export function shouldIsolate(batchSize: number, error: unknown): boolean {
  const errorClass = classifyError(error);
  return batchSize > 1 && errorClass !== 'network' && errorClass !== 'resource';
}

/** A failure that says nothing about the message: the one-by-one writes stop, and it is retried. */
export function isTransientFailure(error: unknown): boolean {
  const errorClass = classifyError(error);
  return errorClass === 'network' || errorClass === 'resource' || errorClass === 'conflict';
}

export type SingleWriteOutcome = { ok: true } | { ok: false; error: unknown };

export interface IsolationVerdict {
  /** indexes of the messages to reject (error sync/ack) and acknowledge */
  poison: number[];
  /** indexes of the messages to keep unacknowledged and retry after a backoff */
  retry: number[];
}

/**
 * Judges the one-by-one writes of a batch of `messageCount` messages: `outcomes[i]` is message i's
 * write; messages from `outcomes.length` on were not written (the writes stopped at a transient
 * failure). Stored messages are in neither list.
 */
export function judgeSingleWrites(outcomes: readonly SingleWriteOutcome[], messageCount: number): IsolationVerdict {
  const someStored = outcomes.some((outcome) => outcome.ok);
  const verdict: IsolationVerdict = { poison: [], retry: [] };
  for (let index = 0; index < messageCount; index += 1) {
    const outcome = outcomes[index];
    if (outcome?.ok === true) continue;
    if (outcome !== undefined && someStored && !isTransientFailure(outcome.error)) verdict.poison.push(index);
    else verdict.retry.push(index);
  }
  return verdict;
}
