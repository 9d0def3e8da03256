/**
 * G6: the bridge's downstream side, wired: the services (CommandService, ConfigService) the REST
 * API calls, the ReportReceiver for the devices' reports on MQTT, and the periodic jobs (change
 * poller, expiry sweep, reconciler, gauges), all publishing through one RetainedPublisher.
 * bridge/service.ts starts it and routes the downstream MQTT topics to `accept`.
 */
import type { Logger } from '../../common/logger.js';
import type { DownstreamSettings } from '../config.js';
import type { Database } from '../db/connection.js';
import type { TransactionRetryOptions } from '../db/transaction-retry.js';
import type { BridgeMetrics } from '../metrics.js';
import type { Delivery } from '../mqtt/deferred-puback.js';
import { ChangePoller } from './change-poller.js';
import { CommandService } from './command-service.js';
import { ConfigService } from './config-service.js';
import { sweepExpiredCommands } from './expiry-sweep.js';
import { startPeriodic, type Periodic } from './periodic.js';
import { Reconciler, type ReconcileResult, type SnapshotSubscriber } from './reconciler.js';
import { ReportReceiver } from './report-receiver.js';
import { RetainedPublisher, type RetainedPublish } from './retained-publisher.js';
import { parseDeviceTopic } from '../../schemas/topics.js';
import { refreshDownstreamGauges } from './stats.js';

export { CommandService } from './command-service.js';
export { ConfigService } from './config-service.js';
export { DownstreamError } from './errors.js';
export type { CommandView, ConfigView } from './views.js';

export interface DownstreamOptions {
  db: Database;
  logger: Logger;
  metrics: BridgeMetrics;
  settings: DownstreamSettings;
  /** publishes a retained QoS 1 message ('' clears); resolves on the PUBACK */
  publish: RetainedPublish;
  /** the bridge's MQTT session, for the reconciler's snapshot subscriptions */
  subscriber: SnapshotSubscriber;
  retry?: TransactionRetryOptions;
  now?: () => number;
  /** how often the gauges are refreshed; default 15 s */
  gaugeIntervalMs?: number;
}

export interface Downstream {
  commands: CommandService;
  config: ConfigService;
  /** a delivery on a downstream topic (command result, config report, status, retained command/config) */
  accept(delivery: Delivery): void;
  /** reconciles the retained topics soon (after the broker lost the bridge's session) */
  reconcileSoon(): void;
  /** reconciles now (tests, operations); resolves when done */
  reconcile(): Promise<ReconcileResult>;
  /**
   * Starts the periodic jobs (change poll, expiry sweep, reconciliation, gauges): after the MQTT
   * session is up, so the first reconciliation's snapshot subscription goes out at once.
   * Idempotent; close() stops them.
   */
  startJobs(): void;
  /** one change poll now (tests) */
  pollChanges(): Promise<number>;
  /** one expiry sweep now (tests) */
  sweepExpired(): Promise<number>;
  /** Stops the jobs and the receiver (reports in progress finish or are released). Idempotent. */
  close(): Promise<void>;
}

/** Whether a topic belongs to the downstream side (everything under devices/ but telemetry and sync/ack). */
export function isDownstreamTopic(topic: string): boolean {
  const kind = parseDeviceTopic(topic)?.kind;
  return kind !== undefined && kind !== 'telemetry' && kind !== 'sync-ack';
}

export function startDownstream(options: DownstreamOptions): Downstream {
  const { db, logger, metrics, settings } = options;
  const now = options.now ?? Date.now;
  const retry = options.retry ?? {};
  const publisher = new RetainedPublisher({
    publish: options.publish,
    logger,
    now,
    onPublished: (topic, cleared) =>
      metrics.retainedPublished.inc({
        kind: parseDeviceTopic(topic)?.kind === 'command' ? 'command' : 'config',
        action: cleared ? 'clear' : 'publish',
      }),
  });
  const commands = new CommandService({ db, publisher, defaultTtlMs: settings.commandDefaultTtlMs, retry, now });
  const config = new ConfigService({ db, publisher, retry, now });
  const reconciler = new Reconciler({
    db,
    publisher,
    subscriber: options.subscriber,
    logger,
    publishRate: settings.reconcilePublishRate,
    now,
    onRepair: (kind, action) => metrics.reconcileRepairs.inc({ kind, action }),
  });
  const receiver = new ReportReceiver({
    db,
    commands,
    config,
    publisher,
    logger,
    metrics,
    retry,
    now,
    onRetainedSeen: (topic, payload) => reconciler.seen(topic, payload),
  });
  const poller = new ChangePoller({ db, publisher });
  const sweep = () => sweepExpiredCommands({ db, publisher, now, retry });

  // one reconciliation at a time, whoever asks
  let reconciling: Promise<ReconcileResult> | undefined;
  const reconcile = (): Promise<ReconcileResult> =>
    (reconciling ??= reconciler
      .run()
      .then(
        (result) => {
          metrics.reconciliations.inc({ outcome: 'ok' });
          return result;
        },
        (error: unknown) => {
          metrics.reconciliations.inc({ outcome: 'failed' });
          throw error;
        },
      )
      .finally(() => {
        reconciling = undefined;
      }));

  const jobs: Periodic[] = [];
  let reconcileJob: Periodic | undefined;
  let closed = false;
  const startJobs = (): void => {
    if (closed || jobs.length > 0) return;
    jobs.push(
      startPeriodic('downstream change poll', settings.pollMs, async () => void (await poller.poll()), logger),
      startPeriodic(
        'command expiry sweep',
        settings.expirySweepMs,
        async () => void metrics.commandsExpired.inc(await sweep()),
        logger,
      ),
      startPeriodic(
        'downstream gauges',
        options.gaugeIntervalMs ?? 15_000,
        () => refreshDownstreamGauges(db, metrics, now()),
        logger,
      ),
    );
    reconcileJob = startPeriodic(
      'retained topic reconciliation',
      settings.reconcileIntervalMs,
      async () => void (await reconcile()),
      logger,
    );
    jobs.push(reconcileJob);
  };

  let closing: Promise<void> | undefined;
  return {
    commands,
    config,
    accept: (delivery) => receiver.accept(delivery),
    reconcileSoon: () => reconcileJob?.trigger(),
    startJobs,
    reconcile,
    pollChanges: () => poller.poll(),
    sweepExpired: sweep,
    close: () =>
      (closing ??= (async () => {
        closed = true;
        // first: queued publishes are dropped (the reconciler of the next start publishes the
        // truth) and nobody waits any longer for a PUBACK a disconnected broker will not send
        publisher.close();
        reconciler.close();
        await Promise.all(jobs.map((job) => job.close()));
        await receiver.close();
        await reconciling?.catch(() => undefined);
      })()),
  };
}
