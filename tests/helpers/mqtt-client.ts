/**
 * mqtt.js clients for tests: one connection attempt (no reconnects unless asked), a bounded
 * connect timeout, and the connection ended at teardown whatever the test did.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { registerCleanup } from './teardown.js';

/** how long a connection attempt may take before mqtt.js gives up (its own default is 30 s) */
export const CONNECT_TIMEOUT_MS = 10_000;

const DEFAULTS: IClientOptions = { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: CONNECT_TIMEOUT_MS };

const closedOnce = new WeakMap<MqttClient, Promise<void>>();

/** Starts connecting and returns at once (attach listeners before the CONNACK); see connection(). */
export function openClient(url: string, options: IClientOptions = {}): MqttClient {
  const client = mqtt.connect(url, { ...DEFAULTS, ...options });
  closedOnce.set(client, new Promise((resolve) => client.once('close', () => resolve())));
  registerCleanup(() => client.endAsync(true));
  return client;
}

export type ConnectionOutcome =
  | { connected: true; client: MqttClient; sessionPresent: boolean }
  | { connected: false; client: MqttClient; error: Error | undefined };

/** How the connection attempt of an opened client ends: a CONNACK, or the connection closing first (with the last error). */
export function connection(client: MqttClient): Promise<ConnectionOutcome> {
  return new Promise((resolve) => {
    let lastError: Error | undefined;
    client.on('error', (error) => {
      lastError = error;
    });
    client.once('connect', (connack) => resolve({ connected: true, client, sessionPresent: connack.sessionPresent }));
    client.once('close', () => resolve({ connected: false, client, error: lastError }));
  });
}

/** Connects and resolves on the CONNACK; fails with the reason when the connection closes first. */
export async function connectClient(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const outcome = await connection(openClient(url, options));
  if (!outcome.connected) {
    throw new Error(
      `${options.clientId ?? 'the client'} could not connect to ${url}: ${outcome.error?.message ?? 'closed'}`,
    );
  }
  return outcome.client;
}

/** Resolves when the connection of a client made here has closed, also when that happened before the call. */
export async function closed(client: MqttClient, timeoutMs = 5_000): Promise<void> {
  const whenClosed = closedOnce.get(client);
  if (whenClosed === undefined) throw new Error('closed() needs a client made by openClient or connectClient');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${client.options.clientId} still connected after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([whenClosed, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
