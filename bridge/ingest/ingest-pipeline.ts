/**
 * Telemetry ingest: MQTT messages in, database batches out, confirmations back.
 *
 *   accept(message) -> parse + validate (bad envelope: error ack at once; bad records: rejected
 *   one by one) -> accumulator -> one database batch at a time -> after COMMIT: publish
 *   devices/{id}/sync/ack (QoS 1) for every message of the batch, wait for the broker's PUBACK of
 *   that publish, and only then message.ack() (the deferred PUBACK to the broker).
 *
 * A failed batch (not retryable, or serialization retries exhausted) is not acknowledged: its
 * messages go back to the front of the queue and the pipeline waits with exponential backoff
 * before trying again, so a database outage neither loses messages nor spins. A failed batch of
 * several messages is first written again one message at a time (poison-isolation.ts): a message
 * the database refuses while its neighbours are stored is answered with an error ack instead of
 * blocking every message behind it; when every single write fails, the database is the problem
 * (down, a table missing, …) and nothing is rejected.
 */
import type { Logger } from '../../common/logger.js';
import { backoffDelay, type BackoffPolicy } from '../../common/retry-policy.js';
import type { SyncAck } from '../../schemas/messages.js';
import type { BridgeMetrics } from '../metrics.js';
import type { Delivery } from '../mqtt/deferred-puback.js';
import { BatchAccumulator, DEFAULT_BATCH_LIMITS, type BatchLimits } from './batch-accumulator.js';
import type { MessageOutcome } from './conflict-resolution.js';
import { isTransientFailure, judgeSingleWrites, shouldIsolate, type SingleWriteOutcome } from './poison-isolation.js';
import { parseTelemetryMessage } from './telemetry-message.js';
import type { TelemetryWriteMessage, TelemetryWriteResult } from './telemetry-writer.js';

/**
 * A telemetry message as the MQTT layer hands it over, with its deferred PUBACK. A message from
 * the REST API's HTTP fallback (bridge/api/http-ingest.ts) also has `respond`: its ack is the HTTP
 * response instead of a sync/ack publish (that device keeps no MQTT session).
 */
export type InboundMessage = Delivery & { respond?(ack: SyncAck): void };

export interface IngestPipelineOptions {
  write(messages: TelemetryWriteMessage[]): Promise<TelemetryWriteResult>;
  publishAck(deviceId: string, ack: SyncAck): Promise<void>;
  logger: Logger;
  metrics: BridgeMetrics;
  limits?: BatchLimits;
  /** wait after a failed batch; default 100 ms doubling to 5 s */
  failureBackoff?: BackoffPolicy;
  /** close() waits at most this long for sync/ack publishes in progress; default 5 s */
  drainTimeoutMs?: number;
  now?: () => number;
}

interface QueuedMessage {
  inbound: InboundMessage;
  batch: TelemetryWriteMessage & { batchId: string };
}

export const DEFAULT_FAILURE_BACKOFF: BackoffPolicy = {
  initialDelayMs: 100,
  maxDelayMs: 5000,
  multiplier: 2,
  jitter: 'equal',
};

export class IngestPipeline {
  private readonly accumulator: BatchAccumulator<QueuedMessage>;
  private readonly now: () => number;
  private readonly confirmations = new Set<Promise<void>>();
  private writing: Promise<void> | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  private consecutiveFailures = 0;
  private stopped = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: IngestPipelineOptions) {
    this.accumulator = new BatchAccumulator(options.limits ?? DEFAULT_BATCH_LIMITS, (message) => ({
      records: message.batch.records.length,
      bytes: message.inbound.payload.length,
    }));
    this.now = options.now ?? Date.now;
  }

  accept(inbound: InboundMessage): void {
    if (this.stopped) {
      inbound.release();
      return;
    }
    const parsed = parseTelemetryMessage(inbound.topic, inbound.payload);
    switch (parsed.kind) {
      case 'not-telemetry':
        this.options.logger.warn({ topic: inbound.topic }, `ignored: ${parsed.reason}`);
        inbound.ack();
        return;
      case 'unreadable':
        // G5: an unreadable message gets an error ack and is acknowledged, so it blocks nobody
        this.options.logger.warn({ deviceId: parsed.deviceId, error: parsed.ack.error }, 'telemetry batch rejected');
        this.options.metrics.recordsRejected.inc(parsed.ack.rejected.length);
        inbound.committed();
        this.confirm(inbound, parsed.deviceId, parsed.ack);
        return;
      case 'batch':
        this.accumulator.add({ inbound, batch: parsed }, this.now());
        this.schedule();
    }
  }

  /**
   * Stops taking messages, lets the batch being written finish, waits (bounded) for the sync/ack
   * publishes in progress, and releases what is still queued: unacknowledged, the broker
   * delivers those again. Idempotent: a second call returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.drainAndClose();
    return this.closing;
  }

  private async drainAndClose(): Promise<void> {
    this.stopped = true;
    await this.writing;
    clearTimeout(this.lingerTimer);
    clearTimeout(this.backoffTimer);
    for (let batch = this.accumulator.take(); batch.length > 0; batch = this.accumulator.take()) {
      for (const message of batch) message.inbound.release();
    }
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.confirmations]),
      new Promise((resolve) => (timeout = setTimeout(resolve, this.options.drainTimeoutMs ?? 5000))),
    ]);
    clearTimeout(timeout);
  }

  private schedule(): void {
    if (this.stopped || this.writing !== undefined || this.backoffTimer !== undefined) return;
    const wait = this.accumulator.msUntilDue(this.now());
    if (wait === null) return;
    if (wait === 0) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      this.writing = this.flush()
        .catch((error: unknown) => this.options.logger.error({ err: error }, 'telemetry pipeline error'))
        .finally(() => {
          this.writing = undefined;
          this.schedule();
        });
      return;
    }
    this.lingerTimer ??= setTimeout(() => {
      this.lingerTimer = undefined;
      this.schedule();
    }, wait);
  }

  private async flush(): Promise<void> {
    const batch = this.accumulator.take();
    const failure = await this.writeAndConfirm(batch);
    if (failure === null) {
      this.consecutiveFailures = 0;
      return;
    }
    if (!shouldIsolate(batch.length, failure)) {
      this.backOff(batch, failure);
      return;
    }
    // Find what the database refuses: write the messages one at a time (each confirmed on commit).
    const outcomes: SingleWriteOutcome[] = [];
    for (const message of batch) {
      const error = await this.writeAndConfirm([message]);
      outcomes.push(error === null ? { ok: true } : { ok: false, error });
      if (error !== null && isTransientFailure(error)) break;
    }
    const verdict = judgeSingleWrites(outcomes, batch.length);
    for (const index of verdict.poison) this.rejectPoison(batch[index] as QueuedMessage, failureOf(outcomes[index]));
    if (verdict.retry.length === 0) {
      this.consecutiveFailures = 0;
      return;
    }
    const retried = verdict.retry.map((index) => ({
      message: batch[index] as QueuedMessage,
      error: failureOf(outcomes[index]),
    }));
    this.backOff(
      retried.map(({ message }) => message),
      retried.find(({ error }) => error !== undefined)?.error ?? failure,
    );
  }

  /** Writes one batch and starts its confirmations; returns the error instead of throwing. */
  private async writeAndConfirm(batch: QueuedMessage[]): Promise<unknown> {
    const { metrics } = this.options;
    const endTimer = metrics.batchCommitSeconds.startTimer();
    let result: TelemetryWriteResult;
    try {
      result = await this.options.write(batch.map((message) => message.batch));
    } catch (error) {
      metrics.batchesFailed.inc();
      return error;
    }
    const seconds = endTimer();
    this.options.logger.debug(
      { messages: batch.length, upserted: result.upserted, conflicts: result.conflictsLogged, seconds },
      'telemetry batch committed',
    );
    // G2: the batch is committed; only now is each message's sync/ack published (confirm)
    for (const message of batch) message.inbound.committed();
    batch.forEach((message, index) => {
      const outcome = result.outcomes[index] as MessageOutcome;
      metrics.recordsIngested.inc(outcome.accepted);
      metrics.recordsRejected.inc(outcome.rejected.length);
      metrics.conflicts.inc(outcome.conflicts);
      const { accepted, rejected, conflicts } = outcome;
      this.confirm(message.inbound, message.batch.deviceId, {
        batchId: message.batch.batchId,
        accepted,
        rejected,
        conflicts,
      });
    });
    return null;
  }

  /** Publishes the sync/ack, then acknowledges the message to the broker. */
  private confirm(inbound: InboundMessage, deviceId: string, ack: SyncAck): void {
    if (inbound.respond !== undefined) {
      inbound.respond(ack); // G2 holds as for MQTT: confirm runs only after the commit
      inbound.ack();
      return;
    }
    const confirmation = this.options
      .publishAck(deviceId, ack)
      .then(
        // G3: the broker's PUBACK only after the commit and after the sync/ack was PUBACKed
        () => inbound.ack(),
        (error: unknown) => {
          this.options.logger.warn(
            { err: error, deviceId, batchId: ack.batchId },
            'sync/ack not published; the broker will redeliver the message',
          );
          inbound.release();
        },
      )
      .finally(() => this.confirmations.delete(confirmation));
    this.confirmations.add(confirmation);
  }

  // G5: a message the database refuses alone is rejected and acknowledged (poison-isolation.ts)
  /** Answers a message the database refused while its batch neighbours were stored, and acknowledges it. */
  private rejectPoison(message: QueuedMessage, error: unknown): void {
    const reason = `the database rejected the message: ${(error as Error | null)?.message ?? String(error)}`;
    const { batch } = message;
    const rejected = [...batch.invalid, ...batch.records.map((record) => ({ id: record.id, reason }))];
    this.options.logger.error(
      { err: error, deviceId: batch.deviceId, batchId: batch.batchId },
      'telemetry message refused by the database while the rest of its batch was stored; rejected',
    );
    this.options.metrics.recordsRejected.inc(rejected.length);
    message.inbound.committed();
    this.confirm(message.inbound, batch.deviceId, {
      batchId: batch.batchId,
      accepted: 0,
      rejected,
      conflicts: 0,
      error: reason,
    });
  }

  /** Keeps the messages unacknowledged, queued first, and waits before the next attempt. */
  private backOff(batch: QueuedMessage[], error: unknown): void {
    this.consecutiveFailures += 1;
    const delayMs = backoffDelay(this.options.failureBackoff ?? DEFAULT_FAILURE_BACKOFF, this.consecutiveFailures);
    const live = batch.filter((message) => {
      if (!message.inbound.isStale()) return true;
      message.inbound.release(); // its connection is gone; the broker redelivers it on the new one
      return false;
    });
    this.accumulator.requeue(live, this.now());
    this.options.logger.error(
      { err: error, messages: live.length, consecutiveFailures: this.consecutiveFailures, retryInMs: delayMs },
      'telemetry batch failed; its messages stay unacknowledged and are retried',
    );
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined;
      this.schedule();
    }, delayMs);
  }
}

function failureOf(outcome: SingleWriteOutcome | undefined): unknown {
  return outcome?.ok === false ? outcome.error : undefined;
}
