/** Prometheus metrics of one broker node, registered in a registry the caller may share. */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClientRole } from './identity.js';

export interface BrokerMetrics {
  registry: Registry;
  connectedClients: Gauge;
  /** label reason: 'rate', 'source-cap', 'total-cap' (refused before TLS), 'tls-handshake', or an IdentityRefusalCode / 'will-denied' */
  refusedConnections: Counter<'reason'>;
  deniedPublishes: Counter<'role'>;
  deniedSubscriptions: Counter<'role'>;
  deniedDeliveries: Counter<'role'>;
  oversizePackets: Counter;
  /** label listener: 'mqtts' or 'metrics'; label code: the errno code, e.g. EMFILE */
  listenerErrors: Counter<'listener' | 'code'>;
}

export function createBrokerMetrics(registry: Registry, connectedClientCount: () => number): BrokerMetrics {
  return {
    registry,
    connectedClients: new Gauge({
      name: 'mqtt_broker_connected_clients',
      help: 'MQTT clients with an established session on this broker node',
      registers: [registry],
      collect() {
        this.set(connectedClientCount());
      },
    }),
    refusedConnections: new Counter({
      name: 'mqtt_broker_refused_connections_total',
      help: 'Connections refused during the TLS handshake or at CONNECT, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    deniedPublishes: new Counter({
      name: 'mqtt_broker_denied_publishes_total',
      help: 'PUBLISH packets denied by the topic ACL (the client is disconnected), by role',
      labelNames: ['role'],
      registers: [registry],
    }),
    deniedSubscriptions: new Counter({
      name: 'mqtt_broker_denied_subscriptions_total',
      help: 'Subscriptions denied by the topic ACL (SUBACK 128), by role',
      labelNames: ['role'],
      registers: [registry],
    }),
    deniedDeliveries: new Counter({
      name: 'mqtt_broker_denied_deliveries_total',
      help: 'Messages withheld from a client the ACL does not allow to receive them, by role',
      labelNames: ['role'],
      registers: [registry],
    }),
    oversizePackets: new Counter({
      name: 'mqtt_broker_oversize_packets_total',
      help: 'Incoming MQTT packets refused by their declared length before being buffered',
      registers: [registry],
    }),
    listenerErrors: new Counter({
      name: 'mqtt_broker_listener_errors_total',
      help: 'Errors of a listening server after start-up (e.g. a failed accept), logged; the broker keeps running',
      labelNames: ['listener', 'code'],
      registers: [registry],
    }),
  };
}

export function roleLabel(role: ClientRole | undefined): string {
  return role ?? 'unknown';
}

/**
 * Gauges of ./connection-admission.ts, read at scrape time. Refusals before TLS are counted in
 * mqtt_broker_refused_connections_total with reason 'rate', 'source-cap' or 'total-cap'.
 */
export function registerAdmissionGauges(
  registry: Registry,
  read: { openSockets(): number; pendingHandshakes(): number; admittedRate(): number },
): void {
  new Gauge({
    name: 'mqtt_broker_admitted_handshake_rate',
    help: 'Handshakes per second admitted now: BROKER_HANDSHAKE_RATE, or less while handshakes complete slowly',
    registers: [registry],
    collect() {
      this.set(read.admittedRate());
    },
  });
  new Gauge({
    name: 'mqtt_broker_open_sockets',
    help: 'Sockets open on the MQTTS listener in any phase (TLS handshake, before CONNECT, MQTT session)',
    registers: [registry],
    collect() {
      this.set(read.openSockets());
    },
  });
  new Gauge({
    name: 'mqtt_broker_tls_handshakes_in_progress',
    help: 'Sockets on the MQTTS listener still in the TLS handshake',
    registers: [registry],
    collect() {
      this.set(read.pendingHandshakes());
    },
  });
}
