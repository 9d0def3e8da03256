/**
 * G6: the bridge's handling of what devices report on the downstream topics, delivered by the
 * bridge's MQTT session (bridge/mqtt/bridge-mqtt-client.ts):
 *
 *   devices/{id}/commands/{cid}/result   CommandService.report, then the current truth re-published
 *   devices/{id}/config/reported         ConfigService.report, then the desired message re-published
 *   devices/{id}/status                  presence.ts (later `at` wins)
 *   devices/{id}/commands/{cid}, devices/{id}/config/{key}   retained copies seen while the
 *                                        reconciler takes its snapshot (handed to onRetainedSeen)
 *
 * G3 pattern: a report is acknowledged (PUBACK, Delivery.ack from bridge/mqtt/deferred-puback.ts)
 * only after its transaction committed; a database failure retries with backoff and keeps the
 * message unacknowledged, and at close it is released (the broker redelivers it to the
 * persistent session). Reports run on their own small worker pool, never in the telemetry
 * batches, so a report waits for at most `concurrency` other reports, not for a batch of
 * thousands of readings.
 *
 * Bad input (a payload that fails its schema, a result for a command that does not exist or
 * belongs to another device, a config version ahead of the desired one, a report of an older
 * version) is acknowledged so it blocks nothing behind it, logged at most once per 10 s per reason
 * (common/rate-limited-log.ts) and counted in bridge_downstream_reports_rejected_total. A result
 * for an unknown command is answered with a clear of that command topic (docs/contract.md,
 * Confirmation).
 */
import type { Logger } from '../../common/logger.js';
import { rateLimitedLog, type RateLimitedLog } from '../../common/rate-limited-log.js';
import { backoffDelay, type BackoffPolicy } from '../../common/retry-policy.js';
import { COMMAND_STATUS_RANK } from '../../schemas/command-lifecycle.js';
import { MAX_COMMAND_RESULT_BYTES } from '../../schemas/limits.js';
import { isDeviceId, parseDeviceTopic, topics } from '../../schemas/topics.js';
import {
  checkCommandReportPayload,
  checkConfigReportedPayload,
  checkDeviceStatusPayload,
} from '../../schemas/validators.js';
import type { Database } from '../db/connection.js';
import type { TransactionRetryOptions } from '../db/transaction-retry.js';
import type { BridgeMetrics } from '../metrics.js';
import type { Delivery } from '../mqtt/deferred-puback.js';
import type { CommandService } from './command-service.js';
import type { ConfigService } from './config-service.js';
import { isDownstreamError } from './errors.js';
import { recordDeviceStatus } from './presence.js';
import type { RetainedPublisher } from './retained-publisher.js';

export type ReportKind = 'command-result' | 'config-reported' | 'status';

export interface ReportReceiverOptions {
  db: Database;
  commands: CommandService;
  config: ConfigService;
  publisher: RetainedPublisher;
  logger: Logger;
  metrics: BridgeMetrics;
  retry?: TransactionRetryOptions;
  now?: () => number;
  /** reports processed at once; default 8 */
  concurrency?: number;
  /** a retained command or config message the bridge received (the reconciler's snapshot) */
  onRetainedSeen?: (topic: string, payload: string) => void;
  /** backoff while the database fails; default 100 ms doubling to 5 s */
  failureBackoff?: BackoffPolicy;
}

interface Rejection {
  kind: ReportKind;
  deviceId: string;
  topic: string;
  reason: string;
}

const DEFAULT_BACKOFF: BackoffPolicy = { initialDelayMs: 100, maxDelayMs: 5000, multiplier: 2, jitter: 'equal' };

export class ReportReceiver {
  readonly #options: ReportReceiverOptions;
  readonly #concurrency: number;
  readonly #now: () => number;
  readonly #queue: Array<() => Promise<void>> = [];
  readonly #running = new Set<Promise<void>>();
  readonly #rejections: RateLimitedLog<Rejection>;
  readonly #failures: RateLimitedLog<{ kind: ReportKind; err: unknown }>;
  #closed = false;
  readonly #wakeups = new Set<() => void>();

  constructor(options: ReportReceiverOptions) {
    this.#options = options;
    this.#concurrency = options.concurrency ?? 8;
    this.#now = options.now ?? Date.now;
    this.#rejections = rateLimitedLog<Rejection>(options.logger, {
      intervalMs: 10_000,
      level: 'warn',
      message: (summary) =>
        summary.count === 1
          ? `refused a device report: ${summary.sample.reason}`
          : `refused ${summary.count} device reports in the last 10 s (${summary.key}); first: ${summary.sample.reason}`,
    });
    this.#failures = rateLimitedLog<{ kind: ReportKind; err: unknown }>(options.logger, {
      intervalMs: 10_000,
      level: 'warn',
      message: (summary) =>
        `cannot record ${summary.count} device report(s) (${summary.key}); retrying, unacknowledged`,
    });
  }

  /** Takes one delivery of a downstream topic; every other topic is acknowledged and ignored. */
  accept(delivery: Delivery): void {
    if (this.#closed) {
      delivery.release();
      return;
    }
    const parsed = parseDeviceTopic(delivery.topic);
    if (parsed === null || parsed.kind === 'telemetry' || parsed.kind === 'sync-ack') {
      delivery.ack();
      return;
    }
    if (parsed.kind === 'command' || parsed.kind === 'config') {
      this.#options.onRetainedSeen?.(delivery.topic, delivery.payload.toString('utf8'));
      delivery.ack();
      return;
    }
    const kind = parsed.kind;
    const deviceId = parsed.deviceId;
    if (!isDeviceId(deviceId)) {
      this.#reject(
        delivery,
        { kind, deviceId, topic: delivery.topic, reason: `'${deviceId}' is not a device id` },
        'invalid-device',
      );
      return;
    }
    let work: (() => Promise<void>) | null;
    if (kind === 'command-result') work = this.#commandResult(delivery, deviceId, parsed.subject ?? '');
    else if (kind === 'config-reported') work = this.#configReported(delivery, deviceId);
    else work = this.#status(delivery, deviceId);
    if (work === null) return;
    this.#queue.push(this.#persistently(delivery, kind, work));
    this.#pump();
  }

  /** Stops taking work; waits for reports in progress; unacknowledged ones are released. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const wake of this.#wakeups) wake();
    this.#pump(); // queued reports see #closed and release their deliveries
    while (this.#running.size > 0) await Promise.all([...this.#running]);
    this.#rejections.close();
    this.#failures.close();
  }

  #commandResult(delivery: Delivery, deviceId: string, commandId: string): (() => Promise<void>) | null {
    const topic = delivery.topic;
    if (delivery.payload.length > MAX_COMMAND_RESULT_BYTES) {
      const reason = `command result of ${delivery.payload.length} bytes is larger than ${MAX_COMMAND_RESULT_BYTES}`;
      this.#reject(delivery, { kind: 'command-result', deviceId, topic, reason }, 'too-large');
      return null;
    }
    const checked = checkCommandReportPayload(delivery.payload);
    if (!checked.ok) {
      this.#reject(
        delivery,
        { kind: 'command-result', deviceId, topic, reason: `invalid command result: ${checked.reason}` },
        'invalid-payload',
      );
      return null;
    }
    return async () => {
      try {
        const outcome = await this.#options.commands.report(deviceId, commandId, checked.value);
        this.#options.metrics.downstreamReports.inc({ kind: 'command-result', outcome: outcome.ignored ?? 'applied' });
        delivery.ack();
      } catch (error) {
        if (!isDownstreamError(error) || error.code !== 'not-found') throw error;
        // docs/contract.md, Confirmation: an unknown command is answered with the clear of its topic
        void this.#options.publisher.publish(topics.command(deviceId, commandId), '', [COMMAND_STATUS_RANK.executed]);
        this.#reject(delivery, { kind: 'command-result', deviceId, topic, reason: error.message }, 'unknown-command');
      }
    };
  }

  #configReported(delivery: Delivery, deviceId: string): (() => Promise<void>) | null {
    const topic = delivery.topic;
    const checked = checkConfigReportedPayload(delivery.payload);
    if (!checked.ok) {
      this.#reject(
        delivery,
        { kind: 'config-reported', deviceId, topic, reason: `invalid config report: ${checked.reason}` },
        'invalid-payload',
      );
      return null;
    }
    const report = checked.value;
    return async () => {
      try {
        const outcome = await this.#options.config.report(deviceId, report);
        if (outcome.ignored === 'older') {
          const reason = `config report of '${report.key}' version ${report.version} is older than the version already reported`;
          this.#reject(delivery, { kind: 'config-reported', deviceId, topic, reason }, 'older-version');
          return;
        }
        this.#options.metrics.downstreamReports.inc({ kind: 'config-reported', outcome: outcome.ignored ?? 'applied' });
        delivery.ack();
      } catch (error) {
        if (!isDownstreamError(error)) throw error;
        const reason = error.code === 'not-found' ? 'unknown-key' : 'version-ahead';
        this.#reject(delivery, { kind: 'config-reported', deviceId, topic, reason: error.message }, reason);
      }
    };
  }

  #status(delivery: Delivery, deviceId: string): (() => Promise<void>) | null {
    const topic = delivery.topic;
    if (delivery.payload.length === 0) {
      delivery.ack(); // a cleared retained status: nothing to record
      return null;
    }
    const checked = checkDeviceStatusPayload(delivery.payload, this.#now());
    if (!checked.ok) {
      this.#reject(
        delivery,
        { kind: 'status', deviceId, topic, reason: `invalid status: ${checked.reason}` },
        'invalid-payload',
      );
      return null;
    }
    return async () => {
      const outcome = await recordDeviceStatus(
        this.#options.db,
        deviceId,
        checked.value,
        this.#now(),
        this.#options.retry,
      );
      this.#options.metrics.downstreamReports.inc({ kind: 'status', outcome: outcome.applied ? 'applied' : 'late' });
      delivery.ack();
    };
  }

  #reject(delivery: Delivery, rejection: Rejection, reason: string): void {
    this.#options.metrics.downstreamReportsRejected.inc({ kind: rejection.kind, reason });
    this.#rejections.note(`${rejection.kind}/${reason}`, rejection);
    delivery.ack();
  }

  /** Runs `work` until it succeeds (infrastructure failures retry with backoff) or the receiver closes. */
  #persistently(delivery: Delivery, kind: ReportKind, work: () => Promise<void>): () => Promise<void> {
    return async () => {
      for (let attempt = 1; !this.#closed && !delivery.isStale(); attempt += 1) {
        try {
          await work();
          return;
        } catch (error) {
          this.#failures.note(kind, { kind, err: error });
          await this.#sleep(backoffDelay(this.#options.failureBackoff ?? DEFAULT_BACKOFF, attempt));
        }
      }
      delivery.release();
    };
  }

  #pump(): void {
    while (this.#running.size < this.#concurrency && this.#queue.length > 0) {
      const job = this.#queue.shift();
      if (job === undefined) break;
      const running: Promise<void> = job()
        .catch((error: unknown) => this.#options.logger.error({ err: error }, 'device report handling failed'))
        .finally(() => {
          this.#running.delete(running);
          this.#pump();
        });
      this.#running.add(running);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakeups.add(wake);
    });
  }
}
