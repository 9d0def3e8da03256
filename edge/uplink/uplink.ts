/**
 * The uplink: one mqtt.js client per device to the cluster broker, sending pending readings as
 * telemetry batches and confirming them only on the bridge's sync/ack.
 *
 *   - clientId = device id, clean:false, QoS 1 everywhere, a retained will saying online:false and
 *     a retained online:true after each connect;
 *   - reconnects are scheduled here with full-jitter exponential backoff (./reconnect-scheduler.ts;
 *     mqtt's own reconnect is off); each failed attempt is logged once, when its connection closes,
 *     with its first error and the delay before the next attempt (mqtt.js 5.16 emits 'error' twice
 *     for one failed TLS connect: once from its TLS stream builder and once from the stream);
 *   - a batch is claimed (pending -> syncing) and published only while connected and while fewer
 *     than maxInFlightBatches wait for their ack;
 *   - a broker PUBACK proves nothing (Aedes acknowledges before routing): only a sync/ack naming
 *     the batch marks its readings synced (or failed where the bridge rejected them);
 *   - no ack within ackTimeoutMs: the batch goes back to pending with its batch id, and the next
 *     claim sends it again first and under that id, so that an ack for any copy of it, however
 *     late, confirms it (with a new id per re-send, an ack slower than the timeout would never match).
 *     A disconnect does not release batches early: the session is persistent, the ack may still come.
 *   - G6 hook: with `downstream`, its filters (devices/{id}/commands/+ and devices/{id}/config/+)
 *     are subscribed on every connect, one filter per SUBSCRIBE (aedes-persistence-redis 11.2.2
 *     never SUBACKs a multi-filter SUBSCRIBE on a clean:false session in cluster mode), and their
 *     messages are handed to it off the telemetry path: the PUBACK waits only for its decision to
 *     be stored (edge/downstream/downstream.ts), never for a batch or a drain. sendNow (sync-now),
 *     setSyncIntervalMs and setBatchMaxRecords (live agent settings) are its levers.
 */
import mqtt, { Store, type IPublishPacket, type MqttClient } from 'mqtt';
import { newId } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import { classifyError, type ErrorClass, type ReconnectPolicy } from '../../common/retry-policy.js';
import type { TelemetryBatch, TelemetryRecord } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import { checkSyncAck, parseJson } from '../../schemas/validators.js';
import type { EdgeMetrics } from '../metrics.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
import { DEFAULT_BATCH_LIMITS, type BatchLimits } from '../store/batch-planner.js';
import { InFlightBatches, type InFlightBatch } from './in-flight-batches.js';
import {
  ackTimeoutForSend,
  DEFAULT_MAX_IN_FLIGHT_BATCHES,
  mayClaimBatch,
  retryLaterDelayMs,
  triggerForNewReadings,
} from './in-flight-policy.js';
import type { TlsFiles } from '../../common/tls-files.js';
import { buildUplinkClientOptions, statusPayload, uplinkSecureContext } from './mqtt-options.js';
import { DEFAULT_RECONNECT_POLICY, ReconnectScheduler } from './reconnect-scheduler.js';

/** G6: the downstream side (edge/downstream/downstream.ts), seen from the uplink. */
export interface UplinkDownstreamHook {
  filters(): string[];
  onConnect(): void;
  /** the broker acknowledged the SUBSCRIBE of `filter` on the current connection */
  onSubscribed?(filter: string): void;
  /** resolves once the message's decision is stored; the PUBACK goes after it */
  handleMessage(topic: string, payload: Buffer): Promise<void>;
}

export interface UplinkOptions {
  deviceId: string;
  /** mqtts://host:port (mqtt:// for tests without TLS) */
  brokerUrl: string;
  tls?: TlsFiles | undefined;
  store: TelemetryStore;
  logger: Logger;
  metrics?: EdgeMetrics | undefined;
  /** default 30 000 */
  ackTimeoutMs?: number | undefined;
  /** default 4 */
  maxInFlightBatches?: number | undefined;
  /** periodic send attempt; default 30 000 */
  syncIntervalMs?: number | undefined;
  /** wait after new readings before sending, to gather more; default 20 */
  sendLingerMs?: number | undefined;
  /** default DEFAULT_RECONNECT_POLICY: full jitter over 5 s doubling to 15 s; 30–60 s after an auth failure */
  reconnectPolicy?: ReconnectPolicy | undefined;
  /** the jitter's randomness, [0, 1); default Math.random */
  reconnectRandom?: (() => number) | undefined;
  batchLimits?: BatchLimits | undefined;
  /** default 10 000 */
  connectTimeoutMs?: number | undefined;
  /** default 30 */
  keepaliveSeconds?: number | undefined;
  /** G8: pending readings dropped so far (EDGE_OVERFLOW_POLICY=drop-oldest), sent with each batch when not 0 */
  droppedCount?: (() => number) | undefined;
  /** G8: while true (storage short), acknowledged readings are deleted instead of kept as synced */
  storageShort?: (() => boolean) | undefined;
  /** G6: commands and config (subscriptions and their messages) */
  downstream?: UplinkDownstreamHook | undefined;
}

/** How long a graceful stop waits for the broker to take the offline status and the DISCONNECT. */
const STOP_TIMEOUT_MS = 2000;

/** Batches whose re-sends are counted (for the ack timeout backoff) at most. */
const MAX_TRACKED_RESENDS = 10_000;

/** How stale the pendingCount reported with a batch may be (at least; see PENDING_COUNT_COST_FACTOR). */
const PENDING_COUNT_MAX_AGE_MS = 2_000;

/**
 * A recount is repeated no sooner than this many times its own duration, so counting takes at
 * most 1% of the store's time: a count of 3 million pending readings takes ~150 ms on the store
 * worker, during which the sensors' commits wait. In between, the count is estimated from the
 * readings committed and claimed since.
 */
const PENDING_COUNT_COST_FACTOR = 100;

export class Uplink {
  readonly #options: UplinkOptions;
  readonly #log: Logger;
  readonly #ackTimeoutMs: number;
  readonly #maxInFlight: number;
  readonly #lingerMs: number;
  #limits: BatchLimits;
  readonly #telemetryTopic: string;
  readonly #ackTopic: string;
  readonly #statusTopic: string;
  readonly #incomingStore = new Store();
  readonly #outgoingStore = new Store();
  readonly #inFlight: InFlightBatches;
  readonly #reconnects: ReconnectScheduler;
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #client: MqttClient;
  #interval: NodeJS.Timeout;
  /** readings claimed into batches so far (sendNow reports the difference) */
  #recordsSent = 0;
  #currentPump: Promise<void> = Promise.resolve();
  #connected = false;
  /**
   * When the current connection was attempted: the `at` of both its will (online:false) and its
   * online:true, so that consumers can order statuses (see schemas/messages.ts DeviceStatus).
   */
  #connectionAttemptAt = new Date();
  #stopping = false;
  #closed: Promise<void> | undefined;
  /** the first error of the current connection or connection attempt, and the class that decides its backoff */
  #attemptError: { error: Error; errorClass: ErrorClass } | undefined;
  #unsentReadings = 0;
  #lingerTimer: NodeJS.Timeout | null = null;
  #pendingCountCache: {
    value: number;
    atMs: number;
    validForMs: number;
    committedSince: number;
    claimedSince: number;
  } | null = null;
  /** how often each batch still waiting for its ack has been sent (re-sends wait longer) */
  readonly #sendsWithoutAck = new Map<string, number>();
  #pumping = false;
  #pumpAgain = false;
  /** G7: after a "retry later" ack nothing is sent before this (epoch ms) */
  #holdUntilMs = 0;
  #holdTimer: NodeJS.Timeout | null = null;

  private constructor(options: UplinkOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'uplink' });
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
    this.#maxInFlight = options.maxInFlightBatches ?? DEFAULT_MAX_IN_FLIGHT_BATCHES;
    this.#lingerMs = options.sendLingerMs ?? 20;
    this.#limits = options.batchLimits ?? DEFAULT_BATCH_LIMITS;
    this.#telemetryTopic = topics.telemetry(options.deviceId);
    this.#ackTopic = topics.syncAck(options.deviceId);
    this.#statusTopic = topics.status(options.deviceId);
    this.#inFlight = new InFlightBatches(this.#ackTimeoutMs, (batch) => this.#track(this.#onAckTimeout(batch)));
    this.#reconnects = new ReconnectScheduler(
      options.reconnectPolicy ?? DEFAULT_RECONNECT_POLICY,
      options.reconnectRandom ?? Math.random,
    );

    this.#client = mqtt.connect(
      options.brokerUrl,
      buildUplinkClientOptions(this.#clientSettings(), this.#connectionAttemptAt),
    );
    this.#client.handleMessage = (packet, done) => this.#handleMessage(packet, done);
    this.#client.on('connect', () => this.#onConnect());
    this.#client.on('close', () => this.#onClose());
    this.#client.on('error', (error) => this.#onError(error));
    this.#interval = setInterval(() => this.requestSend(), options.syncIntervalMs ?? 30_000);
  }

  /**
   * Starts the uplink. Rows left 'syncing' by a previous run go back to 'pending' first (nothing
   * is in flight yet); connecting happens in the background, readings wait while offline.
   */
  static async start(options: UplinkOptions): Promise<Uplink> {
    const released = await options.store.releaseAllSyncing();
    if (released > 0) {
      options.logger.info(
        { component: 'uplink', released },
        `${released} readings left 'syncing' by the previous run are pending again`,
      );
    }
    return new Uplink(options);
  }

  get connected(): boolean {
    return this.#connected;
  }

  get inFlightBatches(): number {
    return this.#inFlight.size;
  }

  /** Called after each group commit: send at once when a full batch is waiting, else after the linger. */
  notifyNewReadings(count: number): void {
    if (this.#stopping) return;
    this.#unsentReadings += count;
    if (this.#pendingCountCache !== null) this.#pendingCountCache.committedSince += count;
    if (triggerForNewReadings(this.#unsentReadings, this.#limits.maxRecords) === 'now') {
      this.requestSend();
      return;
    }
    this.#lingerTimer ??= setTimeout(() => {
      this.#lingerTimer = null;
      this.requestSend();
    }, this.#lingerMs);
  }

  /** Sends as many batches as the in-flight limit allows, now (or right after the current round). */
  requestSend(): void {
    if (this.#stopping) return;
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#currentPump = this.#pump();
    this.#track(this.#currentPump);
  }

  /** G6 (sync-now): sends pending readings at once, as far as the in-flight limit allows; how many went. */
  async sendNow(): Promise<number> {
    const before = this.#recordsSent;
    this.requestSend();
    await this.#currentPump;
    return this.#recordsSent - before;
  }

  /** G6 (agent.syncIntervalMs): the periodic send attempt, live. */
  setSyncIntervalMs(ms: number): void {
    if (this.#stopping) return;
    clearInterval(this.#interval);
    this.#interval = setInterval(() => this.requestSend(), ms);
    this.#log.info({ syncIntervalMs: ms }, `sync interval set to ${ms} ms`);
  }

  /** G6 (agent.batchMaxRecords): most readings per batch from the next claim on (≤ MAX_BATCH_RECORDS). */
  setBatchMaxRecords(records: number): void {
    this.#limits = { ...this.#limits, maxRecords: Math.max(1, Math.min(records, DEFAULT_BATCH_LIMITS.maxRecords)) };
    this.#log.info(
      { batchMaxRecords: this.#limits.maxRecords },
      `batch size set to ${this.#limits.maxRecords} readings`,
    );
  }

  /** G6: a report (command result, config report) at QoS 1; resolves on the PUBACK, which proves nothing more. */
  publish(topic: string, payload: string): Promise<void> {
    return this.#client.publishAsync(topic, payload, { qos: 1 }).then(() => undefined);
  }

  /**
   * Stops sending, waits for work under way, publishes online:false (retained) when connected and
   * disconnects. Batches still in flight stay 'syncing'; the next start puts them back to pending.
   * Idempotent: a second call returns the same promise.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#interval);
    if (this.#lingerTimer !== null) clearTimeout(this.#lingerTimer);
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
    this.#reconnects.cancel();
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    this.#inFlight.clear();
    if (this.#connected) {
      const graceful = (async () => {
        await this.#client.publishAsync(this.#statusTopic, statusPayload(false, new Date()), { qos: 1, retain: true });
        await this.#client.endAsync();
      })();
      const finished = await withTimeout(graceful, STOP_TIMEOUT_MS);
      if (!finished) this.#log.warn('the broker did not confirm the offline status in time; closing the uplink anyway');
    }
    await this.#client.endAsync(true);
  }

  #clientSettings() {
    const tls = this.#options.tls;
    return {
      deviceId: this.#options.deviceId,
      tls,
      secureContext: tls === undefined ? undefined : uplinkSecureContext(tls),
      connectTimeoutMs: this.#options.connectTimeoutMs ?? 10_000,
      keepaliveSeconds: this.#options.keepaliveSeconds ?? 30,
      incomingStore: this.#incomingStore,
      outgoingStore: this.#outgoingStore,
    };
  }

  #track(task: Promise<unknown>): void {
    this.#tasks.add(task);
    // every tracked task handles its own errors; the catch only keeps a surprise from going unhandled
    task
      .finally(() => this.#tasks.delete(task))
      .catch((error: unknown) => this.#log.error({ err: error }, 'uplink task failed'));
  }

  #onConnect(): void {
    const failures = this.#reconnects.consecutiveFailures;
    this.#connected = true;
    this.#attemptError = undefined;
    this.#reconnects.connected();
    this.#log.info(
      { brokerUrl: this.#options.brokerUrl, failures },
      failures > 0 ? 'uplink reconnected' : 'uplink connected',
    );
    this.#client.publish(
      this.#statusTopic,
      statusPayload(true, this.#connectionAttemptAt),
      { qos: 1, retain: true },
      (error) => {
        if (error) this.#log.warn({ err: error }, 'could not publish the online status');
      },
    );
    this.#client.subscribe(this.#ackTopic, { qos: 1 }, (error, granted) => {
      if (error) {
        if (this.#connected)
          this.#log.error({ err: error }, `could not subscribe to ${this.#ackTopic}; batches cannot be confirmed`);
        else
          this.#log.debug(
            { err: error },
            `subscription to ${this.#ackTopic} interrupted by a disconnect; it is renewed on reconnect`,
          );
        return;
      }
      if (granted?.some((grant) => grant.qos === 128)) {
        this.#log.error(
          `the broker refused the subscription to ${this.#ackTopic}; batches cannot be confirmed until it allows it`,
        );
      }
    });
    for (const filter of this.#options.downstream?.filters() ?? []) this.#subscribeDownstream(filter);
    this.#options.downstream?.onConnect();
    this.requestSend();
  }

  /** G6: one filter per SUBSCRIBE (see the header). */
  #subscribeDownstream(filter: string): void {
    this.#client.subscribe(filter, { qos: 1 }, (error, granted) => {
      if (error) {
        if (this.#connected) this.#log.error({ err: error }, `could not subscribe to ${filter}`);
        return;
      }
      if (granted?.some((grant) => grant.qos === 128)) {
        this.#log.error(`the broker refused the subscription to ${filter}; commands or config cannot arrive`);
        return;
      }
      this.#options.downstream?.onSubscribed?.(filter);
    });
  }

  /** Logs nothing: the attempt's one line is written when its connection closes (#onClose). */
  #onError(error: Error): void {
    const errorClass = classifyError(error);
    // the first error names the failure; an authentication failure decides the backoff whenever it comes
    if (this.#attemptError === undefined || (errorClass === 'auth' && this.#attemptError.errorClass !== 'auth')) {
      this.#attemptError = { error: this.#attemptError?.error ?? error, errorClass };
    }
  }

  /** One log line per lost connection or failed attempt, with the delay before the next attempt. */
  #onClose(): void {
    const wasConnected = this.#connected;
    this.#connected = false;
    if (this.#stopping) return;
    const failure = this.#attemptError;
    this.#attemptError = undefined;
    const errorClass = failure?.errorClass ?? 'network';
    const scheduled = this.#reconnects.schedule(errorClass, () => this.#reconnect());
    const retry = `retrying in ${scheduled.delayMs} ms`;
    const reason = failure?.error.message ?? 'connection closed';
    const fields = { err: failure?.error, ...scheduled };
    if (wasConnected) {
      this.#log.warn(
        fields,
        `uplink disconnected (${reason}); ${this.#inFlight.size} batches stay in flight until acked or timed out; ${retry}`,
      );
    } else if (errorClass === 'auth') {
      this.#log.error(fields, `the broker refused this device's credentials: ${reason}; ${retry}`);
    } else {
      this.#log.warn(fields, `uplink connect attempt failed: ${reason}; ${retry}`);
    }
  }

  #reconnect(): void {
    if (this.#stopping) return;
    this.#attemptError = undefined;
    // the will and the online status of this connection both carry the time of this attempt
    this.#connectionAttemptAt = new Date();
    const will = this.#client.options.will;
    if (will) will.payload = statusPayload(false, this.#connectionAttemptAt);
    // pass the stores: reconnect() without them swaps in empty ones and forgets unacknowledged publishes
    this.#client.reconnect({ incomingStore: this.#incomingStore, outgoingStore: this.#outgoingStore });
  }

  #handleMessage(packet: IPublishPacket, done: (error?: Error) => void): void {
    if (packet.topic !== this.#ackTopic) {
      const downstream = this.#options.downstream;
      if (downstream === undefined) {
        done();
        return;
      }
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      this.#track(
        downstream.handleMessage(packet.topic, payload).then(
          () => done(),
          (error: unknown) => {
            this.#log.error({ err: error, topic: packet.topic }, 'could not handle a downstream message');
            done();
          },
        ),
      );
      return;
    }
    // G2: only the bridge's sync/ack confirms a batch; a broker PUBACK proves nothing
    // the broker gets our PUBACK only after the ack is applied: a crash in between means redelivery
    const applying = this.#applyAck(
      Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
    ).then(
      () => done(),
      (error: unknown) => {
        this.#log.error({ err: error }, 'could not apply a sync/ack; its batch will time out and be sent again');
        done();
      },
    );
    this.#track(applying);
  }

  async #applyAck(payload: Buffer): Promise<void> {
    const json = parseJson(payload);
    const checked = json.ok ? checkSyncAck(json.value) : json;
    if (!checked.ok) {
      this.#log.warn({ reason: checked.reason }, `ignored a malformed sync/ack: ${checked.reason}`);
      return;
    }
    const ack = checked.value;
    if (ack.batchId === null) {
      this.#log.error(
        { error: ack.error },
        `the bridge could not read a telemetry batch: ${ack.error ?? 'no reason given'}`,
      );
      return;
    }
    if (ack.retryAfterMs !== undefined) {
      await this.#retryLater(ack.batchId, ack.retryAfterMs);
      return;
    }
    const completedAt = Date.now();
    // G8: while storage is short the confirmed readings go at once (they are in the control plane)
    const deleteSynced = this.#options.storageShort?.() ?? false;
    // settled only once applied: if applying fails (e.g. the disk is full), the batch stays in
    // flight and its ack timeout puts it back to pending to be sent (and acknowledged) again;
    // settling first would strand its readings 'syncing' until a restart
    const sent = this.#inFlight.peek(ack.batchId);
    const outcome = await this.#options.store.applyAck(ack, completedAt, {
      deleteSynced,
      // the sync_log entry goes in the ack's transaction; none while storage is short (it takes room)
      ...(deleteSynced
        ? {}
        : { log: { startedAtMs: sent?.sentAtMs ?? completedAt, evenIfNothingMatched: sent !== undefined } }),
    });
    const batch = this.#inFlight.settle(ack.batchId);
    this.#sendsWithoutAck.delete(ack.batchId);
    if (batch === undefined) {
      this.#log.debug(
        { batchId: ack.batchId, ...outcome },
        'sync/ack for a batch not in flight (late or repeated); applied by batch id',
      );
    } else {
      this.#options.metrics?.batchAckLatency.observe((completedAt - batch.sentAtMs) / 1000);
    }
    if (ack.rejected.length > 0) {
      this.#log.warn(
        { batchId: ack.batchId, rejected: ack.rejected.slice(0, 20) },
        `the bridge rejected ${ack.rejected.length} readings of batch ${ack.batchId}; they are marked failed`,
      );
    }
    if ((outcome.released ?? 0) > 0) {
      this.#log.warn(
        { batchId: ack.batchId, rejectedCount: ack.rejectedCount, listed: ack.rejected.length },
        `the bridge rejected ${ack.rejectedCount ?? 0} readings of batch ${ack.batchId} but named only ` +
          `${ack.rejected.length}; its other ${outcome.released ?? 0} readings are sent again`,
      );
    }
    this.requestSend();
  }

  /**
   * G7: the bridge stored nothing of the batch and asks to hear from this device again no earlier
   * than retryAfterMs. The batch goes back to pending under its id (applyAck releases it; nothing is
   * failed, no sync_log entry), it leaves the in-flight set without counting as a re-send, and no
   * batch is sent until the hold ends.
   */
  async #retryLater(batchId: string, retryAfterMs: number): Promise<void> {
    const outcome = await this.#options.store.applyAck(
      { batchId, accepted: 0, rejected: [], conflicts: 0, retryAfterMs },
      Date.now(),
    );
    this.#inFlight.settle(batchId);
    this.#sendsWithoutAck.delete(batchId);
    const delayMs = retryLaterDelayMs(retryAfterMs, Math.random());
    const until = Date.now() + delayMs;
    if (until > this.#holdUntilMs) {
      this.#holdUntilMs = until;
      if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
      this.#holdTimer = setTimeout(() => {
        this.#holdTimer = null;
        this.requestSend();
      }, delayMs);
    }
    this.#log.info(
      { batchId, retryAfterMs, holdMs: delayMs, released: outcome.released ?? 0 },
      `the bridge is busy and stored nothing of batch ${batchId}; it is sent again in ${delayMs} ms`,
    );
  }

  async #onAckTimeout(batch: InFlightBatch): Promise<void> {
    try {
      // back to pending with its batch id kept: the next claim sends it again under that id
      // (claimNextBatch), so a sync/ack that is merely late still confirms it
      const reason = `no sync/ack within ${this.#ackTimeoutMs} ms for batch ${batch.batchId}`;
      // the sync_log entry goes in the release's transaction
      const released = await this.#options.store.releaseBatch(batch.batchId, {
        startedAtMs: batch.sentAtMs,
        completedAtMs: Date.now(),
        recordsCount: batch.recordCount,
        reason,
      });
      this.#options.metrics?.batchesTimedOut.inc();
      this.#log.warn(
        { batchId: batch.batchId },
        `${reason}; ${released} readings back to pending, to be sent again in the same batch`,
      );
    } catch (error) {
      this.#log.error({ err: error, batchId: batch.batchId }, 'could not release a timed-out batch');
    }
    this.requestSend();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        if (this.#lingerTimer !== null) clearTimeout(this.#lingerTimer);
        this.#lingerTimer = null;
        this.#unsentReadings = 0;
        while (
          mayClaimBatch({
            connected: this.#connected,
            stopping: this.#stopping,
            inFlight: this.#inFlight.size,
            inFlightRecords: this.#inFlight.records,
            maxInFlight: this.#maxInFlight,
            maxBatchRecords: this.#limits.maxRecords,
            holding: Date.now() < this.#holdUntilMs,
          })
        ) {
          if (!(await this.#sendOneBatch())) break;
        }
      } while (this.#pumpAgain && !this.#stopping);
    } catch (error) {
      this.#log.error({ err: error }, 'could not send pending readings; retrying on the next trigger');
    } finally {
      this.#pumping = false;
    }
  }

  /** Claims and publishes one batch; false when nothing is pending. */
  async #sendOneBatch(): Promise<boolean> {
    const { batchId, records } = await this.#options.store.claimNextBatch(
      this.#limits.maxRecords,
      this.#limits.maxBytes,
      newId(),
    );
    if (records.length === 0) return false;
    this.#recordsSent += records.length;
    if (this.#pendingCountCache !== null) this.#pendingCountCache.claimedSince += records.length;
    // tracked (with its timeout) before anything else can fail, so a claimed batch never strands 'syncing'
    const sentAtMs = Date.now();
    const send = (this.#sendsWithoutAck.get(batchId) ?? 0) + 1;
    this.#sendsWithoutAck.set(batchId, send);
    // a batch whose readings were all corrected after a timeout is never acked: keep the map bounded
    if (this.#sendsWithoutAck.size > MAX_TRACKED_RESENDS) {
      const oldest = this.#sendsWithoutAck.keys().next().value;
      if (oldest !== undefined) this.#sendsWithoutAck.delete(oldest);
    }
    this.#inFlight.add({
      batchId,
      recordCount: records.length,
      sentAtMs,
      timeoutMs: ackTimeoutForSend(this.#ackTimeoutMs, send),
    });
    await this.#publishBatch(batchId, records);
    return true;
  }

  /**
   * The pending count sent with each batch (informational, it feeds the control plane's
   * sync_status). Counting is O(pending) — ~75 ms with 2 million readings waiting after a long
   * outage, on the event loop the sensors' PUBACKs need — so while a backlog drains it is
   * recounted at most every PENDING_COUNT_MAX_AGE_MS, or PENDING_COUNT_COST_FACTOR times the last
   * count's duration if longer, and estimated in between; when nothing is pending it is 0 at once.
   */
  async #pendingCount(): Promise<number | undefined> {
    const now = Date.now();
    // exact and cheap in the steady state, and at the end of a drain: nothing left
    if (!(await this.#options.store.hasPending().catch(() => true))) {
      this.#pendingCountCache = { value: 0, atMs: now, validForMs: 0, committedSince: 0, claimedSince: 0 };
      return 0;
    }
    const cache = this.#pendingCountCache;
    // a cached 0 is known to be wrong now; any other cached value is estimated forward
    if (cache !== null && cache.value > 0 && now - cache.atMs < cache.validForMs) {
      return Math.max(0, cache.value + cache.committedSince - cache.claimedSince);
    }
    const started = performance.now();
    const value = await this.#options.store.countPending().catch(() => undefined);
    const tookMs = performance.now() - started;
    if (value !== undefined) {
      this.#pendingCountCache = {
        value,
        atMs: now,
        validForMs: Math.max(PENDING_COUNT_MAX_AGE_MS, tookMs * PENDING_COUNT_COST_FACTOR),
        committedSince: 0,
        claimedSince: 0,
      };
    }
    return value;
  }

  async #publishBatch(batchId: string, records: TelemetryRecord[]): Promise<void> {
    const pendingCount = await this.#pendingCount();
    const batch: TelemetryBatch =
      pendingCount === undefined ? { batchId, records } : { batchId, records, pendingCount };
    // G8: what the device lost is reported, so the control plane knows (a total: idempotent)
    const dropped = this.#options.droppedCount?.() ?? 0;
    if (dropped > 0) batch.droppedCount = dropped;
    this.#client.publish(this.#telemetryTopic, JSON.stringify(batch), { qos: 1 }, (error) => {
      // the ack timeout handles the batch either way; a PUBACK proves nothing
      if (error) this.#log.warn({ err: error, batchId }, `publishing batch ${batchId} failed: ${error.message}`);
    });
    this.#log.debug({ batchId, records: records.length, pendingCount }, 'telemetry batch sent');
  }
}

async function withTimeout(task: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      task.then(
        () => true as const,
        () => false as const,
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
