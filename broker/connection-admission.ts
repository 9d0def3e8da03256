/**
 * Connection admission on the MQTTS listener: which TCP connections may start a TLS handshake
 * (./admission-policy.ts decides), every socket tracked from accept to close, and every failed
 * handshake's socket destroyed. Tagged G7 (no device can slow another; bounded memory).
 *
 * Why each piece is here (node 20 / 22 node:tls):
 *   - `handshakeTimeout` of a tls.Server only emits 'tlsClientError' (ERR_TLS_HANDSHAKE_TIMEOUT);
 *     the socket stays open until the peer closes it. Measured before this module: 300 TCP
 *     connections that never sent a ClientHello were all still open after 130 s, so anyone who
 *     could reach the port could use up the broker's file descriptors without a certificate. The
 *     same holds for every other 'tlsClientError' (a client that stops mid-handshake). So every
 *     'tlsClientError' destroys the socket here.
 *   - A tls.Server does its TLS work in a 'connection' listener that node:tls adds itself
 *     (tlsConnectionListener, which wraps the accepted net.Socket in a TLSSocket). The gate below
 *     takes those listeners off and calls them only for admitted sockets, so a refused socket is
 *     reset right after accept() and costs no TLS state at all; node documents 'connection' as
 *     the way to hand a socket to a tls.Server ("can also be explicitly emitted by users to
 *     inject connections into the TLS server"). A refusal is a TCP RST (socket.resetAndDestroy):
 *     the client fails at once with ECONNRESET and backs off, and the broker keeps no TIME_WAIT
 *     entry for it.
 *   - The remote address is read at 'connection' time: a TLSSocket whose peer already went away
 *     reports `remoteAddress` undefined, which is what the "TLS handshake refused" line logged
 *     before. The TLSSocket is matched to its accepted socket through `tlsSocket._parent` (node
 *     internals, checked in tests/unit/upstream-internals.test.ts); without it the address falls
 *     back to the TLSSocket's own, and the per-source count is released at close instead.
 *   - The time from accept to CONNECT is bounded by the handshake timeout plus aedes'
 *     connectTimeout (aedes 1.2.0 closes a client without CONNECT after it); after that aedes'
 *     keepalive bounds an idle session.
 *
 * Refusals are counted in mqtt_broker_refused_connections_total{reason="rate"|"overload"|
 * "source-cap"|"total-cap"} and logged at debug each; a warning sums them up at most every 10 s, so a storm
 * cannot flood the log.
 */
import { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from '../common/logger.js';
import {
  ConnectionAdmission,
  DEFAULT_ADMISSION_LIMITS,
  type AdmissionLimits,
  type AdmissionRefusal,
  type AdmissionTicket,
} from './admission-policy.js';
import type { BrokerMetrics } from './metrics.js';

export interface ConnectionAdmissionOptions {
  limits?: Partial<AdmissionLimits>;
  logger: Logger;
  metrics: Pick<BrokerMetrics, 'refusedConnections'>;
  /** default Date.now */
  now?: () => number;
}

export interface AdmittedSockets {
  /** every admitted socket until it closes (TLS phase included): shutdown destroys them */
  readonly sockets: ReadonlySet<Socket>;
  /** admitted sockets still in the TLS handshake */
  pendingHandshakes(): number;
  /** handshakes per second admitted now */
  admittedRate(): number;
  readonly limits: AdmissionLimits;
}

interface Accepted {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  ticket: AdmissionTicket;
}

const REFUSAL_WARNING_INTERVAL_MS = 10_000;

type ConnectionListener = (this: TlsServer, socket: Socket) => void;

/**
 * Puts admission in front of the TLS work of `server`. Call it right after creating the server,
 * before it listens and before anything else listens for 'connection'.
 */
export function admitConnections(server: TlsServer, options: ConnectionAdmissionOptions): AdmittedSockets {
  const limits: AdmissionLimits = { ...DEFAULT_ADMISSION_LIMITS, ...options.limits };
  const now = options.now ?? Date.now;
  const admission = new ConnectionAdmission(limits, now);
  const { logger, metrics } = options;
  const sockets = new Set<Socket>();
  const accepted = new WeakMap<Socket, Accepted>();

  const tlsListeners = server.listeners('connection') as ConnectionListener[];
  if (tlsListeners.length === 0) {
    throw new Error("node:tls Server has no 'connection' listener to gate (node internals changed)");
  }
  server.removeAllListeners('connection');

  const refusals = refusalReporter(logger, now);
  const lag = eventLoopLag();
  server.once('close', () => lag.stop());
  server.on('connection', (socket: Socket) => {
    const remoteAddress = socket.remoteAddress;
    const remotePort = socket.remotePort;
    const decision = admission.admit(remoteAddress ?? 'unknown', lag.currentMs());
    if (!decision.admitted) {
      metrics.refusedConnections.inc({ reason: decision.reason });
      refusals.report(decision.reason, remoteAddress, remotePort);
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    accepted.set(socket, { remoteAddress, remotePort, ticket: decision.ticket });
    socket.once('close', () => {
      sockets.delete(socket);
      decision.ticket.closed();
    });
    for (const listener of tlsListeners) listener.call(server, socket);
  });

  server.on('secureConnection', (tlsSocket: TLSSocket) => {
    acceptedSocketOf(tlsSocket, accepted)?.ticket.handshakeDone();
  });

  server.on('tlsClientError', (error: NodeJS.ErrnoException, tlsSocket: TLSSocket) => {
    const origin = acceptedSocketOf(tlsSocket, accepted);
    // a client that sent nothing (a port scan, a silent socket) says nothing about handshake speed
    if ((parentOf(tlsSocket)?.bytesRead ?? 0) > 0) origin?.ticket.handshakeFailed();
    // destroyed here, or it stays open: see the header
    tlsSocket.destroy();
    parentOf(tlsSocket)?.destroy();
    metrics.refusedConnections.inc({ reason: 'tls-handshake' });
    // node verifies the client chain after the handshake and just destroys the socket when it fails
    // (no TLS alert), so `error` reads "socket hang up"; authorizationError has the real cause
    const verifyError = tlsSocket.authorizationError as Error | string | null | undefined;
    const reason = verifyError
      ? `client certificate rejected: ${typeof verifyError === 'string' ? verifyError : verifyError.message}`
      : error.message.trim();
    logger.warn(
      {
        remoteAddress: origin?.remoteAddress ?? tlsSocket.remoteAddress,
        remotePort: origin?.remotePort ?? tlsSocket.remotePort,
        code: error.code,
        reason,
      },
      'TLS handshake refused',
    );
  });

  return { sockets, pendingHandshakes: () => admission.pending, admittedRate: () => admission.admittedRate, limits };
}

const LAG_SAMPLE_MS = 50;

/**
 * How far the event loop is behind now: a timer due every LAG_SAMPLE_MS, and the time since it
 * was due when it has not fired yet (a 'connection' callback runs in the poll phase, possibly
 * long after the last timer, when a backlog of handshakes is being worked off).
 */
function eventLoopLag(): { currentMs(): number; stop(): void } {
  let due = performance.now() + LAG_SAMPLE_MS;
  let lastMs = 0;
  const timer = setInterval(() => {
    const at = performance.now();
    lastMs = Math.max(0, at - due);
    due = at + LAG_SAMPLE_MS;
  }, LAG_SAMPLE_MS);
  timer.unref();
  return {
    currentMs: () => Math.max(lastMs, performance.now() - due),
    stop: () => clearInterval(timer),
  };
}

/** node:tls internals: a server-side TLSSocket keeps the accepted net.Socket in `_parent`. */
function parentOf(tlsSocket: TLSSocket): Socket | undefined {
  const parent = (tlsSocket as TLSSocket & { _parent?: unknown })._parent;
  return parent instanceof Socket ? parent : undefined;
}

function acceptedSocketOf(tlsSocket: TLSSocket, accepted: WeakMap<Socket, Accepted>): Accepted | undefined {
  const parent = parentOf(tlsSocket);
  return parent === undefined ? undefined : accepted.get(parent);
}

/** Each refusal at debug; a warning with the counts at most every REFUSAL_WARNING_INTERVAL_MS. */
function refusalReporter(logger: Logger, now: () => number) {
  let lastWarningAt = Number.NEGATIVE_INFINITY;
  let counts: Partial<Record<AdmissionRefusal, number>> = {};
  return {
    report(reason: AdmissionRefusal, remoteAddress: string | undefined, remotePort: number | undefined): void {
      logger.debug({ remoteAddress, remotePort, reason }, 'connection refused before TLS');
      counts[reason] = (counts[reason] ?? 0) + 1;
      const at = now();
      if (at - lastWarningAt < REFUSAL_WARNING_INTERVAL_MS) return;
      logger.warn(
        { remoteAddress, remotePort, reason, refusedSinceLastWarning: counts },
        'connections refused before TLS (admission limits; counted in mqtt_broker_refused_connections_total)',
      );
      lastWarningAt = at;
      counts = {};
    },
  };
}
