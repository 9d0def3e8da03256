/**
 * Every MQTT connection of the system turns Nagle's algorithm off (TCP_NODELAY), on both ends:
 * the broker's listener (broker/server.ts, `noDelay` of tls.createServer) and each client (the
 * bridge, the edge uplink, the dev tools), by spreading TCP_NO_DELAY into mqtt.connect's options.
 *
 * Why: Node.js 20 leaves Nagle on by default (net.Socket `noDelay` defaults to false). mqtt.js
 * 5.16 and aedes 1.2.0 write a packet's fixed header and its body as separate socket writes, so
 * a small packet (a PUBACK, a sync/ack) waited for the peer's delayed ACK, about 40 ms on Linux,
 * at each hop: the probe of `npm run bench:fairness` measured publish → sync/ack at a 44 ms
 * median with Nagle on, 20.7 ms with it off on the broker only, and lower with both ends off.
 * The readings are latency-bound small packets; coalescing buys nothing here.
 *
 * mqtt.js passes its options through to tls.connect, which hands `noDelay` to the socket
 * (Node.js ≥ 17.7); its IClientOptions type does not list the field, hence a spread, not a key.
 */
export const TCP_NO_DELAY = { noDelay: true } as const;
