/**
 * Broker process configuration from the environment.
 *
 *   BROKER_HOST          listen address (default 0.0.0.0)
 *   BROKER_PORT          MQTTS port (default 8883)
 *   BROKER_TLS_CERT      server certificate PEM (default certs/dev/broker.crt)
 *   BROKER_TLS_KEY       its private key PEM (default certs/dev/broker.key)
 *   BROKER_TLS_CA        CA that client certificates must chain to (default certs/dev/ca.crt)
 *   METRICS_PORT         serve /metrics and /healthz on this port (off when unset)
 *   MAX_PAYLOAD_BYTES    largest accepted payload (default from schemas/limits.ts)
 *   BROKER_ID            aedes broker id (default: a random UUID)
 *   BROKER_REDIS_URL     cluster mode: not implemented yet, refused with a clear error
 */
import { MAX_PAYLOAD_BYTES } from '../schemas/limits.js';
import { ConfigError, envInt, envOptional, envString } from './env.js';

type Env = Record<string, string | undefined>;

/** MQTT's "remaining length" cannot exceed 268,435,455 bytes; leave room for the topic. */
const MQTT_MAX_PAYLOAD_BYTES = 268_435_455 - 65_539;

export interface BrokerConfig {
  host: string;
  port: number;
  tls: { certPath: string; keyPath: string; caPath: string };
  metricsPort: number | undefined;
  maxPayloadBytes: number;
  brokerId: string | undefined;
}

export function loadBrokerConfig(env: Env = process.env): BrokerConfig {
  if (envOptional(env, 'BROKER_REDIS_URL') !== undefined) {
    throw new ConfigError(
      'BROKER_REDIS_URL is set, but cluster mode is not implemented yet: unset it to run a standalone broker ' +
        '(the extension point is BrokerOptions.backends in broker/server.ts)',
    );
  }
  const metricsPort = envOptional(env, 'METRICS_PORT');
  return {
    host: envString(env, 'BROKER_HOST', '0.0.0.0'),
    port: envInt(env, 'BROKER_PORT', 8883, { min: 0, max: 65_535 }),
    tls: {
      certPath: envString(env, 'BROKER_TLS_CERT', 'certs/dev/broker.crt'),
      keyPath: envString(env, 'BROKER_TLS_KEY', 'certs/dev/broker.key'),
      caPath: envString(env, 'BROKER_TLS_CA', 'certs/dev/ca.crt'),
    },
    metricsPort: metricsPort === undefined ? undefined : envInt(env, 'METRICS_PORT', 0, { min: 0, max: 65_535 }),
    maxPayloadBytes: envInt(env, 'MAX_PAYLOAD_BYTES', MAX_PAYLOAD_BYTES, { min: 1, max: MQTT_MAX_PAYLOAD_BYTES }),
    brokerId: envOptional(env, 'BROKER_ID'),
  };
}
