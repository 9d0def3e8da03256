/** Prometheus metrics of one broker node, registered in a registry the caller may share. */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClientRole } from './identity.js';

export interface BrokerMetrics {
  registry: Registry;
  connectedClients: Gauge;
  /** label reason: 'rate', 'overload', 'source-cap', 'total-cap' (refused before TLS), 'tls-handshake', or an IdentityRefusalCode / 'will-denied' / 'revoked' */
  refusedConnections: Counter<'reason'>;
  deniedPublishes: Counter<'role'>;
  deniedSubscriptions: Counter<'role'>;
  deniedDeliveries: Counter<'role'>;
  oversizePackets: Counter;
  /**
   * label kind: 'status' (payload refused, ./publish-content.ts), 'will' (a will the ACL refuses),
   * 'after-close' (a client's own publish aedes handled after its connection was closed)
   */
  droppedPublishes: Counter<'kind'>;
  /** publishes held back because their client was over its rate limit (./publish-throttle.ts) */
  throttledPublishes: Counter<'role'>;
  /** the sum of those waits */
  throttleDelaySeconds: Counter<'role'>;
  throttledClients: Gauge;
  revokedCertificates: Gauge;
  revocationListGenerated: Gauge;
  /** connections the broker closed on its own, label reason: 'rate-limit' or 'revoked' */
  disconnects: Counter<'reason'>;
  /** label listener: 'mqtts' or 'metrics'; label code: the errno code, e.g. EMFILE */
  listenerErrors: Counter<'listener' | 'code'>;
}

export interface BrokerGauges {
  connectedClients(): number;
  throttledClients(): number;
  revokedCertificates(): number;
  /** ms since the epoch; undefined before the first published list */
  revocationListGeneratedAt(): number | undefined;
}

export function createBrokerMetrics(registry: Registry, gauges: BrokerGauges): BrokerMetrics {
  return {
    registry,
    connectedClients: new Gauge({
      name: 'mqtt_broker_connected_clients',
      help: 'MQTT clients with an established session on this broker node',
      registers: [registry],
      collect() {
        this.set(gauges.connectedClients());
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
    droppedPublishes: new Counter({
      name: 'mqtt_broker_dropped_publishes_total',
      help: 'Publishes neither routed nor retained, by kind: status (payload refused; acknowledged), will (refused by the ACL), after-close (sent before the connection was closed, handled after; not acknowledged)',
      labelNames: ['kind'],
      registers: [registry],
    }),
    throttledPublishes: new Counter({
      name: 'mqtt_broker_throttled_publishes_total',
      help: 'Publishes held back (PUBACK and routing delayed) because the client was over its publish rate limit, by role',
      labelNames: ['role'],
      registers: [registry],
    }),
    throttleDelaySeconds: new Counter({
      name: 'mqtt_broker_throttle_delay_seconds_total',
      help: 'Total time publishes were held back by the publish rate limit, by role',
      labelNames: ['role'],
      registers: [registry],
    }),
    throttledClients: new Gauge({
      name: 'mqtt_broker_throttled_clients',
      help: 'Clients on this node whose last publish had to wait for the publish rate limit',
      registers: [registry],
      collect() {
        this.set(gauges.throttledClients());
      },
    }),
    revokedCertificates: new Gauge({
      name: 'mqtt_broker_revoked_certificates',
      help: 'Certificate serials this node refuses (the CRL file and the published revocation list)',
      registers: [registry],
      collect() {
        this.set(gauges.revokedCertificates());
      },
    }),
    revocationListGenerated: new Gauge({
      name: 'mqtt_broker_revocation_list_generated_timestamp_seconds',
      help: 'When the bridge generated the revocation list in force on this node (0: none received yet)',
      registers: [registry],
      collect() {
        this.set((gauges.revocationListGeneratedAt() ?? 0) / 1000);
      },
    }),
    disconnects: new Counter({
      name: 'mqtt_broker_disconnects_total',
      help: 'Connections the broker closed on its own, by reason',
      labelNames: ['reason'],
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
 * mqtt_broker_refused_connections_total with reason 'rate', 'overload', 'source-cap' or 'total-cap'.
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
