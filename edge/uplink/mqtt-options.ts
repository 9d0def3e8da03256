/**
 * mqtt.js options of the uplink (pure): MQTT 3.1.1, clientId = device id, persistent session,
 * QoS 1 will on devices/{id}/status, no automatic reconnect (the uplink schedules reconnects with
 * backoff itself), mutual TLS when certificates are given.
 *
 * With `secureContext` (built once per uplink by uplinkSecureContext) every reconnect reuses it:
 * mqtt.js 5.16 hands its options to node's tls.connect, which otherwise builds a new context from
 * the PEM key, certificate and CA on every attempt (measured 2–7 ms of CPU on the development
 * machine, more than the RSA signature of the handshake itself, and paid by attempts the broker
 * refuses before TLS too).
 */
import { TCP_NO_DELAY } from '../../common/no-delay.js';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { IClientOptions, IStore } from 'mqtt';
import type { TlsFiles } from '../../common/tls-files.js';
import type { DeviceStatus } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';

export interface UplinkClientSettings {
  deviceId: string;
  tls?: TlsFiles | undefined;
  /** uplinkSecureContext(tls): used instead of building a context from `tls` at every connect */
  secureContext?: SecureContext | undefined;
  connectTimeoutMs: number;
  keepaliveSeconds: number;
  incomingStore: IStore;
  outgoingStore: IStore;
}

export function statusPayload(online: boolean, at: Date): Buffer {
  const status: DeviceStatus = { online, at: at.toISOString() };
  return Buffer.from(JSON.stringify(status));
}

export function buildUplinkClientOptions(settings: UplinkClientSettings, now: Date): IClientOptions {
  return {
    clientId: settings.deviceId,
    protocolVersion: 4,
    clean: false,
    reconnectPeriod: 0,
    resubscribe: false,
    ...TCP_NO_DELAY, // Nagle off (common/no-delay.ts)
    connectTimeout: settings.connectTimeoutMs,
    keepalive: settings.keepaliveSeconds,
    incomingStore: settings.incomingStore,
    outgoingStore: settings.outgoingStore,
    will: { topic: topics.status(settings.deviceId), payload: statusPayload(false, now), qos: 1, retain: true },
    ...(settings.tls
      ? { ca: settings.tls.ca, cert: settings.tls.cert, key: settings.tls.key, rejectUnauthorized: true }
      : {}),
    ...(settings.tls && settings.secureContext ? { secureContext: settings.secureContext } : {}),
  };
}

/** The TLS context of the uplink's connections, built once (see the header). */
export function uplinkSecureContext(tls: TlsFiles): SecureContext {
  return createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key });
}
