/**
 * A persistent session stores only the subscriptions the broker granted, at the QoS it granted.
 *
 * aedes 1.2.0 lib/handlers/subscribe.js storeSubscriptions, run for every filter that
 * authorizeSubscribe granted in a SUBSCRIBE of a clean:false client, stores `packet.subscriptions`,
 * i.e. every filter of the packet, including the ones authorizeSubscribe negated (SUBACK 128). The
 * persistence then matches later messages against the refused filter (subscriptionsByTopic) and
 * queues them for the session while it is offline; on reconnect they were delivered to
 * authorizeForward, which withheld each one with a WARN. A device that mixed its own sync/ack
 * with `devices/+/telemetry` in one SUBSCRIBE made the broker queue every other device's telemetry
 * for it.
 *
 * This wraps the persistence's addSubscriptions (the aedes-persistence interface, the same method
 * in aedes-persistence 11 and aedes-persistence-redis 11) so that each subscription is decided
 * again and only granted ones are stored, with the granted QoS. It is the one place every stored
 * subscription goes through, whichever aedes path stores it.
 */
import type { Client } from 'aedes';

export interface StoredSubscription {
  topic: string;
  qos: number;
  [option: string]: unknown;
}

/** The QoS to store `subscription` with for `client`, or null when it was not granted. */
export type GrantedQos = (client: Client, subscription: StoredSubscription) => number | null;

interface SubscriptionStore {
  addSubscriptions(client: Client, subscriptions: StoredSubscription[], callback?: unknown): unknown;
}

function isSubscriptionStore(value: unknown): value is SubscriptionStore {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Partial<SubscriptionStore>).addSubscriptions === 'function'
  );
}

/** Returns false when `persistence` has no addSubscriptions method (nothing installed). */
export function storeOnlyGrantedSubscriptions(persistence: unknown, grantedQos: GrantedQos): boolean {
  if (!isSubscriptionStore(persistence)) return false;
  const addSubscriptions = persistence.addSubscriptions.bind(persistence);
  persistence.addSubscriptions = (client, subscriptions, ...rest) => {
    const granted: StoredSubscription[] = [];
    for (const subscription of subscriptions) {
      const qos = grantedQos(client, subscription);
      if (qos !== null) granted.push({ ...subscription, qos });
    }
    if (granted.length > 0) return addSubscriptions(client, granted, ...rest);
    // aedes-persistence-redis 11 would send an HMSET without fields, which Redis refuses
    const [callback] = rest;
    if (typeof callback === 'function') {
      process.nextTick(callback as (error: null) => void, null);
      return undefined;
    }
    return Promise.resolve();
  };
  return true;
}
