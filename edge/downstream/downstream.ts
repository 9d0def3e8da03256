/**
 * G6 on the edge: commands and config from the control plane, wired to I/O. The decisions are in
 * the pure modules next to this file; SQL in edge/store/downstream-store.ts; the uplink
 * (edge/uplink/uplink.ts) hands over every message of devices/{id}/commands/+ and
 * devices/{id}/config/+ and publishes the reports; the local listener (edge/ingest/sensor-listener.ts)
 * carries local/commands/… and local/config/… to local applications.
 *
 * Guarantees (docs/guarantees.md, G6):
 *   - `delivered` is reported only after the command is committed in command_queue; a report is
 *     confirmed only by the control plane's retained message (its status at or past the report)
 *     or its clear, never by a broker PUBACK, so nothing is `delivered` while offline;
 *   - a command id is executed at most once: a redelivered or re-published command finds its row
 *     and only confirms a report; `executing` is committed before the command runs, and a command
 *     found `executing` at start is `failed` ("agent restarted while the command was executing"),
 *     never run again;
 *   - an expired command is never started (checked on arrival and again just before it starts);
 *     a cleared topic for a command not yet started cancels it locally;
 *   - the latest report of each command and config key is stored with it and re-sent on every
 *     (re)connect and with a backoff (./report-resend.ts) until confirmed, also after a restart;
 *   - config versions only move up (./config-decisions.ts), and what was applied is re-applied at
 *     start (agent settings) or re-published (local/config/{key}, aedes keeps retained messages
 *     in memory only).
 * Bad input (a garbage or oversize retained message, an unknown type, an invalid payload or
 * setting, a malformed local answer) is reported rejected/failed where the message names a
 * command or a version, else logged (rate-limited) and counted; it never blocks what follows.
 *
 * Handling a message stores its decision before the uplink acknowledges it (so a crash means a
 * redelivery), but never waits for a command to run: execution runs on its own, so neither a
 * slow local application nor a telemetry drain holds up the other.
 */
import type { Logger } from '../../common/logger.js';
import { rateLimitedLog } from '../../common/rate-limited-log.js';
import type { LiveCommandStatus } from '../../schemas/command-lifecycle.js';
import { isBuiltInCommandType } from '../../schemas/command-types.js';
import { CONFIG_KEY_PATTERN, MAX_COMMAND_PAYLOAD_BYTES, MAX_CONFIG_VALUE_BYTES } from '../../schemas/limits.js';
import type {
  CommandMessage,
  CommandReport,
  ConfigReported,
  LocalCommandResult,
  LocalConfig,
} from '../../schemas/messages.js';
import { parseDeviceTopic, topics } from '../../schemas/topics.js';
import {
  checkCommandMessagePayload,
  checkConfigDesiredPayload,
  checkLocalCommandResultPayload,
  isAgentSettingKey,
} from '../../schemas/validators.js';
import type { EdgeMetrics } from '../metrics.js';
import type { DownstreamStore, StoredCommand, StoredConfig } from '../store/downstream-store.js';
import type { LiveAgentSettings } from './agent-settings.js';
import {
  boundedError,
  confirmsPendingReport,
  decideCleared,
  decideNewCommand,
  decideStart,
  expiresAtMs,
  localCommandTimeoutMs,
  terminalReport,
  type Finished,
} from './command-decisions.js';
import { decideConfig } from './config-decisions.js';
import { LocalCommandWaits } from './local-commands.js';
import { ResendSchedule, type ResendPolicy } from './report-resend.js';

/** The uplink's side: publishing reports (QoS 1) and sending pending readings at once. */
export interface DownstreamUplink {
  readonly connected: boolean;
  publish(topic: string, payload: string): Promise<void>;
  /** sends pending readings now; how many were sent */
  sendNow(): Promise<number>;
}

/** The local listener's side: a publish to local applications. */
export interface DownstreamLocal {
  publish(topic: string, payload: string, retain: boolean): Promise<void>;
}

export interface DownstreamOptions {
  deviceId: string;
  store: DownstreamStore;
  logger: Logger;
  metrics?: EdgeMetrics | undefined;
  settings: LiveAgentSettings;
  /** a local application's time to answer, unless payload.timeoutMs says otherwise; default 30 000 */
  localCommandTimeoutMs?: number | undefined;
  /** default 10 s doubling to 5 min */
  resend?: ResendPolicy | undefined;
  now?: () => number;
}

export const DEFAULT_LOCAL_COMMAND_TIMEOUT_MS = 30_000;
export const DEFAULT_RESEND_POLICY: ResendPolicy = { baseMs: 10_000, maxMs: 300_000 };
export const INTERRUPTED_REASON = 'agent restarted while the command was executing; it was not run again';

/** A command id (command.schema.json: format uuid). */
const COMMAND_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Oversize beyond any valid message: refused before parsing. */
const MAX_DOWNSTREAM_MESSAGE_BYTES = MAX_COMMAND_PAYLOAD_BYTES + 16 * 1024;

type RejectReason =
  | 'malformed-command'
  | 'invalid-command'
  | 'oversize-command'
  | 'malformed-config'
  | 'oversize-config'
  | 'unexpected-local-result'
  | 'malformed-local-result';

export class Downstream {
  readonly #options: DownstreamOptions;
  readonly #store: DownstreamStore;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #waits = new LocalCommandWaits();
  readonly #schedule: ResendSchedule;
  readonly #tasks = new Set<Promise<unknown>>();
  /** commands being started or run by this run (a second start is a no-op; the UPDATE guards it too) */
  readonly #starting = new Set<string>();
  readonly #rejections;
  readonly #localTimeoutMs: number;
  #uplink: DownstreamUplink | null = null;
  #local: DownstreamLocal | null = null;
  #attached!: () => void;
  readonly #ready = new Promise<void>((resolve) => (this.#attached = resolve));
  #timer: NodeJS.Timeout | null = null;
  #resending = false;
  /** false once a re-send round found nothing unconfirmed; any new report sets it (saves the store two queries a second) */
  #maybeUnconfirmed = true;
  #closing = false;
  /**
   * G6: whether the current connection's SUBACK for the command filter has arrived. The session is
   * persistent (clean:false), so right after a reconnect the broker first hands over the copies it
   * queued while the device was offline: a `pending` copy of a command that was canceled meanwhile
   * comes before the clear that cancels it. A command arriving before this SUBACK is persisted and
   * reported `delivered` but not started; the retained copy the broker re-sends after the SUBACK
   * (only for a command that is still live) starts it.
   */
  #commandsSubscribed = false;
  #closed: Promise<void> | null = null;

  private constructor(options: DownstreamOptions) {
    this.#options = options;
    this.#store = options.store;
    this.#log = options.logger.child({ component: 'downstream' });
    this.#now = options.now ?? Date.now;
    this.#schedule = new ResendSchedule(options.resend ?? DEFAULT_RESEND_POLICY, this.#now);
    this.#localTimeoutMs = options.localCommandTimeoutMs ?? DEFAULT_LOCAL_COMMAND_TIMEOUT_MS;
    this.#rejections = rateLimitedLog<{ reason: RejectReason; topic: string; detail: string }>(this.#log, {
      intervalMs: 10_000,
      level: 'warn',
      message: ({ count, sample }) =>
        count === 1
          ? `ignored a downstream message on ${sample.topic}: ${sample.detail}`
          : `ignored ${count} more downstream messages in the last interval; the first on ${sample.topic}: ${sample.detail}`,
    });
  }

  /**
   * Opens the downstream side before anything can arrive. G6: a command left `executing` by a
   * crash is `failed` now, with a report to send, and never run again.
   */
  static async open(options: DownstreamOptions): Promise<Downstream> {
    const downstream = new Downstream(options);
    const interrupted = await options.store.failInterruptedCommands(downstream.#now(), INTERRUPTED_REASON);
    for (const commandId of interrupted) {
      options.metrics?.commands.inc({ outcome: 'failed' });
      downstream.#log.warn({ commandId }, `command ${commandId} was executing when the agent stopped: reported failed`);
    }
    return downstream;
  }

  /** The subscriptions the uplink makes, one filter per SUBSCRIBE (see edge/uplink/uplink.ts). */
  filters(): string[] {
    return [topics.commandMessagesFilter(this.#options.deviceId), topics.configMessagesFilter(this.#options.deviceId)];
  }

  /**
   * Connects the uplink and the local listener, re-applies stored config (agent settings live,
   * other keys re-published to local applications) and starts the re-sender. Messages wait until
   * this is done. A command a previous run persisted as delivered but never started is started
   * only when its retained message arrives again (still live): if the control plane canceled or
   * expired it meanwhile, its topic is cleared and it never starts.
   */
  async attach(uplink: DownstreamUplink, local: DownstreamLocal): Promise<void> {
    this.#uplink = uplink;
    this.#local = local;
    for (const config of await this.#store.listConfigs()) {
      if (config.value === null || config.appliedVersion === null) continue;
      await this.#applyStored(config);
    }
    const base = (this.#options.resend ?? DEFAULT_RESEND_POLICY).baseMs;
    this.#timer = setInterval(() => this.#track(this.#resendDue()), Math.max(50, Math.min(base, 1_000)));
    this.#timer.unref();
    this.#attached();
  }

  /** After every (re)connect: every unconfirmed report goes again at once. */
  onConnect(): void {
    this.#commandsSubscribed = false;
    if (this.#closing) return;
    this.#schedule.reset();
    this.#maybeUnconfirmed = true;
    this.#track(this.#ready.then(() => this.#resendDue()));
  }

  /** The broker acknowledged the SUBSCRIBE of `filter` on the current connection. */
  onSubscribed(filter: string): void {
    if (filter === topics.commandMessagesFilter(this.#options.deviceId)) this.#commandsSubscribed = true;
  }

  /** A message on devices/{id}/commands/+ or devices/{id}/config/+; resolves once its decision is stored. */
  async handleMessage(topic: string, payload: Buffer): Promise<void> {
    // read on arrival: the uplink hands messages and SUBACKs over in the order they came
    const mayStart = this.#commandsSubscribed;
    await this.#ready;
    if (this.#closing) return;
    const parsed = parseDeviceTopic(topic);
    if (parsed === null || parsed.deviceId !== this.#options.deviceId || parsed.subject === undefined) return;
    if (parsed.kind === 'command') await this.#onCommand(topic, parsed.subject, payload, mayStart);
    else if (parsed.kind === 'config') await this.#onConfig(topic, parsed.subject, payload);
    // config/reported is this device's own report coming back through config/+: nothing to do
  }

  /** A local application's answer on local/commands/{commandId}/result. */
  handleLocalResult(commandId: string, payload: Buffer, clientId: string | undefined): void {
    const topic = topics.localCommandResult(commandId);
    if (!this.#waits.isWaiting(commandId)) {
      this.#reject(
        'unexpected-local-result',
        topic,
        `no command ${commandId} is waiting for a local answer (client ${clientId ?? '?'})`,
      );
      return;
    }
    const checked = checkLocalCommandResultPayload(payload);
    if (!checked.ok) {
      this.#reject('malformed-local-result', topic, checked.reason);
      this.#waits.answer(commandId, {
        status: 'failed',
        error: boundedError(`the local application answered with a malformed result: ${checked.reason}`),
      });
      return;
    }
    const answer: LocalCommandResult = checked.value;
    this.#waits.answer(
      commandId,
      answer.status === 'executed'
        ? { status: 'executed', ...(answer.result === undefined ? {} : { result: answer.result }) }
        : { status: 'failed', error: answer.error ?? 'the local application reported failure without a reason' },
    );
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true;
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#attached(); // nothing waits forever for an attach that will not come
      this.#waits.abandonAll();
      this.#rejections.close();
      while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    })();
    return this.#closed;
  }

  // ---- commands -------------------------------------------------------------------------------

  async #onCommand(topic: string, commandId: string, payload: Buffer, mayStart: boolean): Promise<void> {
    if (payload.length === 0) {
      await this.#onCleared(commandId);
      return;
    }
    const stored = await this.#store.getCommand(commandId);
    let problem: { reason: RejectReason; detail: string } | null = null;
    let message: CommandMessage | null = null;
    if (payload.length > MAX_DOWNSTREAM_MESSAGE_BYTES) {
      problem = { reason: 'oversize-command', detail: `the command message is ${payload.length} bytes` };
    } else {
      const checked = checkCommandMessagePayload(payload);
      if (!checked.ok)
        problem = { reason: 'malformed-command', detail: `malformed command message: ${checked.reason}` };
      else if (checked.value.commandId !== commandId) {
        problem = {
          reason: 'malformed-command',
          detail: `the message's commandId ${checked.value.commandId} is not the topic's ${commandId}`,
        };
      } else message = checked.value;
    }
    if (problem !== null || message === null) {
      const { reason, detail } = problem ?? { reason: 'malformed-command' as const, detail: 'invalid' };
      this.#reject(reason, topic, detail);
      // a known command is never touched by garbage; an unknown one is refused by a report (only
      // under a command id the control plane could have made: a UUID, as command.schema.json says)
      if (stored !== null || !COMMAND_ID_PATTERN.test(commandId)) return;
      const nowMs = this.#now();
      const inserted = await this.#store.insertCommand({
        commandId,
        type: 'unknown',
        payload: '{}',
        createdAt: null,
        expiresAtMs: null,
        status: 'rejected',
        receivedAtMs: nowMs,
        error: boundedError(detail),
        report: 'rejected',
      });
      if (inserted) {
        this.#options.metrics?.commands.inc({ outcome: 'rejected' });
        this.#track(this.#sendCommandReport(commandId));
      }
      return;
    }
    if (stored !== null) {
      // G6: a redelivered or re-published command is never executed again
      await this.#confirmIf(stored, message.status);
      // persisted earlier and never started: still live, so it starts now (once); not from a copy
      // the broker queued while the device was offline (mayStart: see #commandsSubscribed)
      if (stored.status === 'delivered' && mayStart) this.#track(this.#execute(commandId));
      return;
    }
    const nowMs = this.#now();
    const decision = decideNewCommand(message, nowMs);
    // G6: persisted before `delivered` is reported
    const inserted = await this.#store.insertCommand({
      commandId,
      type: message.type,
      payload: JSON.stringify(message.payload),
      createdAt: message.createdAt,
      expiresAtMs: expiresAtMs(message),
      status: decision.status,
      receivedAtMs: nowMs,
      error: decision.error ?? null,
      report: decision.report,
    });
    if (!inserted) return;
    this.#log.info(
      { commandId, type: message.type, status: decision.status, error: decision.error },
      `command ${commandId} (${message.type}) received: ${decision.status}`,
    );
    if (decision.status !== 'delivered') this.#options.metrics?.commands.inc({ outcome: decision.status });
    if (decision.status === 'rejected')
      this.#reject('invalid-command', topic, `command ${commandId} rejected: ${decision.error ?? ''}`);
    this.#track(this.#sendCommandReport(commandId));
    if (decision.status === 'delivered' && mayStart) this.#track(this.#execute(commandId));
  }

  async #confirmIf(stored: StoredCommand, retained: LiveCommandStatus | null): Promise<void> {
    if (!confirmsPendingReport(stored, retained) || stored.reportStatus === null) return;
    if (await this.#store.confirmCommandReport(stored.commandId, stored.reportStatus)) {
      this.#schedule.forget(`command:${stored.commandId}`);
      this.#log.debug({ commandId: stored.commandId, report: stored.reportStatus }, 'command report confirmed');
    }
  }

  async #onCleared(commandId: string): Promise<void> {
    const stored = await this.#store.getCommand(commandId);
    const decision = decideCleared(stored);
    if (stored === null || decision === 'nothing') return;
    if (decision === 'cancel') {
      // G6: canceled or expired in the control plane before it started: never start it
      const canceled = await this.#store.transitionCommand(commandId, {
        from: ['delivered'],
        to: 'canceled',
        atMs: this.#now(),
        report: null,
      });
      if (canceled) {
        if (stored.reportStatus !== null) await this.#store.confirmCommandReport(commandId, stored.reportStatus);
        this.#schedule.forget(`command:${commandId}`);
        this.#options.metrics?.commands.inc({ outcome: 'canceled' });
        this.#log.info({ commandId }, `command ${commandId} was cleared before it started: canceled, never started`);
        return;
      }
      // it started meanwhile: the clear still confirms whatever report is pending
      const now = await this.#store.getCommand(commandId);
      if (now !== null) await this.#confirmIf(now, null);
      return;
    }
    await this.#confirmIf(stored, null);
  }

  async #execute(commandId: string): Promise<void> {
    if (this.#starting.has(commandId)) return;
    this.#starting.add(commandId);
    try {
      const stored = await this.#store.getCommand(commandId);
      if (stored === null || this.#closing) return;
      const start = decideStart(stored, this.#now());
      if (start === 'skip') return;
      if (start === 'expired') {
        if (
          await this.#store.transitionCommand(commandId, {
            from: ['delivered'],
            to: 'expired',
            atMs: this.#now(),
            report: 'expired',
            error: 'the command expired before the edge could start it',
          })
        ) {
          this.#options.metrics?.commands.inc({ outcome: 'expired' });
          await this.#sendCommandReport(commandId);
        }
        return;
      }
      // G6: `executing` is committed before the command runs (a crash now means failed, never a re-run)
      const started = await this.#store.transitionCommand(commandId, {
        from: ['delivered'],
        to: 'executing',
        atMs: this.#now(),
        report: 'executing',
      });
      if (!started) return;
      this.#track(this.#sendCommandReport(commandId));
      const finished = await this.#run(stored);
      if (finished === null) return; // the agent is stopping: failed at the next start
      const report = terminalReport(finished, new Date(this.#now()).toISOString());
      await this.#store.transitionCommand(commandId, {
        from: ['executing'],
        to: report.status,
        atMs: Date.parse(report.at),
        report: report.status,
        result: report.result === undefined ? null : JSON.stringify(report.result),
        error: report.error ?? null,
      });
      this.#options.metrics?.commands.inc({ outcome: report.status });
      this.#log.info(
        { commandId, type: stored.type, status: report.status, error: report.error },
        `command ${commandId} (${stored.type}) ${report.status}`,
      );
      await this.#sendCommandReport(commandId);
    } catch (error) {
      this.#log.error({ err: error, commandId }, `command ${commandId} could not be handled`);
    } finally {
      this.#starting.delete(commandId);
    }
  }

  async #run(stored: StoredCommand): Promise<Finished | null> {
    const payload = JSON.parse(stored.payload) as Record<string, unknown>;
    try {
      if (isBuiltInCommandType(stored.type)) {
        switch (stored.type) {
          case 'ping':
            return { status: 'executed', result: { pong: true, at: new Date(this.#now()).toISOString() } };
          case 'sync-now':
            return { status: 'executed', result: { sent: await this.#requireUplink().sendNow() } };
          case 'set-setting': {
            const applied = this.#options.settings.apply(String(payload['key']), payload['value']);
            return applied.ok
              ? { status: 'executed', result: { key: payload['key'], value: payload['value'] } }
              : { status: 'failed', error: `set-setting: ${applied.reason}` };
          }
        }
      }
      return await this.#runLocally(stored, payload);
    } catch (error) {
      return { status: 'failed', error: `the command failed: ${(error as Error).message}` };
    }
  }

  async #runLocally(stored: StoredCommand, payload: Record<string, unknown>): Promise<Finished | null> {
    const local = this.#local;
    if (local === null) return { status: 'failed', error: 'the local listener is not running' };
    const message: CommandMessage = {
      commandId: stored.commandId,
      type: stored.type,
      payload,
      createdAt: stored.createdAt ?? new Date(stored.receivedAtMs).toISOString(),
      ...(stored.expiresAtMs === null ? {} : { expiresAt: new Date(stored.expiresAtMs).toISOString() }),
      status: 'executing',
    };
    // the agent is stopping: not handed over (the command fails at the next start, never runs twice)
    if (this.#closing) return null;
    // waiting before publishing: an answer can come back before the publish's callback
    const answer = this.#waits.wait(stored.commandId, localCommandTimeoutMs(payload, this.#localTimeoutMs));
    await local.publish(topics.localCommand(stored.type), JSON.stringify(message), false);
    return answer;
  }

  #requireUplink(): DownstreamUplink {
    if (this.#uplink === null) throw new Error('the uplink is not running');
    return this.#uplink;
  }

  async #sendCommandReport(commandId: string): Promise<void> {
    const stored = await this.#store.getCommand(commandId);
    if (stored === null || stored.reportConfirmed || stored.reportStatus === null) return;
    this.#schedule.forget(`command:${commandId}`);
    await this.#publishCommandReport(stored);
  }

  #publishCommandReport(stored: StoredCommand): Promise<void> {
    this.#maybeUnconfirmed = true;
    const status = stored.reportStatus;
    const uplink = this.#uplink;
    if (status === null || uplink === null || !uplink.connected) return Promise.resolve();
    const report: CommandReport = { status, at: new Date(stored.reportAtMs ?? this.#now()).toISOString() };
    if (status === 'executed' && stored.result !== null) report.result = JSON.parse(stored.result) as unknown;
    if ((status === 'failed' || status === 'rejected' || status === 'expired') && stored.error !== null) {
      report.error = boundedError(stored.error);
    }
    this.#schedule.noteSent(`command:${stored.commandId}`);
    // not awaited: its PUBACK comes through the same client, whose incoming packets wait while a
    // downstream message is handled (mqtt.js 5.16 handleMessage); and a PUBACK proves nothing
    this.#track(
      uplink
        .publish(topics.commandResult(this.#options.deviceId, stored.commandId), JSON.stringify(report))
        .catch((error: unknown) =>
          this.#log.debug({ err: error, commandId: stored.commandId }, 'a command report was not sent; it goes again'),
        ),
    );
    return Promise.resolve();
  }

  // ---- config ---------------------------------------------------------------------------------

  async #onConfig(topic: string, key: string, payload: Buffer): Promise<void> {
    if (!CONFIG_KEY_PATTERN.test(key)) return; // config/reported: our own reports
    if (payload.length === 0) {
      await this.#onConfigDeleted(key);
      return;
    }
    if (payload.length > MAX_CONFIG_VALUE_BYTES + 16 * 1024) {
      this.#reject('oversize-config', topic, `the config message is ${payload.length} bytes`);
      return;
    }
    const checked = checkConfigDesiredPayload(payload);
    if (!checked.ok) {
      this.#reject('malformed-config', topic, `malformed config message: ${checked.reason}`);
      return;
    }
    const desired = checked.value;
    if (desired.key !== key) {
      this.#reject('malformed-config', topic, `the message's key '${desired.key}' is not the topic's '${key}'`);
      return;
    }
    const stored = await this.#store.getConfig(key);
    const decision = decideConfig(desired, stored);
    if (decision.confirm && stored !== null && (await this.#store.confirmConfigReport(key, stored.version))) {
      this.#schedule.forget(`config:${key}`);
    }
    if (!decision.apply) {
      if (stored !== null && desired.version < stored.version) {
        this.#log.debug({ key, version: desired.version, handled: stored.version }, 'an older config version: ignored');
      }
      return;
    }
    const atMs = this.#now();
    const valueText = JSON.stringify(desired.value);
    const bytes = Buffer.byteLength(valueText ?? '');
    let outcome: { status: 'applied' | 'rejected'; error?: string };
    if (valueText === undefined) outcome = { status: 'rejected', error: 'the config message has no value' };
    else if (bytes > MAX_CONFIG_VALUE_BYTES) {
      outcome = { status: 'rejected', error: `the value is ${bytes} bytes, more than ${MAX_CONFIG_VALUE_BYTES}` };
    } else if (key.startsWith('agent.') || isAgentSettingKey(key)) {
      const applied = this.#options.settings.apply(key, desired.value);
      outcome = applied.ok ? { status: 'applied' } : { status: 'rejected', error: boundedError(applied.reason) };
    } else {
      await this.#publishLocalConfig({ key, value: desired.value, version: desired.version });
      outcome = { status: 'applied' };
    }
    await this.#store.recordConfigOutcome({
      key,
      version: desired.version,
      status: outcome.status,
      ...(outcome.status === 'applied' && valueText !== undefined ? { value: valueText } : {}),
      ...(outcome.error === undefined ? {} : { error: outcome.error }),
      atMs,
    });
    this.#options.metrics?.configVersions.inc({ status: outcome.status });
    if (outcome.status === 'rejected') {
      this.#log.warn(
        { key, version: desired.version, error: outcome.error },
        `config ${key} v${desired.version} rejected: ${outcome.error ?? ''}`,
      );
    } else this.#log.info({ key, version: desired.version }, `config ${key} v${desired.version} applied`);
    this.#schedule.forget(`config:${key}`);
    const updated = await this.#store.getConfig(key);
    if (updated !== null) this.#publishConfigReport(updated);
  }

  async #onConfigDeleted(key: string): Promise<void> {
    const stored = await this.#store.getConfig(key);
    if (stored === null) return;
    if (key.startsWith('agent.')) this.#options.settings.reset(key);
    else await this.#local?.publish(topics.localConfig(key), '', true);
    await this.#store.deleteConfig(key);
    this.#schedule.forget(`config:${key}`);
    this.#log.info({ key }, `config ${key} deleted`);
  }

  async #applyStored(config: StoredConfig): Promise<void> {
    const value = JSON.parse(config.value ?? 'null') as unknown;
    if (config.key.startsWith('agent.')) {
      const applied = this.#options.settings.apply(config.key, value);
      if (!applied.ok)
        this.#log.warn({ key: config.key, reason: applied.reason }, 'a stored agent setting is no longer valid');
    } else {
      await this.#publishLocalConfig({ key: config.key, value, version: config.appliedVersion ?? config.version });
    }
  }

  async #publishLocalConfig(config: LocalConfig): Promise<void> {
    await this.#local?.publish(topics.localConfig(config.key), JSON.stringify(config), true);
  }

  #publishConfigReport(config: StoredConfig): void {
    this.#maybeUnconfirmed = true;
    const uplink = this.#uplink;
    if (config.reportConfirmed || config.reportStatus === null || uplink === null || !uplink.connected) return;
    const report: ConfigReported = {
      key: config.key,
      version: config.version,
      status: config.reportStatus,
      ...(config.reportError === null ? {} : { error: boundedError(config.reportError) }),
      at: new Date(config.reportAtMs ?? this.#now()).toISOString(),
    };
    this.#schedule.noteSent(`config:${config.key}`);
    // not awaited, like a command report (#publishCommandReport)
    this.#track(
      uplink
        .publish(topics.configReported(this.#options.deviceId), JSON.stringify(report))
        .catch((error: unknown) =>
          this.#log.debug({ err: error, key: config.key }, 'a config report was not sent; it goes again'),
        ),
    );
  }

  // ---- re-sending -----------------------------------------------------------------------------

  async #resendDue(): Promise<void> {
    if (this.#resending || this.#closing || !this.#maybeUnconfirmed || this.#uplink?.connected !== true) return;
    this.#resending = true;
    this.#maybeUnconfirmed = false;
    try {
      const commands = await this.#store.unconfirmedCommandReports();
      const configs = await this.#store.unconfirmedConfigReports();
      if (commands.length > 0 || configs.length > 0) this.#maybeUnconfirmed = true;
      for (const command of commands) {
        if (this.#schedule.due(`command:${command.commandId}`)) await this.#publishCommandReport(command);
      }
      for (const config of configs) {
        if (this.#schedule.due(`config:${config.key}`)) this.#publishConfigReport(config);
      }
    } catch (error) {
      this.#maybeUnconfirmed = true;
      this.#log.warn({ err: error }, 'could not re-send unconfirmed reports; trying again later');
    } finally {
      this.#resending = false;
    }
  }

  #reject(reason: RejectReason, topic: string, detail: string): void {
    this.#options.metrics?.downstreamRejected.inc({ reason });
    this.#rejections.note(reason, { reason, topic, detail });
  }

  #track(task: Promise<unknown>): void {
    this.#tasks.add(task);
    task
      .finally(() => this.#tasks.delete(task))
      .catch((error: unknown) => this.#log.error({ err: error }, 'downstream task failed'));
  }
}
