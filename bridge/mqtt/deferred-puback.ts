/**
 * Deferred PUBACK: the bridge confirms a QoS 1 message to the broker only after its rows are
 * committed (and its sync/ack published), so a bridge crash loses nothing: the broker keeps the
 * message in the bridge's clean:false session and delivers it again.
 *
 * Why this is not simply "call handleMessage's callback after commit" (verified in mqtt 5.16.0):
 *   - client.js `work()` hands incoming packets to the handlers strictly one at a time and takes
 *     the next packet only when the handler calls back. Waiting for the commit inside
 *     handleMessage would therefore put every message in a database batch of its own.
 *   - handlers/publish.js sends the PUBACK itself right after the handleMessage callback, unless
 *     the callback is given an error: `if (err) return done(err)` skips the PUBACK, and `done`
 *     (the work loop's next-tick) ignores its argument, so no 'error' event is emitted.
 * So handleMessage hands the packet over and calls back at once WITH the PUBACK_DEFERRED
 * sentinel (the next packet is processed immediately and no PUBACK is sent), and ack() later
 * sends the PUBACK itself through the client's internal _sendPacket.
 *
 * A PUBACK may only go back on the connection that delivered the message: message ids are per
 * connection, and the broker resends every unacknowledged message on the next connection (with
 * possibly reused ids). mqtt.js would even queue a PUBACK sent while disconnected and flush it
 * onto the NEXT connection. So every delivery remembers the connection epoch it arrived in, and
 * ack() sends nothing unless the client is connected and the epoch is still the current one;
 * the broker redelivers such a message and ingest is idempotent.
 *
 * The epoch advances when a connection ends ('close') and when a CONNACK is received
 * ('packetreceive'). Not on the 'connect' event: mqtt.js emits that only after re-sending its
 * stored outgoing packets, asynchronously, while the new connection's first PUBLISH packets can
 * already be handled — they would be tagged with the previous epoch and never acknowledged.
 *
 * Backpressure (a backstop: the ingest pipeline holds at most MAX_IN_FLIGHT messages and answers
 * the rest "retry later", G7, and the bridge sets maxUncommitted one above that, so reading does not
 * pause in practice; a pause would hold every device behind the one that fills the gate):
 * while `maxUncommitted` deliveries wait for their database write, the callback is
 * held, which pauses mqtt.js's packet processing (and so TCP reads) until a write finishes. The
 * gate counts only messages not yet committed: a committed message still waits for the broker's
 * PUBACK of its sync/ack, and that PUBACK arrives through the very packet loop the gate holds,
 * so counting it would deadlock. A long database outage with the gate closed also holds
 * PINGRESPs; mqtt.js then reconnects, which is harmless (unacknowledged messages are redelivered).
 *
 * Only QoS 1 is deferred (the bridge subscribes with QoS 1, so it never receives QoS 2); QoS 0
 * messages are handed over with a no-op ack.
 */
import type { IPublishPacket, MqttClient, Packet } from 'mqtt';

export const PUBACK_DEFERRED: Error = Object.freeze(new Error('PUBACK deferred until the message is committed'));

export interface Delivery {
  topic: string;
  payload: Buffer;
  /** The message needs no more database work: frees its place under maxUncommitted. Idempotent. */
  committed: () => void;
  /** Sends the PUBACK if the delivering connection is still the current one. Idempotent; implies committed(). */
  ack: () => void;
  /** True once the delivering connection has ended (the broker will redeliver the message). */
  isStale: () => boolean;
  /** Settles the delivery without a PUBACK; implies committed(). */
  release: () => void;
}

export interface DeferredPubackOptions {
  /** deliveries handed over and not yet committed before reading pauses; default 1000 */
  maxUncommitted?: number;
  /** deliveries handed over and not yet acknowledged or released */
  onInFlightChange?: (inFlight: number) => void;
}

export interface DeferredPubacks {
  /** deliveries handed over and not yet acknowledged or released */
  inFlight(): number;
  /** Restores mqtt.js's own handleMessage and removes the listeners. */
  dispose(): void;
}

interface ClientInternals {
  _sendPacket(packet: { cmd: 'puback'; messageId: number }, callback?: () => void): void;
}

export function deferPubacks(
  client: MqttClient,
  onMessage: (delivery: Delivery) => void,
  options: DeferredPubackOptions = {},
): DeferredPubacks {
  const maxUncommitted = options.maxUncommitted ?? 1000;
  let epoch = 0;
  let inFlight = 0;
  let uncommitted = 0;
  const heldCallbacks: Array<() => void> = [];

  const onPacket = (packet: Packet): void => {
    if (packet.cmd === 'connack') epoch += 1;
  };
  const onClose = (): void => {
    epoch += 1;
  };
  client.on('packetreceive', onPacket);
  client.on('close', onClose);

  const changeInFlight = (delta: number): void => {
    inFlight += delta;
    options.onInFlightChange?.(inFlight);
  };
  const changeUncommitted = (delta: number): void => {
    uncommitted += delta;
    while (uncommitted < maxUncommitted && heldCallbacks.length > 0) heldCallbacks.shift()?.();
  };

  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored and called on the same client
  const originalHandleMessage = client.handleMessage;
  client.handleMessage = (packet: IPublishPacket, callback: (error?: Error) => void): void => {
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const messageId = packet.messageId;
    if (packet.qos !== 1 || messageId === undefined) {
      const noop = (): void => undefined;
      onMessage({ topic: packet.topic, payload, committed: noop, ack: noop, isStale: () => false, release: noop });
      callback();
      return;
    }
    const deliveredIn = epoch;
    let isCommitted = false;
    let settled = false;
    const committed = (): void => {
      if (isCommitted) return;
      isCommitted = true;
      changeUncommitted(-1);
    };
    const settle = (): boolean => {
      committed();
      if (settled) return false;
      settled = true;
      changeInFlight(-1);
      return true;
    };
    changeInFlight(+1);
    changeUncommitted(+1);
    onMessage({
      topic: packet.topic,
      payload,
      committed,
      // G3: the PUBACK to the broker, called by the ingest pipeline only after the commit
      ack: () => {
        if (settle() && client.connected && epoch === deliveredIn) {
          (client as unknown as ClientInternals)._sendPacket({ cmd: 'puback', messageId });
        }
      },
      isStale: () => epoch !== deliveredIn,
      release: () => void settle(),
    });
    // G7 (partial): bounded memory: at most maxUncommitted messages wait, then reading pauses
    if (uncommitted < maxUncommitted) callback(PUBACK_DEFERRED);
    else heldCallbacks.push(() => callback(PUBACK_DEFERRED));
  };

  return {
    inFlight: () => inFlight,
    dispose: () => {
      client.handleMessage = originalHandleMessage;
      client.off('packetreceive', onPacket);
      client.off('close', onClose);
    },
  };
}
