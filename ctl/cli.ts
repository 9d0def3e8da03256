/**
 * ctl, the operator CLI: every command is one or a few requests to the REST API (bridge/api/)
 * with an operator certificate; it prints tables (or the API's JSON with --json) and ends with an
 * exit code scripts can rely on (./exit-codes.ts, ctl/README.md). runCtl is the whole program
 * without process globals, so tests run it in-process or spawn ./main.ts.
 */
import { parseArgs } from 'node:util';
import { ConfigError, type Env } from '../common/env.js';
import { connectionFrom, ConnectionFailure, send, type CtlConnection, type HttpAnswer } from './connection.js';
import { parseDuration } from './duration.js';
import { EXIT, exitCodeForStatus, type ExitCode } from './exit-codes.js';
import { cellText, keyValues, table } from './format.js';

export interface CtlOutput {
  log(text: string): void;
  error(text: string): void;
}

export const USAGE = `usage: npm run ctl -- <command> [arguments] [options]

commands:
  devices                                   devices with presence and sync status
  device <deviceId>                         one device
  status <deviceId>                         sync status: last batch, pending readings and commands, presence
  command send <deviceId> <type> [json]     create a command (payload JSON, default {})
          [--expires-in 10m] [--wait [--timeout 60s]]
  command get <commandId>
  command list [--device ID] [--status S] [--type T]
  command cancel <commandId>
  config list <deviceId>                    desired vs reported, per key
  config get <deviceId> <key>
  config set <deviceId> <key> <json> [--expect-version N]
  config delete <deviceId> <key> [--expect-version N]
  config lagging [--key K]                  keys a device has not applied yet
  telemetry <deviceId> [--sensor S] [--from ISO] [--to ISO]
  conflicts [--device ID]

options:
  --url URL        the API (env CTL_URL, default https://127.0.0.1:8443)
  --ca FILE        the project CA (env CTL_CA)
  --cert FILE      an operator certificate, 'npm run certs -- operator --name NAME' (env CTL_CERT)
  --key FILE       its key (env CTL_KEY)
  --limit N        items per page (default 100); --after CURSOR for the next page
  --json           print the API's JSON instead of a table

exit codes: 0 ok, 1 usage, 2 cannot connect (TLS refused, no answer), 3 not found, 4 conflict,
5 input refused by the API, 6 server error, 7 certificate not allowed, 8 command did not succeed (--wait)`;

const OPTIONS = {
  url: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  limit: { type: 'string' },
  after: { type: 'string' },
  device: { type: 'string' },
  status: { type: 'string' },
  type: { type: 'string' },
  sensor: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  'expires-in': { type: 'string' },
  'expect-version': { type: 'string' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

class UsageError extends Error {}
/** An answer that ends the command with its exit code (the API's error already printed). */
class Refused extends Error {
  constructor(readonly code: ExitCode) {
    super('refused');
  }
}

export async function runCtl(argv: string[], env: Env, out: CtlOutput): Promise<ExitCode> {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true }));
  } catch (error) {
    out.error(`${(error as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (values.help || positionals.length === 0 || positionals[0] === 'help') {
    out.log(USAGE);
    return positionals.length === 0 && !values.help ? EXIT.usage : EXIT.ok;
  }
  try {
    const connection = connectionFrom(values, env);
    const context = new Context(connection, values, out);
    await dispatch(context, positionals);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      out.error(`error: ${error.message}`);
      return EXIT.usage;
    }
    if (error instanceof ConnectionFailure) {
      out.error(`error: ${error.message}`);
      return EXIT.connection;
    }
    if (error instanceof Refused) return error.code;
    out.error(`error: ${(error as Error).message}`);
    return EXIT.server;
  }
}

class Context {
  constructor(
    readonly connection: CtlConnection,
    readonly values: Values,
    readonly out: CtlOutput,
  ) {}

  /** The API's answer on success; on an error status prints its reason and ends with its exit code. */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const answer: HttpAnswer = await send(this.connection, method, path, body);
    const code = exitCodeForStatus(answer.status);
    if (code === EXIT.ok) return answer.body;
    const error = (answer.body as { error?: { code?: string; message?: string; details?: unknown } } | null)?.error;
    const details = error?.details === undefined ? '' : ` ${JSON.stringify(error.details)}`;
    this.out.error(
      `error: ${answer.status} ${error?.code ?? ''}: ${error?.message ?? cellText(answer.body)}${details}`,
    );
    throw new Refused(code);
  }

  /** --json: the body as the API sent it; otherwise `render` it. */
  print(body: unknown, render: (body: never) => string): void {
    this.out.log(this.values.json ? JSON.stringify(body, null, 2) : render(body as never));
  }

  page(): string {
    const query = new URLSearchParams();
    if (this.values.limit !== undefined) {
      if (!/^\d+$/.test(this.values.limit))
        throw new UsageError(`--limit must be a number, got '${this.values.limit}'`);
      query.set('limit', this.values.limit);
    }
    if (this.values.after !== undefined) query.set('after', this.values.after);
    return query.toString();
  }

  /** A paged answer: the table, and on stderr how to get the next page. */
  printPage(body: unknown, render: (items: never[]) => string): void {
    const page = body as { items: never[]; next: string | null };
    this.print(body, () => render(page.items));
    if (!this.values.json && page.next !== null) this.out.error(`more: --after ${page.next}`);
  }
}

function need(positionals: string[], index: number, what: string): string {
  const value = positionals[index];
  if (value === undefined) throw new UsageError(`missing ${what}\n\n${USAGE}`);
  return encodeURIComponent(value);
}

function withQuery(path: string, ...parts: (string | [string, string | undefined])[]): string {
  const query = new URLSearchParams();
  for (const part of parts) {
    if (typeof part === 'string') {
      for (const [key, value] of new URLSearchParams(part)) query.set(key, value);
    } else if (part[1] !== undefined) query.set(part[0], part[1]);
  }
  const text = query.toString();
  return text === '' ? path : `${path}?${text}`;
}

function parseJsonArgument(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UsageError(`${what} must be JSON, got '${text}' (quote a string: '"text"')`);
  }
}

function expectVersion(values: Values): number | undefined {
  const raw = values['expect-version'];
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`--expect-version must be a whole number, got '${raw}'`);
  return Number(raw);
}

type Device = {
  deviceId: string;
  name: string;
  type: string;
  presence: { status: string | null; lastSeenAt: string | null };
  sync: {
    lastSyncAt: string | null;
    lastSyncStatus: string | null;
    totalSyncedRecords: number;
    pendingRecordsCount: number;
  } | null;
};
type Command = {
  commandId: string;
  deviceId: string;
  type: string;
  status: string;
  createdAt?: string;
  [field: string]: unknown;
};
type ConfigEntry = { key: string; value?: unknown; version: number; [field: string]: unknown };

const deviceRow = (device: Device) => [
  device.deviceId,
  device.name,
  device.type,
  device.presence.status,
  device.presence.lastSeenAt,
  device.sync?.lastSyncAt,
  device.sync?.lastSyncStatus,
  device.sync?.totalSyncedRecords,
  device.sync?.pendingRecordsCount,
];
const DEVICE_HEADERS = ['DEVICE', 'NAME', 'TYPE', 'PRESENCE', 'LAST SEEN', 'LAST SYNC', 'RESULT', 'SYNCED', 'PENDING'];
const COMMAND_HEADERS = ['COMMAND', 'DEVICE', 'TYPE', 'STATUS', 'CREATED', 'EXPIRES'];
const commandRow = (command: Command) => [
  command.commandId,
  command.deviceId,
  command.type,
  command.status,
  command.createdAt,
  command['expiresAt'] as string | undefined,
];
const commandDetails = (command: Command) =>
  keyValues(Object.entries(command).map(([key, value]) => [key, cellText(value)] as const));
const configRow = (entry: ConfigEntry) => [
  entry.key,
  cellText(entry.value),
  entry.version,
  entry['reportedVersion'] as number | undefined,
  entry['reportedStatus'] as string | undefined,
  entry['reportedError'] as string | undefined,
];
const CONFIG_HEADERS = ['KEY', 'VALUE', 'VERSION', 'REPORTED', 'STATUS', 'ERROR'];

const TERMINAL = new Set(['executed', 'failed', 'rejected', 'expired', 'canceled']);

async function dispatch(ctx: Context, positionals: string[]): Promise<void> {
  const [command, sub] = positionals;
  const { values } = ctx;
  switch (command) {
    case 'devices': {
      const body = await ctx.call('GET', withQuery('/api/v1/devices', ctx.page()));
      ctx.printPage(body, (items: Device[]) => table(DEVICE_HEADERS, items.map(deviceRow)));
      return;
    }
    case 'device': {
      const body = await ctx.call('GET', `/api/v1/devices/${need(positionals, 1, 'deviceId')}`);
      ctx.print(body, (device: Device) =>
        keyValues(DEVICE_HEADERS.map((header, index) => [header.toLowerCase(), deviceRow(device)[index]] as const)),
      );
      return;
    }
    case 'status': {
      const body = await ctx.call('GET', `/api/v1/sync/status/${need(positionals, 1, 'deviceId')}`);
      ctx.print(body, (status: Record<string, unknown>) =>
        keyValues(
          Object.entries(status).flatMap(([key, value]) =>
            key === 'presence' && typeof value === 'object' && value !== null
              ? Object.entries(value).map(([inner, innerValue]) => [`presence.${inner}`, cellText(innerValue)] as const)
              : [[key, cellText(value)] as const],
          ),
        ),
      );
      return;
    }
    case 'command':
      return commandCommand(ctx, sub, positionals);
    case 'config':
      return configCommand(ctx, sub, positionals);
    case 'telemetry': {
      const deviceId = need(positionals, 1, 'deviceId');
      const path = withQuery(
        `/api/v1/devices/${deviceId}/telemetry`,
        ['sensor', values.sensor],
        ['from', values.from],
        ['to', values.to],
        ctx.page(),
      );
      const body = await ctx.call('GET', path);
      ctx.printPage(body, (items: Record<string, unknown>[]) =>
        table(
          ['TIMESTAMP', 'SENSOR', 'TYPE', 'VALUE', 'UNIT', 'VERSION', 'ID'],
          items.map((row) => [
            row['timestamp'] as string,
            row['sensorId'] as string,
            row['dataType'] as string,
            row['value'] as number,
            row['unit'] as string,
            row['version'] as number,
            row['id'] as string,
          ]),
        ),
      );
      return;
    }
    case 'conflicts': {
      const body = await ctx.call('GET', withQuery('/api/v1/conflicts', ['deviceId', values.device], ctx.page()));
      ctx.printPage(body, (items: Record<string, unknown>[]) =>
        table(
          ['DETECTED', 'DEVICE', 'RECORD', 'TYPE', 'STRATEGY'],
          items.map((row) => [
            row['detectedAt'] as string,
            row['deviceId'] as string,
            row['recordId'] as string,
            row['conflictType'] as string,
            row['resolutionStrategy'] as string,
          ]),
        ),
      );
      return;
    }
    default:
      throw new UsageError(`unknown command '${String(command)}'\n\n${USAGE}`);
  }
}

async function commandCommand(ctx: Context, sub: string | undefined, positionals: string[]): Promise<void> {
  const { values } = ctx;
  switch (sub) {
    case 'send': {
      const deviceId = decodeURIComponent(need(positionals, 2, 'deviceId'));
      const type = decodeURIComponent(need(positionals, 3, 'command type'));
      const payload = positionals[4] === undefined ? {} : parseJsonArgument(positionals[4], 'the payload');
      let expiresAt: string | undefined;
      if (values['expires-in'] !== undefined) {
        const ms = parseDuration(values['expires-in']);
        if (ms === null)
          throw new UsageError(
            `--expires-in must be a duration like 90s, 10m, 2h or 7d, got '${values['expires-in']}'`,
          );
        expiresAt = new Date(Date.now() + ms).toISOString();
      }
      const created = (await ctx.call('POST', '/api/v1/commands', {
        deviceId,
        type,
        payload,
        ...(expiresAt === undefined ? {} : { expiresAt }),
      })) as Command;
      if (!values.wait) {
        ctx.print(created, (command: Command) => table(COMMAND_HEADERS, [commandRow(command)]));
        return;
      }
      const timeoutMs = values.timeout === undefined ? 60_000 : parseDuration(values.timeout);
      if (timeoutMs === null)
        throw new UsageError(`--timeout must be a duration like 60s, got '${String(values.timeout)}'`);
      const deadline = Date.now() + timeoutMs;
      let current = created;
      while (!TERMINAL.has(current.status)) {
        if (Date.now() > deadline) {
          ctx.out.error(`error: command ${created.commandId} is still ${current.status} after ${timeoutMs} ms`);
          throw new Refused(EXIT.commandFailed);
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
        current = (await ctx.call('GET', `/api/v1/commands/${created.commandId}`)) as Command;
      }
      ctx.print(current, commandDetails);
      if (current.status !== 'executed') throw new Refused(EXIT.commandFailed);
      return;
    }
    case 'get': {
      const body = await ctx.call('GET', `/api/v1/commands/${need(positionals, 2, 'commandId')}`);
      ctx.print(body, commandDetails);
      return;
    }
    case 'list': {
      const path = withQuery(
        '/api/v1/commands',
        ['deviceId', values.device],
        ['status', values.status],
        ['type', values.type],
        ctx.page(),
      );
      const body = await ctx.call('GET', path);
      ctx.printPage(body, (items: Command[]) => table(COMMAND_HEADERS, items.map(commandRow)));
      return;
    }
    case 'cancel': {
      const body = await ctx.call('POST', `/api/v1/commands/${need(positionals, 2, 'commandId')}/cancel`);
      ctx.print(body, (command: Command) => table(COMMAND_HEADERS, [commandRow(command)]));
      return;
    }
    default:
      throw new UsageError(`'command' needs send, get, list or cancel\n\n${USAGE}`);
  }
}

async function configCommand(ctx: Context, sub: string | undefined, positionals: string[]): Promise<void> {
  const expected = expectVersion(ctx.values);
  switch (sub) {
    case 'list': {
      const body = await ctx.call('GET', `/api/v1/devices/${need(positionals, 2, 'deviceId')}/config`);
      ctx.print(body, (answer: { items: ConfigEntry[] }) => table(CONFIG_HEADERS, answer.items.map(configRow)));
      return;
    }
    case 'get': {
      const path = `/api/v1/devices/${need(positionals, 2, 'deviceId')}/config/${need(positionals, 3, 'key')}`;
      const body = await ctx.call('GET', path);
      ctx.print(body, (entry: ConfigEntry) => table(CONFIG_HEADERS, [configRow(entry)]));
      return;
    }
    case 'set': {
      const path = `/api/v1/devices/${need(positionals, 2, 'deviceId')}/config/${need(positionals, 3, 'key')}`;
      const raw = positionals[4];
      if (raw === undefined) throw new UsageError(`missing the value (JSON)\n\n${USAGE}`);
      const value = parseJsonArgument(raw, 'the value');
      const body = await ctx.call('PUT', path, {
        value,
        ...(expected === undefined ? {} : { expectedVersion: expected }),
      });
      ctx.print(body, (entry: ConfigEntry) => table(CONFIG_HEADERS, [configRow(entry)]));
      return;
    }
    case 'delete': {
      const path = withQuery(
        `/api/v1/devices/${need(positionals, 2, 'deviceId')}/config/${need(positionals, 3, 'key')}`,
        ['expectedVersion', expected === undefined ? undefined : String(expected)],
      );
      const body = await ctx.call('DELETE', path);
      ctx.print(body, () => `deleted ${decodeURIComponent(need(positionals, 3, 'key'))}`);
      return;
    }
    case 'lagging': {
      const body = await ctx.call('GET', withQuery('/api/v1/config/lagging', ['key', ctx.values.key], ctx.page()));
      ctx.printPage(body, (items: (ConfigEntry & { deviceId?: string })[]) =>
        table(
          ['DEVICE', ...CONFIG_HEADERS],
          items.map((entry) => [entry.deviceId, ...configRow(entry)]),
        ),
      );
      return;
    }
    default:
      throw new UsageError(`'config' needs list, get, set, delete or lagging\n\n${USAGE}`);
  }
}
