/**
 * Makes the SUBACK report the QoS a subscription is granted at (MQTT-3.9.3-5 / table 3.9.3: the
 * SUBACK return code is the maximum QoS granted), which is always 1 here (./acl.ts).
 *
 * aedes 1.2.0 builds the SUBACK from the QoS the client *requested*: lib/handlers/subscribe.js
 * doSubscribe copies `sub.qos` into `SubState.granted` before authorizeSubscribe runs, and only
 * storeSubscriptions overwrites it, with 128, for a negated subscription. The subscription that
 * authorizeSubscribe calls back with (`{topic, qos: 1}`) is used for delivery but never reaches the
 * SUBACK: a client asking for QoS 0 or 2 was told 0 or 2 and got its messages at QoS 1.
 *
 * So the requested QoS is rewritten before aedes sees the SUBSCRIBE: a listener prepended to the
 * client's mqtt-packet parser ('packet' event; aedes' own listener is `enqueue` in lib/client.js)
 * sets the QoS of every filter of a SUBSCRIBE to the granted QoS. A refused filter still gets 128
 * (storeSubscriptions). Installed from preConnect, which aedes calls synchronously while the parser
 * is emitting the CONNECT, so even a SUBSCRIBE in the same TCP segment as the CONNECT is rewritten.
 *
 * This touches aedes internals (`client._parser`, an EventEmitter emitting parsed packets); the
 * shape is checked per connection and tests/unit/upstream-internals.test.ts checks it on upgrades.
 */
import type { Client } from 'aedes';

interface ParserLike {
  prependListener(event: 'packet', listener: (packet: { cmd?: string; subscriptions?: unknown }) => void): unknown;
}

function isParser(value: unknown): value is ParserLike {
  return (
    typeof value === 'object' && value !== null && typeof (value as Partial<ParserLike>).prependListener === 'function'
  );
}

/** Returns false when the client has no parser of the expected shape (nothing installed). */
export function grantQosInSuback(client: Client, grantedQos: 0 | 1 | 2): boolean {
  const parser = (client as unknown as { _parser?: unknown })._parser;
  if (!isParser(parser)) return false;
  parser.prependListener('packet', (packet) => {
    if (packet.cmd !== 'subscribe' || !Array.isArray(packet.subscriptions)) return;
    for (const subscription of packet.subscriptions as Array<{ qos?: number }>) subscription.qos = grantedQos;
  });
  return true;
}
