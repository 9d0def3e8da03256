/**
 * The downstream half of `npm run demo`: commands and config sent through the REST API (as an
 * operator with the dev bundle's operator certificate, over mutual TLS, the same calls `npm run ctl`
 * makes), followed to the end, and checked.
 *
 * - while every device is online: `ping` to each, config `agent.syncIntervalMs` = 2000 (version 1)
 *   to each, and `display.brightness` (a key for local applications) to the first;
 * - while one device's uplink is cut: `set-setting` (agent.logLevel) and `sync-now` to it, and
 *   `agent.syncIntervalMs` = 1000 (version 2) to every device: the cut device's commands stay
 *   `pending` until the uplink returns, then go `delivered` → `executing` → `executed`;
 * - every command's transitions are printed as the API reports them, and at the end each
 *   command's journey (times after creation) and each config key's desired and reported version.
 *
 * ok() is true when every command was executed and every config key is reported applied at its
 * current version.
 */
import { send, type CtlConnection } from '../ctl/connection.js';
import type { TlsFiles } from '../common/tls-files.js';

interface CommandView {
  commandId: string;
  deviceId: string;
  type: string;
  status: string;
  createdAt: string;
  deliveredAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  result: unknown;
  error: string | null;
}

interface ConfigView {
  deviceId: string;
  key: string;
  value: unknown;
  version: number;
  reportedVersion: number | null;
  reportedStatus: string | null;
  reportedError: string | null;
}

const short = (id: string) => id.slice(0, 8);
const TERMINAL = new Set(['executed', 'failed', 'rejected', 'expired', 'canceled']);

export class DemoDownstream {
  readonly #connection: CtlConnection;
  readonly #say: (line: string) => void;
  readonly #commands = new Map<string, CommandView>();
  readonly #configKeys = new Set<string>();

  constructor(api: { url: string; operator: TlsFiles }, say: (line: string) => void) {
    this.#connection = { url: api.url, tls: api.operator, timeoutMs: 10_000 };
    this.#say = say;
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const answer = await send(this.#connection, method, path, body);
    if (answer.status >= 400) {
      throw new Error(`${method} ${path} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    }
    return answer.body as T;
  }

  async sendCommand(deviceId: string, type: string, payload: Record<string, unknown>): Promise<void> {
    const command = await this.#call<CommandView>('POST', '/api/v1/commands', { deviceId, type, payload });
    this.#commands.set(command.commandId, command);
    this.#say(`  > command ${short(command.commandId)} ${type} → ${short(deviceId)}: ${command.status}`);
  }

  async setConfig(deviceId: string, key: string, value: unknown): Promise<void> {
    const config = await this.#call<ConfigView>(
      'PUT',
      `/api/v1/devices/${deviceId}/config/${encodeURIComponent(key)}`,
      { value },
    );
    this.#configKeys.add(`${deviceId} ${key}`);
    this.#say(`  > config ${short(deviceId)} ${key} = ${JSON.stringify(value)}: version ${config.version}`);
  }

  /** Re-reads every command the demo sent and prints the ones whose status changed. */
  async poll(): Promise<void> {
    for (const [commandId, before] of this.#commands) {
      if (TERMINAL.has(before.status)) continue;
      const now = await this.#call<CommandView>('GET', `/api/v1/commands/${commandId}`);
      this.#commands.set(commandId, now);
      if (now.status !== before.status) {
        this.#say(
          `  < command ${short(commandId)} ${now.type} on ${short(now.deviceId)}: ${before.status} → ${now.status}`,
        );
      }
    }
  }

  async #configs(): Promise<ConfigView[]> {
    const devices = [...new Set([...this.#configKeys].map((entry) => entry.split(' ')[0] ?? ''))];
    const all = await Promise.all(
      devices.map((deviceId) => this.#call<{ items: ConfigView[] }>('GET', `/api/v1/devices/${deviceId}/config`)),
    );
    return all
      .flatMap((page) => page.items)
      .filter((config) => this.#configKeys.has(`${config.deviceId} ${config.key}`));
  }

  /** Waits (polling) until every command is terminal and every config key is reported, or the deadline. */
  async settle(deadlineMs: number): Promise<void> {
    while (Date.now() < deadlineMs) {
      await this.poll();
      const commandsDone = [...this.#commands.values()].every((command) => TERMINAL.has(command.status));
      const configsDone = (await this.#configs()).every((config) => config.reportedVersion === config.version);
      if (commandsDone && configsDone) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  /** Prints each command's journey and each config key's versions; true when everything succeeded. */
  async report(): Promise<boolean> {
    const after = (from: string, at: string | null) =>
      at === null ? '-' : `+${Math.max(0, Date.parse(at) - Date.parse(from))} ms`;
    this.#say('\nCommands (times after creation, as recorded in the database):');
    this.#say('  command   device    type          status     delivered    started     finished    result');
    let ok = true;
    for (const command of this.#commands.values()) {
      ok &&= command.status === 'executed';
      this.#say(
        `  ${short(command.commandId)}  ${short(command.deviceId)}  ${command.type.padEnd(12)}  ${command.status.padEnd(9)}` +
          `  ${after(command.createdAt, command.deliveredAt).padStart(10)}  ${after(command.createdAt, command.startedAt).padStart(10)}` +
          `  ${after(command.createdAt, command.finishedAt).padStart(10)}    ${JSON.stringify(command.result ?? command.error)}`,
      );
    }
    this.#say('\nConfig (desired version in the database, version the device reported):');
    for (const config of await this.#configs()) {
      const applied = config.reportedVersion === config.version && config.reportedStatus === 'applied';
      ok &&= applied;
      this.#say(
        `  ${short(config.deviceId)}  ${config.key.padEnd(22)} = ${JSON.stringify(config.value).padEnd(6)} desired v${config.version},` +
          ` reported v${config.reportedVersion ?? '-'} ${config.reportedStatus ?? ''}${config.reportedError ? ` (${config.reportedError})` : ''}`,
      );
    }
    return ok;
  }
}
