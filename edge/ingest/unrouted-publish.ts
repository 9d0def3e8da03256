/**
 * Acknowledging a sensor's publish without routing or retaining it (G5), in aedes 1.2.0.
 *
 * A rejected publish must be acknowledged, or a QoS 1 sensor re-sends it after every reconnect
 * and it blocks the readings behind it; and it must never reach a subscriber nor the retained
 * store, or a sensor could spoof the edge's error notices, and a malformed reading would be handed
 * to local applications (and, retained, to every later subscriber) as if it were valid.
 *
 * aedes 1.2.0 cannot say "acknowledge but drop" directly:
 *   - lib/handlers/publish.js runs authorizePublish, then enqueuePublish: for QoS 1 it writes the
 *     PUBACK and then calls broker.publish(packet) with the very packet object authorizePublish
 *     saw; for QoS 0 it calls broker.publish alone. An error from authorizePublish sends no PUBACK
 *     and closes the connection (lib/client.js _onError), so it cannot be used for this.
 *   - aedes.js publish runs storeRetained (only when packet.retain), enqueueOffline and emitPacket,
 *     which route by packet.topic.
 * aedes documents that authorizePublish may modify the packet before calling back (docs/Aedes.md,
 * "Handler: authorizePublish", which rewrites packet.payload). So a rejected packet is rewritten
 * to a topic nobody can receive, with the retain flag cleared and the payload emptied, and then
 * authorized: aedes acknowledges it and routes it into the sink.
 *
 * Nobody can receive the sink topic `$edge/unrouted`:
 *   - the sensor listener grants only filters under sensors/ (authorizeSubscribe);
 *   - even a `#` or `+/…` filter would not match it: aedes lib/handlers/subscribe.js
 *     (blockDollarSignTopics) does not deliver topics starting with '$' to filters starting with a
 *     wildcard [MQTT-4.7.2-1];
 *   - aedes' own listeners are on $SYS/+/heartbeat, $SYS/+/birth and $SYS/+/new/clients (aedes.js
 *     listen), which it does not match.
 * Nothing is retained (retain is false; and aedes.js storeRetained deletes rather than stores a
 * retained message with an empty payload) and nothing is queued for offline sessions (no
 * subscription matches). Emptying the payload also lets the rejected payload be freed at once. The 'publish' event and the `published` hook see the sink topic.
 *
 * tests/unit/upstream-internals.test.ts checks this on a real aedes; package.json pins aedes.
 */
import type { PublishPacket } from 'aedes';

/** Where a rejected publish goes after its acknowledgement: a topic no client may receive. */
export const UNROUTED_TOPIC = '$edge/unrouted';

const EMPTY = Buffer.alloc(0);

/** Call inside authorizePublish, before calling back null: the publish is acknowledged, not routed. */
export function acknowledgeWithoutRouting(packet: PublishPacket): void {
  packet.topic = UNROUTED_TOPIC;
  packet.retain = false;
  packet.payload = EMPTY;
}
