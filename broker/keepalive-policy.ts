/**
 * The keepalive the broker applies to a connection (pure).
 *
 * MQTT 3.1.1 defines CONNACK return codes 0-5 only (section 3.2.2.3). aedes 1.2.0
 * lib/handlers/connect.js answers a CONNECT whose keepalive is 0, or above the `keepaliveLimit`
 * option, with return code 6 ("keep alive limit exceeded"), which no 3.1.1 client can interpret
 * (mqtt.js reports "unknown return code", mosquitto "Connection Refused: unknown reason"). Refusing
 * with a defined code would say something false (2 "identifier rejected" blames the clientId, 5
 * "not authorized" the credentials), so the broker accepts such a CONNECT and keeps its own idle
 * limit instead: the connection's keepalive becomes the broker's limit, and aedes closes the
 * connection when no packet arrived for 1.5 × that limit ([MQTT-3.1.2-24], lib/handlers/connect.js
 * setKeepAlive, refreshed on every packet by lib/handlers/index.js). MQTT 3.1.1 section 3.1.2.10
 * allows this: "a Server is permitted to disconnect a Client that it determines to be inactive or
 * non-responsive at any time, regardless of the Keep Alive value provided by that Client".
 *
 * So a client that asked for no keepalive (0) or a longer one than the limit is closed after
 * 1.5 × limit seconds of silence (900 s with the default limit of 600 s), and dead connections
 * never stay open forever. A client asking for a keepalive within the limit keeps its own.
 */

/** The keepalive (seconds) to apply to a CONNECT that asked for `requested`. */
export function serverKeepaliveSeconds(requested: number | undefined, limitSeconds: number): number {
  if (requested === undefined || !Number.isInteger(requested) || requested <= 0) return limitSeconds;
  return Math.min(requested, limitSeconds);
}
