/**
 * Telemetry ingest: MQTT messages in, database batches out, confirmations back.
 *
 *   accept(message) -> over a bound on what the bridge holds (per device or in all)? answer
 *   "retry later" -> parse + validate (bad envelope: error ack at once; bad records: rejected
 *   one by one) -> per-device queues (fair-scheduler.ts) -> database batches, round-robin over the
 *   devices, up to `writers` at a time, a device in at most one of them -> after COMMIT: publish
 *   devices/{id}/sync/ack (QoS 1) for every message of the batch, wait for the broker's PUBACK of
 *   that publish, and only then message.ack() (the deferred PUBACK to the broker).
 *
 * G7: fairness and bounded memory. The bridge reads one MQTT connection that the broker pushes
 * every device's messages into, so it never stops reading (that would hold everyone behind a
 * flooding device, in the broker); it refuses to *hold* more instead. A message over a bound is
 * answered with a sync/ack {batchId, accepted: 0, rejected: [], conflicts: 0, retryAfterMs} and
 * then acknowledged to the broker without being stored: the device keeps its readings pending
 * (G2: only an ack without retryAfterMs confirms anything) and sends the batch again after
 * retryAfterMs, so nothing accepted is lost (G1–G3 hold: the PUBACK still follows the sync/ack
 * that settles the message). A refused message costs the bridge a look at its first bytes for the
 * batch id (a full parse only when that fails), never its records.
 *
 * A message larger than INLINE_PARSE_BYTES is parsed off the event loop (`parseLarge`: the bridge's
 * worker threads, parse-pool.ts; by default in slices, telemetry-message.ts), so other devices'
 * transactions go on meanwhile; it is held (reserve()) from the moment it is admitted, and a
 * device's messages still reach its queue in the order they arrived.
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
import { backoffDelay, classifyError, type BackoffPolicy } from '../../common/retry-policy.js';
import { MAX_SYNC_ACK_REJECTIONS } from '../../schemas/limits.js';
import type { SyncAck } from '../../schemas/messages.js';
import type { BridgeMetrics } from '../metrics.js';
import type { Delivery } from '../mqtt/deferred-puback.js';
import { parseDeviceTopic } from '../../schemas/topics.js';
import { DEFAULT_BATCH_LIMITS, type BatchLimits } from './batch-accumulator.js';
import { DEFAULT_HOLD_LIMITS, FairScheduler, type HoldLimits, type RefusalReason } from './fair-scheduler.js';
import type { MessageOutcome } from './conflict-resolution.js';
import { isTransientFailure, judgeSingleWrites, shouldIsolate, type SingleWriteOutcome } from './poison-isolation.js';
import {
  parseTelemetryMessage,
  parseTelemetryMessageInSlices,
  type ParsedTelemetryMessage,
} from './telemetry-message.js';
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
  /** G7: what the bridge holds at most, per device and in all; default DEFAULT_HOLD_LIMITS */
  holdLimits?: HoldLimits;
  /** G7: database batches written at once, a device in at most one of them; default 2 */
  writers?: number;
  /** G7: the retryAfterMs of a "retry later" ack; default 1000 */
  retryAfterMs?: number;
  /** wait after a failed batch; default 100 ms doubling to 5 s */
  failureBackoff?: BackoffPolicy;
  /**
   * G7: reads a message over INLINE_PARSE_BYTES; default parseTelemetryMessageInSlices (on the
   * event loop, in slices). The bridge passes its worker threads' parse (parse-pool.ts).
   */
  parseLarge?: (topic: string, payload: Buffer) => Promise<ParsedTelemetryMessage>;
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

export const DEFAULT_WRITERS = 2;
/** G7: messages up to this size are parsed at once (a few ms at most); larger ones off the event loop (`parseLarge`) */
export const INLINE_PARSE_BYTES = 64 * 1024;
export const DEFAULT_RETRY_AFTER_MS = 1000;

/** The batch id of an edge-built telemetry payload, from its first bytes (no parse of the records). */
const LEADING_BATCH_ID = /^\s*\{\s*"batchId"\s*:\s*"([0-9A-Fa-f-]{36})"/;

export class IngestPipeline {
  private readonly scheduler: FairScheduler<QueuedMessage>;
  private readonly now: () => number;
  private readonly confirmations = new Set<Promise<void>>();
  private readonly writers: number;
  private readonly writing = new Set<Promise<void>>();
  /** timers that keep the devices of a batch that lost a serialization conflict out of the next batches */
  private readonly deviceHolds = new Set<NodeJS.Timeout>();
  private lingerTimer: NodeJS.Timeout | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  private consecutiveFailures = 0;
  private stopped = false;
  private closing: Promise<void> | undefined;
  /** per device: the last of its messages being parsed off the event loop (later ones wait for it) */
  private readonly parsing = new Map<string, Promise<void>>();

  constructor(private readonly options: IngestPipelineOptions) {
    this.scheduler = new FairScheduler(
      options.limits ?? DEFAULT_BATCH_LIMITS,
      options.holdLimits ?? DEFAULT_HOLD_LIMITS,
      (message) => ({
        device: message.batch.deviceId,
        records: message.batch.records.length,
        bytes: message.inbound.payload.length,
      }),
    );
    this.writers = Math.max(1, options.writers ?? DEFAULT_WRITERS);
    this.now = options.now ?? Date.now;
  }

  /** messages held (queued or being written) and their payload bytes */
  get held(): { messages: number; bytes: number; queued: number } {
    return {
      messages: this.scheduler.heldMessages,
      bytes: this.scheduler.heldBytes,
      queued: this.scheduler.queuedMessages,
    };
  }

  accept(inbound: InboundMessage): void {
    if (this.stopped) {
      inbound.release();
      return;
    }
    const topic = parseDeviceTopic(inbound.topic);
    if (topic !== null && topic.kind === 'telemetry') {
      // G7: over a bound on what the bridge holds: not held, answered "retry later"
      const admission = this.scheduler.admit(topic.deviceId, inbound.payload.length);
      if (!admission.ok) {
        this.refuse(inbound, topic.deviceId, admission.reason);
        return;
      }
    }
    if (topic !== null && topic.kind === 'telemetry') {
      const previous = this.parsing.get(topic.deviceId);
      if (previous !== undefined || inbound.payload.length > INLINE_PARSE_BYTES) {
        this.parseLater(inbound, topic.deviceId, previous);
        return;
      }
    }
    this.handleParsed(inbound, parseTelemetryMessage(inbound.topic, inbound.payload), null);
  }

  /**
   * G7: parses a large message (or one behind it) off the event loop (`parseLarge`), held from now
   * on, in its device's order.
   */
  private parseLater(inbound: InboundMessage, deviceId: string, previous: Promise<void> | undefined): void {
    this.scheduler.reserve(deviceId, inbound.payload.length);
    this.updateHeldMetrics();
    const lastOfDevice = () => {
      if (this.parsing.get(deviceId) === parsed) this.parsing.delete(deviceId);
    };
    const parsed: Promise<void> = (previous ?? Promise.resolve())
      .then(() => (this.options.parseLarge ?? parseTelemetryMessageInSlices)(inbound.topic, inbound.payload))
      .then(
        (message) => {
          lastOfDevice();
          this.handleParsed(inbound, message, deviceId);
        },
        (error: unknown) => {
          // not expected (the parse returns every failure as a value): let the broker deliver it again
          lastOfDevice();
          this.options.logger.error({ err: error, deviceId }, 'telemetry message could not be parsed');
          this.scheduler.unreserve(deviceId, inbound.payload.length);
          this.updateHeldMetrics();
          inbound.release();
        },
      );
    this.parsing.set(deviceId, parsed);
  }

  /**
   * `reservedFor`: the device the message is already held for (parseLater); null: it is held
   * only when queued.
   */
  private handleParsed(inbound: InboundMessage, parsed: ParsedTelemetryMessage, reservedFor: string | null): void {
    if (reservedFor !== null && (this.stopped || parsed.kind !== 'batch')) {
      this.scheduler.unreserve(reservedFor, inbound.payload.length);
      this.updateHeldMetrics();
    }
    if (this.stopped) {
      inbound.release();
      return;
    }
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
        this.scheduler.add({ inbound, batch: parsed }, this.now(), reservedFor !== null);
        this.updateHeldMetrics();
        this.schedule();
    }
  }

  // G7: a message over a bound is acknowledged without being stored, after a "retry later" sync/ack
  private refuse(inbound: InboundMessage, deviceId: string, reason: RefusalReason): void {
    const leading = LEADING_BATCH_ID.exec(inbound.payload.subarray(0, 128).toString('latin1'));
    let batchId = leading?.[1];
    if (batchId === undefined) {
      const parsed = parseTelemetryMessage(inbound.topic, inbound.payload);
      if (parsed.kind !== 'batch') {
        // unreadable: answered like any unreadable message (it would never be stored anyway)
        this.options.logger.warn({ deviceId, topic: inbound.topic }, 'telemetry batch rejected');
        inbound.committed();
        if (parsed.kind === 'unreadable') this.confirm(inbound, parsed.deviceId, parsed.ack);
        else inbound.ack();
        return;
      }
      batchId = parsed.batchId;
    }
    this.options.metrics.messagesRefused.inc({ reason });
    inbound.committed();
    this.confirm(inbound, deviceId, {
      batchId,
      accepted: 0,
      rejected: [],
      conflicts: 0,
      retryAfterMs: this.options.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS,
    });
  }

  private updateHeldMetrics(): void {
    const { metrics } = this.options;
    metrics.messagesHeld.set(this.scheduler.heldMessages);
    metrics.messageBytesHeld.set(this.scheduler.heldBytes);
    metrics.queueDepth.set(this.scheduler.queuedMessages);
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
    // messages being parsed are released (not acknowledged) as their parse ends
    await Promise.allSettled([...this.parsing.values()]);
    while (this.writing.size > 0) await Promise.allSettled([...this.writing]);
    clearTimeout(this.lingerTimer);
    clearTimeout(this.backoffTimer);
    for (const timer of this.deviceHolds) clearTimeout(timer);
    this.deviceHolds.clear();
    this.scheduler.releaseAll();
    for (let batch = this.scheduler.take(); batch.length > 0; batch = this.scheduler.take()) {
      for (const message of batch) {
        message.inbound.release();
        this.scheduler.settle(message);
      }
      this.scheduler.done(batch);
    }
    this.updateHeldMetrics();
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.confirmations]),
      new Promise((resolve) => (timeout = setTimeout(resolve, this.options.drainTimeoutMs ?? 5000))),
    ]);
    clearTimeout(timeout);
  }

  private schedule(): void {
    while (!this.stopped && this.writing.size < this.writers && this.backoffTimer === undefined) {
      const wait = this.scheduler.msUntilDue(this.now());
      if (wait === null) return;
      if (wait > 0) {
        this.lingerTimer ??= setTimeout(() => {
          this.lingerTimer = undefined;
          this.schedule();
        }, wait);
        return;
      }
      clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      // G7: round-robin over the devices, each in at most one batch being written
      const batch = this.scheduler.take();
      if (batch.length === 0) return;
      const writing: Promise<void> = this.flush(batch)
        .catch((error: unknown) => {
          this.options.logger.error({ err: error }, 'telemetry pipeline error');
          return 0;
        })
        .then((holdMs) => {
          this.writing.delete(writing);
          this.releaseDevices(batch, holdMs);
          this.updateHeldMetrics();
          this.schedule();
        });
      this.writing.add(writing);
    }
  }

  /**
   * The batch's devices may be batched again, after `holdMs` (a batch that lost a serialization
   * conflict waits alone: the other devices' batches go on, G7).
   */
  private releaseDevices(batch: QueuedMessage[], holdMs: number): void {
    if (holdMs <= 0 || this.stopped) {
      this.scheduler.done(batch);
      return;
    }
    const timer = setTimeout(() => {
      this.deviceHolds.delete(timer);
      this.scheduler.done(batch);
      this.schedule();
    }, holdMs);
    this.deviceHolds.add(timer);
  }

  /** Writes a batch; resolves with how long its devices must wait before their next batch (0: at once). */
  private async flush(batch: QueuedMessage[]): Promise<number> {
    const failure = await this.writeAndConfirm(batch);
    if (failure === null) {
      this.consecutiveFailures = 0;
      return 0;
    }
    if (!shouldIsolate(batch.length, failure) || classifyError(failure) === 'conflict') {
      return this.backOff(batch, failure);
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
      return 0;
    }
    const retried = verdict.retry.map((index) => ({
      message: batch[index] as QueuedMessage,
      error: failureOf(outcomes[index]),
    }));
    return this.backOff(
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
    for (const message of batch) {
      message.inbound.committed();
      this.scheduler.settle(message);
    }
    batch.forEach((message, index) => {
      const outcome = result.outcomes[index] as MessageOutcome;
      metrics.recordsIngested.inc(outcome.accepted);
      metrics.recordsRejected.inc(outcome.rejected.length);
      metrics.conflicts.inc(outcome.conflicts);
      const { accepted, rejected, conflicts } = outcome;
      // item 10: the ack lists at most MAX_SYNC_ACK_REJECTIONS (sync-ack-payload.ts) and counts the rest
      this.confirm(message.inbound, message.batch.deviceId, {
        batchId: message.batch.batchId,
        accepted,
        rejected: rejected.slice(0, MAX_SYNC_ACK_REJECTIONS),
        ...(rejected.length > MAX_SYNC_ACK_REJECTIONS ? { rejectedCount: rejected.length } : {}),
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
    // only the settling functions are kept while the ack is published, not the payload
    const { ack: sendPuback, release } = inbound;
    const confirmation = this.options
      .publishAck(deviceId, ack)
      .then(
        // G3: the broker's PUBACK only after the commit and after the sync/ack was PUBACKed
        () => sendPuback(),
        (error: unknown) => {
          this.options.logger.warn(
            { err: error, deviceId, batchId: ack.batchId },
            'sync/ack not published; the broker will redeliver the message',
          );
          release();
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
    this.scheduler.settle(message);
    this.confirm(message.inbound, batch.deviceId, {
      batchId: batch.batchId,
      accepted: 0,
      rejected: rejected.slice(0, MAX_SYNC_ACK_REJECTIONS),
      ...(rejected.length > MAX_SYNC_ACK_REJECTIONS ? { rejectedCount: rejected.length } : {}),
      conflicts: 0,
      error: reason,
    });
  }

  /**
   * Keeps the messages unacknowledged, queued first, and waits before the next attempt. After a
   * serialization conflict that outlasted the transaction's own retries only the batch's devices
   * wait (returned as their hold): the database is up and the other devices' batches commit, so
   * one device's large batches losing conflicts must not stop everyone (G7). Any other failure
   * (the database down, a table missing) stops every writer for the backoff.
   */
  private backOff(batch: QueuedMessage[], error: unknown): number {
    this.consecutiveFailures += 1;
    const delayMs = backoffDelay(this.options.failureBackoff ?? DEFAULT_FAILURE_BACKOFF, this.consecutiveFailures);
    const live = batch.filter((message) => {
      if (!message.inbound.isStale()) return true;
      message.inbound.release(); // its connection is gone; the broker redelivers it on the new one
      this.scheduler.settle(message);
      return false;
    });
    this.scheduler.requeue(live, this.now());
    this.options.logger.error(
      { err: error, messages: live.length, consecutiveFailures: this.consecutiveFailures, retryInMs: delayMs },
      'telemetry batch failed; its messages stay unacknowledged and are retried',
    );
    if (classifyError(error) === 'conflict') return delayMs;
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined;
      this.schedule();
    }, delayMs);
    return 0;
  }
}

function failureOf(outcome: SingleWriteOutcome | undefined): unknown {
  return outcome?.ok === false ? outcome.error : undefined;
}
